"""Re-evaluate a classifier checkpoint on a dataset's test split (real images only).

    python scripts/evaluate.py outputs/train_classifier/<time>                 # run dir or .../checkpoints/best.safetensors
    python scripts/evaluate.py CKPT data=rafdb data.root=/data/RAF-DB/basic
    python scripts/evaluate.py CKPT trainer=ddp trainer.devices=2             # metrics reduced over all ranks

Writes metrics.json, confusion_matrix.png and per_class_recall.png to outputs/evaluate/<time>/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from classifier.evaluate import run_evaluation
from classifier.outputs import format_metrics
from classifier.trainer import is_global_zero
from faces.config import register_resolvers

register_resolvers()


def _positional_checkpoint_to_override(argv: list[str]) -> list[str]:
    """`evaluate.py CKPT ...` -> `evaluate.py checkpoint=/abs/CKPT ...` (Hydra takes only key=value;
    rewriting sys.argv also makes DDP child processes, which re-run this command line, see it)."""
    out = [argv[0]]
    for arg in argv[1:]:
        if "=" not in arg and not arg.startswith("-") and Path(arg).exists():
            arg = f"checkpoint={Path(arg).resolve()}"
        out.append(arg)
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    metrics = run_evaluation(cfg, checkpoint=cfg.checkpoint, run_dir=run_dir)
    if is_global_zero():
        print(format_metrics(metrics))
        print(f"run: {run_dir}")


if __name__ == "__main__":
    sys.argv = _positional_checkpoint_to_override(sys.argv)
    main()
