"""Training throughput of the VAE-GAN (images/s) for `small` and `base` on the current device.

    python scripts/bench_vaegan.py                          # CPU here; CUDA + bf16 + channels_last on a GPU
    python scripts/bench_vaegan.py --models base --batch-size 256 --steps 50
    python scripts/bench_vaegan.py --models small --precision 32-true bf16-mixed --channels-last false true --repeats 3
    python scripts/bench_vaegan.py --models small --set vaegan.expression_classifier=true

Not a test: prints one line per model for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse

from omegaconf import OmegaConf

from vaegan.bench import benchmark_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["small", "base"], help="conf/vaegan/<name>.yaml")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64 on CPU, 256 on CUDA")
    parser.add_argument("--steps", type=int, default=None, help="timed batches (default: 5 on CPU, 50 on CUDA)")
    parser.add_argument(
        "--precision", nargs="+", default=[None], help="Lightning precisions to compare, e.g. 32-true bf16-mixed"
    )
    parser.add_argument(
        "--channels-last",
        nargs="+",
        default=["auto"],
        choices=["auto", "true", "false"],
        help="memory formats to compare (auto: channels_last on CUDA only)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per combination; the best is printed (noisy shared CPUs)"
    )
    parser.add_argument("--warmup-steps", type=int, default=None, help="untimed batches first (default: 2 / 10)")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="Hydra overrides for every model, e.g. vaegan.expression_classifier=true",
    )
    args = parser.parse_args()

    import torch
    from hydra import compose, initialize_config_dir

    from faces.runkit.config import CONF_DIR, register_resolvers

    register_resolvers()

    cuda = torch.cuda.is_available()
    batch_size = args.batch_size or (256 if cuda else 64)
    steps = args.steps or (50 if cuda else 5)
    warmup = args.warmup_steps if args.warmup_steps is not None else (10 if cuda else 2)
    conf = CONF_DIR
    for name in args.models:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose(
                config_name="train_vaegan",
                overrides=[f"vaegan={name}", f"batch_size={batch_size}", "metrics.frechet=false", *args.set],
            )
        for precision in args.precision:
            for channels_last in args.channels_last:
                config = OmegaConf.to_container(cfg, resolve=True)
                config["output_dir"] = None
                config["channels_last"] = {"auto": "auto", "true": True, "false": False}[channels_last]
                runs = [
                    benchmark_training(config, steps=steps, warmup_steps=warmup, precision=precision)
                    for _ in range(args.repeats)
                ]
                result = max(runs, key=lambda r: r["images_per_s"])
                each = ", ".join(f"{r['images_per_s']:.1f}" for r in runs)
                print(
                    f"vaegan={result['model']} {' '.join(args.set)} {result['resolution']}px batch {result['batch_size']} "
                    f"{result['precision']} channels_last={result['channels_last']} on {result['device']}: "
                    f"{result['images_per_s']:.1f} images/s (best of {len(runs)}: "
                    f"{each}; {result['timed_images']} images timed each)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
