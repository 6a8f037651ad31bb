"""Aggregation of a hand-made multirun folder: hand-computed means/stds, failures kept, report files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from ablation.aggregate import collect_runs, markdown_table, mean_std, summarise
from ablation.report import write_report
from faces.runkit.runs import ROW_FILE

CLASSES = ["Surprise", "Fear", "Happiness"]


def write_run(
    folder: Path,
    *,
    balance: str,
    seed: int,
    accuracy: float,
    mca: float,
    f1: float,
    recalls: list[float],
    confusion: list[list[int]] | None = None,
) -> None:
    folder.mkdir(parents=True)
    metrics = {
        "accuracy": accuracy,
        "mean_class_accuracy": mca,
        "macro_f1": f1,
        "seed": seed,
        "class_names": CLASSES,
        "dataset": "synthetic-tiny",
        "layout": "synthetic-faces",
        "image_size": 32,
        "input_size": 32,
        "backbone": "resnet10t",
        "pretrained": "none",
        "balance": {"name": balance, "loss": "ce", "synthetic": False, "generated_dir": None},
        "per_class": {n: {"recall": r, "precision": 0.5, "f1": 0.5, "support": 10} for n, r in zip(CLASSES, recalls)},
        "group_mean_class_accuracy": {"few": recalls[1], "medium": None, "many": (recalls[0] + recalls[2]) / 2},
        "confusion_matrix": confusion or [[8, 1, 1], [2, 5, 3], [0, 1, 9]],
        "counts": {"fit": [20, 5, 60], "val": [2, 1, 6], "test": [10, 10, 10], "generated_in_fit": 0},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "config.yaml").write_text(f"balance:\n  name: {balance}\nseed: {seed}\n")


@pytest.fixture
def multirun(tmp_path: Path) -> Path:
    root = tmp_path / "multirun" / "2026-11-22_10-00-00"
    write_run(root / "0", balance="none", seed=0, accuracy=0.80, mca=0.60, f1=0.55, recalls=[0.7, 0.2, 0.9])
    write_run(root / "1", balance="none", seed=1, accuracy=0.70, mca=0.50, f1=0.45, recalls=[0.6, 0.0, 0.9])
    write_run(root / "2", balance="oversample", seed=0, accuracy=0.75, mca=0.70, f1=0.65, recalls=[0.7, 0.6, 0.8])
    write_run(root / "3", balance="oversample", seed=1, accuracy=0.77, mca=0.74, f1=0.69, recalls=[0.7, 0.7, 0.8])
    (root / "4").mkdir()
    (root / "4" / "error.json").write_text(
        json.dumps({"row": "oversample", "seed": 2, "error": "RuntimeError: out of memory"})
    )
    write_run(
        root / "5", balance="focal", seed=0, accuracy=float("nan"), mca=float("nan"), f1=float("nan"), recalls=[0, 0, 0]
    )
    return root


def test_hand_computed_means_and_stds(multirun: Path) -> None:
    records = collect_runs(multirun)
    assert [(r.row, r.seed, r.status) for r in records] == [
        ("focal", 0, "diverged"),
        ("none", 0, "ok"),
        ("none", 1, "ok"),
        ("oversample", 0, "ok"),
        ("oversample", 1, "ok"),
        ("oversample", 2, "failed"),
    ]
    summaries = {s.row: s for s in summarise(records, class_names=CLASSES)}
    mean, std = summaries["none"].columns["accuracy"]
    assert mean == pytest.approx(0.75) and std == pytest.approx(math.sqrt(((0.05) ** 2 * 2) / 1))  # ddof=1
    mean, std = summaries["oversample"].columns["recall_Fear"]
    assert mean == pytest.approx(0.65) and std == pytest.approx(0.0707107, rel=1e-5)
    assert summaries["oversample"].runs == 3 and summaries["oversample"].ok == 2  # the failure is counted, not dropped
    assert summaries["focal"].ok == 0 and math.isnan(summaries["focal"].columns["accuracy"][0])
    assert mean_std([1.0]) == (1.0, 0.0) and math.isnan(mean_std([])[0])


def test_markdown_bolds_best_and_flags_incomplete_rows(multirun: Path) -> None:
    records = collect_runs(multirun)
    table = markdown_table(
        summarise(records, class_names=CLASSES, row_order=["none", "oversample"]), class_names=CLASSES
    )
    lines = table.splitlines()
    # none: accuracy (0.80, 0.70) -> 75.0 ± 7.1; its many-class accuracy 77.5 and Happiness recall 90 are best.
    assert lines[2].startswith("| none | 2/2 | 75.0 ± 7.1 | 55.0 ± 7.1 | 50.0 ± 7.1 |")
    assert "**77.5 ± 3.5**" in lines[2] and lines[2].endswith("**90.0 ± 0.0** |")
    # oversample: best accuracy (0.75, 0.77) and mean class accuracy (0.70, 0.74); the failed seed is flagged.
    assert lines[3].startswith("| oversample | 2/3 ⚠ | **76.0 ± 1.4** | **72.0 ± 2.8** | **67.0 ± 2.8** |")
    assert lines[4].startswith("| focal | 0/1 ⚠ | – |")


def test_report_files(multirun: Path, tmp_path: Path) -> None:
    paths = write_report(multirun, out_dir=tmp_path / "report", title="Tiny ablation")
    with paths["csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok", "failed", "diverged"}
    assert [r["error"] for r in rows if r["status"] == "failed"] == ["RuntimeError: out of memory"]
    md = paths["markdown"].read_text()
    assert "seeds: 0, 1, 2" in md and "backbone: resnet10t; pretrained weights: none" in md
    assert "oversample seed 2: **failed** — RuntimeError: out of memory" in md
    page = paths["html"].read_text()
    assert page.count("<tr>") == 1 + 3 and "data:image/png;base64," in page and "out of memory" in page
    assert paths["recall_plot"].stat().st_size > 5000 and paths["confusion_plot"].stat().st_size > 5000


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no run folders"):
        write_report(tmp_path)


def test_failed_multirun_job_is_labelled_from_its_hydra_config(tmp_path: Path) -> None:
    from faces.runkit.runs import record_failure

    job = tmp_path / "multirun" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text("balance:\n  name: focal\n  loss: focal\nseed: 3\n")
    try:
        raise RuntimeError("CUDA error: device-side assert")
    except RuntimeError as error:
        record_failure(job, error, seed=3)
    [record] = collect_runs(tmp_path / "multirun")
    assert (record.row, record.seed, record.status) == ("focal", 3, "failed")
    assert record.error == "RuntimeError: CUDA error: device-side assert"


def test_paired_interval_on_hand_made_numbers() -> None:
    from ablation.aggregate import PairedDifference, paired_difference

    # d = [0.10, 0.08, 0.10]: mean 0.09333, sd 0.011547, t(0.975, 2) = 4.303 -> half width 0.028687
    n, mean, low, high = paired_difference({0: 0.70, 1: 0.74, 2: 0.72, 7: 0.9}, {0: 0.60, 1: 0.66, 2: 0.62})
    assert n == 3 and mean == pytest.approx(0.093333, abs=1e-6)
    assert (low, high) == (pytest.approx(0.064646, abs=1e-5), pytest.approx(0.122020, abs=1e-5))

    def verdict(*v):
        return PairedDifference(row="r", baseline="b", metric="m", seeds=v[0], mean=v[1], low=v[2], high=v[3]).verdict

    assert verdict(n, mean, low, high) == "beats"
    assert verdict(*paired_difference({0: 0.60, 1: 0.66, 2: 0.62}, {0: 0.70, 1: 0.74, 2: 0.72})) == "worse"
    # d = [0.05, -0.03, 0.04]: mean 0.02, sd 0.043589 -> [-0.0883, 0.1283] contains 0
    n, mean, low, high = paired_difference({0: 0.55, 1: 0.47, 2: 0.54}, {0: 0.50, 1: 0.50, 2: 0.50})
    assert (low, high) == (pytest.approx(-0.088287, abs=1e-5), pytest.approx(0.128287, abs=1e-5))
    assert verdict(n, mean, low, high) == "no difference shown"
    assert verdict(*paired_difference({0: 0.9}, {0: 0.1})) == "too few seeds"


def test_report_compares_every_row_with_oversample_and_the_best_loss_based_row(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    values = {
        "none": (0.50, 0.52, 0.51),
        "oversample": (0.60, 0.63, 0.61),
        "reweight": (0.58, 0.60, 0.57),
        "focal": (0.40, 0.41, 0.45),
        "oversample_synthetic": (0.66, 0.68, 0.67),
        "cas": (0.90, 0.90, 0.90),
    }
    for row, mcas in values.items():
        for seed, mca in enumerate(mcas):
            write_run(
                root / row / f"seed{seed}",
                balance=row,
                seed=seed,
                accuracy=0.7,
                mca=mca,
                f1=0.5,
                recalls=[0.7, mca, 0.9],
            )
            path = root / row / f"seed{seed}" / "metrics.json"
            metrics = json.loads(path.read_text())
            if row in ("reweight", "focal"):  # loss-based rows
                metrics["balance"]["loss"] = row
            if row in ("oversample_synthetic", "cas"):  # rows on generated data; CAS is a figure of the set, not a row
                metrics["balance"].update(
                    synthetic=True, sampler="replace" if row != "cas" else "none", generated_replaces_real=row == "cas"
                )
            path.write_text(json.dumps(metrics))
            (path.parent / ROW_FILE).write_text(
                json.dumps({"row": row, "seed": seed})
            )  # as scripts/ablate.py writes it
    paths = write_report(root, out_dir=tmp_path / "report", row_order=list(values))
    md = paths["markdown"].read_text()
    assert "## Paired differences against oversample and the best loss-based row" in md and "paired t-interval" in md
    # none vs oversample: d = [-0.10, -0.11, -0.10] -> worse; vs reweight (best loss row): d = [-0.08, -0.08, -0.06]
    assert (
        "- none vs oversample (3 seeds): mean class acc. -10.3 [-11.8, -8.9] **worse**; few-class recall -10.3 [" in md
    )
    assert "- none vs reweight (3 seeds): mean class acc. -7.3 [" in md
    assert "- oversample vs oversample" not in md and "- focal vs focal" not in md
    assert (
        "Does a row on generated data beat oversample and reweight (interval above 0 against each)? on mean class acc.: "
        "oversample_synthetic; on few-class recall: oversample_synthetic (of 1 generated-data row(s))"
    ) in md
    assert not any(line.startswith("| cas |") for line in md.splitlines())  # not a row of the table or the comparisons
    page = paths["html"].read_text()
    assert "<table class='paired'>" in page and page.count("<tr>") == 1 + 5  # the main table alone uses plain rows


def test_the_generator_table_shows_each_filled_class_with_its_sample_sizes() -> None:
    from ablation.report import generator_table

    flip = {"accuracy": 0.25, "source_kept": 0.5, "identity_kept": 0.75, "high_frequency_ratio": 2.5, "n": 8}
    report = {
        "generator": {
            "reconstruction_fidelity": {
                "Fear": {"ratio": 0.5, "n": 5, "read_instead_as": "Surprise", "read_instead_share": 0.4},
                "Happiness": {"ratio": 0.9, "n": 40},  # a report from before read_instead_as: shown as "-"
            },
            "label_flip": {"Fear": flip, "Happiness": {**flip, "n": 0}},
            "prior_fidelity": {"Fear": {"ratio": 0.5, "n": 64}},  # Happiness is not filled: no prior samples
            "kid_efficientnet_lite0_prior": {"Fear": {"kid": 0.0123}},
        }
    }
    header, rows = generator_table(report)
    assert header[0] == "class" and len(header) == 9
    assert rows == [["Fear", "0.50 (5)", "Surprise 0.40", "0.25 (8)", "0.50", "0.75", "2.50", "0.50 (64)", "0.012"]]
    old_report = {**report["generator"], "reconstruction_fidelity": {"Fear": {"ratio": 1.0, "n": 5}}}
    old_report["label_flip"] = {"Fear": {key: value for key, value in flip.items() if key != "high_frequency_ratio"}}
    assert generator_table({"generator": old_report})[1][0][2] == "-"
    assert generator_table({"generator": old_report})[1][0][6] == "–"  # written before the high-frequency ratio
    assert generator_table({"before_filter": {}}) is None  # a set measured before the generator section existed
