"""The Lightning Trainer arguments a classifier run or evaluation uses, which process reports, and the
per-model CPU fast path (bf16 autocast, channels_last) a training run takes."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
from omegaconf import DictConfig
from pytorch_lightning.strategies import DDPStrategy

from faces.io import plain
from faces.runkit.config import trainer_uses_gpu

log = logging.getLogger(__name__)

CPU_PRECISIONS = ("32-true", "bf16-mixed")
# How long a DDP rank waits in a collective for the others (torch's default: 30 minutes). A rank that
# dies of an exception leaves the others waiting this long, then they fail too: the longest legitimate
# wait here is rank 0 writing a checkpoint, seconds. The non-finite loss check raises on all ranks at
# once (FERLitModule._check_finite), so the one error a rank can meet alone by design does not wait at all.
DDP_TIMEOUT = timedelta(minutes=10)


def deterministic_setting(value: Any, *, gpu: bool) -> tuple[Any, str | None]:
    """(what to give Lightning's `deterministic`, a warning or None).

    On CUDA, `deterministic=true` makes torch raise in the middle of training: F.cross_entropy
    (nll_loss), adaptive average pooling and bilinear interpolation have no deterministic CUDA
    backward. "warn" keeps every deterministic kernel torch has and names the others once instead.
    """
    if gpu and value is True:
        return "warn", (
            "trainer.deterministic=true on a GPU: cross-entropy, adaptive pooling and bilinear resizing have no "
            "deterministic CUDA backward, so torch would stop the run at its first step; using "
            "deterministic='warn' (deterministic kernels where they exist, a warning naming the others). "
            "Same seed, same result holds on CPU (trainer=cpu); set trainer.deterministic=warn to silence this"
        )
    return value, None


def trainer_kwargs(trainer_cfg: DictConfig, *, freeze_epochs: int = 0) -> dict[str, Any]:
    kwargs = dict(plain(trainer_cfg))
    gpu = trainer_uses_gpu(kwargs)
    if gpu and not torch.cuda.is_available():
        raise RuntimeError(
            f"trainer.accelerator={kwargs.get('accelerator')} but no CUDA device is visible; use trainer=cpu"
        )
    if "deterministic" in kwargs:
        kwargs["deterministic"], message = deterministic_setting(kwargs["deterministic"], gpu=gpu)
        if message:
            log.warning(message)
    # Stage 1 runs the frozen backbone under no_grad: DDP must be told some parameters get no gradient.
    strategy = kwargs.get("strategy")
    if strategy in ("ddp", "ddp_find_unused_parameters_true"):
        kwargs["strategy"] = DDPStrategy(
            find_unused_parameters=strategy != "ddp" or freeze_epochs > 0, timeout=DDP_TIMEOUT
        )
    return kwargs


@dataclass(frozen=True)
class FastPath:
    """How the training step runs: `autocast` (a dtype for the module's own autocast of the training
    forward, or None) and `channels_last` (model weights and inputs in NHWC)."""

    autocast: torch.dtype | None
    channels_last: bool


def training_fast_path(classifier_cfg: Any, trainer_cfg: Any) -> FastPath:
    """The fast path of a training run.

    On a GPU: channels_last, and whatever `trainer.precision` says (trainer=gpu: bf16-mixed, applied by
    Lightning to every step). On CPU: the model's own measured choice, `classifier.cpu_precision`
    (32-true | bf16-mixed: bf16 autocast of the training forward only; validation, test and prediction
    stay fp32, as evaluate.py and the augmenter's judge compute them) and `classifier.cpu_channels_last`.
    The figures behind each model's choice: BENCHMARKS.md, "Classifier CPU fast paths".
    """
    if trainer_uses_gpu(plain(trainer_cfg)):
        return FastPath(autocast=None, channels_last=True)
    precision = classifier_cfg.get("cpu_precision") or "32-true"
    if precision not in CPU_PRECISIONS:
        raise ValueError(f"classifier.cpu_precision={precision!r}; choose one of {list(CPU_PRECISIONS)}")
    channels_last = classifier_cfg.get("cpu_channels_last") or False
    if channels_last not in (True, False):
        raise ValueError(f"classifier.cpu_channels_last={channels_last!r}; choose true or false")
    return FastPath(autocast=torch.bfloat16 if precision == "bf16-mixed" else None, channels_last=channels_last)


def is_global_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0
