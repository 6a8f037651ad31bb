"""Predict expressions on photos, folders and videos: find and align each face like the training data
(faces/align.py), classify it (optionally with flip test-time augmentation), one CSV row per face.

Bad input never stops the batch: an unreadable image or video gets its own row (status "unreadable: ..."),
an image without a face a row with status "no face". The CSV is written atomically at the end (a temp file
beside it, then one rename), so an earlier predictions file is replaced only by a complete one.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps
from torch import nn
from tqdm import tqdm

from faces.align import FaceAligner, template_for
from faces.io import write_png_atomic, write_text_atomic
from faces.listing import IMAGE_SUFFIXES

from .predict import predict_proba, predict_proba_flip

log = logging.getLogger("predict")

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
EXPORTED_SUFFIXES = frozenset({".onnx", ".pt", ".ts", ".torchscript"})
FIXED_COLUMNS = ("file", "frame", "face", "x", "y", "width", "height", "eyes_found", "status", "class", "confidence")
STATUS_OK, STATUS_NO_FACE = "ok", "no face"


class PredictInputError(ValueError):
    """An input path that cannot be predicted on at all (missing, an empty folder, an exported model)."""


@dataclass(frozen=True)
class Source:
    path: Path  # as the user named it (a folder's files joined onto it): the CSV's `file`
    name: str  # relative to the folder it came from, or the file name: the annotation's name
    video: bool


def check_checkpoint_argument(path: Path | str) -> None:
    """An exported model is not a checkpoint: say so before anything loads."""
    path = Path(path)
    if path.suffix.lower() in EXPORTED_SUFFIXES:
        raise PredictInputError(
            f"{path} is an exported model ({path.suffix}); prediction and --tta need the classifier checkpoint it was "
            "exported from (a run folder or its checkpoints/best.safetensors). An exported model runs without this "
            "code: see README, 'Predict and export'"
        )


def list_sources(inputs: list[Path | str]) -> list[Source]:
    """Files as given (any suffix: an unreadable one gets its row later), folders searched recursively for
    images and videos; a missing path or a folder with neither fails here, naming it."""
    sources: list[Source] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
            )
            if not found:
                raise PredictInputError(
                    f"{path} holds no images or videos (searched recursively for {sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES)})"
                )
            sources += [
                Source(path=p, name=p.relative_to(path).as_posix(), video=p.suffix.lower() in VIDEO_SUFFIXES)
                for p in found
            ]
        elif path.is_file():
            sources.append(Source(path=path, name=path.name, video=path.suffix.lower() in VIDEO_SUFFIXES))
        else:
            raise PredictInputError(f"input {raw} does not exist")
    return sources


def read_photo(path: Path) -> np.ndarray:
    """RGB uint8 [H, W, 3], EXIF orientation applied (phone photos are stored sideways)."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def video_frames(path: Path, *, every: int) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, RGB frame) for every `every`-th frame, via OpenCV; an unreadable file raises."""
    import cv2  # the `deploy` extra; faces.align already said how to install it if missing

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError("OpenCV cannot open it as a video")
        index, yielded = 0, 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                yielded += 1
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
        if yielded == 0:
            raise ValueError("no frame could be decoded")
    finally:
        capture.release()


class PhotoPredictor:
    """Faces -> aligned crops -> class probabilities, for one loaded classifier."""

    def __init__(
        self,
        *,
        model: nn.Module,
        meta: dict[str, Any],
        aligned: bool,
        tta: bool,
        device: str | torch.device = "cpu",
        min_face: int = 40,
    ) -> None:
        self.model, self.meta, self.aligned, self.tta, self.device = model, meta, aligned, tta, device
        self.size = int(meta["image_size"])
        self.class_names = list(meta["class_names"])
        self.aligner = (
            None
            if aligned
            else FaceAligner(size=self.size, template=template_for(meta.get("dataset")), min_face=min_face)
        )

    def probabilities(self, crops: list[np.ndarray]) -> torch.Tensor:
        images = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
        predict = predict_proba_flip if self.tta else predict_proba
        return predict(self.model, images, meta=self.meta, device=self.device)

    def rows_for_image(self, image: np.ndarray, *, name: str, frame: int | str) -> tuple[list[dict[str, Any]], list]:
        """CSV rows for one picture, plus (box, label) pairs for the annotation."""
        if self.aligner is None:  # an aligned crop, decoded as in training (faces/cache.py): centre square, resized
            h, w = image.shape[:2]
            side = min(h, w)
            box = ((w - side) // 2, (h - side) // 2, side, side)
            square = Image.fromarray(image[box[1] : box[1] + side, box[0] : box[0] + side])
            crop = np.asarray(square.resize((self.size, self.size), Image.Resampling.BICUBIC, reducing_gap=3.0))
            faces = [(box, crop, "")]
        else:
            faces = [(f.box, f.crop, f.eyes_found) for f in self.aligner(image)]
        if not faces:
            return [self.row(name=name, frame=frame, status=STATUS_NO_FACE)], []
        probs = self.probabilities([crop for _, crop, _ in faces])
        rows, marks = [], []
        for number, ((box, _, eyes), p) in enumerate(zip(faces, probs)):
            best = int(p.argmax())
            label = self.class_names[best]
            rows.append(
                self.row(
                    name=name, frame=frame, face=number, box=box, eyes=eyes, status=STATUS_OK, label=label, probs=p
                )
            )
            marks.append((box, f"{label} {float(p[best]):.2f}"))
        return rows, marks

    def row(
        self,
        *,
        name: str,
        frame: int | str,
        status: str,
        face: int | str = "",
        box=("", "", "", ""),
        eyes: bool | str = "",
        label: str = "",
        probs: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        row = dict(zip(FIXED_COLUMNS, (name, frame, face, *box, eyes, status, label, "")))
        for index, class_name in enumerate(self.class_names):
            row[f"p_{class_name}"] = "" if probs is None else f"{float(probs[index]):.6f}"
        if probs is not None:
            row["confidence"] = f"{float(probs.max()):.6f}"
        return row

    def columns(self) -> list[str]:
        return [*FIXED_COLUMNS, *(f"p_{c}" for c in self.class_names)]


def annotate(image: np.ndarray, marks: list) -> np.ndarray:
    """A copy of `image` with each face's box and 'label confidence' drawn."""
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    width = max(2, round(max(picture.size) / 300))
    for (x, y, w, h), text in marks:
        draw.rectangle((x, y, x + w, y + h), outline=(255, 40, 40), width=width)
        left, top, right, bottom = draw.textbbox((x, y), text)
        lift = bottom - top + 4
        ty = y - lift if y >= lift else y + h
        draw.rectangle((x, ty, x + right - left + 4, ty + lift), fill=(255, 40, 40))
        draw.text((x + 2, ty + 1), text, fill=(255, 255, 255))
    return np.asarray(picture)


def predict_sources(
    sources: list[Source],
    *,
    predictor: PhotoPredictor,
    every: int = 1,
    annotate_dir: Path | None = None,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """All rows for all sources; an unreadable one gets a row naming the error and the rest go on.
    `progress`: a bar over the files; None shows it only on a terminal (tqdm's disable=None)."""
    rows: list[dict[str, Any]] = []
    for source in tqdm(
        sources, desc="predict", unit="file", dynamic_ncols=True, disable=None if progress is None else not progress
    ):
        try:
            pictures = video_frames(source.path, every=every) if source.video else iter([("", read_photo(source.path))])
            for frame, image in pictures:
                new_rows, marks = predictor.rows_for_image(image, name=source.path.as_posix(), frame=frame)
                rows += new_rows
                if annotate_dir is not None:
                    stem = Path(source.name).with_suffix("").as_posix()
                    target = annotate_dir / (f"{stem}_frame{frame:06d}.png" if source.video else f"{stem}.png")
                    write_png_atomic(target, annotate(image, marks))
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            log.warning("%s: unreadable (%s)", source.path, error)
            rows.append(predictor.row(name=source.path.as_posix(), frame="", status=f"unreadable: {error}"))
    return rows


def write_predictions(path: Path | str, rows: list[dict[str, Any]], *, columns: list[str]) -> Path:
    """The CSV, atomically: a temp file beside `path`, then one rename."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())
