"""The FER classifier: a timm feature extractor, a new head for the dataset's classes, and the
input pipeline (uint8 -> resized, normalised float) shared by training, evaluation and prediction."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("linear", "cosine")


class CosineLinear(nn.Module):
    """Cosine-similarity head, logits in [-1, 1]; LDAM (Cao et al. 2019) applies margins and a scale to these."""

    def __init__(self, *, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()


def preprocess(images: torch.Tensor, *, input_size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [N, 3, H, W] (or float in [0, 1]) -> float normalised at `input_size` (bilinear, antialiased)."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if x.shape[-1] != input_size or x.shape[-2] != input_size:
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", antialias=True, align_corners=False)
    mean_t = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


class FERClassifier(nn.Module):
    """`backbone` (timm, pooled features) -> dropout -> `head` -> logits (+ `logit_bias` at evaluation).

    `logit_bias` is zero unless the run uses post-hoc logit adjustment (Menon et al. 2021), which
    subtracts tau * log(prior) from the logits at prediction time only; keeping it in the module
    means every consumer of a checkpoint (evaluate.py, the augmenter's filter) predicts the same way.
    """

    def __init__(self, *, backbone: nn.Module, num_classes: int, head: str = "linear", drop_rate: float = 0.0) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head={head!r}; choose one of {list(HEADS)}")
        self.backbone = backbone
        self.num_features = int(backbone.num_features)
        self.dropout = nn.Dropout(drop_rate)
        self.head = (
            nn.Linear(self.num_features, num_classes)
            if head == "linear"
            else CosineLinear(in_features=self.num_features, out_features=num_classes)
        )
        self.register_buffer("logit_bias", torch.zeros(num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Raw logits from pooled features (no post-hoc bias): what every training loss sees.

        fp32 even under bf16 autocast: the logits, the post-hoc bias added to them and every
        probability and argmax taken from them then do not depend on bf16 rounding (bf16's spacing
        near a logit of 8 is 0.06, enough to flip close calls), so a GPU run and a CPU run predict
        alike up to the backbone's own rounding. The head is one small matmul: no speed is lost.
        """
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.head(self.dropout(features.float()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classify(self.features(x))
        return logits if self.training else logits + self.logit_bias
