"""Backbone creation: local weight files (.pth, .safetensors, prefixed keys), wrong files, name suggestions."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from classifier.backbones import UnknownBackboneError, check_backbone_name, create_backbone
from faces.features import PretrainedWeightsError


@pytest.fixture(scope="module")
def source() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet10t", num_classes=1000)


@pytest.mark.parametrize("fmt", ["pth", "safetensors", "lightning"])
def test_local_weight_file_loads_everything_but_the_head(fmt: str, source: torch.nn.Module, tmp_path: Path) -> None:
    state = source.state_dict()
    path = tmp_path / f"w.{'safetensors' if fmt == 'safetensors' else 'pth'}"
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt == "pth":
        torch.save(state, path)
    else:  # a Lightning-style checkpoint: nested under state_dict, keys prefixed with "model."
        torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    model, where = create_backbone("resnet10t", pretrained="none", pretrained_path=str(path))
    assert where == f"file:{path}"
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert model.num_features == 512 and model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 512)


def test_wrong_weight_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}, str(path))
    with pytest.raises(PretrainedWeightsError, match="does not fit"):
        create_backbone("resnet10t", pretrained="none", pretrained_path=str(path))


def test_unknown_backbone_suggests_close_timm_names() -> None:
    with pytest.raises(UnknownBackboneError, match=r"did you mean .*efficientnet_lite0"):
        check_backbone_name("efficientnet-lite0")
    assert check_backbone_name("convnext_tiny") == "convnext_tiny"
