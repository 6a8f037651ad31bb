"""Composing one stage's config from another stage (the ablation's classifier runs and VAE-GAN,
the augmenter's judge): the only place that reaches into Hydra outside an entry point."""

from __future__ import annotations

from faces.runkit.config import CONF_DIR, register_resolvers


def compose_config(config_name: str, overrides: list[str] | tuple[str, ...] = ()):
    """Compose `conf/<config_name>.yaml` with overrides, inside or outside a running Hydra app.

    Within `@hydra.main` the global Hydra instance is reused; elsewhere (tests, argparse
    scripts) one is initialised on the repo's conf/ for the duration of the call.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    if GlobalHydra.instance().is_initialized():
        return compose(config_name=config_name, overrides=list(overrides))
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name=config_name):
        return compose(config_name=config_name, overrides=list(overrides))
