"""Face-pretrained backbones: MS-Celeb ResNet-18 and VGGFace2 ResNet-50 / SENet-50 files in
their published formats, built here with random values of the real key names and shapes.

The VGGFace2 checks compare against a reference written from cydonia999/VGGFace2-pytorch's
models/resnet.py and models/senet.py (Caffe layout, BGR 0..255 minus mean input), so they test that
the timm model + RGB preprocessing computes what the original network computes, not just that
tensors were copied.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from omegaconf import OmegaConf
from torch import nn

from classifier.architectures import register_architectures
from classifier.backbones import PretrainedWeightsError, check_pretrained_source, create_backbone
from classifier.face_weights import FORMATS, VGGFACE2_MEAN_BGR, load_weights_file
from classifier.model import preprocess
from classifier.weight_files import CONVERTED_META_KEY, read_weight_pickle

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf" / "classifier"


# ---------------------------------------------------------------- files in the published formats


def msceleb_file(
    path: Path, *, num_classes: int = 12666, prefix: str = "module.", arch: str = "resnet18", seed: int = 0
) -> tuple[Path, nn.Module]:
    """SCN/DAN-style checkpoint: {"state_dict": torchvision names (DataParallel-prefixed), identity head}."""
    torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    _randomise_bn(net)
    torch.save({"epoch": 40, "arch": arch, "state_dict": {prefix + k: v for k, v in net.state_dict().items()}}, path)
    return path, net


def _randomise_bn(net: nn.Module) -> None:
    # Non-trivial BatchNorm statistics, so a mis-mapped running_mean/var would show in the features.
    generator = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.weight.data = torch.rand(n, generator=generator) + 0.5
            module.bias.data = torch.randn(n, generator=generator) * 0.1
            module.running_mean = torch.randn(n, generator=generator) * 0.1
            module.running_var = torch.rand(n, generator=generator) + 0.5


class CaffeBottleneck(nn.Module):
    """cydonia999's Bottleneck: stride on the 1x1 conv1; SENet adds conv4/conv5 (1x1, bias) as SE."""

    def __init__(self, inplanes: int, planes: int, *, stride: int, se: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.se = se
        if se:
            self.conv4 = nn.Conv2d(planes * 4, planes * 4 // 16, 1)
            self.conv5 = nn.Conv2d(planes * 4 // 16, planes * 4, 1)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se:
            gate = F.avg_pool2d(out, kernel_size=out.size(2))
            out = torch.sigmoid(self.conv5(F.relu(self.conv4(gate)))) * out
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class CaffeResNet50(nn.Module):
    """The VGGFace2 ResNet-50 / SENet-50 of cydonia999/VGGFace2-pytorch (state_dict names as in its pickles)."""

    def __init__(self, *, se: bool, num_classes: int = 8631) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
        inplanes = 64
        for index, (planes, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), start=1):
            layer = []
            for b in range(blocks):
                layer.append(CaffeBottleneck(inplanes, planes, stride=stride if b == 0 else 1, se=se))
                inplanes = planes * 4
            setattr(self, f"layer{index}", nn.Sequential(*layer))
        self.fc = nn.Linear(2048, num_classes)

    def features(self, bgr_minus_mean: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(bgr_minus_mean))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        # The original's AvgPool2d(7) is the global average at its 224px input; global here for any size.
        return x.mean((2, 3))


def vggface2_pickle(path: Path, *, se: bool, protocol: int = 4, seed: int = 0) -> tuple[Path, CaffeResNet50]:
    """A weight pickle as cydonia999 distributes it: dict name -> numpy array, no num_batches_tracked.

    Protocol 4 rebuilds arrays through numpy's _reconstruct like the original Python 2 export, with raw
    bytes (protocol 2 from Python 3 would wrap every buffer in a latin1 text string: 1.5x the size);
    the other protocols and numpy spellings are covered on small files below."""
    torch.manual_seed(seed)
    net = CaffeResNet50(se=se)
    _randomise_bn(net)
    arrays = {k: v.numpy().copy() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    with path.open("wb") as handle:
        pickle.dump(arrays, handle, protocol=protocol)
    return path, net.eval()


@pytest.fixture(scope="module")
def senet50_pickle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CaffeResNet50]:
    return vggface2_pickle(tmp_path_factory.mktemp("vggface2") / "senet50_ft_weight.pkl", se=True)


@pytest.fixture(scope="module")
def resnet50_pickle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CaffeResNet50]:
    return vggface2_pickle(tmp_path_factory.mktemp("vggface2") / "resnet50_ft_weight.pkl", se=False)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- MS-Celeb ResNet-18


@pytest.mark.parametrize(("num_classes", "prefix"), [(12666, "module."), (8631, "")])
def test_msceleb_resnet18_gives_torchvisions_features(num_classes: int, prefix: str, tmp_path: Path) -> None:
    path, net = msceleb_file(tmp_path / "resnet18_msceleb.pth", num_classes=num_classes, prefix=prefix)
    backbone = timm.create_model("resnet18", num_classes=0)
    report = load_weights_file(backbone, path, backbone="resnet18", weights_format="msceleb_resnet18")
    assert set(report.dropped) == {"fc.weight", "fc.bias"}  # the identity head, whatever its size
    assert report.missing == () and report.mapped == 100  # 60 parameters + 2 x 20 BatchNorm running stats
    assert report.weights_used == f"msceleb_resnet18:{path}"
    cfg = backbone.pretrained_cfg
    assert cfg["mean"] == (0.485, 0.456, 0.406) and cfg["std"] == (0.229, 0.224, 0.225)

    net.fc = nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone.eval()(x), net.eval()(x), atol=1e-5)


def test_create_backbone_reports_the_face_weights_it_used(tmp_path: Path) -> None:
    path, _ = msceleb_file(tmp_path / "resnet18_msceleb.pth")
    model, used = create_backbone(
        "resnet18", pretrained="file", pretrained_path=str(path), weights_format="msceleb_resnet18"
    )
    assert used == f"msceleb_resnet18:{path}"
    assert model.num_features == 512
    with pytest.raises(PretrainedWeightsError, match=r"classifier=resnet18_msceleb"):
        create_backbone("resnet34", pretrained="file", pretrained_path=str(path), weights_format="msceleb_resnet18")
    with pytest.raises(PretrainedWeightsError, match=r"weights_format='vggface' is not one of"):
        create_backbone("resnet18", pretrained="file", pretrained_path=str(path), weights_format="vggface")


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("resnet34", r"layer1\.2\.conv1\.weight \(64, 64, 3, 3\), which timm resnet18 does not have"),
        (
            "resnet50",
            r"layer1\.0\.conv1\.weight has shape \(64, 64, 1, 1\) in the file but layer1\.0\.conv1\.weight is \(64, 64, 3, 3\)",
        ),
    ],
)
def test_wrong_architecture_names_the_first_mismatched_key_and_shape(arch: str, expected: str, tmp_path: Path) -> None:
    path, _ = msceleb_file(tmp_path / f"{arch}.pth", arch=arch, num_classes=10)
    with pytest.raises(PretrainedWeightsError, match=expected) as error:
        create_backbone("resnet18", pretrained_path=str(path), weights_format="msceleb_resnet18")
    assert str(path) in str(error.value) and "weights_format=msceleb_resnet18" in str(error.value)


# ---------------------------------------------------------------- VGGFace2 (Caffe) ResNet-50 / SENet-50


@pytest.mark.parametrize("name", ["resnet50", "senet50"])
def test_vggface2_backbone_computes_the_caffe_network_on_rgb_input(name: str, request: pytest.FixtureRequest) -> None:
    path, reference = request.getfixturevalue(f"{name}_pickle")
    fmt = FORMATS[f"vggface2_{name}"]
    raw = {k: v.shape for k, v in reference.state_dict().items()}  # what the pickle was written from
    # The cydonia999 names and shapes: stride on the 1x1 conv, SE convs as conv4/conv5, 8631 identities.
    assert raw["layer2.0.conv1.weight"] == (128, 256, 1, 1) and raw["fc.weight"] == (8631, 2048)
    assert ("layer1.0.conv4.weight" in raw) == (name == "senet50")
    if name == "senet50":
        assert raw["layer1.0.conv4.weight"] == (16, 256, 1, 1) and raw["layer1.0.conv5.bias"] == (256,)

    backbone, used = create_backbone(
        fmt.architecture, pretrained="file", pretrained_path=str(path), weights_format=fmt.name
    )
    assert used == f"{fmt.name}:{path}"
    backbone.eval()
    mean, std = backbone.pretrained_cfg["mean"], backbone.pretrained_cfg["std"]
    assert np.allclose(np.array(mean) * 255, VGGFACE2_MEAN_BGR[::-1]) and np.allclose(std, 1 / 255)
    first = "layer0.conv1.weight" if name == "senet50" else "conv1.weight"
    assert torch.equal(backbone.state_dict()[first], reference.conv1.weight.flip(1))  # BGR -> RGB

    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)  # RGB, as the data pipeline gives
    caffe_input = images.flip(1).float() - torch.tensor(VGGFACE2_MEAN_BGR).view(1, 3, 1, 1)  # BGR 0..255 - mean
    with torch.no_grad():
        ours = backbone(preprocess(images, input_size=64, mean=mean, std=std))
        theirs = reference.features(caffe_input)
    assert ours.shape == (2, 2048)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * float(theirs.abs().max()))

    if name == "resnet50":  # the Caffe layout matters: timm's own resnet50 with the same tensors differs
        plain = timm.create_model("resnet50", num_classes=0).eval()
        plain.load_state_dict(backbone.state_dict())
        with torch.no_grad():
            assert not torch.allclose(
                plain(preprocess(images, input_size=64, mean=mean, std=std)), theirs, rtol=1e-2, atol=1e-2
            )


def test_vggface2_report_drops_only_the_identity_head(senet50_pickle: tuple[Path, CaffeResNet50]) -> None:
    path, _ = senet50_pickle
    backbone = timm.create_model("legacy_seresnet50", num_classes=0)
    report = load_weights_file(backbone, path, backbone="legacy_seresnet50", weights_format="vggface2_senet50")
    assert set(report.dropped) == {"fc.weight", "fc.bias"}
    # Caffe has no step counter
    assert report.missing and all(k.endswith("num_batches_tracked") for k in report.missing)
    assert report.mapped == sum(not k.endswith("num_batches_tracked") for k in backbone.state_dict())
    assert "BGR -> RGB" in report.summary()


def test_vggface2_pickle_of_the_other_architecture_is_refused(resnet50_pickle: tuple[Path, CaffeResNet50]) -> None:
    path, _ = resnet50_pickle
    with pytest.raises(PretrainedWeightsError, match=r"lacks .* first layer1\.0\.se_module\.fc1\.weight"):
        create_backbone("legacy_seresnet50", pretrained_path=str(path), weights_format="vggface2_senet50")
    with pytest.raises(PretrainedWeightsError, match=r"is a pickle.*classifier=resnet50_vggface2"):
        create_backbone("resnet50", pretrained_path=str(path))  # weights_format=timm never unpickles


@pytest.mark.parametrize("spelling", ["protocol5", "numpy1"])
def test_weight_pickles_from_other_numpy_and_protocols_load(spelling: str, tmp_path: Path) -> None:
    arrays = {
        "conv1.weight": np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2),
        "bn1.running_var": np.ones(4, np.float32),
    }
    data = pickle.dumps(arrays, protocol=5 if spelling == "protocol5" else 2)
    if spelling == "numpy1":  # what numpy < 2 (and the original Python 2 export) writes
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"numpy.core.multiarray\n_reconstruct" in data
    path = tmp_path / "w.pkl"
    path.write_bytes(data)
    loaded = read_weight_pickle(path)
    assert loaded.keys() == arrays.keys() and all(np.array_equal(loaded[k], arrays[k]) for k in arrays)


class _SystemPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _ExecPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize(
    ("payload", "refused"),
    [(_SystemPayload, r"posix\.system|nt\.system"), (_ExecPayload, r"(builtins|__builtin__)\.exec")],
)
def test_pickle_with_a_code_payload_is_refused_and_runs_nothing(payload, refused: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "senet50_ft_weight.pkl"
    # Hidden among real arrays, after them, as a tampered download would be.
    path.write_bytes(
        pickle.dumps(
            {"conv1.weight": np.zeros((64, 3, 7, 7), np.float32), "layer1.0.conv4.bias": payload(marker)}, protocol=2
        )
    )
    with pytest.raises(
        PretrainedWeightsError,
        match=rf"refusing to unpickle {re.escape(str(path))}: it references the global ({refused})",
    ):
        read_weight_pickle(path)
    with pytest.raises(PretrainedWeightsError, match="refusing to unpickle"):
        create_backbone("legacy_seresnet50", pretrained_path=str(path), weights_format="vggface2_senet50")
    convert = load_script("convert_backbone")
    assert convert.main([str(path), str(tmp_path / "out.safetensors")]) == 2
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


# ---------------------------------------------------------------- converter


def test_converter_round_trips_msceleb_into_a_self_describing_safetensors(tmp_path: Path) -> None:
    path, _ = msceleb_file(tmp_path / "resnet18_msceleb.pth")
    out = tmp_path / "weights" / "resnet18_msceleb.safetensors"
    assert load_script("convert_backbone").main([str(path), str(out)]) == 0  # --format auto
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as handle:
        meta = json.loads(handle.metadata()[CONVERTED_META_KEY])
        assert not any(k.startswith("fc.") for k in handle.keys())  # noqa: SIM118 (safe_open is no dict)
    assert meta["architecture"] == "resnet18" and meta["weights_format"] == "msceleb_resnet18"
    assert meta["mean"] == [0.485, 0.456, 0.406] and meta["source_file"] == path.name
    assert not list(out.parent.glob(".*.tmp"))  # written atomically

    direct, _ = create_backbone("resnet18", pretrained_path=str(path), weights_format="msceleb_resnet18")
    # The converted file is what later runs load, via plain classifier.pretrained_path (weights_format=timm)...
    converted, used = create_backbone("resnet18", pretrained="hub", pretrained_path=str(out))
    assert used == f"msceleb_resnet18:{out}"
    assert converted.pretrained_cfg["mean"] == direct.pretrained_cfg["mean"]
    for key, value in direct.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    # ...or with the preset's format; another format or architecture is refused by name.
    assert create_backbone("resnet18", pretrained_path=str(out), weights_format="msceleb_resnet18")[1] == used
    with pytest.raises(PretrainedWeightsError, match="converted from weights_format=msceleb_resnet18"):
        create_backbone("resnet18", pretrained_path=str(out), weights_format="vggface2_senet50")
    with pytest.raises(PretrainedWeightsError, match="set classifier.backbone=resnet18"):
        create_backbone("resnet34", pretrained_path=str(out))


def test_converter_keeps_the_caffe_rgb_mapping(senet50_pickle: tuple[Path, CaffeResNet50], tmp_path: Path) -> None:
    path, _ = senet50_pickle
    out = tmp_path / "senet50_vggface2.safetensors"
    assert load_script("convert_backbone").main([str(path), str(out), "--format", "vggface2_senet50"]) == 0
    direct, _ = create_backbone("legacy_seresnet50", pretrained_path=str(path), weights_format="vggface2_senet50")
    converted, used = create_backbone(
        "legacy_seresnet50", pretrained="file", pretrained_path=str(out), weights_format="vggface2_senet50"
    )
    assert used == f"vggface2_senet50:{out}"
    assert (
        converted.pretrained_cfg["mean"] == direct.pretrained_cfg["mean"]
        and converted.pretrained_cfg["std"] == direct.pretrained_cfg["std"]
    )
    for key, value in direct.state_dict().items():  # flipped once, at conversion, not again at load
        assert torch.equal(converted.state_dict()[key], value), key
    with pytest.raises(
        PretrainedWeightsError, match=r"set classifier.backbone=legacy_seresnet50 \(classifier=senet50_vggface2\)"
    ):
        create_backbone("resnet50", pretrained_path=str(out))


# ---------------------------------------------------------------- presets and the early check


def test_face_presets_have_the_shape_of_the_others() -> None:
    keys = set(OmegaConf.load(CONF / "resnet18.yaml"))
    assert "weights_format" in keys
    for preset in CONF.glob("*.yaml"):
        cfg = OmegaConf.load(preset)
        assert set(cfg) == keys, preset.name
        assert cfg.weights_format == "timm" or FORMATS[cfg.weights_format].preset == preset.stem
        if cfg.weights_format != "timm":
            assert cfg.backbone == FORMATS[cfg.weights_format].architecture and timm.is_model(cfg.backbone)


@pytest.mark.parametrize(
    ("preset", "env_var", "where"),
    [
        ("resnet18_msceleb", "FER_MSCELEB_RESNET18", "SCN"),
        ("resnet50_vggface2", "FER_VGGFACE2_RESNET50", "cydonia999/VGGFace2-pytorch"),
        ("senet50_vggface2", "FER_VGGFACE2_SENET50", "cydonia999/VGGFace2-pytorch"),
    ],
)
def test_missing_face_weights_fail_early_naming_the_key_the_env_var_and_the_source(
    preset: str, env_var: str, where: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = OmegaConf.load(CONF / f"{preset}.yaml")
    monkeypatch.delenv(env_var, raising=False)
    with pytest.raises(PretrainedWeightsError) as error:
        check_pretrained_source(cfg)
    for part in (env_var, "classifier.pretrained_path", where, f"classifier={preset}"):
        assert part in str(error.value)
    with pytest.raises(PretrainedWeightsError, match=env_var):  # the same error from the builder itself
        create_backbone(
            cfg.backbone,
            pretrained=cfg.pretrained,
            pretrained_path=cfg.pretrained_path,
            weights_format=cfg.weights_format,
        )

    monkeypatch.setenv(env_var, str(tmp_path / "nowhere.pkl"))
    with pytest.raises(PretrainedWeightsError, match=rf"nowhere\.pkl \(taken from \${env_var}\) does not exist"):
        check_pretrained_source(cfg)

    present = tmp_path / "weights.bin"
    present.write_bytes(b"")  # the early check only looks for the file; reading it is create_backbone's job
    monkeypatch.setenv(env_var, str(present))
    assert check_pretrained_source(cfg) == f"{cfg.weights_format}:{present}"


def test_experiment_uses_msceleb_when_its_file_is_set_else_the_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    experiment = OmegaConf.load(REPO / "conf" / "experiment" / "rafdb_resnet18.yaml")
    overrides = [o for o in experiment.classifier_overrides if o.startswith("classifier.")]
    assert "classifier=resnet18_msceleb" in experiment.classifier_overrides
    cfg = OmegaConf.merge(
        OmegaConf.load(CONF / "resnet18_msceleb.yaml"),
        OmegaConf.from_dotlist([o[len("classifier.") :] for o in overrides]),
    )
    monkeypatch.delenv("FER_MSCELEB_RESNET18", raising=False)
    assert check_pretrained_source(cfg) == "timm-hub:resnet18"
    path, _ = msceleb_file(tmp_path / "resnet18_msceleb.pth", num_classes=10)
    monkeypatch.setenv("FER_MSCELEB_RESNET18", str(path))
    assert check_pretrained_source(cfg) == f"msceleb_resnet18:{path}"


def test_plain_timm_presets_are_unchanged_by_the_check() -> None:
    cfg = OmegaConf.load(CONF / "efficientnet_lite0.yaml")
    assert check_pretrained_source(cfg) == "package:efficientnet_lite0"
    with pytest.raises(PretrainedWeightsError, match="needs classifier.pretrained_path=PATH"):
        check_pretrained_source(OmegaConf.merge(cfg, {"pretrained": "file"}))


def test_timm_format_keeps_todays_behaviour_and_converts_too(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = timm.create_model("resnet10t", num_classes=1000)
    path = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model, used = create_backbone("resnet10t", pretrained="none", pretrained_path=str(path))  # weights_format=timm
    assert used == f"file:{path}" and model.pretrained_cfg["mean"] == source.pretrained_cfg["mean"]
    assert (
        check_pretrained_source({"backbone": "resnet10t", "pretrained": "none", "pretrained_path": str(path)})
        == f"file:{path}"
    )

    out = tmp_path / "converted.safetensors"
    assert (
        load_script("convert_backbone").main([str(path), str(out), "--format", "timm", "--backbone", "resnet10t"]) == 0
    )
    converted, used = create_backbone("resnet10t", pretrained="none", pretrained_path=str(out))
    assert used == f"file:{out}"
    for key, value in model.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key


def test_resnet50_caffe_is_a_timm_name_with_the_caffe_layout() -> None:
    # Registered (not patched after creation) so a classifier checkpoint that records backbone=resnet50_caffe
    # is rebuilt with the same computation by timm.create_model.
    register_architectures()
    model = timm.create_model("resnet50_caffe", num_classes=0)
    assert model.layer2[0].conv1.stride == (2, 2) and model.layer2[0].conv2.stride == (1, 1)
    assert model.maxpool.padding == 0 and model.maxpool.ceil_mode
    assert model.state_dict().keys() == timm.create_model("resnet50", num_classes=0).state_dict().keys()
    features = model(torch.zeros(1, 3, 112, 112))
    assert model.pretrained_cfg["architecture"] == "resnet50_caffe" and features.shape == (1, 2048)
