"""`python scripts/data_summary.py` end to end, and the Hydra config composition."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]


def test_config_composes_with_repo_paths() -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(config_name="data_summary")
        assert cfg.data.name == "synthetic" and cfg.data.preset == "small"
        assert Path(cfg.paths.root_dir) == REPO
        assert cfg.paths.cache_dir == str(REPO / ".cache" / "faces")
        cfg = compose(config_name="data_summary", overrides=["data=rafdb", "data.root=/x"])
        assert cfg.data.name == "rafdb" and cfg.data.val_fraction == 0.1 and cfg.data.image_size is None


def test_data_summary_script_on_synthetic_default(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "data_summary.py"),
            "data.preset=tiny",
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imbalance ratio" in result.stdout and "Happiness" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "synthetic-tiny"
    assert summary["totals"]["train"] == 280 and summary["totals"]["test"] == 140
    assert summary["totals"]["train (fit)"] + summary["totals"]["val (held out)"] == 280
    assert summary["groups"]["Fear"] == "few" and summary["groups"]["Happiness"] == "many"
    assert (out / "class_counts.png").stat().st_size > 10_000


def test_data_summary_reports_bad_root_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "data_summary.py"),
            "data=rafdb",
            f"data.root={tmp_path / 'missing'}",
            f"hydra.run.dir={tmp_path / 'out'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert f"data.root={tmp_path / 'missing'} does not exist" in result.stderr
