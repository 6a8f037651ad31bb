"""Hydra/OmegaConf glue: the `${project_root:}` resolver used by conf/paths/default.yaml."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def project_root() -> str:
    """The checkout's root (where pyproject.toml is) for an editable install, else the cwd."""
    candidate = Path(__file__).resolve().parent.parent
    return str(candidate if (candidate / "pyproject.toml").is_file() else Path.cwd())


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", project_root)


register_resolvers()
