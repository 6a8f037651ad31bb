"""Training throughput of the VAE-GAN (images/s) for `small` and `base` on the current device.

    python scripts/bench_vaegan.py                          # CPU here; CUDA + bf16 + channels_last on a GPU
    python scripts/bench_vaegan.py --models base --batch-size 256 --steps 50

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
    parser.add_argument("--warmup-steps", type=int, default=None, help="untimed batches first (default: 2 / 10)")
    args = parser.parse_args()

    import torch
    from hydra import compose, initialize_config_dir

    from faces.config import CONF_DIR, register_resolvers

    register_resolvers()

    cuda = torch.cuda.is_available()
    batch_size = args.batch_size or (256 if cuda else 64)
    steps = args.steps or (50 if cuda else 5)
    warmup = args.warmup_steps if args.warmup_steps is not None else (10 if cuda else 2)
    conf = CONF_DIR
    for name in args.models:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose(config_name="train_vaegan", overrides=[f"vaegan={name}", f"batch_size={batch_size}",
                                                                "metrics.frechet=false"])
        config = OmegaConf.to_container(cfg, resolve=True)
        config["output_dir"] = None
        result = benchmark_training(config, steps=steps, warmup_steps=warmup)
        print(f"vaegan={result['model']} {result['resolution']}px batch {result['batch_size']} "
              f"{result['precision']} on {result['device']}: {result['images_per_s']:.1f} images/s "
              f"({result['timed_images']} images timed)")


if __name__ == "__main__":
    main()
