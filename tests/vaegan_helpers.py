"""Shared set-up for the VAE-GAN tests: the real Hydra config, shrunk to seconds on CPU."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# Narrow networks and no feature-network metrics: the tests check behaviour, not quality.
TINY_OVERRIDES = (
    "vaegan.base_channels=8",
    "vaegan.max_channels=32",
    "vaegan.embed_dim=8",
    "vaegan.latent_dim=32",
    "batch_size=32",
    "grid_every_n_epochs=1",
    "grid.per_class=2",
    "metrics.frechet=false",
    "metrics.lpips=false",
    "trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
)


def compose_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train_vaegan", overrides=list(overrides))


def tiny_config(*, root: Path, cache_dir: Path, extra: tuple[str, ...] = (), preset: str | None = "tiny") -> DictConfig:
    return compose_config(
        *([f"data.preset={preset}"] if preset else []),
        f"data.root={root}",
        f"paths.cache_dir={cache_dir}",
        *TINY_OVERRIDES,
        *extra,
    )
