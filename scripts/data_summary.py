"""Per-split, per-class counts, imbalance ratio, many/medium/few groups and a bar chart.

    python scripts/data_summary.py                          # embedded synthetic faces
    python scripts/data_summary.py data=rafdb data.root=/path/to/RAF-DB/basic
    python scripts/data_summary.py data=folder data.root=/path/to/fer2013 data.image_size=48

Writes class_counts.png, train_samples.png (a row of images per class) and summary.json into the run folder (outputs/data_summary/<time>/).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import faces
from faces.runkit.config import register_resolvers
from faces.summary import GroupThresholds, format_summary, plot_class_counts, plot_class_samples, summarize_dataset

register_resolvers()
log = logging.getLogger("data_summary")


@hydra.main(version_base="1.3", config_path="../conf", config_name="data_summary")
def main(cfg: DictConfig) -> None:
    data = faces.load_faces(cfg.data, cache_dir=cfg.paths.cache_dir, splits=list(cfg.splits))
    summary = summarize_dataset(data, thresholds=GroupThresholds(**cfg.data.groups))
    out = Path(HydraConfig.get().runtime.output_dir)
    chart = plot_class_counts(
        counts={s: summary["counts"][s] for s in cfg.splits if s in summary["counts"]},
        class_names=summary["class_names"],
        groups=list(summary["groups"].values()),
        title=f"{summary['dataset']}: images per class (imbalance {summary['imbalance_ratio']:.1f}:1)",
        path=out / "class_counts.png",
    )
    samples = plot_class_samples(data.train, path=out / "train_samples.png", per_class=cfg.samples_per_class)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(format_summary(summary))
    print(f"chart: {chart}\nsamples: {samples}\nsummary: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
