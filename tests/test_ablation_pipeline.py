"""A tiny real ablation: 3 rows (one on generated data, one that fails) x 2 seeds, then resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

import faces
from ablation.config import compose_config
from ablation.pipeline import ensure_vaegan, run_ablation
from ablation.reuse import StaleResultError, changed_settings
from vaegan.checkpoint import save_vaegan
from vaegan.model import VAEGAN

FAST = [
    "classifier=resnet10t_scratch",
    "train.epochs=1",
    "train.freeze_epochs=0",
    "train.warmup_epochs=0",
    "train.batch_size=16",
    "train.limit_train_batches=2",
]


@pytest.fixture
def tiny_vaegan(tmp_path: Path, tiny_synthetic_root: Path) -> Path:
    """A real (untrained) VAE-GAN export for the tiny preset, so the test skips VAE-GAN training."""
    data = faces.load_faces(
        {"name": "synthetic", "preset": "tiny", "root": str(tiny_synthetic_root)},
        cache_dir=tmp_path / "cache",
        splits=("train",),
    )
    torch.manual_seed(0)
    model = VAEGAN(resolution=32, latent_dim=32, num_classes=7, base_channels=8, max_channels=32)
    return save_vaegan(
        tmp_path / "vaegan.safetensors",
        model=model,
        config={"name": "tiny"},
        class_names=data.class_names,
        extra={"image_size": 32, "data_fingerprint": data.train.fingerprint},
    )


def ablate_cfg(tmp_path: Path, root: Path, checkpoint: Path):
    cfg = compose_config(
        "ablate",
        [
            "data.preset=tiny",
            f"data.root={root}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"paths.output_dir={tmp_path / 'out'}",
            "name=tiny",
            "seeds=[0,1]",
            "trainer.enable_progress_bar=false",
            "rows=[none,synthetic,broken]",
            "classifier_overrides=[" + ",".join(f"'{o}'" for o in FAST) + "]",  # quoted: the documented CLI form
            f"vaegan.checkpoint={checkpoint}",
            "augment.filter=false",
            "augment.target_count=30",
            "augment.batch_size=32",
            "augment.workers=0",
        ],
    )
    # A row that passes the up-front checks but fails when its run starts (missing weights file).
    with open_dict(cfg.row_specs):
        cfg.row_specs.broken = {"overrides": ["balance=none", "classifier.pretrained_path=/nonexistent/weights.pth"]}
    return cfg


def test_tiny_ablation_report_and_resume(tmp_path: Path, tiny_synthetic_root: Path, tiny_vaegan: Path) -> None:
    cfg = ablate_cfg(tmp_path, tiny_synthetic_root, tiny_vaegan)
    paths = run_ablation(cfg)
    out = Path(cfg.out_dir)
    with paths["csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert {(r["row"], r["seed"], r["status"]) for r in rows} == {
        ("none", "0", "ok"),
        ("none", "1", "ok"),
        ("synthetic", "0", "ok"),
        ("synthetic", "1", "ok"),
        ("broken", "0", "failed"),
        ("broken", "1", "failed"),
    }
    assert all("nonexistent" in r["error"] for r in rows if r["status"] == "failed")
    md = paths["markdown"].read_text()
    table = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| row")]
    assert [line.split("|")[1].strip() for line in table] == ["none", "synthetic", "broken"]
    assert "| broken | 0/2 ⚠ |" in md and "broken seed 0: **failed**" in md
    assert "NOT filtered" in md  # the table states whether the synthetic data passed the filter
    for key in ("recall_plot", "confusion_plot", "html"):
        assert paths[key].stat().st_size > 1000
    page = paths["html"].read_text()
    assert page.count("<tr>") == 4 and "Generated samples" in page
    synthetic = json.loads((out / "runs" / "synthetic" / "seed0" / "metrics.json").read_text())
    assert synthetic["counts"]["generated_in_fit"] > 0 and synthetic["fingerprints"]["manifest"]

    # Resume: finished runs and the generated set are reused, the failed runs are tried again.
    finished = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed*/metrics.json")}
    manifest = (out / "generated" / "gaussian" / "manifest.csv").read_bytes()
    # As a stopped invocation leaves it (scripts/ablate.py's exit_interrupted): the resumed one clears it.
    (out / "interrupted.json").write_text('{"signal": "SIGTERM", "resume": "python scripts/ablate.py"}')
    run_ablation(cfg)
    assert not (out / "interrupted.json").exists()
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed*/metrics.json")} == finished
    assert (out / "generated" / "gaussian" / "manifest.csv").read_bytes() == manifest
    assert (out / "runs" / "broken" / "seed1" / "error.json").is_file()

    # Resume after the config changed: the finished runs were trained otherwise, so nothing is reused or started
    cfg.classifier_overrides = [*cfg.classifier_overrides, "train.batch_size=8"]
    with pytest.raises(
        StaleResultError, match=r"runs/none/seed0 finished under other settings .*train\.batch_size: 16 then, 8 now"
    ):
        run_ablation(cfg)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed*/metrics.json")} == finished


def test_unknown_row_fails_before_any_work(tmp_path: Path, tiny_synthetic_root: Path, tiny_vaegan: Path) -> None:
    cfg = ablate_cfg(tmp_path, tiny_synthetic_root, tiny_vaegan)
    cfg.rows = ["none", "smote"]
    with pytest.raises(ValueError, match=r"unknown ablation row\(s\) \['smote'\]"):
        run_ablation(cfg)
    assert not Path(cfg.out_dir).exists()


def test_generated_specs_name_a_strategy_and_optionally_its_rendering(
    tmp_path: Path, tiny_synthetic_root: Path, tiny_vaegan: Path
) -> None:
    from ablation.pipeline import generated_spec

    assert generated_spec("gaussian") == ("gaussian", None, "gaussian")
    assert generated_spec("gaussian@decoder") == ("gaussian", "decoder", "gaussian-decoder")
    assert generated_spec("transfer@grain") == ("transfer", "grain", "transfer-grain")
    with pytest.raises(ValueError, match="prior has none"):
        generated_spec("prior@residual")
    with pytest.raises(ValueError, match="unknown perturbation strategy 'smote'"):
        generated_spec("smote")
    cfg = ablate_cfg(tmp_path, tiny_synthetic_root, tiny_vaegan)
    with open_dict(cfg.row_specs):
        cfg.row_specs.blurry = {"overrides": ["balance=synthetic"], "generated": "gaussian@sharpest"}
    cfg.rows = ["none", "blurry"]
    with pytest.raises(ValueError, match="sharpest"):  # refused before the VAE-GAN or any run starts
        run_ablation(cfg)
    assert not Path(cfg.out_dir).exists()


def test_rows_on_generated_data_get_the_real_rows_optimiser_steps(tmp_path: Path) -> None:
    from ablation.pipeline import equal_steps
    from classifier.train import budget_for

    real = compose_config("train_classifier", ["balance=none"])
    run_cfg = compose_config("train_classifier", ["balance=synthetic", f"balance.generated_dir={tmp_path}"])
    equal_steps(run_cfg, fit_images=1799)
    expected = budget_for(real, num_train=1799)  # 28 steps x 11 epochs under the default train.min_steps=300
    assert run_cfg.train.limit_train_batches == expected.steps_per_epoch == 28
    assert run_cfg.train.epochs == expected.epochs and run_cfg.train.freeze_epochs == expected.freeze_epochs
    # With the cap the run's own budget (on 3,100 images) comes out exactly as the real rows' budget.
    capped = budget_for(run_cfg, num_train=3100)
    assert capped.epochs * run_cfg.train.limit_train_batches == expected.total_steps
    assert (capped.steps_per_epoch, capped.total_steps) == (28, expected.total_steps)  # what metrics.json records


def test_a_reused_vaegan_must_be_the_one_the_experiment_asks_for(tmp_path: Path, tiny_synthetic_root: Path) -> None:
    """out_dir/vaegan was trained with the default recipe; an experiment whose overrides ask for another is refused
    (naming what differs) instead of feeding the old generator to the new sets; the same recipe is reused."""
    cfg = ablate_cfg(tmp_path, tiny_synthetic_root, tmp_path / "unused.safetensors")
    cfg.vaegan.checkpoint = None
    trained = compose_config("train_vaegan", [])
    out = Path(cfg.out_dir)
    torch.manual_seed(0)
    export = save_vaegan(
        out / "vaegan" / "vaegan.safetensors",
        model=VAEGAN(resolution=32, latent_dim=32, num_classes=7, base_channels=8, max_channels=32),
        config={**dict(trained.vaegan), "resolution": 32},  # as training stores it: "auto" resolved
        class_names=faces.RAFDB_CLASSES,
        extra={"image_size": 32, "data_fingerprint": "x", "data": dict(cfg.data), "seed": 0, "epochs": trained.epochs},
    )
    assert ensure_vaegan(cfg, out_dir=out) == export  # the same recipe: reused, nothing trained
    cfg.vaegan.overrides = ["epochs=48", "vaegan.base_channels=16"]
    with pytest.raises(StaleResultError, match=r"epochs: 24 then, 48 now; vaegan\.base_channels: 8 then, 16 now"):
        ensure_vaegan(cfg, out_dir=out)


def test_changed_settings_ignore_locations_and_settings_one_side_lacks() -> None:
    old = {"paths": {"output_dir": "/a"}, "data": {"root": "/a/faces", "preset": "small"}, "train": {"lr": 1.0}}
    new = {
        "paths": {"output_dir": "/b"},
        "data": {"root": "/b/faces", "preset": "small"},
        "train": {"lr": 2.0, "new": 1},
    }
    assert changed_settings(old, new) == {"train.lr": (1.0, 2.0)}
    assert changed_settings({"vaegan": {"resolution": 64}}, {"vaegan": {"resolution": "auto"}}) == {}
