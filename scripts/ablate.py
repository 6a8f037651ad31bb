"""The ablation benchmark: VAE-GAN, augmentation, every strategy row x seed, one report.

    python scripts/ablate.py                                   # all rows x 3 seeds on the embedded faces
    python scripts/ablate.py experiment=demo                   # what `make demo` runs (CPU, ~10 min)
    python scripts/ablate.py data=rafdb data.root=PATH experiment=rafdb_resnet18 trainer=gpu
    python scripts/ablate.py launcher=submitit_local           # stage 3 (rows x seeds) as submitit jobs on this machine
    python scripts/ablate.py trainer=gpu launcher=submitit_slurm launcher.partition=gpu launcher.timeout_min=60
    python scripts/ablate.py aggregate outputs/multirun/train_classifier/<time>   # table from any multirun

Writes ablation.csv, ablation.md, per_class_recall.png, confusion_matrices.png and report.html
into out_dir (outputs/ablate/<name>/); re-running skips finished stages and runs. Exit status: 0 when
every run finished, 1 when any failed (listed), 2 for bad input (one line, before any work), 143 / 130
when SIGTERM / Ctrl-C stopped it (out_dir gets interrupted.json). With `launcher=`
(conf/launcher/) the classifier runs go to that Hydra launcher as one multirun of
scripts/train_classifier.py, each job writing into out_dir/runs/<row>/seed<k>/ (ablation/launch.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def aggregate(argv: list[str]) -> int:
    from ablation.report import write_report

    parser = argparse.ArgumentParser(
        prog="scripts/ablate.py aggregate",
        description="Build ablation.csv/.md, plots and report.html from any folder of runs.",
    )
    parser.add_argument(
        "folder", type=Path, help="an ablate out_dir, a Hydra multirun folder, or any folder of run folders"
    )
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: the folder itself)")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    paths = write_report(args.folder, out_dir=args.out, title=f"Ablation: {args.folder.name}")
    print(paths["markdown"].read_text())
    print(f"report: {paths['html']}")
    return 0


def main() -> None:
    import hydra
    from omegaconf import DictConfig

    from ablation.pipeline import check_ablation, failed_runs, run_ablation
    from faces.runkit.config import register_resolvers
    from faces.runkit.runs import RunInterrupted, command_line, exit_interrupted, interrupt_signals

    register_resolvers()

    @hydra.main(version_base="1.3", config_path="../conf", config_name="ablate")
    def run(cfg: DictConfig) -> None:
        try:  # bad input: one line and exit status 2, before any work
            check_ablation(cfg)
        except (ValueError, ImportError, PermissionError) as error:
            print(f"scripts/ablate.py: {error}", file=sys.stderr)
            sys.exit(2)
        try:
            with interrupt_signals():
                paths = run_ablation(cfg)
        except RunInterrupted as interrupted:
            exit_interrupted(
                interrupted,
                run_dir=Path(cfg.out_dir),
                resume=command_line(),
                note="Re-running the same command skips every finished stage and run.",
            )
        print(paths["markdown"].read_text())
        print(f"report: {paths['html']}")
        failed = failed_runs(cfg)
        if failed:
            shown = "\n  ".join(failed)
            print(
                f"{len(failed)} run(s) failed (error.json in each run folder; re-running the command retries them):\n  {shown}",
                file=sys.stderr,
            )
            sys.exit(1)

    run()


def cli() -> None:
    """The `fer-ablate` command: `aggregate FOLDER`, or the Hydra ablation."""
    if len(sys.argv) > 1 and sys.argv[1] == "aggregate":
        sys.exit(aggregate(sys.argv[2:]))
    main()


if __name__ == "__main__":
    cli()
