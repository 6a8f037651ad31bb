"""Fine-tune a pretrained classifier with one balancing strategy; test once at the end.

    python scripts/train_classifier.py                                   # offline ImageNet EfficientNet-Lite0, plain CE
    python scripts/train_classifier.py balance=oversample                # or reweight, focal, weighted_cluster, ...
    python scripts/train_classifier.py balance=synthetic balance.generated_dir=OUT balance.loss=reweight
    python scripts/train_classifier.py classifier=resnet18 data=rafdb data.root=/data/RAF-DB/basic trainer=gpu
    python scripts/train_classifier.py trainer=ddp trainer.devices=4
    python scripts/train_classifier.py -m balance=none,oversample seed=0,1,2      # a sweep: one folder per job
    python scripts/train_classifier.py -m hydra/launcher=submitit_slurm hydra.launcher.partition=gpu balance=none,reweight

Writes metrics.json, config.yaml, confusion_matrix.png, per_class_recall.png, logs/metrics.csv,
tensorboard/ and checkpoints/best.safetensors to outputs/train_classifier/<time>/ (a sweep:
outputs/multirun/train_classifier/<time>/<job>/, which `scripts/ablate.py aggregate` reads).
A run that fails leaves error.json there instead of metrics.json; one stopped by SIGTERM or Ctrl-C
leaves interrupted.json (with the command that starts it again in its folder) and exits 143 / 130.

`+ablation_run=<row>/seed<k>` is how `scripts/ablate.py launcher=...` hands a run to a Hydra
launcher: the job then trains the config the ablation wrote into its folder (ablation/launch.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ablation.launch import LAUNCH_KEY, load_launched_run
from classifier.outputs import format_metrics
from classifier.train import run_training, world_size
from classifier.trainer import is_global_zero
from faces.runkit.config import register_resolvers
from faces.runkit.runs import (
    RunInterrupted,
    command_line,
    exit_interrupted,
    interrupt_signals,
    record_failure,
    replace_argument,
)

register_resolvers()
log = logging.getLogger("train_classifier")


def check_multirun_devices(cfg: DictConfig) -> None:
    """Lightning's DDP launcher starts the other ranks by re-running this command line, which in a
    multirun would be the whole sweep again: a sweep's jobs get one device each."""
    processes = world_size(cfg.trainer)
    if HydraConfig.get().mode == RunMode.MULTIRUN and processes > 1:
        raise ValueError(
            f"trainer asks for {processes} processes (DDP) inside a Hydra multirun, whose ranks Lightning would "
            "start by re-running the whole sweep; give each job one device (trainer=gpu or trainer=cpu) and "
            "let the launcher spread the jobs, or run a DDP job on its own (without -m)"
        )


def resume_command(cfg: DictConfig, run_dir: Path) -> str:
    if cfg.get(LAUNCH_KEY):
        return "re-run the scripts/ablate.py command that launched this run (it skips finished runs)"
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return command_line()
    return command_line(replace_argument("hydra.run.dir", run_dir))


@hydra.main(version_base="1.3", config_path="../conf", config_name="train_classifier")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    row = None
    try:
        with interrupt_signals():
            if cfg.get(LAUNCH_KEY):  # a stage-3 run of scripts/ablate.py launcher=...: its folder holds its config
                cfg, row = load_launched_run(run_dir)
            check_multirun_devices(cfg)
            metrics = run_training(cfg, run_dir=run_dir)
    except RunInterrupted as interrupted:
        exit_interrupted(
            interrupted,
            run_dir=run_dir,
            resume=resume_command(cfg, run_dir),
            mark=is_global_zero(),
            note="A classifier run keeps no mid-run checkpoint: it starts again from its first epoch.",
        )
    except Exception as error:
        # In a multirun sweep the failure stays visible: `ablate.py aggregate` reports it as failed.
        if is_global_zero():
            seed = cfg.get("seed")
            record_failure(run_dir, error, row=row, seed=None if seed is None else int(seed))
            if (
                HydraConfig.get().mode == RunMode.MULTIRUN
            ):  # Hydra keeps a job's exception to itself: log it in the job's log
                log.exception("run failed (error.json in %s)", run_dir)
        raise
    if is_global_zero():
        print(format_metrics(metrics))
        print(f"run: {run_dir}")


if __name__ == "__main__":
    main()
