"""Train the class-conditional VAE-GAN on the real train split (never the test split).

    python scripts/train_vaegan.py                                        # synthetic faces, CPU, a few minutes
    python scripts/train_vaegan.py data=rafdb data.root=/data/RAF-DB/basic vaegan=base trainer=gpu
    python scripts/train_vaegan.py resume=outputs/train_vaegan/<time>/checkpoints/last.ckpt

Writes checkpoints/{last,best}.ckpt, vaegan.safetensors (for the augmenter), grids/*.png and
CSV + TensorBoard logs into the run folder (outputs/train_vaegan/<time>/).
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from faces.config import register_resolvers
from vaegan.train import format_summary, train_vaegan

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train_vaegan")
def main(cfg: DictConfig) -> None:
    result = train_vaegan(cfg, output_dir=HydraConfig.get().runtime.output_dir)
    print(format_summary(result))


if __name__ == "__main__":
    main()
