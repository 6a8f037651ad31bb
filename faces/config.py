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


CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_config(config_name: str, overrides: list[str] | tuple[str, ...] = ()):
    """Compose `conf/<config_name>.yaml` with overrides, inside or outside a running Hydra app.

    Scripts that run other stages (the augmenter's judge, the ablation's classifier runs)
    compose those stages' configs here; within `@hydra.main` the global Hydra instance is
    reused, elsewhere (tests, argparse scripts) one is initialised on the repo's conf/.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name=config_name, overrides=list(overrides))
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name=config_name):
        return compose(config_name=config_name, overrides=list(overrides))
