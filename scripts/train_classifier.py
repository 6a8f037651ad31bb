"""Fine-tune a pretrained classifier with one balancing strategy; test once at the end.

    python scripts/train_classifier.py                                   # offline ImageNet EfficientNet-Lite0, plain CE
    python scripts/train_classifier.py balance=oversample                # or reweight, focal, weighted_cluster, ...
    python scripts/train_classifier.py balance=synthetic balance.generated_dir=OUT balance.loss=reweight
    python scripts/train_classifier.py classifier=resnet18 data=rafdb data.root=/data/RAF-DB/basic trainer=gpu
    python scripts/train_classifier.py trainer=ddp trainer.devices=4

Writes metrics.json, config.yaml, confusion_matrix.png, per_class_recall.png, logs/metrics.csv,
tensorboard/ and checkpoints/best.safetensors to outputs/train_classifier/<time>/.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from classifier.outputs import format_metrics
from classifier.train import run_training
from classifier.trainer import is_global_zero
from faces.config import register_resolvers
from faces.runs import record_failure

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train_classifier")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = run_training(cfg, run_dir=run_dir)
    except Exception as error:
        # In a multirun sweep the failure stays visible: `ablate.py aggregate` reports it as failed.
        if is_global_zero():
            record_failure(run_dir, error, row=None, seed=int(cfg.seed))
        raise
    if is_global_zero():
        print(format_metrics(metrics))
        print(f"run: {run_dir}")


if __name__ == "__main__":
    main()
