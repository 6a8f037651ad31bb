"""`experiment=study` end to end on tiny data: the generated-data rows, CAS beside the set, paired
comparisons in the report, the larger test split, and a resume that trains nothing again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import faces
from ablation.config import compose_config
from ablation.pipeline import run_ablation
from vaegan.checkpoint import save_vaegan
from vaegan.model import VAEGAN

FAST = [
    "classifier=resnet10t_scratch",
    "train.epochs=2",
    "train.min_steps=0",
    "train.freeze_epochs=0",
    "train.warmup_epochs=0",
    "train.batch_size=16",
    "train.limit_train_batches=3",
    "train.early_stop_patience=null",
]
ROWS = ["oversample", "balanced_softmax", "oversample_synthetic", "synthetic_deferred", "synthetic_ldam_drw", "cas"]


@pytest.mark.slow
def test_study_runs_end_to_end_and_resumes(tmp_path: Path, tiny_synthetic_root: Path) -> None:
    data_cfg = {"name": "synthetic", "preset": "tiny", "root": str(tmp_path / "faces"), "test_per_class": 30}
    data = faces.load_faces(data_cfg, cache_dir=tmp_path / "cache", splits=("train",))
    torch.manual_seed(0)
    model = VAEGAN(resolution=32, latent_dim=32, num_classes=7, base_channels=8, max_channels=32)
    checkpoint = save_vaegan(
        tmp_path / "vaegan.safetensors",
        model=model,
        config={"name": "tiny"},
        class_names=data.class_names,
        extra={"image_size": 32, "data_fingerprint": data.train.fingerprint},
    )
    cfg = compose_config(
        "ablate",
        [
            "experiment=study",
            "data.preset=tiny",
            f"data.root={tmp_path / 'faces'}",
            "data.test_per_class=30",
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"paths.output_dir={tmp_path / 'out'}",
            "seeds=[0,1]",
            "trainer.enable_progress_bar=false",
            f"rows=[{','.join(ROWS)}]",
            "classifier_overrides=[" + ",".join(f"'{o}'" for o in FAST) + "]",
            f"vaegan.checkpoint={checkpoint}",
            "augment.filter=false",
            "augment.target_count=30",
            "augment.batch_size=32",
            "augment.workers=0",
        ],
    )
    paths = run_ablation(cfg)
    out = Path(cfg.out_dir)
    metrics = {row: json.loads((out / "runs" / row / "seed0" / "metrics.json").read_text()) for row in ROWS}
    assert all(
        m["num_samples"] == sum(m["counts"]["test"]) and min(m["counts"]["test"]) >= 30 for m in metrics.values()
    )
    assert metrics["synthetic_deferred"]["balance"]["synthetic_start"] == 0.8
    cas = metrics["cas"]
    # CAS: every class below the target (30) of the real fit split trains on generated images only
    real_fit = metrics["oversample"]["counts"]["fit"]
    assert cas["balance"]["generated_replaces_real"]
    assert cas["counts"]["generated_in_fit"] == sum(f for f, real in zip(cas["counts"]["fit"], real_fit) if real < 30)
    assert [f for f, real in zip(cas["counts"]["fit"], real_fit) if real >= 30] == [
        real for real in real_fit if real >= 30
    ]
    md = paths["markdown"].read_text()
    assert "## Paired differences against oversample and the best loss-based row" in md
    assert (
        "- oversample_synthetic vs oversample (2 seeds): " in md
        and "- oversample_synthetic vs balanced_softmax (2 seeds): " in md
    )
    assert "CAS (trained on generated images only" in md and not any(
        line.startswith("| cas |") for line in md.splitlines()
    )
    filled = md.split("recall of the filled classes: ")[1].split("\n")[0]
    assert "Fear" in filled and "Happiness" not in filled  # the classes the set fills, not the majority
    finished = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed*/metrics.json")}
    assert len(finished) == len(ROWS) * 2
    run_ablation(cfg)  # resume: nothing is trained again
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed*/metrics.json")} == finished
