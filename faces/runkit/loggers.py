"""Lightning loggers from the `logger` config group (conf/logger/): one entry per chosen logger, each built
with Hydra's `_target_` instantiation, so W&B or MLflow is a `logger=[csv,wandb]` choice, not a code edit."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf

# A run config written before the logger group existed (an ablation's launch_config.yaml being resumed)
# has no `logger` key: it gets what training used then.
DEFAULT_LOGGERS: dict[str, dict[str, Any]] = {
    "csv": {"_target_": "pytorch_lightning.loggers.CSVLogger", "name": "logs", "version": ""},
    "tensorboard": {
        "_target_": "pytorch_lightning.loggers.TensorBoardLogger",
        "name": "tensorboard",
        "version": "",
        "default_hp_metric": False,
    },
}
# Loggers whose constructor takes the run folder as save_dir (MLflow's store is its tracking_uri instead).
_SAVE_DIR_TARGETS = ("CSVLogger", "TensorBoardLogger", "WandbLogger")


def build_loggers(logger_cfg: Mapping[str, Any] | None, *, save_dir: Path | str) -> list[Any]:
    """The configured loggers, writing under `save_dir` (the run folder); a missing package fails here,
    before training, naming the extra that provides it."""
    if logger_cfg is None:
        specs = DEFAULT_LOGGERS
    elif OmegaConf.is_config(logger_cfg):  # resolved where it sits: ${paths.output_dir} refers to the whole config
        specs = OmegaConf.to_container(logger_cfg, resolve=True)
    else:
        specs = dict(logger_cfg)
    loggers = []
    for name, spec in specs.items():
        if not isinstance(spec, dict) or "_target_" not in spec:
            raise ValueError(f"logger.{name} must be a mapping with a _target_ (see conf/logger/), got {spec!r}")
        kwargs = (
            {"save_dir": str(save_dir)}
            if str(spec["_target_"]).endswith(_SAVE_DIR_TARGETS) and "save_dir" not in spec
            else {}
        )
        try:
            loggers.append(instantiate(spec, **kwargs))
        except Exception as error:  # Hydra wraps the logger's ImportError/ModuleNotFoundError in its own error
            cause = error.__cause__ or error
            if isinstance(cause, ImportError) or "is not installed" in str(cause) or "No module named" in str(cause):
                raise ImportError(
                    f"logger={name} needs a package that is not installed ({cause}): "
                    "pip install 'fer-longtail[loggers]' (wandb, mlflow)"
                ) from error
            raise
    return loggers
