"""Hydra/OmegaConf glue the data layer owns: the `${project_root:}` resolver (conf/paths/default.yaml)
and the device a trainer config asks for.

Nothing here runs on import: entry points call `register_resolvers()` explicitly before Hydra
composes a config, so importing the data layer has no side effects.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from .runs import UnwritableFolderError, check_writable

# The checkout's conf/ (editable install, or scripts run from a clone); an installed wheel ships the same
# folder as fer_longtail/conf beside this package (pyproject.toml, [tool.setuptools.package-dir]).
_CHECKOUT_CONF = Path(__file__).resolve().parents[2] / "conf"
CONF_DIR = _CHECKOUT_CONF if _CHECKOUT_CONF.is_dir() else _CHECKOUT_CONF.parent / "fer_longtail" / "conf"
GPU_ACCELERATORS = ("gpu", "cuda")


def project_root() -> str:
    """The checkout's root (where pyproject.toml is) for an editable install, else the cwd."""
    candidate = Path(__file__).resolve().parents[2]
    return str(candidate if (candidate / "pyproject.toml").is_file() else Path.cwd())


def register_resolvers() -> None:
    """Register `${project_root:}`; safe to call any number of times."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", project_root)


def trainer_uses_gpu(trainer_cfg: Mapping[str, Any] | None) -> bool:
    """Whether a `trainer` config (conf/trainer/*.yaml) asks for CUDA: accelerator gpu or cuda."""
    return str((trainer_cfg or {}).get("accelerator", "cpu")) in GPU_ACCELERATORS


def trainer_device(trainer_cfg: Mapping[str, Any] | None) -> str:
    """The torch device type of a trainer config: "cuda" or "cpu" (for work done outside Lightning)."""
    return "cuda" if trainer_uses_gpu(trainer_cfg) else "cpu"


def single_device_trainer(trainer_cfg: DictConfig) -> DictConfig:
    """A copy of a trainer config on one device of the same kind: stages that train in the ablation's own
    process (the VAE-GAN, whose manual optimisation cannot run under DDP, and the judge) never start
    data-parallel ranks that would re-run the whole ablation script."""
    single = copy.deepcopy(trainer_cfg)
    with open_dict(single):
        single.strategy, single.devices, single.num_nodes = "auto", 1, 1
    return single


class WritableOutput(Callback):
    """Hydra callback (conf/hydra/default.yaml): an unwritable run or sweep folder ends the command with one
    line, "cannot write to ...", and exit status 2, before Hydra itself fails on it with a traceback."""

    def _check(self, folder: Any, what: str) -> None:
        try:
            check_writable(str(folder), what=what)
        except UnwritableFolderError as error:
            sys.stderr.write(f"{error}\n")
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "the run folder (hydra.run.dir, under paths.output_dir)")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "the sweep folder (hydra.sweep.dir, under paths.output_dir)")
