"""Hydra/OmegaConf glue the data layer owns: the `${project_root:}` resolver (conf/paths/default.yaml)
and the device a trainer config asks for.

Nothing here runs on import: entry points call `register_resolvers()` explicitly before Hydra
composes a config, so importing the data layer has no side effects.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

# The checkout's conf/ (editable install, or scripts run from a clone); an installed wheel ships the same
# folder as fer_longtail/conf beside this package (pyproject.toml, [tool.setuptools.package-dir]).
_CHECKOUT_CONF = Path(__file__).resolve().parent.parent / "conf"
CONF_DIR = _CHECKOUT_CONF if _CHECKOUT_CONF.is_dir() else _CHECKOUT_CONF.parent / "fer_longtail" / "conf"
GPU_ACCELERATORS = ("gpu", "cuda")


def project_root() -> str:
    """The checkout's root (where pyproject.toml is) for an editable install, else the cwd."""
    candidate = Path(__file__).resolve().parent.parent
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
