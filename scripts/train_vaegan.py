"""Train the class-conditional VAE-GAN on the real train split (never the test split).

    python scripts/train_vaegan.py                                        # synthetic faces, CPU, a few minutes
    python scripts/train_vaegan.py data=rafdb data.root=/data/RAF-DB/basic vaegan=base trainer=gpu
    python scripts/train_vaegan.py resume=outputs/train_vaegan/<time>/checkpoints/last.ckpt

Writes checkpoints/{last,best}.ckpt, vaegan.safetensors (for the augmenter), grids/*.png and
CSV + TensorBoard logs into the run folder (outputs/train_vaegan/<time>/). SIGTERM or Ctrl-C marks the
folder interrupted (interrupted.json), prints where last.ckpt is and the `resume=` command, and exits 143 / 130.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from faces.runkit.config import register_resolvers
from faces.runkit.lock import is_rank_zero_process
from faces.runkit.runs import RunInterrupted, command_line, exit_interrupted, interrupt_signals, replace_argument
from vaegan.train import format_summary, train_vaegan

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train_vaegan")
def main(cfg: DictConfig) -> None:
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        with interrupt_signals():
            result = train_vaegan(cfg, output_dir=output_dir)
    except RunInterrupted as interrupted:
        last = output_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            note, resume = (
                f"Last checkpoint (end of the last finished epoch): {last}",
                command_line(replace_argument("resume", last)),
            )
        else:
            note, resume = "No checkpoint yet (it stopped in its first epoch): start again.", command_line()
        exit_interrupted(interrupted, run_dir=output_dir, resume=resume, note=note, mark=is_rank_zero_process())
    print(format_summary(result))


if __name__ == "__main__":
    main()
