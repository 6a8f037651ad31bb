"""Lightning DDP on 2 CPU processes (gloo): training runs, and the test metrics it reports (reduced over
both ranks) equal a single-process evaluation of the same checkpoint: every test image counted once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from classifier_helpers import tiny_cfg

from classifier.evaluate import run_evaluation

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]


def test_ddp_two_processes_match_single_process_metrics(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp_run"
    command = [
        sys.executable,
        str(REPO / "scripts" / "train_classifier.py"),
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "trainer.enable_progress_bar=false",
        "data.preset=tiny",
        f"data.root={tiny_synthetic_root}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "classifier=resnet10t_scratch",
        "train.epochs=2",
        "train.freeze_epochs=1",
        "train.warmup_epochs=0",
        "train.batch_size=16",
        "train.limit_train_batches=2",
        "train.eval_batch_size=32",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ddp = json.loads((run_dir / "metrics.json").read_text())
    assert ddp["world_size"] == 2 and ddp["num_samples"] == 140  # 70 per rank, reduced: the whole split

    single = run_evaluation(
        tiny_cfg(tiny_synthetic_root, tmp_path, "checkpoint=x", config_name="evaluate"),
        checkpoint=run_dir,
        run_dir=tmp_path / "single",
    )
    assert single["world_size"] == 1
    for key in ("confusion_matrix", "accuracy", "mean_class_accuracy", "macro_f1", "per_class", "group_accuracy"):
        assert single[key] == ddp[key], key
