"""Latent-perturbation augmentation: exact targets, controls, determinism, resume, refusals.

The VAE-GAN here is a real (small, untrained) model: these tests are about the machinery
— counts, provenance, byte-identical output, crash recovery — not image quality.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import faces
from faces import SyntheticLeakError, load_generated, require_real
from vaegan.generation.candidates import source_indices
from vaegan.generation.filter import QualityFilter
from vaegan.generation.perturbations import PERTURBATIONS, get_perturbation
from vaegan.generation.request import AugmentError, GenerationRequest
from vaegan.generation.run import augment
from vaegan.generation.store import refuse_inside_dataset
from vaegan.generation.targets import parse_target_count
from vaegan.model import VAEGAN


def run(model, fit, out: Path, **kwargs):
    settings = dict(
        checkpoint_sha256="0" * 64,
        targets=[40] * 7,
        perturbation=get_perturbation("gaussian"),
        strength=1.0,
        seed=0,
        batch_size=16,
        workers=0,
    )
    settings.update(kwargs)
    return run_request(model, fit, out, **settings)


def run_request(
    model,
    fit,
    out: Path,
    *,
    checkpoint_sha256: str,
    targets: list[int],
    perturbation,
    judge=None,
    judge_sha256: str | None = None,
    render_mode: str | None = None,
    source_split=None,
    **request,
):
    """The engine's old keyword arguments as a GenerationRequest and a QualityFilter."""
    request = GenerationRequest(
        target_count=tuple(targets),
        strategy=perturbation.name,
        render=render_mode,
        out_dir=out,
        filter=judge is not None,
        **request,
    )
    quality = (
        None
        if judge is None
        else QualityFilter(
            judge_probabilities=judge,
            min_confidence=request.min_confidence,
            min_source_distance=request.min_source_distance,
            judge_sha256=judge_sha256,
        )
    )
    return augment(
        request,
        model=model,
        checkpoint_sha256=checkpoint_sha256,
        fit=fit,
        targets=targets,
        quality=quality,
        record={"source_split": source_split} if source_split else None,
    )


def manifest_rows(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open() as handle:
        return list(csv.DictReader(handle))


def png_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.glob("*/*.png") if p.parent.name != "previews"}


def test_counts_reach_targets_exactly_and_majority_untouched(model, fit, tmp_path: Path) -> None:
    real = fit.class_counts()  # tiny preset fit: Happiness ~98 > 40
    report = run(model, fit, tmp_path / "out")
    rows = manifest_rows(tmp_path / "out")
    for label, name in enumerate(fit.class_names):
        generated = sum(r["class_name"] == name for r in rows)
        assert generated == max(0, 40 - real[label])
        assert report.classes[label].final == max(40, real[label])
    assert len(png_files(tmp_path / "out")) == len(rows)  # the manifest lists exactly the files
    generated = load_generated(
        tmp_path / "out", class_names=fit.class_names, image_size=fit.image_size, cache_dir=tmp_path / "cache"
    )
    assert generated.is_synthetic.all()
    assert [max(40, c) for c in real] == [a + b for a, b in zip(real, generated.class_counts())]
    with pytest.raises(SyntheticLeakError):
        require_real(fit.concat(generated), role="val")
    assert (tmp_path / "out" / "previews" / "Fear.png").is_file()


# Guided strategies need a differentiable judge: tests/test_guidance.py runs them with one.
@pytest.mark.parametrize("strategy", sorted(n for n, p in PERTURBATIONS.items() if p.guidance is None))
def test_every_strategy_runs_with_provenance(model, fit, tmp_path: Path, strategy: str) -> None:
    run(model, fit, tmp_path / strategy, perturbation=get_perturbation(strategy), targets=[20] * 7)
    rows = manifest_rows(tmp_path / strategy)
    assert rows and all(r["strategy"] == strategy for r in rows)
    sources = [r["source_ids"] for r in rows]
    expected = {"prior": 0, "interpolate": 2}.get(strategy, 1)
    assert all(len(s.split(";")) == expected if expected else s == "" for s in sources)
    assert all(s.split(";")[0] in fit.sample_ids for s in sources if s)


def test_reconstruct_and_prior_are_controls(model, fit, tmp_path: Path) -> None:
    # reconstruct: a = 0, so two candidates from the same source decode to the same image.
    run(model, fit, tmp_path / "rec", perturbation=get_perturbation("reconstruct"), targets=[20] * 7)
    rows = [r for r in manifest_rows(tmp_path / "rec") if r["class_name"] == "Fear"]
    assert len(rows) > len({r["source_ids"] for r in rows})  # Fear has fewer sources than candidates
    by_source: dict[str, set[bytes]] = {}
    for r in rows:
        by_source.setdefault(r["source_ids"], set()).add((tmp_path / "rec" / r["path"]).read_bytes())
    assert all(len(images) == 1 for images in by_source.values())
    # gaussian with the same seed differs from the reconstruction: it perturbs.
    run(model, fit, tmp_path / "gau", targets=[20] * 7)
    assert png_files(tmp_path / "rec") != png_files(tmp_path / "gau")
    # prior: no real image is used, so changing every real image leaves the output unchanged.
    run(model, fit, tmp_path / "p1", perturbation=get_perturbation("prior"), targets=[20] * 7)
    shuffled = faces.FaceSplit(
        name="train",
        images=torch.flip(fit.images, dims=[0]),
        labels=fit.labels,
        is_synthetic=fit.is_synthetic,
        sample_ids=fit.sample_ids,
        class_names=fit.class_names,
        fingerprint=fit.fingerprint,
    )
    run(model, shuffled, tmp_path / "p2", perturbation=get_perturbation("prior"), targets=[20] * 7)
    assert png_files(tmp_path / "p1") == png_files(tmp_path / "p2")


def test_same_seed_same_bytes_other_seed_differs(model, fit, tmp_path: Path) -> None:
    run(model, fit, tmp_path / "a")
    run(model, fit, tmp_path / "b")
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (tmp_path / "b" / "manifest.csv").read_bytes()
    assert png_files(tmp_path / "a") == png_files(tmp_path / "b")
    run(model, fit, tmp_path / "c", seed=1)
    assert png_files(tmp_path / "a") != png_files(tmp_path / "c")


class Killed(Exception):
    pass


def nearest_mean_judge(fit: faces.FaceSplit, *, fail_on_call: int | None = None):
    """A real, deterministic classifier fitted on the real fit split: nearest class-mean image.

    `fail_on_call` makes it die on its n-th call, which is how a kill mid-run is simulated.
    """
    means = torch.stack([fit.images[fit.labels == c].float().mean(dim=0) for c in range(len(fit.class_names))])
    calls = {"n": 0}

    def judge(images: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if fail_on_call is not None and calls["n"] == fail_on_call:
            raise Killed("simulated kill")
        distances = torch.cdist(images.float().flatten(1), means.flatten(1))
        return torch.softmax(-distances / 50.0, dim=1)

    return judge


def test_filter_rejects_and_accepted_rows_satisfy_it(model, fit, tmp_path: Path) -> None:
    # decoder rendering: the untrained model's residual changes are too small to pass the pixel test at all
    report = run(
        model,
        fit,
        tmp_path / "f",
        judge=nearest_mean_judge(fit),
        judge_sha256="nm",
        min_confidence=0.3,
        targets=[30] * 7,
        max_attempts_factor=20,
        render_mode="decoder",
    )
    rows = manifest_rows(tmp_path / "f")
    assert rows
    assert all(int(r["judge_label"]) == int(r["label"]) and float(r["judge_confidence"]) >= 0.3 for r in rows)
    assert all(float(r["source_distance"]) >= 0.02 for r in rows)
    assert sum(c.rejected for c in report.classes) > 0
    for c in report.classes:  # exact target, or a shortfall that the report states
        assert c.final + c.shortfall == max(30, c.real)
    short = [c for c in report.classes if c.shortfall]
    assert all(
        "SHORT by" in line for line in report.table().splitlines() if any(line.startswith(c.class_name) for c in short)
    )


class DiesOnDecode(torch.nn.Module):
    """The real model, killed on its n-th decode call (a simulated Ctrl-C / OOM kill mid-run)."""

    def __init__(self, model: VAEGAN, *, fail_on_call: int) -> None:
        super().__init__()
        self.model, self.fail_on_call, self.calls = model, fail_on_call, 0
        self.latent_dim, self.resolution = model.latent_dim, model.resolution

    def encode(self, images, labels):
        return self.model.encode(images, labels)

    def decode(self, z, labels):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise Killed("simulated kill")
        return self.model.decode(z, labels)


def test_killed_run_resumes_to_identical_result(model, fit, tmp_path: Path) -> None:
    run(model, fit, tmp_path / "whole")
    with pytest.raises(Killed):
        run(DiesOnDecode(model, fail_on_call=5), fit, tmp_path / "resumed")
    partial = manifest_rows(tmp_path / "resumed")
    assert 0 < len(partial) < len(manifest_rows(tmp_path / "whole"))
    assert all((tmp_path / "resumed" / r["path"]).is_file() for r in partial)  # manifest lists only existing files
    # Debris a kill can leave: an image of an uncommitted batch and a half-written temp file.
    (tmp_path / "resumed" / "Fear" / "Fear_0009999.png").write_bytes(b"orphan")
    (tmp_path / "resumed" / "Fear" / ".Fear_0009998.png.123.tmp").write_bytes(b"partial")

    run(model, fit, tmp_path / "resumed")
    assert (tmp_path / "resumed" / "manifest.csv").read_bytes() == (tmp_path / "whole" / "manifest.csv").read_bytes()
    assert png_files(tmp_path / "resumed") == png_files(tmp_path / "whole")
    assert not list((tmp_path / "resumed").glob("*/.*.tmp"))
    # Running the same command again on a finished folder changes nothing.
    assert run(model, fit, tmp_path / "resumed").written_this_run == 0


def test_topping_up_to_a_higher_target(model, fit, tmp_path: Path) -> None:
    run(model, fit, tmp_path / "up", targets=[20] * 7)
    run(model, fit, tmp_path / "up", targets=[40] * 7)
    run(model, fit, tmp_path / "direct", targets=[40] * 7)
    assert png_files(tmp_path / "up") == png_files(tmp_path / "direct")
    # Same files, same manifest bytes: rows are in canonical order (class, candidate), not in run order.
    assert (tmp_path / "up" / "manifest.csv").read_bytes() == (tmp_path / "direct" / "manifest.csv").read_bytes()


def test_refusals(model, fit, tmp_path: Path) -> None:
    run(model, fit, tmp_path / "out")
    with pytest.raises(
        AugmentError,
        match=r"different settings \(strategy: 'gaussian' -> 'prior'; render: 'residual' -> 'decoder'\).*--overwrite",
    ):
        run(model, fit, tmp_path / "out", perturbation=get_perturbation("prior"))
    with pytest.raises(AugmentError, match="different settings.*checkpoint_sha256"):
        run(model, fit, tmp_path / "out", checkpoint_sha256="1" * 64)
    report = run(model, fit, tmp_path / "out", perturbation=get_perturbation("prior"), overwrite=True)
    assert {r["strategy"] for r in manifest_rows(tmp_path / "out")} == {"prior"} and report.written_this_run > 0
    with pytest.raises(AugmentError, match="more than target"):
        run(model, fit, tmp_path / "out", perturbation=get_perturbation("prior"), targets=[10] * 7)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(AugmentError, match="not an augmentation folder"):
        run(model, fit, tmp_path / "mine")
    with pytest.raises(AugmentError, match="overlaps the real dataset folder"):
        refuse_inside_dataset(tmp_path / "data" / "gen", dataset_root=tmp_path / "data")


def test_target_count_parsing() -> None:
    names, real = ("Surprise", "Fear", "Happiness"), [50, 10, 200]
    assert parse_target_count("100", class_names=names, real_counts=real) == [100, 100, 100]
    assert parse_target_count("max", class_names=names, real_counts=real) == [200, 200, 200]
    assert parse_target_count("Fear=80,surprise=60", class_names=names, real_counts=real) == [60, 80, 200]
    for bad, message in (
        ("0", "at least 1"),
        ("-5", "at least 1"),
        ("lots", "positive integer"),
        ("Contempt=5", "unknown class 'Contempt'.*Surprise"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_target_count(bad, class_names=names, real_counts=real)


def test_sources_are_used_about_equally() -> None:
    used = source_indices(candidates=range(50), n_sources=7, seed=0, label=1)
    counts = torch.bincount(torch.tensor(used), minlength=7)
    assert int(counts.max() - counts.min()) <= 1


def test_overwrite_replaces_only_what_the_augmenter_wrote(model, fit, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(model, fit, out, targets=[20] * 7)
    (out / "notes.txt").write_text("mine")
    (out / "judge").mkdir()
    (out / "judge" / "keep.txt").write_text("judge run")
    run(model, fit, out, targets=[20] * 7, perturbation=get_perturbation("prior"), overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "judge" / "keep.txt").is_file()
    assert {r["strategy"] for r in manifest_rows(out)} == {"prior"}
    assert not (out / ".lock").exists()  # the lock is released when the run ends


def test_settings_record_which_real_images_the_set_may_come_from(model, fit, tmp_path: Path) -> None:
    from faces import sample_ids_fingerprint

    run(model, fit, tmp_path / "out", targets=[20] * 7, source_split={"split_seed": 0, "val_fraction": 0.1})
    settings = json.loads((tmp_path / "out" / "augment.json").read_text())
    assert settings["source_ids_sha256"] == sample_ids_fingerprint(fit.sample_ids)
    assert settings["source_split"] == {"split_seed": 0, "val_fraction": 0.1, "fit_images": len(fit)}
    assert settings["image_size"] == fit.image_size
    used = {s for r in manifest_rows(tmp_path / "out") for s in r["source_ids"].split(";") if s}
    assert used and used <= set(fit.sample_ids)


def test_bad_generation_arguments_are_refused_before_work(model, fit, tmp_path: Path) -> None:
    for kwargs, message in (
        ({"min_confidence": 5.0}, r"--min-confidence=5 must be a probability"),
        ({"max_attempts_factor": -1.0}, r"--max-attempts-factor=-1 must be a positive"),
        ({"min_source_distance": -0.5}, r"--min-source-distance=-0.5 must be >= 0"),
        ({"workers": -1}, r"--workers=-1 must be >= 0"),
    ):
        with pytest.raises(AugmentError, match=message):
            run(model, fit, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


WORKER_PARENT = """
import json, os, signal, sys
import numpy as np
from vaegan.generation.writer import PngWriterPool
from faces.runkit.workers import worker_report
pool = PngWriterPool(workers=1)
for future in pool.submit([sys.argv[1]], np.zeros((1, 8, 8, 3), dtype=np.uint8)):
    future.result()
print(json.dumps(pool.executor.submit(worker_report).result()), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # killed like an OOM kill or `kill -9`: no cleanup runs
"""


def test_png_workers_die_with_a_killed_parent_and_do_not_import_torch(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    result = subprocess.run(
        [sys.executable, "-c", WORKER_PARENT, str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert result.returncode == -9, result.stderr[-2000:]
    worker = json.loads(result.stdout.strip().splitlines()[-1])
    assert (tmp_path / "x.png").is_file()
    assert worker["torch_imported"] is False  # a PNG writer has no use for torch (seconds of start-up, GBs with CUDA)

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.monotonic() + 10
    while alive(worker["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(worker["pid"]):
        os.kill(worker["pid"], 9)  # do not leave it behind even when the test fails
        pytest.fail(f"PNG worker {worker['pid']} outlived its killed parent")


def test_near_duplicate_filter_rejects_copies_of_any_real_image_and_of_earlier_samples() -> None:
    from vaegan.generation.candidates import CandidateBatch, ClassPlan
    from vaegan.generation.filter import REJECT_REASONS, judge_batch

    g = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (5, 3, 16, 16), generator=g, dtype=torch.uint8)
    fresh = torch.randint(0, 256, (3, 3, 16, 16), generator=g, dtype=torch.uint8)
    earlier = torch.randint(0, 256, (1, 3, 16, 16), generator=g, dtype=torch.uint8)
    # candidate 0: new; 1: a copy of real image 3 (not its source, which is image 0); 2: new;
    # 3: a copy of candidate 2 (accepted just before it); 4: a copy of a sample an earlier batch accepted
    images = torch.stack([fresh[0], real[3], fresh[1], fresh[1], earlier[0]])
    item = ClassPlan(
        label=1,
        name="Fear",
        need=5,
        budget=50,
        members=torch.arange(5),
        source_images=real,
        source_labels=torch.ones(5, dtype=torch.long),
        accepted=earlier,
    )
    candidates = CandidateBatch(batch=0, candidates=list(range(5)), images=images, sources=[0] * 5, partners=[0] * 5)
    always_fear = lambda x: torch.nn.functional.one_hot(torch.ones(len(x), dtype=torch.long), 3).float()  # noqa: E731
    judge_batch(
        candidates,
        item=item,
        quality=QualityFilter(judge_probabilities=always_fear, min_confidence=0.5, min_source_distance=0.02),
        undecided_from=0,
    )
    near = REJECT_REASONS.index("near_duplicate")
    assert candidates.reason.tolist() == [-1, near, -1, near, near]


def test_residual_rendering_is_the_source_plus_the_decoders_change(model, fit) -> None:
    from vaegan.generation.render import render, resize_float
    from vaegan.images import resize_uint8, to_model_range, to_uint8

    sources, labels = fit.images[:4], fit.labels[:4]
    with torch.no_grad():
        mu, _ = model.encode(to_model_range(resize_uint8(sources, size=model.resolution)), labels)
        # An unmoved code changes nothing: the sample is its source, bit for bit.
        same = render(
            model,
            z=mu,
            labels=labels,
            mode="residual",
            image_size=fit.image_size,
            source_images=sources,
            source_mu=mu,
            source_labels=labels,
        )
        assert torch.equal(same, sources)
        z = mu + 1.5
        moved = render(
            model,
            z=z,
            labels=labels,
            mode="residual",
            image_size=fit.image_size,
            source_images=sources,
            source_mu=mu,
            source_labels=labels,
        )
        change = resize_float(model.decode(z, labels) - model.decode(mu, labels), size=fit.image_size)
        assert torch.equal(moved, to_uint8((to_model_range(sources) + change).clamp(-1, 1)))
        assert not torch.equal(moved, sources)
        # The decoder rendering is the decoder's own image at the data's size.
        decoded = render(model, z=z, labels=labels, mode="decoder", image_size=fit.image_size)
        assert torch.equal(decoded, resize_uint8(to_uint8(model.decode(z, labels)), size=fit.image_size))
        with pytest.raises(ValueError, match="real source"):
            render(model, z=z, labels=labels, mode="residual", image_size=fit.image_size)
        with pytest.raises(ValueError, match="choose one of"):
            render(model, z=z, labels=labels, mode="sharpen", image_size=fit.image_size)


def test_renderings_per_strategy_and_source_free_strategies_refuse_residual(model, fit, tmp_path: Path) -> None:
    from vaegan.generation.request import check_render_for

    assert {name: p.render for name, p in PERTURBATIONS.items()}["prior"] == "decoder"
    assert get_perturbation("reconstruct").render == "decoder" and get_perturbation("gaussian").render == "residual"
    with pytest.raises(AugmentError, match="prior has none"):
        check_render_for(get_perturbation("prior"), "residual")
    with pytest.raises(AugmentError, match="choose one of"):
        check_render_for(get_perturbation("gaussian"), "sharp")
    run(model, fit, tmp_path / "res", targets=[20] * 7)
    run(model, fit, tmp_path / "dec", targets=[20] * 7, render_mode="decoder")
    assert json.loads((tmp_path / "res" / "augment.json").read_text())["render"] == "residual"
    assert json.loads((tmp_path / "dec" / "augment.json").read_text())["render"] == "decoder"
    assert png_files(tmp_path / "res") != png_files(tmp_path / "dec")
    with pytest.raises(AugmentError, match="render"):  # resuming with another rendering is refused
        run(model, fit, tmp_path / "res", targets=[20] * 7, render_mode="decoder")


def test_feature_duplicate_filter_rejects_copies_of_other_classes_and_of_earlier_samples() -> None:
    from vaegan.generation.candidates import CandidateBatch, ClassPlan
    from vaegan.generation.filter import REJECT_REASONS, DuplicateFilter, judge_batch

    g = torch.Generator().manual_seed(1)
    real = torch.randint(0, 256, (8, 3, 16, 16), generator=g, dtype=torch.uint8)
    labels = torch.tensor([1, 1, 1, 1, 2, 2, 2, 2])
    split = faces.FaceSplit(
        name="train",
        images=real,
        labels=labels,
        is_synthetic=torch.zeros(8, dtype=torch.bool),
        sample_ids=[f"r{i}" for i in range(8)],
        class_names=("Surprise", "Fear", "Disgust"),
        fingerprint="x",
    )
    # Any embedding works for the rule; the augmenter passes the report's EfficientNet-Lite0 features.
    duplicates = DuplicateFilter(embed=lambda x: x.float().flatten(1) / 255.0, fit=split)
    fresh = torch.randint(0, 256, (2, 3, 16, 16), generator=g, dtype=torch.uint8)
    # 0: new; 1: a copy of a *Disgust* training image (the pixel test only looks at Fear's); 2: new;
    # 3: candidate 2 brightened by 8 levels (0.03 mean pixel difference: passes the pixel test, not this one)
    images = torch.stack([fresh[0], real[5], fresh[1], (fresh[1].int() + 8).clamp(0, 255).to(torch.uint8)])
    members = (labels == 1).nonzero().flatten()
    item = ClassPlan(
        label=1,
        name="Fear",
        need=4,
        budget=40,
        members=members,
        source_images=real[members],
        source_labels=labels[members],
        accepted=real[:0],
        accepted_features=duplicates.real_features[:0],
    )
    candidates = CandidateBatch(batch=0, candidates=list(range(4)), images=images, sources=[0] * 4, partners=[0] * 4)
    always_fear = lambda x: torch.nn.functional.one_hot(torch.ones(len(x), dtype=torch.long), 3).float()  # noqa: E731
    judge_batch(
        candidates,
        item=item,
        quality=QualityFilter(
            judge_probabilities=always_fear, min_confidence=0.5, min_source_distance=0.02, duplicates=duplicates
        ),
        undecided_from=0,
    )
    near = REJECT_REASONS.index("near_duplicate")
    assert candidates.reason.tolist() == [-1, near, -1, near]
    judge_batch(
        candidates,
        item=item,
        quality=QualityFilter(judge_probabilities=always_fear, min_confidence=0.5, min_source_distance=0.02),
        undecided_from=0,
    )
    assert candidates.reason.tolist() == [-1, -1, -1, -1]  # without it, only the pixel test: both copies pass


def test_transfer_borrows_faces_of_larger_classes_and_decodes_them_with_the_minority_label(
    model, fit, tmp_path: Path
) -> None:
    from vaegan.generation.candidates import donor_indices
    from vaegan.generation.perturbations import perturb_codes
    from vaegan.generation.request import check_render_for

    counts = fit.class_counts()
    fear = fit.class_names.index("Fear")
    donors = donor_indices(fit.labels, label=fear, counts=counts)
    assert set(fit.labels[donors].tolist()) == {c for c, n in enumerate(counts) if n > counts[fear]}
    largest = max(range(len(counts)), key=counts.__getitem__)
    assert (
        largest not in fit.labels[donor_indices(fit.labels, label=largest, counts=counts)].tolist()
    )  # every other class
    with pytest.raises(AugmentError, match="other class's face"):
        check_render_for(get_perturbation("transfer"), "residual")
    run(model, fit, tmp_path / "t", perturbation=get_perturbation("transfer"), targets=[20] * 7)
    label_of = dict(zip(fit.sample_ids, fit.labels.tolist()))
    rows = manifest_rows(tmp_path / "t")
    assert rows
    for r in rows:  # each sample's source is a real image of a class larger than the one it fills
        assert counts[label_of[r["source_ids"]]] > counts[int(r["label"])] or int(r["label"]) == largest
    # The training-time formula takes the codes of the batch's other classes (a = 0: exactly one of them).
    mu, labels = torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])
    codes = perturb_codes(
        get_perturbation("transfer"),
        mu=mu,
        logvar=torch.zeros(6, 8),
        labels=labels,
        strength=0.0,
        generator=torch.Generator().manual_seed(0),
    )
    for i in range(6):
        matches = [j for j in range(6) if torch.equal(codes[i], mu[j])]
        assert matches and all(labels[j] != labels[i] for j in matches)


class Terminal:
    """stderr as a terminal: tqdm draws its bars only there (disable=None)."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_progress_bars_per_class_only_on_a_terminal_and_not_when_quiet(
    model, fit, tmp_path: Path, monkeypatch, capsys
) -> None:
    import sys

    run(model, fit, tmp_path / "plain", targets=[20] * 7)
    assert "img/s" not in capsys.readouterr().err  # not a terminal (a log, CI): no bars
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run(model, fit, tmp_path / "tty", targets=[20] * 7)
    assert "Fear" in terminal.text and "candidates=" in terminal.text
    terminal.text = ""
    run(model, fit, tmp_path / "quiet", targets=[20] * 7, progress_bar=False)
    assert terminal.text == ""


def test_a_generation_request_is_checked_once_resolved_and_frozen(tmp_path: Path) -> None:
    import dataclasses

    request = GenerationRequest(target_count="Fear=10", strategy="prior", device="cpu")
    assert (request.strength, request.render) == (get_perturbation("prior").default_strength, "decoder")
    assert request.workers >= 1 and request.device == "cpu" and request.out_dir is None
    moved = request.with_out_dir(tmp_path / "gen")
    assert moved.out_dir == tmp_path / "gen" and request.out_dir is None and moved.render == "decoder"
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.seed = 1
    for kwargs, message in (
        ({"seed": -1}, r"--seed=-1 must be a non-negative integer"),
        ({"strategy": "blur"}, r"--strategy: unknown perturbation strategy 'blur'"),
        ({"strength": -1.0}, r"--strength=-1.0 must be >= 0"),
        ({"strategy": "prior", "render": "residual"}, r"--render=residual: .*prior has none"),
        ({"batch_size": 0}, r"--batch-size=0 must be >= 1"),
    ):
        with pytest.raises(AugmentError, match=message):
            GenerationRequest(target_count=10, **kwargs)


def test_target_count_per_class_sequence() -> None:
    names, real = ("Surprise", "Fear", "Happiness"), [50, 10, 200]
    assert parse_target_count((60, 80, 200), class_names=names, real_counts=real) == [60, 80, 200]
    with pytest.raises(ValueError, match="2 targets for 3 classes"):
        parse_target_count((60, 80), class_names=names, real_counts=real)


def test_a_greyscale_dataset_gets_greyscale_samples(model, fit) -> None:
    from vaegan.generation.candidates import generate, plan
    from vaegan.images import is_greyscale, to_greyscale

    grey = faces.FaceSplit(
        name="train",
        images=to_greyscale(fit.images),
        labels=fit.labels,
        is_synthetic=fit.is_synthetic,
        sample_ids=fit.sample_ids,
        class_names=fit.class_names,
    )
    assert is_greyscale(grey.images) and not is_greyscale(fit.images)
    request = GenerationRequest(target_count=40, strategy="gaussian", batch_size=8)
    for split, expect_grey in ((grey, True), (fit, False)):
        item = plan(model, split, request=request, targets=[40] * 7, done={})[0]
        images = generate(model, item, 0, request=request, image_size=split.image_size).images
        # the decoder's RGB change would tint a greyscale face; a colour dataset keeps its colours
        assert is_greyscale(images) == expect_grey
