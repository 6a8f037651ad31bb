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
from faces.runkit.config import register_resolvers

register_resolvers()


# Hydra's own flags that take the next argument as their value (it is not a checkpoint).
_FLAGS_WITH_VALUE = frozenset(
    {
        "-cp",
        "--config-path",
        "-cn",
        "--config-name",
        "-cd",
        "--config-dir",
        "-c",
        "--cfg",
        "-p",
        "--package",
        "--experimental-rerun",
    }
)
_INFO_TOPICS = frozenset({"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"})


def _override_value(path: Path) -> str:
    """`path` as a Hydra override value: quoted unless it is plain."""
    text = str(path)
    if all(c.isalnum() or c in "/._-+" for c in text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _positional_checkpoint_to_override(argv: list[str]) -> list[str]:
    """`evaluate.py CKPT ...` -> `evaluate.py checkpoint=/abs/CKPT ...` (Hydra takes only key=value;
    rewriting sys.argv also makes DDP child processes, which re-run this command line, see it).

    A positional argument is always the checkpoint: one that does not exist is reported as
    "not found" here (exit 2), not as a Hydra override parse error.
    """
    out, takes_value, found = [argv[0]], False, None
    for index, arg in enumerate(argv[1:], start=1):
        if takes_value:
            out.append(arg)
            takes_value = False
            continue
        if arg in _FLAGS_WITH_VALUE or (arg == "--info" and index + 1 < len(argv) and argv[index + 1] in _INFO_TOPICS):
            out.append(arg)
            takes_value = True
            continue
        if "=" in arg or arg.startswith(("-", "~", "+")):
            out.append(arg)
            continue
        path = Path(arg).expanduser()
        if found is not None:
            _usage_error(f"two checkpoints given ({found} and {arg}); evaluate one at a time")
        if not path.exists():
            _usage_error(
                f"checkpoint {arg} not found (pass a classifier run folder or its checkpoints/best.safetensors)"
            )
        found = arg
        out.append(f"checkpoint={_override_value(path.resolve())}")
    return out


def _usage_error(message: str) -> None:
    print(f"evaluate.py: error: {message}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    metrics = run_evaluation(cfg, checkpoint=cfg.checkpoint, run_dir=run_dir)
    if is_global_zero():
        print(format_metrics(metrics))
        print(f"run: {run_dir}")


def cli() -> None:
    """The `fer-evaluate` command: a positional checkpoint, then Hydra."""
    sys.argv = _positional_checkpoint_to_override(sys.argv)
    main()


if __name__ == "__main__":
    cli()
