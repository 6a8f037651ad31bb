"""What to generate and how: one frozen request, checked once where it is built, passed down whole.

The augment CLI (ablation.generate) and the ablation build a GenerationRequest from their flags or
config; every check of a single setting runs in its constructor, so nothing below it checks again.
AugmentSettings is the part of a request (plus the data and models it meets) that decides which
images come out: an output folder is only resumed with equal settings.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .perturbations import Perturbation, get_perturbation
from .render import render_for


class AugmentError(ValueError):
    """Bad arguments or an output folder that cannot be used as asked."""


class GenerationWriteError(OSError):
    """Writing into OUT failed (a full disk, a quota, a folder turned read-only); what was committed is kept."""


Judge = Callable[[torch.Tensor], torch.Tensor]  # uint8 [N, 3, H, W] -> class probabilities [N, C]
Embed = Callable[[torch.Tensor], torch.Tensor]  # uint8 [N, 3, H, W] -> features [N, D] (the generation report's space)


def check_render_for(perturbation: Perturbation, render_mode: str | None) -> str:
    """vaegan.generation.render.render_for, as the augmenter's own error."""
    try:
        return render_for(perturbation, render_mode)
    except ValueError as error:
        raise AugmentError(f"--render={render_mode or perturbation.render}: {error}") from error


def resolve_device(name: str) -> str:
    """'auto' -> cuda when available, else cpu; a CUDA device on a machine without CUDA is refused."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise AugmentError(f"--device {name}: not a device ({error}); use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AugmentError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return str(device)


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    """One generation job as the user asked for it. Defaults are the CLI's; `strength=None` and `render=None`
    mean the strategy's own, `workers=None` min(16, cores), `device="auto"` CUDA when present (all resolved
    here, so the stored request says what runs)."""

    target_count: str | int | tuple[int, ...]  # N, 'max', 'Fear=2000,Disgust=1500' or one target per class
    strategy: str = "gaussian"
    strength: float | None = None
    render: str | None = None
    seed: int = 0
    filter: bool = True
    judge: Path | None = None  # the filter's classifier checkpoint (None: the composition trains one)
    min_confidence: float | None = None  # None: the strategy's own (0.5; 0.9 for guided_transfer, M2m's rule)
    min_source_distance: float = 0.02
    max_attempts_factor: float = 10.0
    out_dir: Path | None = None  # None: the composition names one
    batch_size: int = 256
    workers: int | None = None
    device: str = "auto"
    report: bool = True  # measure the finished set into OUT/generation_report.json
    overwrite: bool = False
    progress_bar: bool = True  # per class, on a terminal only
    preview_sources: int = 4
    preview_variants: int = 8

    def __post_init__(self) -> None:
        try:
            perturbation = get_perturbation(self.strategy)
        except ValueError as error:
            raise AugmentError(f"--strategy: {error}") from None
        strength = perturbation.default_strength if self.strength is None else float(self.strength)
        if not strength >= 0:
            raise AugmentError(f"--strength={strength} must be >= 0")
        min_confidence = perturbation.min_confidence if self.min_confidence is None else float(self.min_confidence)
        object.__setattr__(self, "min_confidence", min_confidence)
        self._check_filter_and_budget()
        if perturbation.guidance is not None and not self.filter:
            raise AugmentError(
                f"--strategy {self.strategy} steers codes with the quality filter's judge; it needs the filter "
                "(drop --no-filter, or use --strategy transfer)"
            )
        resolved = {
            "strength": strength,
            "render": check_render_for(perturbation, self.render),
            "device": resolve_device(str(self.device)),
            "workers": min(16, os.cpu_count() or 1) if self.workers is None else int(self.workers),
            "out_dir": None if self.out_dir is None else Path(self.out_dir),
            "judge": None if self.judge is None else Path(self.judge),
        }
        for name, value in resolved.items():  # frozen: the resolved values are set once, here
            object.__setattr__(self, name, value)

    def _check_filter_and_budget(self) -> None:
        """Refuse filter and budget settings that cannot do what they say, naming the flag and the value."""
        if not 0.0 <= self.min_confidence <= 1.0:
            raise AugmentError(f"--min-confidence={self.min_confidence:g} must be a probability in [0, 1]")
        if not self.min_source_distance >= 0.0:
            raise AugmentError(
                f"--min-source-distance={self.min_source_distance:g} must be >= 0 "
                "(a mean absolute pixel difference in 0..1)"
            )
        if not self.max_attempts_factor > 0.0 or not np.isfinite(self.max_attempts_factor):
            raise AugmentError(
                f"--max-attempts-factor={self.max_attempts_factor:g} must be a positive number of "
                "candidates per image needed"
            )
        if self.workers is not None and self.workers < 0:
            raise AugmentError(f"--workers={self.workers} must be >= 0 (0 writes PNGs in this process)")
        if self.batch_size < 1:
            raise AugmentError(f"--batch-size={self.batch_size} must be >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise AugmentError(f"--seed={self.seed!r} must be a non-negative integer (it seeds numpy's SeedSequence)")

    @functools.cached_property
    def perturbation(self) -> Perturbation:
        return get_perturbation(self.strategy)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def with_out_dir(self, out_dir: Path) -> GenerationRequest:
        """The same request writing into `out_dir` (the composition names OUT once the data is known)."""
        twin = copy.copy(self)  # not dataclasses.replace: the request was checked once, when it was built
        object.__setattr__(twin, "out_dir", Path(out_dir))
        return twin

    def settings_so_far(self) -> dict:
        """The AugmentSettings fields the request decides by itself (checked against OUT before any work)."""
        return {
            "strategy": self.strategy,
            "strength": self.strength,
            "render": self.render,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "filter": self.filter,
        }


@dataclass(frozen=True)
class AugmentSettings:
    """Everything that decides which images come out; an OUT folder is only resumed with equal settings."""

    checkpoint_sha256: str
    strategy: str
    strength: float
    # How codes become images (vaegan.generation.render): "residual", "decoder" or "grain".
    render: str
    seed: int
    batch_size: int
    image_size: int
    class_names: tuple[str, ...]
    real_fingerprint: str
    # The fit split's content (ids, labels, pixels: FaceSplit.content_sha256). Where a set records it, it decides
    # whether the real images are the same, not real_fingerprint, which includes file times.
    real_sha256: str
    # Exactly which real images the set may be derived from: sha256 of the fit split's sorted sample ids.
    source_ids_sha256: str
    filter: bool
    judge_sha256: str | None
    min_confidence: float
    min_source_distance: float
