"""Deterministic procedural renderer of frontal cartoon faces with seven basic expressions.

This is the embedded stand-in for RAF-DB (whose images need a licence): it lets the whole
pipeline (data layer, VAE-GAN, classifier, long-tail experiments) run end to end on any
machine. For the stand-in to be a useful proxy the recognition task must be *about facial
geometry*, not about shortcuts, so:

* Each expression is a prototype vector of geometric parameters named after the Facial
  Action Coding System (FACS) action units that move them (brow raise, brow lowerer, lid
  tightener, lip corner puller, ...). Classes differ only in these parameters.
* Every image has its own expression *intensity*: the parameters are interpolated between
  the Neutral face and the prototype, and then jittered. Subtle faces of different classes
  look alike and the prototypes overlap where real expressions do (Fear vs Surprise,
  Sadness vs Neutral vs Anger), so the task is learnable but not trivial.
* Identity and imaging nuisances (face shape and size, position, in-plane rotation, skin
  tone, hair, background, lighting, noise, blur) are drawn from distributions that never
  look at the label, so none of them can act as a shortcut.

All randomness comes from the caller's ``numpy.random.Generator``: the same generator state
gives a byte-identical image. Every call makes the same number of draws in the same order
whatever the label, so nuisances are statistically independent of the label.

Coordinates: shapes are built in *face units* (the head's half-width is 1, x to the right,
y downwards, origin at the head centre), then mapped by one similarity transform (scale,
in-plane rotation, translation) onto a supersampled canvas. Drawing everything as
polygons in face units makes rotation exact and anti-aliasing free: the canvas is drawn at
``SUPERSAMPLE`` times the output size and box-reduced (area averaging).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["EXPRESSIONS", "MIN_SIZE", "MAX_SIZE", "render_face"]

# RAF-DB basic-set label order: RAF-DB label 1..7 -> index 0..6.
EXPRESSIONS: tuple[str, ...] = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
NEUTRAL_INDEX: Final[int] = EXPRESSIONS.index("Neutral")

MIN_SIZE: Final[int] = 32
MAX_SIZE: Final[int] = 128
# Supersampling factor for anti-aliasing: 4x (16 canvas pixels averaged per output pixel)
# gives smooth 1-2 px features (lid lines, nostrils) and still keeps the 100 px preset
# under ~4 ms per image, because PIL polygon fills cost little next to the fixed overhead.
SUPERSAMPLE: Final[int] = 4

# ---------------------------------------------------------------------------------------
# Expression parameters (face units unless stated). Each maps to FACS action units:
#   brow_raise        AU1+AU2 (+) / AU4 (-): vertical shift of both brows
#   brow_inner_raise  AU1 (+) vs AU4 (-): inner brow end height relative to the outer end
#   brow_knit         AU4: inner brow ends pulled towards the midline (glabella furrows)
#   eye_open          AU5 (>1) / AU7 & lid droop (<1): scale of the upper-lid aperture
#   lower_lid_raise   AU6/AU7: fraction by which the lower lid rises (cheek raise)
#   upper_lid_droop   AU43-like sag of the outer upper lid (sadness)
#   mouth_open        AU25/26/27: jaw drop, 1 = wide open
#   mouth_width       AU20 stretch / AU12 pull (>1), AU18 pucker (<1): mouth width factor
#   mouth_roundness   AU27 'O' mouth: 0 = parabolic lip lines, 1 = elliptical opening
#   mouth_boxiness    AU20/AU10 tension: flat, rectangular opening
#   lip_corner_pull   AU12 (+, corners up) vs AU15 (-, corners down)
#   upper_lip_raise   AU10: upper lip lifted off the lower lip
#   lip_press         AU23/AU24: 1 = lips pressed into thin lines
#   nose_wrinkle      AU9: wrinkles across the nose bridge, flared nostrils
#   nasolabial_fold   AU6/AU9/AU10: deepened fold from nose wing to mouth corner
#   teeth_show        >0.5 draws teeth when the mouth is open
# ---------------------------------------------------------------------------------------
PARAM_NAMES: tuple[str, ...] = (
    "brow_raise",
    "brow_inner_raise",
    "brow_knit",
    "eye_open",
    "lower_lid_raise",
    "upper_lid_droop",
    "mouth_open",
    "mouth_width",
    "mouth_roundness",
    "mouth_boxiness",
    "lip_corner_pull",
    "upper_lip_raise",
    "lip_press",
    "nose_wrinkle",
    "nasolabial_fold",
    "teeth_show",
)
_P: Final[dict[str, int]] = {name: i for i, name in enumerate(PARAM_NAMES)}

NEUTRAL_PARAMS: Final[dict[str, float]] = {name: 0.0 for name in PARAM_NAMES} | {"eye_open": 1.0, "mouth_width": 1.0}


def _proto(**changes: float) -> np.ndarray:
    """A parameter vector: the Neutral face with `changes` applied."""
    vec = np.array([NEUTRAL_PARAMS[name] for name in PARAM_NAMES], dtype=np.float64)
    for name, value in changes.items():
        vec[_P[name]] = value
    return vec


# Per-class prototype variants as (probability, parameter vector). Two classes have two
# common real-world variants (closed vs open smile; pressed-lip vs bared-teeth anger).
PROTOTYPES: Final[tuple[tuple[tuple[float, np.ndarray], ...], ...]] = (
    # Surprise: brows high and arched, eyes wide (white above the iris), round open jaw.
    (
        (
            1.0,
            _proto(
                brow_raise=0.21,
                brow_inner_raise=0.02,
                eye_open=1.6,
                lower_lid_raise=-0.15,
                mouth_open=1.0,
                mouth_width=0.68,
                mouth_roundness=1.0,
                teeth_show=0.0,
            ),
        ),
    ),
    # Fear: brows high *and* inner ends raised and knit, eyes wide, mouth stretched wide.
    (
        (
            1.0,
            _proto(
                brow_raise=0.12,
                brow_inner_raise=0.10,
                brow_knit=0.045,
                eye_open=1.5,
                lower_lid_raise=0.15,
                mouth_open=0.45,
                mouth_width=1.3,
                mouth_boxiness=0.8,
                lip_corner_pull=-0.07,
                lip_press=0.3,
                teeth_show=0.8,
            ),
        ),
    ),
    # Disgust: nose wrinkle, raised upper lip, lowered brows, narrowed eyes, corners down.
    (
        (
            1.0,
            _proto(
                brow_raise=-0.07,
                brow_inner_raise=-0.05,
                brow_knit=0.04,
                eye_open=0.68,
                lower_lid_raise=0.45,
                mouth_open=0.1,
                mouth_width=0.95,
                mouth_boxiness=0.3,
                lip_corner_pull=-0.10,
                upper_lip_raise=0.11,
                nose_wrinkle=1.0,
                nasolabial_fold=0.9,
                teeth_show=0.8,
            ),
        ),
    ),
    # Happiness: corners strongly up, cheeks raise the lower lids; closed or open with teeth.
    (
        (
            0.45,
            _proto(
                eye_open=0.85,
                lower_lid_raise=0.55,
                mouth_width=1.25,
                lip_corner_pull=0.24,
                lip_press=0.3,
                nasolabial_fold=0.75,
            ),
        ),
        (
            0.55,
            _proto(
                eye_open=0.85,
                lower_lid_raise=0.55,
                mouth_open=0.35,
                mouth_width=1.25,
                lip_corner_pull=0.22,
                lip_press=0.3,
                nasolabial_fold=0.8,
                teeth_show=1.0,
            ),
        ),
    ),
    # Sadness: inner brow ends raised, outer upper lids drooping, corners down.
    (
        (
            1.0,
            _proto(
                brow_raise=0.03,
                brow_inner_raise=0.14,
                brow_knit=0.03,
                eye_open=0.72,
                upper_lid_droop=0.6,
                mouth_width=0.95,
                lip_corner_pull=-0.15,
                lip_press=0.15,
            ),
        ),
    ),
    # Anger: brows lowered into a V, narrowed eyes; pressed thin lips or a bared, tense mouth.
    (
        (
            0.65,
            _proto(
                brow_raise=-0.10,
                brow_inner_raise=-0.16,
                brow_knit=0.08,
                eye_open=0.62,
                lower_lid_raise=0.4,
                mouth_width=0.88,
                lip_corner_pull=-0.04,
                lip_press=1.0,
            ),
        ),
        (
            0.35,
            _proto(
                brow_raise=-0.10,
                brow_inner_raise=-0.16,
                brow_knit=0.08,
                eye_open=0.62,
                lower_lid_raise=0.4,
                mouth_open=0.35,
                mouth_width=1.1,
                mouth_boxiness=1.0,
                lip_corner_pull=-0.04,
                lip_press=0.3,
                teeth_show=1.0,
            ),
        ),
    ),
    # Neutral: everything at rest.
    ((1.0, _proto()),),
)

# Per-parameter jitter (standard deviation) added after intensity interpolation, applied to
# every class alike, so that class boundaries are soft.
PARAM_JITTER: Final[np.ndarray] = np.array(
    [
        0.045,
        0.035,
        0.02,
        0.15,
        0.12,
        0.12,
        0.06,
        0.09,
        0.15,
        0.15,
        0.045,
        0.02,
        0.15,
        0.15,
        0.15,
        0.2,
    ]
)
# Physically meaningful bounds for each parameter after jitter.
PARAM_LOW: Final[np.ndarray] = np.array(
    [
        -0.16,
        -0.22,
        0.0,
        0.4,
        -0.3,
        0.0,
        0.0,
        0.55,
        0.0,
        0.0,
        -0.25,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ]
)
PARAM_HIGH: Final[np.ndarray] = np.array(
    [
        0.26,
        0.2,
        0.11,
        1.9,
        0.8,
        1.0,
        1.0,
        1.45,
        1.0,
        1.0,
        0.3,
        0.16,
        1.0,
        1.0,
        1.0,
        1.0,
    ]
)

# Expression intensity ~ MIN + (1 - MIN) * Beta(a, b): a sizeable share of faces is subtle,
# which is what makes the stand-in hard in the way in-the-wild FER is hard.
INTENSITY_MIN: Final[float] = 0.25
INTENSITY_BETA: Final[tuple[float, float]] = (1.3, 1.7)
# Neutral faces carry a faint trace of another expression (intensity in [0, this)).
NEUTRAL_TRACE_MAX: Final[float] = 0.2
# Compound expressions: with COMPOUND_PROBABILITY a face's target is its prototype blended
# with a partner class's prototype (weight up to COMPOUND_MAX_WEIGHT). The partners are the
# confusions seen on RAF-DB: Fear<->Surprise, Disgust<->Anger, Sadness->Anger,
# Happiness->Surprise ('happily surprised'). Neutral has no partner (see NEUTRAL_TRACE_MAX).
COMPOUND_PARTNER: Final[tuple[int, ...]] = (1, 0, 5, 0, 5, 2, 6)
COMPOUND_PROBABILITY: Final[float] = 0.5
COMPOUND_MAX_WEIGHT: Final[float] = 0.45

# Realistic skin tones from very light to very dark (sRGB), sampled by interpolation.
SKIN_TONES: Final[np.ndarray] = np.array(
    [
        (250, 220, 196),
        (241, 194, 160),
        (224, 172, 137),
        (198, 140, 102),
        (160, 105, 72),
        (120, 76, 50),
        (86, 54, 38),
    ],
    dtype=np.float64,
)
HAIR_COLOURS: Final[np.ndarray] = np.array(
    [
        (22, 18, 16),
        (45, 32, 24),
        (80, 55, 35),
        (120, 80, 45),
        (150, 70, 35),
        (200, 165, 105),
        (160, 155, 150),
        (60, 45, 40),
    ],
    dtype=np.float64,
)
IRIS_COLOURS: Final[np.ndarray] = np.array(
    [
        (70, 45, 25),
        (95, 65, 35),
        (55, 85, 120),
        (75, 100, 70),
        (110, 90, 55),
        (40, 30, 25),
    ],
    dtype=np.float64,
)
MOUTH_INTERIOR: Final[tuple[int, int, int]] = (62, 18, 24)
TEETH_COLOUR: Final[np.ndarray] = np.array((238, 232, 216), dtype=np.float64)
SCLERA_COLOUR: Final[np.ndarray] = np.array((240, 238, 232), dtype=np.float64)

# Feature layout in face units (head half-width = 1).
EYE_Y: Final[float] = -0.05  # eye line sits near the head's vertical middle
EYE_DX: Final[float] = 0.38  # eye centre distance from the midline
EYE_HALF_WIDTH: Final[float] = 0.2
UPPER_LID_HEIGHT: Final[float] = 0.078
LOWER_LID_HEIGHT: Final[float] = 0.058
IRIS_RADIUS: Final[float] = 0.075
BROW_GAP: Final[float] = 0.25  # brow centreline above the eye centre at rest
NOSE_TIP_Y: Final[float] = 0.36
MOUTH_Y: Final[float] = 0.68
MOUTH_HALF_WIDTH: Final[float] = 0.26
MOUTH_MAX_GAP: Final[float] = 0.30  # lip separation at mouth_open = 1

Colour = tuple[int, int, int]


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------
def _rgb(colour: np.ndarray) -> Colour:
    """Round a float colour to an 8-bit RGB tuple for PIL."""
    c = np.clip(np.rint(colour), 0, 255).astype(int)
    return int(c[0]), int(c[1]), int(c[2])


def _blend(*, base: np.ndarray, ink: np.ndarray, alpha: float) -> Colour:
    """Colour of `ink` laid over `base` with opacity `alpha`; PIL has no alpha on RGB draws."""
    return _rgb(base * (1.0 - alpha) + ink * alpha)


def _ramp(*, value: float, start: float, full: float) -> float:
    """0 below `start`, 1 above `full`, linear between: wrinkle/crease opacity, so that a
    fold fades in with the muscle action instead of popping in (a hard, easy cue)."""
    return float(np.clip((value - start) / (full - start), 0.0, 1.0))


def _palette_sample(*, palette: np.ndarray, position: float) -> np.ndarray:
    """Linearly interpolate a colour palette at `position` in [0, 1]."""
    scaled = position * (len(palette) - 1)
    i = min(int(scaled), len(palette) - 2)
    frac = scaled - i
    return palette[i] * (1.0 - frac) + palette[i + 1] * frac


def _ellipse_points(*, cx: float, cy: float, rx: float, ry: float, n: int = 28) -> np.ndarray:
    """Polygon approximation of an axis-aligned ellipse (face units)."""
    phi = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(phi), cy + ry * np.sin(phi)], axis=1)


def _profile(*, t: np.ndarray, roundness: float = 0.0, boxiness: float = 0.0) -> np.ndarray:
    """Opening profile across a mouth or eye: 1 at the centre, 0 at the corners.

    roundness -> elliptical (an 'O'), boxiness -> flat top (a tense, rectangular opening).
    """
    q = 2.0 + 4.0 * boxiness
    e = 1.0 - 0.5 * max(roundness, boxiness)
    return np.power(np.clip(1.0 - np.abs(t) ** q, 0.0, 1.0), e)


def _bezier(*, p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float], n: int = 10) -> np.ndarray:
    """Points on a quadratic Bezier curve, for folds and creases."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    a, b, c = np.asarray(p0), np.asarray(p1), np.asarray(p2)
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * b + t**2 * c


class _Canvas:
    """A supersampled PIL canvas that accepts shapes in face units.

    Holding the face->canvas similarity transform in one place is what lets the whole face
    (and only the face, not the background) rotate exactly by an arbitrary angle.
    """

    def __init__(self, *, image: Image.Image, centre: tuple[float, float], scale: float, angle: float) -> None:
        self.image = image
        self.draw = ImageDraw.Draw(image)
        self.scale = scale
        c, s = math.cos(angle), math.sin(angle)
        self._linear = np.array([[c, -s], [s, c]]) * scale
        self._offset = np.asarray(centre, dtype=np.float64)

    def to_canvas(self, points: np.ndarray) -> list[float]:
        """Map (N, 2) face-unit points to a flat [x0, y0, x1, y1, ...] canvas list."""
        return (points @ self._linear.T + self._offset).ravel().tolist()

    def polygon(self, *, points: np.ndarray, fill: Colour) -> None:
        self.draw.polygon(self.to_canvas(points), fill=fill)

    def line(self, *, points: np.ndarray, fill: Colour, width: float) -> None:
        self.draw.line(self.to_canvas(points), fill=fill, width=max(1, int(round(width * self.scale))), joint="curve")

    def disc(self, *, cx: float, cy: float, radius: float, fill: Colour) -> None:
        """A circle (rotation-invariant, so PIL's ellipse primitive is exact)."""
        x, y = self.to_canvas(np.array([[cx, cy]]))
        r = radius * self.scale
        self.draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)


# ---------------------------------------------------------------------------------------
# Expression sampling
# ---------------------------------------------------------------------------------------
def _pick_variant(*, label: int, pick: float) -> np.ndarray:
    """The prototype variant of class `label` selected by a uniform draw `pick` in [0, 1)."""
    cumulative = 0.0
    for probability, vector in PROTOTYPES[label]:
        cumulative += probability
        if pick < cumulative:
            return vector
    return PROTOTYPES[label][-1][1]


def _sample_expression(*, label: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Return (parameter vector, intensity) for one face of class `label`.

    Parameters = Neutral + intensity * (target - Neutral) + jitter, where the target is the
    class prototype, sometimes blended with a compound partner (RAF-DB's own annotators
    label many faces as compound expressions; the basic label is the dominant one).
    Neutral faces carry a faint trace (intensity < NEUTRAL_TRACE_MAX) of a random other
    expression, as real resting faces do, so subtle expressions and Neutral overlap.
    The number of draws is the same for every label, so the nuisance stream is unaffected.
    """
    draws = rng.random(5)
    jitter = rng.standard_normal(len(PARAM_NAMES)) * PARAM_JITTER
    neutral = PROTOTYPES[NEUTRAL_INDEX][0][1]
    rest_intensity = float(rng.beta(*INTENSITY_BETA))  # drawn for every label (fixed draw count)
    if label == NEUTRAL_INDEX:
        trace_label = int(draws[0] * (len(EXPRESSIONS) - 1))  # any class except Neutral (last)
        target = _pick_variant(label=trace_label, pick=float(draws[1]))
        intensity = NEUTRAL_TRACE_MAX * float(draws[2])
    else:
        target = _pick_variant(label=label, pick=float(draws[0]))
        partner = COMPOUND_PARTNER[label]
        if draws[3] < COMPOUND_PROBABILITY:
            weight = COMPOUND_MAX_WEIGHT * float(draws[4])
            target = (1.0 - weight) * target + weight * _pick_variant(label=partner, pick=float(draws[1]))
        intensity = INTENSITY_MIN + (1.0 - INTENSITY_MIN) * rest_intensity
    params = neutral + intensity * (target - neutral) + jitter
    return np.clip(params, PARAM_LOW, PARAM_HIGH), intensity


# ---------------------------------------------------------------------------------------
# Face parts (each draws in face units on a _Canvas)
# ---------------------------------------------------------------------------------------
def _draw_eye(
    *,
    canvas: _Canvas,
    side: int,
    params: np.ndarray,
    skin: np.ndarray,
    iris: np.ndarray,
    eye_scale: float,
    canthal_tilt: float,
    gaze: tuple[float, float],
    light_x: float,
) -> None:
    """One eye: sclera, iris, pupil, catch-light, then skin lids drawn over the ball.

    Drawing the lids *over* a whole iris (instead of clipping) is what makes wide eyes show
    white above the iris and narrowed eyes cut the iris off, as in real faces.
    """
    cx, cy = side * EYE_DX, EYE_Y
    ew = EYE_HALF_WIDTH * eye_scale
    t = np.linspace(-1.0, 1.0, 15)
    outward = np.clip(t * side, 0.0, 1.0)  # 0 at the inner half, 1 at the outer corner
    prof = _profile(t=t) ** 0.8
    h_up = UPPER_LID_HEIGHT * eye_scale * params[_P["eye_open"]]
    h_low = LOWER_LID_HEIGHT * eye_scale
    tilt = -canthal_tilt * t * side * ew  # outer corner up for positive tilt
    upper = cy + tilt - h_up * prof + params[_P["upper_lid_droop"]] * h_up * 0.75 * outward**1.5 * prof
    lower = cy + tilt + h_low * prof * (1.0 - params[_P["lower_lid_raise"]])
    lower = np.maximum(lower, upper + 0.006)
    xs = cx + t * ew
    upper_pts = np.stack([xs, upper], axis=1)
    lower_pts = np.stack([xs, lower], axis=1)

    canvas.polygon(points=np.concatenate([upper_pts, lower_pts[::-1]]), fill=_rgb(SCLERA_COLOUR))
    r = IRIS_RADIUS * eye_scale
    ix, iy = cx + gaze[0] * ew * 0.3, cy + 0.004 + gaze[1] * 0.02
    canvas.disc(cx=ix, cy=iy, radius=r, fill=_rgb(iris))
    canvas.disc(cx=ix, cy=iy, radius=r * 0.45, fill=(12, 10, 10))
    canvas.disc(cx=ix - 0.35 * r * light_x, cy=iy - 0.35 * r, radius=r * 0.2, fill=(250, 250, 250))

    # Skin lids cover everything of the eyeball outside the aperture.
    reach = 0.28
    top = np.array([[cx + ew * 1.15, cy - reach], [cx - ew * 1.15, cy - reach]])
    bottom = np.array([[cx + ew * 1.15, cy + reach], [cx - ew * 1.15, cy + reach]])
    left_cap, right_cap = np.array([[cx - ew * 1.15, upper[0]]]), np.array([[cx + ew * 1.15, upper[-1]]])
    skin_rgb = _rgb(skin)
    canvas.polygon(points=np.concatenate([left_cap, upper_pts, right_cap, top]), fill=skin_rgb)
    left_cap, right_cap = np.array([[cx - ew * 1.15, lower[0]]]), np.array([[cx + ew * 1.15, lower[-1]]])
    canvas.polygon(points=np.concatenate([left_cap, lower_pts, right_cap, bottom]), fill=skin_rgb)

    shadow = skin * 0.45
    # Lid crease above the upper lid: follows the lid up when the eye widens.
    crease = upper_pts.copy()
    crease[:, 1] = np.minimum(upper, cy + tilt - h_up * prof) - 0.045 * eye_scale * (0.4 + prof)
    canvas.line(points=crease[2:-2], fill=_blend(base=skin, ink=shadow, alpha=0.35), width=0.014)
    # Lash line and lower lid.
    canvas.line(points=upper_pts, fill=(28, 20, 18), width=0.028 * eye_scale)
    canvas.line(points=lower_pts[2:-1], fill=_blend(base=skin, ink=shadow, alpha=0.45), width=0.014)
    # Cheek-raise bulge under tightened lower lids (AU6/AU7).
    bulge = params[_P["lower_lid_raise"]]
    if bulge > 0.15:
        fold = lower_pts[3:-3].copy()
        fold[:, 1] += 0.05 * eye_scale
        ink = _blend(base=skin, ink=shadow, alpha=0.5 * _ramp(value=bulge, start=0.15, full=0.7))
        canvas.line(points=fold, fill=ink, width=0.013)


def _draw_brow(
    *,
    canvas: _Canvas,
    side: int,
    params: np.ndarray,
    colour: Colour,
    thickness: float,
    arch: float,
    brow_length: float,
) -> None:
    """One brow as a thick, tapering stroke whose inner end moves with AU1 and AU4."""
    inner_x = side * (0.10 - params[_P["brow_knit"]] * 0.7)
    outer_x = side * (0.10 + brow_length)
    base_y = EYE_Y - BROW_GAP - params[_P["brow_raise"]]
    inner_y = base_y - params[_P["brow_inner_raise"]] + 0.02
    outer_y = base_y + 0.03
    t = np.linspace(0.0, 1.0, 9)
    # Strong AU4 (inner end pulled down) straightens the arch into a V.
    arch_here = arch * max(0.2, 1.0 + params[_P["brow_inner_raise"]] * 4.0)
    xs = inner_x + (outer_x - inner_x) * t
    ys = inner_y + (outer_y - inner_y) * t - arch_here * np.sin(math.pi * t**0.8)
    half = 0.5 * thickness * (1.0 - 0.55 * t**1.3)
    half[0] *= 0.85
    upper = np.stack([xs, ys - half], axis=1)
    lower = np.stack([xs, ys + half], axis=1)
    canvas.polygon(points=np.concatenate([upper, lower[::-1]]), fill=colour)


def _draw_nose(
    *,
    canvas: _Canvas,
    params: np.ndarray,
    skin: np.ndarray,
    nose_scale: float,
    light_x: float,
) -> None:
    """Nose: side shadow, wings, nostrils; AU9 adds bridge wrinkles and flares the wings."""
    shadow = skin * 0.42
    wrinkle = params[_P["nose_wrinkle"]]
    tip_y = NOSE_TIP_Y - 0.03 * wrinkle
    nw = 0.10 * nose_scale * (1.0 + 0.15 * wrinkle)
    # Bridge side shadow on the side facing away from the light.
    away = -1.0 if light_x > 0 else 1.0
    bridge = np.array([[away * 0.06, EYE_Y + 0.06], [away * 0.075, tip_y - 0.12], [away * 0.09, tip_y - 0.04]])
    canvas.line(points=bridge, fill=_blend(base=skin, ink=shadow, alpha=0.25), width=0.02)
    for side in (-1, 1):
        wing = _bezier(
            p0=(side * 0.05, tip_y - 0.07), p1=(side * (nw + 0.035), tip_y - 0.03), p2=(side * 0.045, tip_y + 0.04), n=8
        )
        canvas.line(points=wing, fill=_blend(base=skin, ink=shadow, alpha=0.55), width=0.02)
        nostril = _ellipse_points(
            cx=side * 0.045 * nose_scale,
            cy=tip_y + 0.022,
            rx=0.028 * nose_scale * (1.0 + 0.3 * wrinkle),
            ry=0.016,
            n=12,
        )
        canvas.polygon(points=nostril, fill=_blend(base=skin, ink=np.array((25.0, 10.0, 10.0)), alpha=0.7))
    # Tip underside.
    tip = _bezier(p0=(-0.03, tip_y + 0.035), p1=(0.0, tip_y + 0.05), p2=(0.03, tip_y + 0.035), n=5)
    canvas.line(points=tip, fill=_blend(base=skin, ink=shadow, alpha=0.3), width=0.015)
    if wrinkle > 0.15:
        ink = _blend(base=skin, ink=shadow, alpha=0.75 * _ramp(value=wrinkle, start=0.15, full=1.0))
        for k in range(3):
            y = EYE_Y + 0.07 + 0.045 * k
            line = _bezier(p0=(-0.075, y + 0.015), p1=(0.0, y - 0.02), p2=(0.075, y + 0.015), n=6)
            canvas.line(points=line, fill=ink, width=0.016)
        for side in (-1, 1):  # 'bunny lines' on the sides of the bridge
            bunny = np.array([[side * 0.07, EYE_Y + 0.04], [side * 0.14, EYE_Y + 0.14]])
            canvas.line(points=bunny, fill=ink, width=0.015)


def _mouth_curves(*, params: np.ndarray, mouth_scale: float) -> tuple[np.ndarray, ...]:
    """Inner and outer lip lines of the mouth, as (xs, upper_inner, lower_inner, upper_outer, lower_outer)."""
    half_w = MOUTH_HALF_WIDTH * mouth_scale * params[_P["mouth_width"]]
    t = np.linspace(-1.0, 1.0, 21)
    xs = t * half_w
    pull = params[_P["lip_corner_pull"]]
    # Corners move up (AU12) or down (AU15); the seam bends with an exponent > 2 so the
    # bend concentrates near the corners, as the pull acts there.
    seam = MOUTH_Y - pull * np.abs(t) ** 2.2
    prof = _profile(t=t, roundness=params[_P["mouth_roundness"]], boxiness=params[_P["mouth_boxiness"]])
    gap = MOUTH_MAX_GAP * params[_P["mouth_open"]]
    upper_inner = seam - (0.35 * gap + params[_P["upper_lip_raise"]]) * prof
    lower_inner = seam + 0.65 * gap * prof
    press = params[_P["lip_press"]]
    lip_prof = np.clip(1.0 - t**2, 0.0, 1.0) ** 0.6
    up_th = 0.045 * mouth_scale * (1.0 - 0.8 * press)
    lo_th = 0.062 * mouth_scale * (1.0 - 0.8 * press)
    cupid = 0.012 * (1.0 - press) * np.exp(-((t / 0.15) ** 2))
    upper_outer = upper_inner - up_th * (0.2 + 0.8 * lip_prof) + cupid
    lower_outer = lower_inner + lo_th * (0.2 + 0.8 * lip_prof)
    return xs, upper_inner, lower_inner, upper_outer, lower_outer


def _draw_mouth(*, canvas: _Canvas, params: np.ndarray, skin: np.ndarray, lip: np.ndarray, mouth_scale: float) -> None:
    """Mouth: lips as one filled shape, a dark interior when open, teeth when shown."""
    xs, upper_inner, lower_inner, upper_outer, lower_outer = _mouth_curves(params=params, mouth_scale=mouth_scale)
    canvas.polygon(
        points=np.concatenate([np.stack([xs, upper_outer], 1), np.stack([xs, lower_outer], 1)[::-1]]), fill=_rgb(lip)
    )
    gap = lower_inner - upper_inner
    if gap.max() > 0.012:
        canvas.polygon(
            points=np.concatenate([np.stack([xs, upper_inner], 1), np.stack([xs, lower_inner], 1)[::-1]]),
            fill=MOUTH_INTERIOR,
        )
        if params[_P["teeth_show"]] > 0.5 and gap.max() > 0.03:
            inner = slice(2, -2)
            teeth_bottom = np.minimum(upper_inner + 0.065 * mouth_scale, lower_inner)
            canvas.polygon(
                points=np.concatenate(
                    [np.stack([xs[inner], upper_inner[inner]], 1), np.stack([xs[inner], teeth_bottom[inner]], 1)[::-1]]
                ),
                fill=_rgb(TEETH_COLOUR),
            )
            if gap.max() > 0.1:
                lower_top = np.maximum(lower_inner - 0.045 * mouth_scale, teeth_bottom + 0.015)
                lower_top = np.minimum(lower_top, lower_inner)
                canvas.polygon(
                    points=np.concatenate(
                        [np.stack([xs[inner], lower_top[inner]], 1), np.stack([xs[inner], lower_inner[inner]], 1)[::-1]]
                    ),
                    fill=_rgb(TEETH_COLOUR * 0.92),
                )
    if gap.max() <= 0.012:
        # Lip seam: the dark line between closed lips, which carries the corner curve.
        seam = np.stack([xs, 0.5 * (upper_inner + lower_inner)], 1)
        canvas.line(points=seam, fill=_blend(base=lip, ink=np.array(MOUTH_INTERIOR, float), alpha=0.85), width=0.02)
    # Mouth-corner dimples/creases make the corner direction readable at low resolution.
    shadow = skin * 0.45
    pull = params[_P["lip_corner_pull"]]
    if abs(pull) > 0.04:
        for idx, side in ((0, -1), (-1, 1)):
            x0, y0 = xs[idx], upper_inner[idx]
            dy = -0.04 if pull > 0 else 0.04
            crease = np.array([[x0 + side * 0.01, y0 - dy * 0.5], [x0 + side * 0.035, y0 + dy * 0.3]])
            ink = _blend(base=skin, ink=shadow, alpha=0.5 * _ramp(value=abs(pull), start=0.04, full=0.2))
            canvas.line(points=crease, fill=ink, width=0.014)


def _draw_hair(
    *,
    canvas: _Canvas,
    colour: Colour,
    aspect: float,
    hairline: float,
    style: int,
    rng_vals: np.ndarray,
) -> None:
    """Hair cap over the top of the head with a fringe edge; style changes the fringe shape."""
    phi = np.linspace(math.pi * 1.02, math.pi * 1.98, 24)  # over the top (y negative)
    side_y = EYE_Y - 0.05 + 0.2 * rng_vals[0]
    outer = np.stack([1.07 * np.cos(phi), (aspect + 0.08 + 0.1 * rng_vals[1]) * np.sin(phi)], axis=1)
    outer = np.concatenate([np.array([[-1.07, side_y]]), outer, np.array([[1.07, side_y]])])
    xs = np.linspace(1.03, -1.03, 17)
    k = side_y - hairline
    fringe_y = hairline + k * np.abs(xs) ** (2.0 + 2.0 * rng_vals[2])
    if style == 1:  # side parting: fringe sweeps lower on one side
        fringe_y += 0.12 * rng_vals[3] * (xs + 1.0) * 0.5
    elif style == 2:  # ragged fringe
        fringe_y += 0.035 * np.sin(xs * 19.0 + 6.0 * rng_vals[4])
    fringe = np.stack([xs, fringe_y], axis=1)
    canvas.polygon(points=np.concatenate([outer, fringe]), fill=colour)


# ---------------------------------------------------------------------------------------
# One face: its look (never depends on the label), its layers, its photograph
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class _Look:
    """Identity, pose, colours and imaging of one face, all drawn without looking at the label."""

    aspect: float  # head half-height / half-width
    head_frac: float  # head half-width / image size
    offset: np.ndarray
    angle: float
    jaw_taper: float
    skin: np.ndarray
    has_hair: bool
    hair: np.ndarray
    hair_style: int
    long_hair: bool
    hairline: float
    brow_colour: np.ndarray
    brow_thickness: float
    brow_arch: float
    brow_length: float
    eye_scale: float
    canthal_tilt: float
    gaze: tuple[float, float]
    iris: np.ndarray
    nose_scale: float
    mouth_scale: float
    lip: np.ndarray
    bg_a: np.ndarray
    bg_b: np.ndarray
    bg_angle: float
    clothing: np.ndarray
    light_dir: float
    light_strength: float
    gain: float
    white_balance: np.ndarray
    noise_sigma: float
    blur_radius: float
    hair_vals: np.ndarray


def _sample_look(*, rng: np.random.Generator, size: int) -> _Look:
    """The nuisances of one face; the draws are made in a fixed order, before the expression's."""
    u = rng.random(40)  # one block of uniforms, consumed by position (keeps draws fixed)
    offset = (rng.normal(0.0, 0.035, 2)).clip(-0.07, 0.07)
    angle = math.radians(float(np.clip(rng.normal(0.0, 5.0), -12.0, 12.0)))
    skin = _palette_sample(palette=SKIN_TONES, position=float(u[3])) * (0.95 + 0.1 * u[4:7])
    has_hair = u[7] < 0.85
    hair = _palette_sample(palette=HAIR_COLOURS, position=float(u[8]))
    # Brows follow the hair colour but always stay darker than the skin: they carry the
    # label signal, so they must stay visible on every skin tone.
    brow_colour = np.minimum(hair * 0.5 + np.array((30.0, 22.0, 18.0)) * 0.5 if has_hair else skin * 0.35, skin * 0.5)
    # Backgrounds: muted colours (mixed towards grey), like indoor/outdoor photo backdrops.
    bg_a = (rng.uniform(25, 235, 3) + rng.uniform(25, 235)) * 0.5
    bg_b = (rng.uniform(25, 235, 3) + rng.uniform(25, 235)) * 0.5
    clothing = rng.uniform(20, 220, 3)
    return _Look(
        aspect=1.18 + 0.2 * u[0],
        head_frac=0.31 + 0.07 * u[1],
        offset=offset,
        angle=angle,
        jaw_taper=0.05 + 0.17 * u[2],
        skin=skin,
        has_hair=has_hair,
        hair=hair,
        hair_style=int(u[9] * 3),
        long_hair=u[10] < 0.35,
        hairline=-0.62 - 0.28 * u[11],
        brow_colour=brow_colour,
        brow_thickness=0.055 + 0.035 * u[12],
        brow_arch=0.015 + 0.035 * u[13],
        brow_length=0.44 + 0.1 * u[14],
        eye_scale=0.88 + 0.24 * u[15],
        canthal_tilt=0.12 * (u[16] - 0.5),
        gaze=(0.8 * (u[17] - 0.5), 0.6 * (u[18] - 0.5)),
        iris=_palette_sample(palette=IRIS_COLOURS, position=float(u[19])),
        nose_scale=0.85 + 0.3 * u[20],
        mouth_scale=0.88 + 0.24 * u[21],
        lip=skin * np.array((0.78, 0.52, 0.52)) + np.array((40.0, 8.0, 12.0)) * (0.6 + 0.4 * u[22]),
        bg_a=bg_a,
        bg_b=bg_b,
        bg_angle=2.0 * math.pi * u[23],
        clothing=clothing,
        light_dir=2.0 * math.pi * u[24],
        light_strength=0.35 * u[25],
        gain=0.85 + 0.3 * u[26],
        white_balance=0.94 + 0.12 * u[27:30],
        noise_sigma=7.0 * u[30] ** 2,
        blur_radius=float((0.3 + 0.6 * u[31]) * size / 64.0) if u[32] < 0.3 else 0.0,
        hair_vals=u[33:38],
    )


def _background_canvas(*, look: _Look, size: int) -> _Canvas:
    """The supersampled canvas with its gradient background, holding the face transform."""
    # The gradient is linear, so computing it on a coarse grid and upsampling bilinearly is
    # exact up to the clip and ~5x cheaper than evaluating it at canvas resolution.
    big = size * SUPERSAMPLE
    coarse = 16
    coords = (np.arange(coarse, dtype=np.float32) + 0.5) / coarse - 0.5
    proj = math.cos(look.bg_angle) * coords[None, :] + math.sin(look.bg_angle) * coords[:, None] + 0.5
    background = look.bg_a.astype(np.float32) + (look.bg_b - look.bg_a).astype(np.float32) * proj[..., None].clip(
        0.0, 1.0
    )
    image = Image.fromarray(background.astype(np.uint8), mode="RGB")
    image = image.resize((big, big), resample=Image.Resampling.BILINEAR)
    centre = (big * (0.5 + look.offset[0]), big * (0.54 + look.offset[1]))
    return _Canvas(image=image, centre=centre, scale=big * look.head_frac, angle=look.angle)


def _draw_head(*, canvas: _Canvas, look: _Look) -> None:
    """Back layers (long hair, torso, neck, ears), then the head itself."""
    aspect, skin = look.aspect, look.skin
    if look.has_hair and look.long_hair:
        back = np.array([[-1.15, -0.3], [-1.2, aspect + 0.3], [1.2, aspect + 0.3], [1.15, -0.3]])
        crown = _ellipse_points(cx=0.0, cy=-0.3, rx=1.15, ry=aspect * 0.95, n=24)[12:]  # upper half
        canvas.polygon(points=np.concatenate([crown, back[[3, 2, 1, 0]]]), fill=_rgb(look.hair))
    canvas.polygon(points=_ellipse_points(cx=0.0, cy=aspect + 1.25, rx=1.9, ry=1.0, n=28), fill=_rgb(look.clothing))
    canvas.polygon(
        points=np.array([[-0.42, 0.5], [0.42, 0.5], [0.48, aspect + 0.45], [-0.48, aspect + 0.45]]),
        fill=_rgb(skin * 0.82),
    )
    for side in (-1, 1):
        ear = _ellipse_points(cx=side * 0.98, cy=EYE_Y + 0.12, rx=0.12, ry=0.22, n=14)
        canvas.polygon(points=ear, fill=_rgb(skin * 0.93))
    # Head: an egg shape (ellipse whose lower half tapers towards the chin).
    phi = np.linspace(0.0, 2.0 * math.pi, 48, endpoint=False)
    sin_phi = np.sin(phi)
    head = np.stack(
        [np.cos(phi) * (1.0 - look.jaw_taper * np.clip(sin_phi, 0.0, None) ** 1.5), aspect * sin_phi], axis=1
    )
    canvas.polygon(points=head, fill=_rgb(skin))


def _draw_forehead_lines(*, canvas: _Canvas, params: np.ndarray, skin: np.ndarray) -> None:
    """Forehead lines from AU1+2 (full width) or AU1 alone (central only)."""
    raise_amount = np.clip(params[_P["brow_raise"]] / 0.18, 0.0, 1.0)
    inner_amount = np.clip(params[_P["brow_inner_raise"]] / 0.14, 0.0, 1.0)
    forehead = max(raise_amount, 0.7 * inner_amount)
    if forehead > 0.3:
        ink = _blend(base=skin, ink=skin * 0.45, alpha=0.4 * _ramp(value=forehead, start=0.3, full=1.0))
        half_len = 0.12 + 0.3 * raise_amount
        for k in range(2):
            y = EYE_Y - BROW_GAP - params[_P["brow_raise"]] - 0.14 - 0.08 * k
            line = _bezier(p0=(-half_len, y + 0.02), p1=(0.0, y - 0.03 * raise_amount), p2=(half_len, y + 0.02), n=7)
            canvas.line(points=line, fill=ink, width=0.014)


def _draw_glabella(*, canvas: _Canvas, params: np.ndarray, skin: np.ndarray) -> None:
    """Glabella furrows from AU4."""
    knit = params[_P["brow_knit"]]
    lowered = np.clip(-params[_P["brow_inner_raise"]] / 0.16, 0.0, 1.0)
    if knit > 0.03 and lowered > 0.2:
        ink = _blend(base=skin, ink=skin * 0.45, alpha=0.6 * _ramp(value=lowered, start=0.2, full=1.0))
        top_y = EYE_Y - BROW_GAP - params[_P["brow_raise"]] - 0.02
        for side in (-1, 1):
            canvas.line(points=np.array([[side * 0.035, top_y], [side * 0.045, top_y + 0.11]]), fill=ink, width=0.014)


def _draw_nasolabial_folds(*, canvas: _Canvas, params: np.ndarray, look: _Look) -> None:
    """Folds from the nose wings to the mouth corners (AU6/AU9/AU10)."""
    fold = params[_P["nasolabial_fold"]]
    if fold > 0.15:
        xs, upper_inner, *_ = _mouth_curves(params=params, mouth_scale=look.mouth_scale)
        ink = _blend(base=look.skin, ink=look.skin * 0.45, alpha=0.55 * _ramp(value=fold, start=0.15, full=1.0))
        for idx, side in ((0, -1), (-1, 1)):
            corner = (float(xs[idx]) + side * 0.06, float(upper_inner[idx]) + 0.06)
            curve = _bezier(
                p0=(side * 0.15 * look.nose_scale, NOSE_TIP_Y - 0.05),
                p1=(side * (0.2 + abs(corner[0]) * 0.6), NOSE_TIP_Y + 0.12),
                p2=corner,
                n=9,
            )
            canvas.line(points=curve, fill=ink, width=0.018)


def _draw_face(*, canvas: _Canvas, look: _Look, params: np.ndarray) -> None:
    """Everything on the head, back to front; the expression lives in `params` only."""
    skin, light_x = look.skin, math.cos(look.light_dir)
    _draw_forehead_lines(canvas=canvas, params=params, skin=skin)
    if look.has_hair:
        _draw_hair(
            canvas=canvas,
            colour=_rgb(look.hair),
            aspect=look.aspect,
            hairline=look.hairline,
            style=look.hair_style,
            rng_vals=look.hair_vals,
        )
    for side in (-1, 1):
        _draw_eye(
            canvas=canvas,
            side=side,
            params=params,
            skin=skin,
            iris=look.iris,
            eye_scale=look.eye_scale,
            canthal_tilt=look.canthal_tilt,
            gaze=look.gaze,
            light_x=light_x,
        )
    brow_rgb = _rgb(look.brow_colour)
    for side in (-1, 1):
        _draw_brow(
            canvas=canvas,
            side=side,
            params=params,
            colour=brow_rgb,
            thickness=look.brow_thickness,
            arch=look.brow_arch,
            brow_length=look.brow_length,
        )
    _draw_glabella(canvas=canvas, params=params, skin=skin)
    _draw_nose(canvas=canvas, params=params, skin=skin, nose_scale=look.nose_scale, light_x=light_x)
    _draw_nasolabial_folds(canvas=canvas, params=params, look=look)
    _draw_mouth(canvas=canvas, params=params, skin=skin, lip=look.lip, mouth_scale=look.mouth_scale)


def _photograph(*, canvas: _Canvas, look: _Look, size: int, rng: np.random.Generator) -> np.ndarray:
    """Downsample (anti-aliasing), then imaging effects at output resolution: blur, light, gain, noise."""
    # Box reduction = exact area average of the supersampled pixels (the anti-aliasing).
    small = canvas.image.reduce(SUPERSAMPLE)
    if look.blur_radius > 0.0:
        small = small.filter(ImageFilter.GaussianBlur(radius=look.blur_radius))
    pixels = np.asarray(small, dtype=np.float32)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    light_dir = look.light_dir
    shading = 1.0 + look.light_strength * 2.0 * (
        math.cos(light_dir) * grid[None, :] + math.sin(light_dir) * grid[:, None]
    )
    pixels = pixels * (shading[..., None] * (look.gain * look.white_balance).astype(np.float32))
    if look.noise_sigma > 0.05:
        pixels = pixels + look.noise_sigma * rng.standard_normal(pixels.shape, dtype=np.float32)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _check_arguments(*, label: object, rng: object, size: object) -> None:
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= int(label) < len(EXPRESSIONS):
        raise ValueError(
            f"label={label!r} is not a valid expression index; expected an int in 0..{len(EXPRESSIONS) - 1} "
            f"({', '.join(f'{i}={name}' for i, name in enumerate(EXPRESSIONS))})"
        )
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise ValueError(f"size={size!r} is not a valid image size; expected an int in {MIN_SIZE}..{MAX_SIZE} pixels")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------
def render_face(*, label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """Return one RGB face, uint8 array of shape (size, size, 3), expression EXPRESSIONS[label].

    All randomness comes from `rng` (same rng state -> byte-identical image). Identity and
    imaging nuisances are drawn from label-independent distributions, so the only signal
    about the label is the facial geometry.
    """
    _check_arguments(label=label, rng=rng, size=size)
    label, size = int(label), int(size)
    look = _sample_look(rng=rng, size=size)  # nuisances first: they never depend on the label
    params, _intensity = _sample_expression(label=label, rng=rng)
    canvas = _background_canvas(look=look, size=size)
    _draw_head(canvas=canvas, look=look)
    _draw_face(canvas=canvas, look=look, params=params)
    return _photograph(canvas=canvas, look=look, size=size, rng=rng)
