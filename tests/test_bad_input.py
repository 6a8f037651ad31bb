"""Probe suite: bad input to the real entry points fails fast, names the file/line/value, and loses nothing.

Each case builds its bad input in a tmp dir, runs a real entry point in-process (the augment
CLI's `main`, the classifier's `run_training` / `run_evaluation`, `scripts/evaluate.py`'s
argument handling, the data layer's loaders) and checks four things: the exit status (or the
error type), that the message names the offending file/line/value, that it failed before the
expensive work (no decoded cache written, no model trained, no output folder created) where
that applies, and that every file that was on disk before is still there, byte for byte.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from builders import build_rafdb_official, write_image
from omegaconf import OmegaConf
from safetensors.torch import save_file

import faces
from ablation.config import compose_config
from ablation.generate import main as augment_main
from ablation.pipeline import check_ablation
from classifier.backbones import PretrainedWeightsError
from classifier.evaluate import run_evaluation
from classifier.train import run_training
from faces.classes import RAFDB_CLASSES
from faces.runkit.lock import LOCK_FILE
from vaegan.checkpoint import save_vaegan
from vaegan.model import VAEGAN

REPO = Path(__file__).resolve().parents[1]
FAST = [
    "classifier=resnet10t_scratch",
    "train.epochs=1",
    "train.freeze_epochs=0",
    "train.warmup_epochs=0",
    "train.batch_size=16",
    "train.limit_train_batches=2",
    "trainer.enable_progress_bar=false",
]


@dataclass
class Env:
    """One case's sandbox: tmp dir, its own cache dir, the shared tiny dataset and a VAE-GAN export."""

    tmp: Path
    root: Path
    checkpoint: Path

    @property
    def cache(self) -> Path:
        return self.tmp / "cache"

    def data_args(self, *extra: str) -> list[str]:
        return [
            "data.preset=tiny",
            f"data.root={self.root}",
            f"paths.cache_dir={self.cache}",
            f"paths.output_dir={self.tmp / 'outputs'}",
            *extra,
        ]

    def augment(self, *args: str, data: tuple[str, ...] | None = None) -> list[str]:
        return [
            "--checkpoint",
            str(self.checkpoint),
            "--no-filter",
            "--workers",
            "0",
            "--batch-size",
            "8",
            *args,
            *(self.data_args() if data is None else data),
        ]


@pytest.fixture(scope="module")
def vaegan_export(tmp_path_factory: pytest.TempPathFactory, tiny_synthetic_root: Path) -> Path:
    """A real (untrained) tiny VAE-GAN export for the tiny preset, built without decoding anything."""
    folder = tmp_path_factory.mktemp("vaegan_run")
    torch.manual_seed(0)
    model = VAEGAN(resolution=32, latent_dim=32, num_classes=7, base_channels=8, max_channels=32)
    return save_vaegan(
        folder / "vaegan.safetensors",
        model=model,
        config={"name": "tiny"},
        class_names=RAFDB_CLASSES,
        extra={
            "image_size": 32,
            "data_fingerprint": "unknown",
            "data": {"name": "synthetic", "preset": "tiny", "seed": 0, "root": str(tiny_synthetic_root)},
        },
    )


@pytest.fixture
def env(tmp_path: Path, tiny_synthetic_root: Path, vaegan_export: Path) -> Env:
    return Env(tmp=tmp_path, root=tiny_synthetic_root, checkpoint=vaegan_export)


# ----- building bad input ----------------------------------------------------------------------------
def forged_safetensors(path: Path, metadata: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"x": torch.zeros(1)}, str(path), metadata=metadata)
    return path


def png_claiming(path: Path, *, width: int, height: int) -> Path:
    """A PNG whose header claims width x height pixels (a decompression bomb); tiny on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )
    return path


def rafdb_classes_folder(root: Path, *, size: int = 16) -> Path:
    """An image-folder dataset whose folders are RAF-DB's class names (one image per class and split)."""
    for split in ("train", "test"):
        for i, name in enumerate(RAFDB_CLASSES):
            for k in range(2 if split == "train" else 1):
                write_image(
                    root / split / name / f"{k}.png", seed=10 * i + k + (split == "test") * 100, size=size, fmt="PNG"
                )
    return root


def folder_data_args(env: Env, root: Path, *extra: str) -> list[str]:
    return [
        "data=folder",
        f"data.root={root}",
        "data.image_size=32",
        "data.class_names=[" + ",".join(RAFDB_CLASSES) + "]",
        f"paths.cache_dir={env.cache}",
        f"paths.output_dir={env.tmp / 'outputs'}",
        *extra,
    ]


def classifier_checkpoint(path: Path, **meta_overrides) -> Path:
    meta = {
        "class_names": ["cat", "dog"],
        "image_size": 16,
        "input_size": 16,
        "backbone": "resnet10t",
        "head": "linear",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        **meta_overrides,
    }
    meta = {k: v for k, v in meta.items() if v is not None}
    return forged_safetensors(path, {"fer_classifier": json.dumps(meta)})


def load_evaluate_script():
    spec = importlib.util.spec_from_file_location("evaluate_script", REPO / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----- the cases -------------------------------------------------------------------------------------
@dataclass
class Case:
    """`run(env)` builds the bad input and returns a callable running the entry point."""

    id: str
    run: Callable[[Env], Callable[[], int | None]]
    rc: int  # exit status; API entry points: 1 if they raised
    says: tuple[str, ...]  # regexes the message must contain
    never_says: tuple[str, ...] = ()
    decodes: bool = False  # whether decoding (a cache file) is allowed before the failure
    creates: tuple[str, ...] = ()  # paths (relative to tmp) that must NOT exist afterwards
    error: type[BaseException] = Exception
    leaves: tuple[str, ...] = ()  # globs (relative to tmp) that MUST match afterwards (e.g. an interrupted marker)
    slow: bool = False


def augment_case(make_args: Callable[[Env], list[str]]) -> Callable[[Env], Callable[[], int]]:
    """Build the input now (before the snapshot), run the augment CLI's main later."""

    def build(env: Env) -> Callable[[], int]:
        args = make_args(env)
        return lambda: augment_main(args)

    return build


def _foreign_folder(env: Env) -> list[str]:
    out = env.tmp / "mine"
    (out / "chapters").mkdir(parents=True)
    (out / "thesis.tex").write_text("precious")
    (out / "chapters" / "intro.tex").write_text("also precious")
    return env.augment("--target-count", "Fear=8", "--out", str(out), "--overwrite")


def _vaegan_run_folder(env: Env) -> list[str]:
    run = env.tmp / "train_vaegan" / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"weights of a 10-hour run")
    (run / "vaegan.safetensors").write_bytes(env.checkpoint.read_bytes())
    return env.augment("--target-count", "Fear=8", "--out", str(run), "--overwrite")


def _out_inside_dataset(env: Env) -> list[str]:
    dataset = env.tmp / "dataset"
    rafdb_classes_folder(dataset)
    return env.augment(
        "--target-count",
        "Fear=8",
        "--out",
        str(dataset / "train" / "generated"),
        data=tuple(folder_data_args(env, dataset)),
    )


def _bad_label_line(env: Env) -> list[str]:
    root = build_rafdb_official(env.tmp / "basic", train_counts=(1,) * 7, test_counts=(1,) * 7, size=8)
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    lines = label_file.read_text().splitlines()
    lines[2] = "train_00003.jpg"  # no label
    label_file.write_text("\n".join(lines) + "\n")
    return env.augment("--target-count", "10", data=("data=rafdb", f"data.root={root}", f"paths.cache_dir={env.cache}"))


def _decompression_bomb(env: Env) -> list[str]:
    dataset = rafdb_classes_folder(env.tmp / "dataset")
    png_claiming(dataset / "train" / "Fear" / "bomb.png", width=40000, height=40000)
    return env.augment(
        "--target-count", "Fear=8", "--out", str(env.tmp / "gen"), data=tuple(folder_data_args(env, dataset))
    )


def _lock_held(env: Env) -> list[str]:
    out = env.tmp / "gen"
    out.mkdir()
    holder = {
        "pid": os.getppid(),
        "host": __import__("socket").gethostname(),
        "started": "2026-01-01T00:00:00+00:00",
        "what": "augmentation",
        "argv": ["scripts/augment.py", "--out", str(out)],
        "token": "x",
    }
    (out / LOCK_FILE).write_text(json.dumps(holder))
    return env.augment("--target-count", "Fear=8", "--out", str(out))


def _generated_symlink(env: Env) -> Callable[[], object]:
    out = env.tmp / "gen"
    write_image(out / "Fear" / "a.png", seed=1, size=32, fmt="PNG")
    test_image = next(env.root.glob("*/test/Fear/*.png"))  # a real test image
    (out / "Fear" / "b.png").symlink_to(test_image)
    (out / "manifest.csv").write_text("path,class_name\nFear/a.png,Fear\nFear/b.png,Fear\n")
    return lambda: faces.load_generated(out, class_names=RAFDB_CLASSES, image_size=32, cache_dir=env.cache)


def _generated_size(env: Env) -> Callable[[], object]:
    out = env.tmp / "gen"
    write_image(out / "Fear" / "a.png", seed=1, size=32, fmt="PNG")
    (out / "manifest.csv").write_text("path,class_name\nFear/a.png,Fear\n")
    (out / "augment.json").write_text(json.dumps({"image_size": 32, "class_names": list(RAFDB_CLASSES)}))
    return lambda: faces.load_generated(out, class_names=RAFDB_CLASSES, image_size=64, cache_dir=env.cache)


def _evaluate_missing(env: Env) -> Callable[[], object]:
    script = load_evaluate_script()
    return lambda: script._positional_checkpoint_to_override(
        ["scripts/evaluate.py", str(env.tmp / "no" / "such" / "run"), "data=rafdb"]
    )


def _evaluate_classes(env: Env) -> Callable[[], object]:
    checkpoint = classifier_checkpoint(env.tmp / "run" / "checkpoints" / "best.safetensors")
    cfg = compose_config("evaluate", env.data_args(f"checkpoint={checkpoint}"))
    return lambda: run_evaluation(cfg, checkpoint=cfg.checkpoint, run_dir=env.tmp / "evaluation")


def _evaluate_forged(env: Env) -> Callable[[], object]:
    checkpoint = classifier_checkpoint(env.tmp / "ckpt.safetensors", class_names=None)
    cfg = compose_config("evaluate", env.data_args(f"checkpoint={checkpoint}"))
    return lambda: run_evaluation(cfg, checkpoint=cfg.checkpoint, run_dir=env.tmp / "evaluation")


# ----- the second probe: entry points run as the user runs them, in a subprocess ----------------
def run_script(
    env: Env,
    script: str,
    args: list[str],
    *,
    extra_env: dict[str, str | None] | None = None,
    interrupt: tuple[signal.Signals, str] | None = None,
    timeout: float = 300,
) -> int:
    """Run scripts/<script> with `args`, print its output (the case reads it) and return its exit status.
    `interrupt=(signal, glob)`: once `glob` (relative to tmp) matches, i.e. the work has begun, send the signal."""
    variables = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONUNBUFFERED": "1",
    }
    for key, value in (extra_env or {}).items():
        variables.pop(key, None) if value is None else variables.__setitem__(key, value)
    log_path = env.tmp.parent / f"{env.tmp.name}-{script}.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / script), *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=variables,
            cwd=REPO,
        )
        try:
            if interrupt is not None:
                signum, ready = interrupt
                deadline = time.monotonic() + timeout
                while not list(env.tmp.glob(ready)) and process.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.2)
                process.send_signal(signum)
            rc = process.wait(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    print(log_path.read_text())
    return rc


def script_case(script: str, make_args: Callable[[Env], list[str]], **options) -> Callable[[Env], Callable[[], int]]:
    def build(env: Env) -> Callable[[], int]:
        args = make_args(env)
        return lambda: run_script(env, script, args, **options)

    return build


# A classifier run long enough to be interrupted: 2 batches an epoch, many epochs.
LONG = [*FAST[:-1], "train.epochs=500", "trainer.enable_progress_bar=false"]


def _classifier_run(env: Env) -> list[str]:
    return [*env.data_args(), *LONG, f"hydra.run.dir={env.tmp / 'run'}"]


def _vaegan_run(env: Env) -> list[str]:
    return [
        *env.data_args(),
        "vaegan=small",
        "epochs=500",
        "batch_size=64",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={env.tmp / 'vaegan'}",
    ]


def _augment_run(env: Env) -> list[str]:
    """A set far too large to finish before the signal: it arrives once the first batch is committed."""
    return env.augment("--target-count", "Fear=100000", "--no-report", "--quiet", "--out", str(env.tmp / "gen"))


def hydra_list(key: str, items: list[str]) -> str:
    return f"{key}=[" + ",".join(f"'{item}'" for item in items) + "]"


def _ablation(*extra: str) -> Callable[[Env], list[str]]:
    return lambda env: [*env.data_args(), "rows=[none]", "trainer.enable_progress_bar=false", *extra]


def _ablation_checks(*extra: str) -> Callable[[Env], Callable[[], object]]:
    """The checks scripts/ablate.py runs before stage 1 (in-process; the subprocess cases show the exit status)."""

    def build(env: Env) -> Callable[[], object]:
        cfg = compose_config("ablate", _ablation(*extra)(env))
        return lambda: check_ablation(cfg)

    return build


def _phone_photos(env: Env) -> list[str]:
    """A RAF-DB-class folder dataset with a sideways phone photo (EXIF orientation 6), a 1x1 and a 400x20 image."""
    from PIL import Image

    dataset = rafdb_classes_folder(env.tmp / "dataset", size=32)
    pixels = torch.zeros((32, 32, 3), dtype=torch.uint8)
    pixels[:, 16:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels.numpy()).save(dataset / "train" / "Fear" / "phone.jpg", format="JPEG", exif=exif.tobytes())
    Image.fromarray(torch.full((1, 1, 3), 128, dtype=torch.uint8).numpy()).save(dataset / "train" / "Anger" / "dot.png")
    Image.fromarray(torch.full((20, 400, 3), 128, dtype=torch.uint8).numpy()).save(
        dataset / "train" / "Sadness" / "strip.png"
    )
    return [*folder_data_args(env, dataset), f"hydra.run.dir={env.tmp / 'summary'}"]


def _tiny_images(env: Env) -> Callable[[], object]:
    dataset = rafdb_classes_folder(env.tmp / "dataset", size=32)
    write_image(dataset / "train" / "Fear" / "thumb.png", seed=7, size=4, fmt="PNG")
    cfg = compose_config("train_classifier", [*folder_data_args(env, dataset, "data.min_image_size=16"), *FAST])
    return lambda: run_training(cfg, run_dir=env.tmp / "run")


def _single_image_class(env: Env) -> Callable[[], object]:
    dataset = rafdb_classes_folder(env.tmp / "dataset", size=32)
    (dataset / "train" / "Fear" / "1.png").unlink()  # Fear keeps one training image: it has none to give validation
    cfg = compose_config("train_classifier", [*folder_data_args(env, dataset), *FAST])
    return lambda: run_training(cfg, run_dir=env.tmp / "run")


def _hub_unreachable(env: Env) -> Callable[[], object]:
    """classifier.pretrained=hub without HF_HUB_OFFLINE and without a route to the hub (an endpoint that refuses at
    once stands in for "no network", deterministically): refused at the first connection, before decoding."""
    cfg = compose_config("train_classifier", [*env.data_args(), *FAST, "classifier.pretrained=hub"])

    def call() -> object:
        saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_ENDPOINT")}
        os.environ.pop("HF_HUB_OFFLINE", None)
        os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
        try:
            return run_training(cfg, run_dir=env.tmp / "run")
        finally:
            for key, value in saved.items():
                os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)

    return call


def _read_only_outputs(env: Env) -> list[str]:
    outputs = env.tmp / "outputs"
    outputs.mkdir()
    (outputs / "earlier.txt").write_text("an earlier result")
    outputs.chmod(0o555)
    return env.data_args()


def _read_only_ablation(env: Env) -> list[str]:
    out = env.tmp / "ablation"
    out.mkdir()
    out.chmod(0o555)
    return [*env.data_args(), "rows=[none]", "seeds=[0]", f"out_dir={out}", f"hydra.run.dir={env.tmp / 'hydra'}"]


SECOND_PROBE = [
    # 1. An interrupted run is not a success: 143 / 130, the folder marked, the resume command printed.
    Case(
        "sigterm-train-classifier",
        script_case("train_classifier.py", _classifier_run, interrupt=(signal.SIGTERM, "run/tensorboard")),
        143,
        (
            r"INTERRUPTED by SIGTERM: .*run is marked interrupted \(interrupted\.json\)",
            r"To resume: \S*python\S* .*train_classifier\.py .*hydra\.run\.dir=.*run",
        ),
        decodes=True,
        creates=("run/metrics.json",),
        leaves=("run/interrupted.json", "run/tensorboard"),
    ),
    Case(
        "ctrl-c-train-vaegan",
        script_case("train_vaegan.py", _vaegan_run, interrupt=(signal.SIGINT, "vaegan/checkpoints/last.ckpt")),
        130,
        (
            r"INTERRUPTED by SIGINT",
            r"Last checkpoint .*: .*vaegan/checkpoints/last\.ckpt",
            r"To resume: \S*python\S* .*train_vaegan\.py .*resume=.*vaegan/checkpoints/last\.ckpt",
        ),
        decodes=True,
        creates=("vaegan/vaegan.safetensors",),
        leaves=("vaegan/interrupted.json", "vaegan/checkpoints/last.ckpt"),
        slow=True,
    ),
    Case(
        "sigterm-ablate",
        script_case(
            "ablate.py",
            _ablation("seeds=[0]", hydra_list("classifier_overrides", LONG)),
            interrupt=(signal.SIGTERM, "outputs/ablate/ablation/runs/none/seed0/tensorboard"),
        ),
        143,
        (r"INTERRUPTED by SIGTERM: .*ablation is marked interrupted", r"To resume: \S*python\S* .*ablate\.py"),
        decodes=True,
        creates=("outputs/ablate/ablation/runs/none/seed0/metrics.json",),
        leaves=("outputs/ablate/ablation/interrupted.json", "outputs/ablate/ablation/runs/none/seed0/interrupted.json"),
        slow=True,
    ),
    Case(
        "sigterm-augment",
        script_case("augment.py", _augment_run, interrupt=(signal.SIGTERM, "gen/manifest.csv")),
        143,
        (r"augment: INTERRUPTED by SIGTERM: the set is not finished", r"To resume: \S*python\S* .*augment\.py .*--out"),
        decodes=True,
        leaves=("gen/manifest.csv", "gen/augment.json"),
    ),
    # 5. Phone photos upright and counted; degenerate images named; data.min_image_size refuses them by name.
    Case(
        "exif-and-degenerate-images-summary",
        script_case("data_summary.py", _phone_photos),
        0,
        (
            r"turned upright by their EXIF orientation: 1; much smaller than 32px: 1; far from square: 1",
            r"much smaller than the 32px target.*dot\.png \(1x1\)",
            r"far from square.*strip\.png \(400x20\)",
        ),
        decodes=True,
        leaves=("summary/summary.json",),
    ),
    Case(
        "min-image-size",
        _tiny_images,
        1,
        (r"1 image\(s\) with a side under data\.min_image_size=16px: .*Fear/thumb\.png \(4x4\)",),
        error=faces.DatasetError,
        decodes=True,
        creates=("run/checkpoints",),
    ),
    # 6. Seeds checked before stage 1; an ablation whose runs failed exits non-zero, naming them.
    Case(
        "ablate-negative-seed",
        script_case("ablate.py", _ablation("seeds=[-1]")),
        2,
        (r"seeds=\[-1\]: \[-1\] not integers in 0\.\.4294967295",),
        creates=("outputs/ablate/ablation/ablate_config.yaml", "outputs/ablate/ablation/runs"),
        slow=True,
    ),
    Case(
        "ablate-every-run-failed",
        script_case("ablate.py", _ablation("seeds=[0,1]", hydra_list("classifier_overrides", [*FAST, "train.lr=-1"]))),
        1,
        (r"2 run\(s\) failed", r"none seed 0: ValueError: train\.lr=-1", r"none seed 1: ValueError: train\.lr=-1"),
        leaves=("outputs/ablate/ablation/runs/none/seed1/error.json",),
        slow=True,
    ),
    Case(
        "ablate-seed-out-of-range",
        _ablation_checks("seeds=[0,4294967296,0.5]"),
        1,
        (r"seeds=\[0, 4294967296, 0\.5\]: \[4294967296, 0\.5\] not integers in 0\.\.4294967295",),
        error=ValueError,
    ),
    # Issue 21: DDP under ablate.py would re-run the whole ablation per rank: refused before any work.
    Case(
        "ablate-ddp-without-launcher",
        script_case("ablate.py", _ablation("seeds=[0]", "trainer=ddp_cpu", "trainer.devices=2")),
        2,
        (
            r"trainer asks for 2 processes \(DDP\), but scripts/ablate\.py runs its stages in one process",
            r"scripts/train_classifier\.py trainer=ddp",
        ),
        creates=("outputs/ablate/ablation/ablate_config.yaml", "outputs/ablate/ablation/runs"),
    ),
    # 7. A read-only output folder: one line, exit 2, and what was in it is untouched.
    Case(
        "read-only-output-dir",
        script_case("train_classifier.py", _read_only_outputs),
        2,
        (r"(?m)^cannot write to .*outputs/train_classifier/\S+: .*outputs is read-only",),
        creates=("outputs/train_classifier",),
    ),
    Case(
        "read-only-ablation-out-dir",
        script_case("ablate.py", _read_only_ablation),
        2,
        (r"(?m)^scripts/ablate\.py: cannot write to .*ablation: .*ablation is read-only",),
        creates=("ablation/.lock", "ablation/ablate_config.yaml"),
        slow=True,
    ),
    # Smaller ones: a class with no validation image is named; hub weights with no network fail at once.
    Case(
        "single-image-class",
        _single_image_class,
        0,
        (r"no validation image for class\(es\) Fear \(1 training image",),
        decodes=True,
    ),
    Case(
        "hub-unreachable",
        _hub_unreachable,
        1,
        (r"classifier\.pretrained=hub .*cannot reach the hub at http://127\.0\.0\.1:9", r"HF_HUB_OFFLINE=1"),
        error=PretrainedWeightsError,
    ),
]

CASES = [
    # Argument values, checked before the checkpoint, the data or OUT are touched.
    Case(
        "min-confidence-above-1",
        augment_case(lambda e: e.augment("--target-count", "10", "--min-confidence", "5")),
        2,
        (r"--min-confidence=5 must be a probability in \[0, 1\]",),
    ),
    Case(
        "max-attempts-factor-negative",
        augment_case(lambda e: e.augment("--target-count", "10", "--max-attempts-factor", "-1")),
        2,
        (r"--max-attempts-factor=-1 must be a positive",),
    ),
    Case(
        "min-source-distance-negative",
        augment_case(lambda e: e.augment("--target-count", "10", "--min-source-distance", "-0.1")),
        2,
        (r"--min-source-distance=-0.1 must be >= 0",),
    ),
    Case(
        "workers-negative",
        augment_case(lambda e: e.augment("--target-count", "10", "--workers", "-2")),
        2,
        (r"--workers=-2 must be >= 0",),
    ),
    Case(
        "unknown-data-key",
        augment_case(lambda e: e.augment("--target-count", "10", data=tuple(e.data_args("data.colour=1")))),
        2,
        (r"bad override", r"data\.colour"),
    ),
    # Checkpoints whose metadata was damaged or forged.
    Case(
        "vaegan-metadata-not-json",
        augment_case(
            lambda e: e.augment(
                "--target-count",
                "10",
                "--checkpoint",
                str(
                    forged_safetensors(
                        e.tmp / "forged.safetensors", {"format": "fer-longtail-vaegan", "meta": "{not json"}
                    )
                ),
            )
        ),
        2,
        (r"forged\.safetensors: its 'meta' metadata is not valid JSON",),
    ),
    Case(
        "vaegan-metadata-no-class-names",
        augment_case(
            lambda e: e.augment(
                "--target-count",
                "10",
                "--checkpoint",
                str(
                    forged_safetensors(
                        e.tmp / "forged.safetensors",
                        {"meta": json.dumps({"format": "fer-longtail-vaegan", "architecture": {}, "image_size": 32})},
                    )
                ),
            )
        ),
        2,
        (r"forged\.safetensors: .*lacks \['class_names'\]",),
    ),
    Case(
        "vaegan-architecture-forged",
        augment_case(
            lambda e: e.augment(
                "--target-count",
                "10",
                "--checkpoint",
                str(
                    forged_safetensors(
                        e.tmp / "forged.safetensors",
                        {
                            "meta": json.dumps(
                                {
                                    "format": "fer-longtail-vaegan",
                                    "architecture": {"resolution": 32, "layers": 9},
                                    "image_size": 32,
                                    "class_names": list(RAFDB_CLASSES),
                                }
                            )
                        },
                    )
                ),
            )
        ),
        2,
        (r"forged\.safetensors: metadata is damaged.*architecture=",),
    ),
    # Output folders: never delete what the augmenter did not make; never write into the dataset.
    Case(
        "overwrite-foreign-folder",
        augment_case(_foreign_folder),
        2,
        (r"mine is not an augmentation folder", r"thesis\.tex", r"left untouched"),
        never_says=(r"--overwrite",),
        creates=("mine/.lock", "mine/judge"),
    ),
    Case(
        "overwrite-vaegan-run-folder",
        augment_case(_vaegan_run_folder),
        2,
        (r"run is not an augmentation folder", r"checkpoints"),
        never_says=(r"--overwrite",),
    ),
    Case(
        "out-inside-dataset",
        augment_case(_out_inside_dataset),
        2,
        (r"overlaps the real dataset folder",),
        creates=("dataset/train/generated",),
    ),
    Case(
        "lock-held-by-a-live-run",
        augment_case(_lock_held),
        2,
        (rf"gen is being written by another run: pid {os.getppid()}", r"scripts/augment\.py --out"),
        decodes=True,
    ),
    # Data: named files and lines, before decoding.
    Case(
        "missing-root",
        augment_case(lambda e: e.augment("--target-count", "10", data=tuple(folder_data_args(e, e.tmp / "nowhere")))),
        2,
        (r"data\.root=.*nowhere does not exist",),
    ),
    Case("bad-label-line", augment_case(_bad_label_line), 2, (r"list_patition_label\.txt:3: cannot parse",)),
    Case(
        "unknown-class-in-target-count",
        augment_case(lambda e: e.augment("--target-count", "Contempt=5", "--out", str(e.tmp / "gen"))),
        2,
        (r"unknown class 'Contempt'",),
        decodes=True,
        creates=("gen",),
    ),
    Case(
        "decompression-bomb",
        augment_case(_decompression_bomb),
        2,
        (r"bomb\.png: DecompressionBombError", r"data\.skip_unreadable=true"),
        creates=("gen",),
    ),
    # Generated sets the classifier reads.
    Case(
        "generated-symlink-to-test-image",
        (_generated_symlink),
        1,
        (r"manifest\.csv:3: path 'Fear/b\.png': .*b\.png is a symbolic link",),
        error=faces.DatasetError,
    ),
    Case(
        "generated-image-size-mismatch",
        (_generated_size),
        1,
        (r"holds 32px images", r"data\.image_size=64"),
        error=faces.DatasetError,
    ),
    # Evaluation.
    Case(
        "evaluate-missing-checkpoint",
        (_evaluate_missing),
        2,
        (r"checkpoint .*no/such/run not found",),
        error=SystemExit,
    ),
    Case(
        "evaluate-class-mismatch",
        (_evaluate_classes),
        1,
        (r"best\.safetensors was trained on classes \['cat', 'dog'\]", r"Surprise"),
        error=faces.CheckpointError,
        creates=("evaluation/metrics.json",),
    ),
    Case(
        "evaluate-forged-metadata",
        (_evaluate_forged),
        1,
        (r"ckpt\.safetensors: checkpoint meta lacks \['class_names'\]",),
        error=faces.CheckpointError,
    ),
]


def snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


CASES += SECOND_PROBE


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c.slow else c for c in CASES], ids=[c.id for c in CASES]
)
def test_bad_input(case: Case, env: Env, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    call = case.run(env)
    before = snapshot(env.tmp)
    message = ""
    try:
        rc = call()
        rc = rc if isinstance(rc, int) else 0
    except SystemExit as error:
        rc = error.code if isinstance(error.code, int) else 1
        assert isinstance(error, case.error)
    except Exception as error:  # noqa: BLE001  (API entry points raise; the type is checked)
        assert isinstance(error, case.error), f"{type(error).__name__}: {error}"
        rc, message = 1, f"{type(error).__name__}: {error}"
    captured = capsys.readouterr()
    message += captured.err + captured.out + caplog.text
    assert rc == case.rc, message
    for pattern in case.says:
        assert re.search(pattern, message), f"{pattern!r} not in: {message}"
    for pattern in case.never_says:
        assert not re.search(pattern, message), f"{pattern!r} in: {message}"
    assert "Traceback" not in message
    if not case.decodes:
        assert not list(env.cache.rglob("*.pt")), "failed only after decoding images"
    for rel in case.creates:
        assert not (env.tmp / rel).exists(), f"{rel} was created"
    for pattern in case.leaves:
        assert list(env.tmp.glob(pattern)), f"nothing matches {pattern}"
    after = snapshot(env.tmp)
    lost = [rel for rel, digest in before.items() if after.get(rel) != digest]
    assert not lost, f"changed or deleted: {lost}"


# ----- the validation leak, end to end ------------------------------------------------
def test_generated_set_from_another_split_seed_is_refused_before_training(env: Env, one_thread) -> None:
    """augment.py data.split_seed=1, then train_classifier.py balance=synthetic with the default split_seed=0:
    the set's sources include the classifier's validation images, so the run refuses it, naming the folder,
    one offending image and the split_seed to use, before a model is built."""
    out = env.tmp / "gen"
    assert (
        augment_main(
            env.augment("--target-count", "40", "--out", str(out), data=tuple(env.data_args("data.split_seed=1")))
        )
        == 0
    )
    settings = json.loads((out / "augment.json").read_text())
    assert settings["source_split"]["split_seed"] == 1 and len(settings["source_ids_sha256"]) == 64
    cfg = compose_config(
        "train_classifier", [*env.data_args(), *FAST, "balance=synthetic", f"balance.generated_dir={out}"]
    )
    run_dir = env.tmp / "run"
    with pytest.raises(faces.DatasetError) as caught:
        run_training(cfg, run_dir=run_dir)
    message = str(caught.value)
    assert str(out) in message and "data.split_seed=1" in message and "validation" in message
    offending = re.search(r"real image '([^']+)'", message).group(1)
    data = faces.load_faces(cfg.data, cache_dir=env.cache, splits=("train",))
    assert offending in data.train_val()[1].sample_ids  # really one of this run's validation images
    assert not (run_dir / "checkpoints").exists()
    # The same set with the split it was made from is accepted.
    faces.check_generated_sources(
        out,
        fit_ids=faces.load_faces(OmegaConf.merge(cfg.data, {"split_seed": 1}), cache_dir=env.cache, splits=("train",))
        .train_val()[0]
        .sample_ids,
    )


def test_a_stale_lock_of_a_killed_run_is_taken_over(env: Env) -> None:
    out = env.tmp / "gen"
    out.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (out / LOCK_FILE).write_text(
        json.dumps({"pid": int(dead), "host": __import__("socket").gethostname(), "token": "old"})
    )
    assert augment_main(env.augment("--target-count", "Fear=8", "--out", str(out))) == 0
    assert not (out / LOCK_FILE).exists()  # released at the end
    with (out / "manifest.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) > 0


LOCK_HOLDER = """
import sys, time
from faces.runkit.lock import folder_lock
with folder_lock(sys.argv[1], what="a test run"):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_one_writer_per_folder_and_a_killed_writers_lock_is_taken_over(tmp_path: Path) -> None:
    from faces.errors import FolderLockedError
    from faces.runkit.lock import folder_lock, lock_holder

    folder = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(
                FolderLockedError, match=rf"out is being written by another run: pid {holder.pid} on .* \(a test run: "
            ),
            folder_lock(folder, what="a second run"),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(folder) is None  # its pid is gone: the lock is stale
    with folder_lock(folder, what="a second run"):
        assert lock_holder(folder)["pid"] == os.getpid()
        with folder_lock(folder, what="the same run, one level down"):  # re-entrant within a process
            pass
        assert (folder / LOCK_FILE).is_file()
    assert not (folder / LOCK_FILE).exists()


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_ends_every_rank_of_a_ddp_run(env: Env) -> None:
    """Issue 21: SIGTERM to rank 0 of `train_classifier.py trainer=ddp_cpu trainer.devices=2` ends both ranks within
    seconds (exit 143, the folder marked interrupted), instead of leaving them hung in a collective."""
    run = env.tmp / "run"
    command = [
        sys.executable,
        str(REPO / "scripts" / "train_classifier.py"),
        *_classifier_run(env),
        "trainer=ddp_cpu",
        "trainer.devices=2",
    ]
    variables = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    with (env.tmp / "ddp.log").open("w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=variables, cwd=REPO)
        try:
            deadline = time.monotonic() + 300
            while (
                not ((run / "tensorboard").is_dir() and _children(process.pid))
                and process.poll() is None
                and time.monotonic() < deadline
            ):
                time.sleep(0.2)
            ranks = _children(process.pid)
            assert ranks, (env.tmp / "ddp.log").read_text()
            time.sleep(2)  # both ranks in their training loop
            process.send_signal(signal.SIGTERM)
            rc = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    output = (env.tmp / "ddp.log").read_text()
    assert rc == 143, output
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in ranks if _alive(pid)], "a rank outlived rank 0"
    assert (
        "INTERRUPTED by SIGTERM" in output
        and (run / "interrupted.json").is_file()
        and not (run / "metrics.json").exists()
    )
