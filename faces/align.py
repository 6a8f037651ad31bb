"""Find faces in photos and align them like the training data: OpenCV's bundled Haar cascades
(offline; opencv-python-headless 4.x ships them in cv2/data, 5.x does not), eyes levelled by one
similarity transform onto the eye positions of the dataset the classifier learned from.

A face whose eyes the eye cascade cannot find (closed eyes, glasses, small faces) is aligned on eye
positions estimated from its box, so every crop has the same scale; `FaceCrop.eyes_found` says which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Eye centres as fractions of the crop side: (left x, right x, y), left/right in image coordinates.
# RAF-DB's aligned 100 px crops (and FER sets cropped like them) frame the face tightly with the eye
# line a little above the middle: these are measured by eye on the aligned images, not published.
# The embedded synthetic faces: faces/synthetic_render.py puts the head centre at (0.5, 0.54) with a
# mean half-width of 0.345 and the eyes at +-0.38 half-widths, 0.05 half-widths above the centre.
EYE_TEMPLATES: dict[str, tuple[float, float, float]] = {
    "rafdb": (0.34, 0.66, 0.42),
    "synthetic": (0.369, 0.631, 0.523),
}
# Where the eyes sit inside a box of OpenCV's frontal-face cascade (fractions of its width/height).
BOX_EYES = (0.30, 0.70, 0.38)
# Eye pairs tilted more than this are taken as a false eye detection, not as a tilted head.
MAX_EYE_TILT_DEGREES = 30.0


class DetectorUnavailableError(RuntimeError):
    """OpenCV or its bundled cascades are missing."""


def template_for(dataset: str | None) -> tuple[float, float, float]:
    """Eye template of a checkpoint's `dataset` (meta["dataset"]): synthetic-* sets use their renderer's
    layout, everything else (rafdb, folder sets) RAF-DB's aligned crops."""
    return EYE_TEMPLATES["synthetic" if str(dataset or "").startswith("synthetic") else "rafdb"]


@dataclass(frozen=True)
class FaceCrop:
    box: tuple[int, int, int, int]  # x, y, width, height in the source image
    eyes: tuple[tuple[float, float], tuple[float, float]]  # (left, right) eye centres in the source image
    eyes_found: bool  # False: eyes estimated from the box
    crop: np.ndarray  # uint8 [size, size, 3] RGB, aligned


def _cv2():
    try:
        import cv2
    except ImportError as error:  # the `deploy` extra
        raise DetectorUnavailableError(
            "face detection needs OpenCV 4.x: pip install 'opencv-python-headless>=4.8,<5' (or the package's "
            "`deploy` extra); already-aligned crops work without it (--aligned)"
        ) from error
    return cv2


def _cascade(cv2, name: str):
    path = Path(cv2.data.haarcascades) / name if hasattr(cv2, "data") else None
    if path is None or not path.is_file():
        raise DetectorUnavailableError(
            f"OpenCV {cv2.__version__} has no bundled cascade {name} (opencv-python-headless 5.x dropped cv2/data); "
            "install opencv-python-headless<5"
        )
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise DetectorUnavailableError(f"OpenCV could not load {path}")
    return cascade


def align_on_eyes(
    image: np.ndarray,
    *,
    eyes: tuple[tuple[float, float], tuple[float, float]],
    size: int,
    template: tuple[float, float, float],
) -> np.ndarray:
    """The `size` x `size` crop of `image` (uint8 RGB) that puts the eyes on the template: rotation,
    scale and shift in one warp, borders replicated."""
    cv2 = _cv2()
    (lx, ly), (rx, ry) = eyes
    tl, tr, ty = template
    angle = math.atan2(ry - ly, rx - lx)
    scale = (tr - tl) * size / max(math.hypot(rx - lx, ry - ly), 1e-6)
    cos, sin = scale * math.cos(-angle), scale * math.sin(-angle)
    cx, cy = (lx + rx) / 2, (ly + ry) / 2
    # Rotate by -angle and scale about the eyes' midpoint, then move it to the template's midpoint.
    matrix = np.array([[cos, -sin, 0.0], [sin, cos, 0.0]])
    matrix[:, 2] = np.array([(tl + tr) / 2 * size, ty * size]) - matrix[:, :2] @ np.array([cx, cy])
    return cv2.warpAffine(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


class FaceAligner:
    """Detect frontal faces in an RGB uint8 image and return aligned crops, largest face first."""

    def __init__(
        self,
        *,
        size: int,
        template: tuple[float, float, float],
        min_face: int = 40,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
    ) -> None:
        cv2 = _cv2()
        self.size, self.template = int(size), template
        self.min_face, self.scale_factor, self.min_neighbors = int(min_face), float(scale_factor), int(min_neighbors)
        self._faces = _cascade(cv2, "haarcascade_frontalface_default.xml")
        self._eyes = _cascade(cv2, "haarcascade_eye.xml")

    def _find_eyes(self, gray: np.ndarray, box: tuple[int, int, int, int]):
        """Two eyes in the upper half of the box, one in each half, level within MAX_EYE_TILT_DEGREES; else None."""
        x, y, w, h = box
        upper = gray[y : y + h // 2 + h // 10, x : x + w]
        found = self._eyes.detectMultiScale(upper, scaleFactor=1.1, minNeighbors=5, minSize=(max(w // 10, 5),) * 2)
        centres = [(float(x + ex + ew / 2), float(y + ey + eh / 2), int(ew * eh)) for ex, ey, ew, eh in found]
        left = [c for c in centres if c[0] < x + w / 2]
        right = [c for c in centres if c[0] >= x + w / 2]
        if not left or not right:
            return None
        lx, ly, _ = max(left, key=lambda c: c[2])
        rx, ry, _ = max(right, key=lambda c: c[2])
        if abs(math.degrees(math.atan2(ry - ly, rx - lx))) > MAX_EYE_TILT_DEGREES or rx - lx < w / 5:
            return None
        return (lx, ly), (rx, ry)

    def __call__(self, image: np.ndarray) -> list[FaceCrop]:
        cv2 = _cv2()
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        boxes = self._faces.detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(self.min_face, self.min_face)
        )
        faces = []
        for bx, by, bw, bh in sorted((tuple(int(v) for v in b) for b in boxes), key=lambda b: -b[2] * b[3]):
            box = (bx, by, bw, bh)
            eyes = self._find_eyes(gray, box)
            found = eyes is not None
            if eyes is None:
                el, er, ey = BOX_EYES
                eyes = ((bx + el * bw, by + ey * bh), (bx + er * bw, by + ey * bh))
            crop = align_on_eyes(image, eyes=eyes, size=self.size, template=self.template)
            faces.append(FaceCrop(box=box, eyes=eyes, eyes_found=found, crop=crop))
        return faces
