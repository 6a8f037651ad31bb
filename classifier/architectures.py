"""timm architectures this package adds, and the one way it builds a timm model by name.

`create_model` and `register_architectures` make the names below known to timm before a name is looked
up, explicitly: nothing depends on some module having been imported first. A classifier checkpoint
records its backbone's name and is rebuilt from it (classifier/checkpoint.py), so an added architecture
must be a timm name, never a model patched after creation.
"""

from __future__ import annotations

from typing import Any

import timm
from timm.models import register_model
from torch import nn

from faces.features import PretrainedWeightsError

__all__ = [
    "ARCHITECTURES",
    "VGGFACE2_MEAN",
    "VGGFACE2_MEAN_BGR",
    "VGGFACE2_STD",
    "create_model",
    "register_architectures",
    "resnet50_caffe",
]

# Per-channel mean of the VGGFace2 Caffe models, in their BGR order (resnet50_ft.prototxt; the same
# numbers are `VGG_Faces2.mean_bgr` in cydonia999/VGGFace2-pytorch). No std: inputs are raw 0..255.
VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
# The same numbers for an RGB image in [0, 1], the scale classifier.model.preprocess works at.
VGGFACE2_MEAN = tuple(value / 255.0 for value in reversed(VGGFACE2_MEAN_BGR))
VGGFACE2_STD = (1.0 / 255.0,) * 3


def resnet50_caffe(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """timm `resnet50` rebuilt to compute what the VGGFace2 Caffe ResNet-50 computes.

    Two differences from timm's (torchvision-style, "ResNet v1.5") resnet50, both from the original
    Caffe prototxt and kept by cydonia999's port:
      * the stride-2 of the first bottleneck of layer2..4 sits on its 1x1 `conv1`, not on the 3x3
        `conv2` (same parameters, different function: the 3x3 sees every other pixel's 1x1 output);
      * the stem max-pool is 3x3/2 with no padding and ceil mode, not padding 1 (same output size at
        224px, but every window shifted by one pixel).
    Identical parameter names and shapes, so the weights map one to one. timm's legacy_seresnet50
    needs nothing like it (Cadene's SENet follows Caffe).
    """
    if pretrained:
        raise PretrainedWeightsError(
            "resnet50_caffe has no timm hub weights; load the VGGFace2 file with classifier=resnet50_vggface2 "
            "(classifier.pretrained_path=resnet50_ft_weight.pkl or FER_VGGFACE2_RESNET50)"
        )
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    model = timm.create_model("resnet50", pretrained=False, **kwargs)
    for layer in (model.layer2, model.layer3, model.layer4):
        block = layer[0]
        block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)
    model.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
    cfg = {
        **model.pretrained_cfg,
        "architecture": "resnet50_caffe",
        "tag": None,
        "hf_hub_id": None,
        "url": "",
        "mean": VGGFACE2_MEAN,
        "std": VGGFACE2_STD,
    }
    model.pretrained_cfg = model.default_cfg = cfg
    return model


# Our timm names -> their builders; a new architecture is one function above and one entry here.
ARCHITECTURES = {"resnet50_caffe": resnet50_caffe}


def register_architectures() -> None:
    """Make ARCHITECTURES timm names (idempotent): every name lookup in this package calls it first."""
    for name, builder in ARCHITECTURES.items():
        if not timm.is_model(name):
            register_model(builder)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """`timm.create_model(name, **kwargs)`, with this package's own architectures known."""
    register_architectures()
    return timm.create_model(name, **kwargs)
