"""Generated sets under faults: a full disk mid-run, an interrupted set, a swapped image, an old set.

The disk-full case injects ENOSPC at the rename every atomic write ends with (faces.io.atomic_path),
so the augmenter's real writer, commit and error path run; only the disk is simulated.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import faces
from ablation.config import compose_config
from ablation.generate import main as augment_main
from faces import DatasetError, load_generated
from vaegan.checkpoint import save_vaegan
from vaegan.generation.request import GenerationRequest, GenerationWriteError
from vaegan.generation.run import augment
from vaegan.generation.targets import parse_target_count
from vaegan.model import VAEGAN

COMMAND = "python scripts/augment.py --checkpoint ckpt --target-count 40 --out gen"


def run(model, fit, out: Path):
    request = GenerationRequest(
        target_count=40, strategy="gaussian", strength=1.0, seed=0, batch_size=16, workers=0, out_dir=out, filter=False
    )
    return augment(
        request, model=model, checkpoint_sha256="0" * 64, fit=fit, targets=[40] * 7, record={"command": COMMAND}
    )


def files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.glob("*/*.png") if p.parent.name != "previews"}


def manifest_rows(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open() as handle:
        return list(csv.DictReader(handle))


def strict_json(path: Path):
    def refuse(constant: str):
        raise AssertionError(f"{path} holds {constant}, which strict JSON parsers reject")

    return json.loads(path.read_text(), parse_constant=refuse)


def disk_full_after(monkeypatch: pytest.MonkeyPatch, renames: int) -> None:
    """Every atomic write ends with os.replace: the first `renames` succeed, then the disk is full."""
    real_replace, calls = os.replace, {"n": 0}

    def replace(src, dst, **kwargs):
        calls["n"] += 1
        if calls["n"] > renames:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def load(out: Path, fit: faces.FaceSplit, tmp_path: Path, **kwargs) -> faces.FaceSplit:
    return load_generated(
        out, class_names=fit.class_names, image_size=fit.image_size, cache_dir=tmp_path / "cache", **kwargs
    )


@pytest.fixture(scope="module")
def whole(model, fit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "gen"
    run(model, fit, out)
    return out


# With these settings the run's renames are: 1 augment.json, PNGs, 31/32 the first commit (manifest.csv, then
# progress.json), ..., 122 augment.json's finished flag: a failure lands on each kind of write.
@pytest.mark.parametrize("renames", [0, 12, 30, 31, 49, 121])
def test_full_disk_stops_cleanly_and_a_rerun_finishes_byte_identical(
    model, fit, whole, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, renames: int
) -> None:
    out = tmp_path / "gen"
    with monkeypatch.context() as patch:
        disk_full_after(patch, renames)
        with pytest.raises(GenerationWriteError) as caught:
            run(model, fit, out)
    message = caught.value.strerror
    assert caught.value.errno == errno.ENOSPC
    assert f"in {out}:" in message and "No space left on device" in message and "re-run the same command" in message
    assert ".tmp" not in message and message.split("cannot write ")[1].split(" in ")[0].startswith(str(out))
    # What was committed is consistent: progress.json is strict JSON and never ahead of manifest.csv.
    listed = manifest_rows(out) if (out / "manifest.csv").is_file() else []
    assert all((out / r["path"]).is_file() for r in listed)
    if (out / "progress.json").is_file():
        progress = strict_json(out / "progress.json")
        assert [r["path"] for r in progress["rows"]] == [r["path"] for r in listed][: len(progress["rows"])]
    run(model, fit, out)  # space freed: the same command finishes the set
    assert (out / "manifest.csv").read_bytes() == (whole / "manifest.csv").read_bytes()
    assert files(out) == files(whole)
    assert strict_json(out / "progress.json")["rows"]


def test_the_cli_says_disk_full_in_one_line(
    tmp_path: Path, tiny_synthetic_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    checkpoint, data_args = _checkpoint(tmp_path, tiny_synthetic_root)
    out = tmp_path / "gen"
    disk_full_after(monkeypatch, 6)
    status = augment_main(
        [
            "--checkpoint",
            str(checkpoint),
            "--target-count",
            "Fear=40",
            "--no-filter",
            "--no-report",
            "--workers",
            "0",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--out",
            str(out),
            *data_args,
        ]
    )
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("augment: error:")]
    assert status == 1 and len(lines) == 1 and "Traceback" not in err
    assert f"in {out}: No space left on device" in lines[0] and "cannot write " + str(out) in lines[0]


def test_duplicate_class_in_target_count_is_refused(
    tmp_path: Path, tiny_synthetic_root: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(ValueError, match=r"Fear is given twice \(Fear=100, fear=200\)"):
        parse_target_count("Fear=100,fear=200", class_names=("Surprise", "Fear"), real_counts=[5, 5])
    checkpoint, data_args = _checkpoint(tmp_path, tiny_synthetic_root)
    status = augment_main(
        [
            "--checkpoint",
            str(checkpoint),
            "--target-count",
            "Fear=100,Fear=200",
            "--out",
            str(tmp_path / "o"),
            *data_args,
        ]
    )
    assert status == 2 and "Fear is given twice (Fear=100, Fear=200)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_unfinished_set_is_refused_naming_what_is_short_and_the_command(
    model, fit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    out = tmp_path / "gen"
    with monkeypatch.context() as patch:
        disk_full_after(patch, 40)
        with pytest.raises(GenerationWriteError):
            run(model, fit, out)
    settings = json.loads((out / "augment.json").read_text())
    assert settings["finished"] is False and settings["targets"]["Fear"] == 40
    assert settings["generated_wanted"]["Fear"] == 40 - fit.class_counts()[fit.class_names.index("Fear")]
    with pytest.raises(
        DatasetError,
        match=r"(?s)unfinished.*Fear has \d+ of \d+.*Complete it with: "
        + COMMAND
        + r".*balance\.allow_incomplete_generated=true",
    ):
        load(out, fit, tmp_path)
    with caplog.at_level(logging.WARNING):
        partial = load(out, fit, tmp_path, allow_incomplete=True)
    assert len(partial) == len(manifest_rows(out)) and "UNFINISHED" in caplog.text
    assert faces.check_generated_complete(out, allow_incomplete=True)["allowed_incomplete"] is True
    run(model, fit, out)
    assert json.loads((out / "augment.json").read_text())["finished"] is True
    assert faces.generated_completion(out) == {"finished": True, "short": {}, "command": COMMAND}


def test_a_swapped_image_is_refused_by_name_and_row(whole, fit, tmp_path: Path) -> None:
    assert load(whole, fit, tmp_path).is_synthetic.all()  # the untouched set loads, verified file by file
    out = tmp_path / "gen"
    out.mkdir()
    for path in whole.rglob("*"):
        if path.is_file():
            (out / path.relative_to(whole)).parent.mkdir(parents=True, exist_ok=True)
            (out / path.relative_to(whole)).write_bytes(path.read_bytes())
    rows = manifest_rows(out)
    line, row = next((i, r) for i, r in enumerate(rows, start=2) if r["class_name"] == "Fear" and i > 3)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(out / row["path"])
    with pytest.raises(DatasetError, match=rf"manifest\.csv:{line}: .*{row['path']} changed after it was generated"):
        load(out, fit, tmp_path)


def test_a_set_made_before_the_records_loads_with_one_warning(whole, fit, tmp_path: Path, caplog) -> None:
    out = tmp_path / "old"
    out.mkdir()
    for path in whole.rglob("*.png"):
        (out / path.relative_to(whole)).parent.mkdir(parents=True, exist_ok=True)
        (out / path.relative_to(whole)).write_bytes(path.read_bytes())
    rows = manifest_rows(whole)
    with (out / "manifest.csv").open("w", newline="") as handle:
        columns = [c for c in rows[0] if c != "sha256"]
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    old = {
        k: v
        for k, v in json.loads((whole / "augment.json").read_text()).items()
        if k not in ("targets", "generated_wanted", "finished", "command")
    }
    (out / "augment.json").write_text(json.dumps(old))
    with caplog.at_level(logging.WARNING, logger="faces.generated"):
        split = load(out, fit, tmp_path)
    assert len(split) == len(rows)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot verify that it is complete nor that its files are unchanged" in warnings[0]


def _checkpoint(tmp_path: Path, root: Path) -> tuple[Path, list[str]]:
    data_args = [
        "data.preset=tiny",
        f"data.root={root}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.output_dir={tmp_path / 'outputs'}",
    ]
    cfg = compose_config("augment", data_args)
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
    return checkpoint, data_args


def test_the_classifier_asks_for_an_unfinished_set_only_when_told() -> None:
    """balance.allow_incomplete_generated is the one switch the loader's refusal names; it is off by default and
    recorded with the run's balance settings (metrics.json) when on."""
    from classifier.balance import resolve_balance

    assert resolve_balance({"name": "synthetic", "generated_dir": "set"}).allow_incomplete_generated is False
    spec = resolve_balance({"name": "synthetic", "generated_dir": "set", "allow_incomplete_generated": True})
    assert spec.as_dict()["allow_incomplete_generated"] is True
