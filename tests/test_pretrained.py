"""The offline ImageNet EfficientNet-Lite0 loads into timm exactly and classifies real photos."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from faces.features import efficientnet_lite0_state_dict, imagenet_efficientnet_lite0, imagenet_normalize

skimage_data = pytest.importorskip("skimage.data")

# ImageNet indices: 967 espresso; 281..285 cats (285 Egyptian cat).
EXPECTED = {"coffee": {967, 968}, "chelsea": {281, 282, 283, 284, 285}}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return imagenet_efficientnet_lite0().eval()


def test_all_keys_map_with_nothing_missing_or_unexpected() -> None:
    import timm

    target = timm.create_model("efficientnet_lite0", pretrained=False)
    result = target.load_state_dict(efficientnet_lite0_state_dict(), strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_classifies_real_images_sensibly(model: torch.nn.Module, name: str) -> None:
    image = torch.from_numpy(getattr(skimage_data, name)()).permute(2, 0, 1)[None]
    x = imagenet_normalize(
        F.interpolate(image.float(), size=(224, 224), mode="bilinear", antialias=True).round().to(torch.uint8)
    )
    with torch.no_grad():
        top5 = model(x).softmax(-1).topk(5).indices[0].tolist()
    assert top5[0] in EXPECTED[name], top5


def test_feature_extractor_head() -> None:
    features = imagenet_efficientnet_lite0(num_classes=0).eval()
    with torch.no_grad():
        out = features(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 1280) and torch.isfinite(out).all()
