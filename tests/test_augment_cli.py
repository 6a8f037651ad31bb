"""scripts/augment.py end to end: the judge is trained on real train data only, bad input exits early."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import faces
from ablation.config import compose_config
from ablation.generate import augment_with_checkpoint
from ablation.generation_report import cached_generator_figures, format_generation_report
from ablation.judge import ensure_judge
from vaegan.checkpoint import save_vaegan
from vaegan.generation.request import GenerationRequest
from vaegan.model import VAEGAN

REPO = Path(__file__).resolve().parents[1]
JUDGE = [
    "classifier=resnet10t_scratch",
    "train.epochs=1",
    "train.freeze_epochs=0",
    "train.warmup_epochs=0",
    "train.batch_size=16",
    "train.limit_train_batches=2",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture
def setup(tmp_path: Path, tiny_synthetic_root: Path):
    cfg = compose_config(
        "augment",
        [
            "data.preset=tiny",
            f"data.root={tiny_synthetic_root}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"paths.output_dir={tmp_path / 'out'}",
        ],
    )
    data = faces.load_faces(cfg.data, cache_dir=cfg.paths.cache_dir, splits=("train",))
    torch.manual_seed(0)
    model = VAEGAN(resolution=32, latent_dim=32, num_classes=7, base_channels=8, max_channels=32)
    checkpoint = save_vaegan(
        tmp_path / "vaegan.safetensors",
        model=model,
        config={"name": "tiny"},
        class_names=data.class_names,
        extra={"image_size": 32, "data_fingerprint": data.train.fingerprint, "data": dict(cfg.data)},
    )
    return cfg, checkpoint


def _fear_request(out_dir: Path, judge: Path, **changes) -> GenerationRequest:
    """12 Fear images, unfiltered by confidence, small batches on the CPU; `changes` override any setting."""
    settings = dict(target_count="Fear=12", out_dir=out_dir, judge=judge, min_confidence=0.0, max_attempts_factor=4)
    return GenerationRequest(**{**settings, "batch_size": 16, "workers": 0, "device": "cpu", **changes})


def test_filtered_run_trains_a_judge_that_never_opens_test(tmp_path: Path, setup, one_thread, caplog) -> None:
    cfg, checkpoint = setup
    out = tmp_path / "gen"
    judge = ensure_judge(
        data_cfg=cfg.data, paths_cfg=cfg.paths, overrides=["balance=reweight", *JUDGE], run_dir=out / "judge"
    )
    assert judge.is_file()
    # The judge's run decoded only the train split: no test cache exists anywhere.
    assert not list(Path(cfg.paths.cache_dir).rglob("test-*.pt"))
    assert not (out / "judge" / "metrics.json").exists()
    report = augment_with_checkpoint(
        _fear_request(out, judge),
        checkpoint=checkpoint,
        data_cfg=cfg.data,
        paths_cfg=cfg.paths,
    )
    with (out / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    fear = report.classes[1]
    assert fear.generated + fear.shortfall == 12 - fear.real  # generated, or reported short
    assert all(r["class_name"] == "Fear" and int(r["judge_label"]) == 1 for r in rows)
    assert len(rows) == fear.generated
    # The judge's own quality is stored with the set, and the set is measured before and after the filter.
    settings = json.loads((out / "augment.json").read_text())
    quality = settings["judge_quality"]
    assert set(quality["validation_recall"]) == set(report.classes[i].class_name for i in range(len(report.classes)))
    # Compared as JSON: a class the judge never reads right has NaN blur ratios, and NaN != NaN in a dict comparison.
    assert json.dumps(report.judge_quality, sort_keys=True) == json.dumps(quality, sort_keys=True)
    assert "judge val recall" in report.table()
    measured = json.loads((out / "generation_report.json").read_text())
    before, after = measured["before_filter"]["classes"]["Fear"], measured["after_filter"]["classes"]["Fear"]
    assert (
        before["n_generated"] == 16 and after["n_generated"] == fear.generated
    )  # one candidate batch; the accepted set
    assert set(before) >= {"fidelity", "novelty", "diversity_ratio", "precision", "recall", "real_vs_generated"}
    assert after["real_vs_generated"]["n_per_side"] == min(after["n_generated"], after["n_real"])
    assert "1-NN two-sample accuracy" in format_generation_report(measured)
    assert before["fidelity"]["judge_recall_real_val"] == quality["validation_recall"]["Fear"]
    # Which weights the judge starts from is stored, and a scratch judge shares none with this generator.
    assert measured["judge"]["backbone"] == quality["backbone"] and measured["judge"]["generator_overlap"] is None
    # Re-running the finished set adds nothing, so its report is the one on disk (not measured again).
    written = (out / "generation_report.json").stat().st_mtime_ns
    again = augment_with_checkpoint(
        _fear_request(out, judge),
        checkpoint=checkpoint,
        data_cfg=cfg.data,
        paths_cfg=cfg.paths,
    )
    assert again.written_this_run == 0 and (out / "generation_report.json").stat().st_mtime_ns == written
    # Another set of the same generator and judge shares the generator section: read from the cache, not measured.
    cached = list((Path(cfg.paths.cache_dir) / "generator_figures").glob("*.json"))

    def same(a, b) -> bool:  # as JSON text: NaN figures (a class never read right) are unequal in a dict comparison
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

    assert len(cached) == 1 and same(json.loads(cached[0].read_text()), measured["generator"])
    with caplog.at_level("INFO", logger="augment"):
        augment_with_checkpoint(
            _fear_request(tmp_path / "transfer", judge, strategy="transfer", max_attempts_factor=1),
            checkpoint=checkpoint,
            data_cfg=cfg.data,
            paths_cfg=cfg.paths,
        )
    other = json.loads((tmp_path / "transfer" / "generation_report.json").read_text())
    assert other["strategy"] == "transfer" and same(other["generator"], measured["generator"])
    assert "the same VAE-GAN and judge as an earlier set" in caplog.text
    assert len(list(cached[0].parent.glob("*.json"))) == 1


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "augment.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_cli_refuses_bad_input_before_work(tmp_path: Path, setup) -> None:
    cfg, checkpoint = setup
    data_args = ["data.preset=tiny", f"data.root={cfg.data.root}", f"paths.cache_dir={cfg.paths.cache_dir}"]
    result = run_script("--checkpoint", str(tmp_path / "missing.safetensors"), "--target-count", "10")
    assert result.returncode == 2 and "missing.safetensors: no such file" in result.stderr
    result = run_script("--checkpoint", str(REPO / "README.md"), "--target-count", "10")
    assert result.returncode == 2 and "not a VAE-GAN checkpoint" in result.stderr
    result = run_script(
        "--checkpoint", str(checkpoint), "--target-count", "0", "--out", str(tmp_path / "o"), *data_args
    )
    assert result.returncode == 2 and "--target-count=0 must be at least 1" in result.stderr
    result = run_script(
        "--checkpoint", str(checkpoint), "--target-count", "Contempt=5", "--out", str(tmp_path / "o"), *data_args
    )
    assert result.returncode == 2 and "unknown class 'Contempt'" in result.stderr
    assert not (tmp_path / "o").exists()
    # A checkpoint trained on other data (here: another image size) is refused with the reason.
    result = run_script("--checkpoint", str(checkpoint), "--target-count", "10", *data_args, "data.image_size=48")
    assert result.returncode == 2 and "trained on 32px images" in result.stderr


def test_cli_generates_with_the_checkpoints_own_data_config(tmp_path: Path, setup) -> None:
    _, checkpoint = setup
    out = tmp_path / "gen"
    result = run_script(
        "--checkpoint",
        str(checkpoint),
        "--target-count",
        "Fear=10",
        "--no-filter",
        "--workers",
        "1",
        "--batch-size",
        "8",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Fear" in result.stdout and "images/s" in result.stdout
    real, target, generated = (
        int(v) for v in next(line.split()[1:4] for line in result.stdout.splitlines() if line.startswith("Fear"))
    )
    assert target == 10 and generated == 10 - real  # --no-filter: every candidate kept
    assert len(list((out / "Fear").glob("*.png"))) == generated


def test_a_judge_killed_mid_training_is_trained_again_from_scratch(tmp_path: Path, setup, one_thread) -> None:
    """best.safetensors is written after every improving epoch, so after a kill it exists but is
    half-trained; only a judge with its completion marker (judge.json) is reused."""
    cfg, _ = setup
    overrides = ["balance=reweight", *JUDGE]
    clean = ensure_judge(
        data_cfg=cfg.data, paths_cfg=cfg.paths, overrides=overrides, run_dir=tmp_path / "clean" / "judge"
    )
    killed = tmp_path / "killed" / "judge"
    (killed / "checkpoints").mkdir(parents=True)
    (killed / "checkpoints" / "best.safetensors").write_bytes(b"weights of epoch 1 of 6")  # what the kill left
    (killed / "logs").mkdir()
    (killed / "logs" / "metrics.csv").write_text("epoch,val/mca\n0,0.2\n")
    judge = ensure_judge(data_cfg=cfg.data, paths_cfg=cfg.paths, overrides=overrides, run_dir=killed)
    assert judge.read_bytes() == clean.read_bytes()  # retrained from scratch: byte-identical to an uninterrupted run
    from ablation.judge import MARKER_FILE, finished_judge

    assert (killed / MARKER_FILE).is_file()
    stamp = judge.stat().st_mtime_ns
    assert ensure_judge(data_cfg=cfg.data, paths_cfg=cfg.paths, overrides=overrides, run_dir=killed) == judge
    assert judge.stat().st_mtime_ns == stamp  # a finished judge is reused as it is
    # ...but only for the data and overrides it was trained on.
    trained_on = json.loads((killed / MARKER_FILE).read_text())["trained_on"]
    assert finished_judge(killed, trained_on=trained_on) == judge
    assert finished_judge(killed, trained_on={**trained_on, "data": {**trained_on["data"], "split_seed": 1}}) is None
    # A finished judge trained otherwise filtered the images beside it: refused (no training), unless replaced.
    from vaegan.generation.request import AugmentError

    with pytest.raises(AugmentError, match=r"finished quality-filter judge trained with other overrides.*--overwrite"):
        ensure_judge(data_cfg=cfg.data, paths_cfg=cfg.paths, overrides=[*overrides, "seed=1"], run_dir=killed)
    assert judge.stat().st_mtime_ns == stamp


def test_a_damaged_generator_figures_entry_is_measured_again(tmp_path: Path) -> None:
    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"reconstruction_fidelity": {"Fear": {"ratio": float("nan"), "n": 5}}}

    first = cached_generator_figures(cache_dir=tmp_path, key="k", compute=compute)
    assert cached_generator_figures(cache_dir=tmp_path, key="k", compute=compute) is not first and len(calls) == 1
    entry = tmp_path / "generator_figures" / "k.json"
    entry.write_text('{"reconstruction_fidelity": ')  # a write cut short by hand: never trusted
    again = cached_generator_figures(cache_dir=tmp_path, key="k", compute=compute)
    assert len(calls) == 2 and json.dumps(again) == json.dumps(first) and json.loads(entry.read_text()) is not None
    cached_generator_figures(cache_dir=tmp_path, key=None, compute=compute)  # no key (unknown hash): never cached
    assert len(calls) == 3 and [p.name for p in entry.parent.iterdir()] == ["k.json"]
