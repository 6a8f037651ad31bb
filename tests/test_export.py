"""fer-export: the ONNX file runs in onnxruntime with torch's outputs and carries its preprocessing; an
export that does not reproduce torch is refused and leaves no file; bad arguments fail clearly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_helpers import astronaut, write_checkpoint
from torch import nn

onnxruntime = pytest.importorskip(
    "onnxruntime", reason="ONNX export needs the deploy extra (onnx, onnxruntime, onnxscript)"
)
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript (the deploy extra)")

from classifier.checkpoint import load_classifier  # noqa: E402 (after importorskip: skipped cleanly without the deploy extra)
from classifier.export import ExportError, export_classifier, read_onnx_meta  # noqa: E402 (after importorskip: skipped cleanly without the deploy extra)
from classifier.model import preprocess  # noqa: E402 (after importorskip: skipped cleanly without the deploy extra)
from classifier.predict import predict_proba  # noqa: E402 (after importorskip: skipped cleanly without the deploy extra)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "export.py"


def export_main():
    spec = importlib.util.spec_from_file_location("export_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    write_checkpoint(tmp_path / "run", image_size=40)
    return tmp_path / "run"


def test_onnx_export_matches_torch_and_carries_its_preprocessing(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "model.onnx"
    assert export_main()([str(run_dir), str(out)]) == 0
    assert "opset 18, dynamic batch" in capsys.readouterr().out
    meta = read_onnx_meta(out)
    model, ckpt_meta = load_classifier(run_dir)
    assert meta["class_names"] == ckpt_meta["class_names"] and meta["input_size"] == 40
    assert meta["mean"] == ckpt_meta["mean"] and meta["std"] == ckpt_meta["std"]

    # A deployment that knows only the file: preprocess as its metadata says, run, compare with this code's predict.
    photo = torch.from_numpy(astronaut()).permute(2, 0, 1)
    crops = torch.stack([photo[:, 60:180, 165:285], photo[:, 0:120, 0:120], photo[:, 200:320, 300:420]]).contiguous()
    crops = torch.nn.functional.interpolate(crops.float(), size=(40, 40), mode="area").round().to(torch.uint8)
    x = preprocess(crops, input_size=meta["input_size"], mean=meta["mean"], std=meta["std"]).numpy()
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    _, probs = session.run(None, {"images": x})
    assert probs.shape == (3, 7)  # a batch size the export never saw: the batch dimension is dynamic
    expected = predict_proba(model, crops, meta=ckpt_meta).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow  # ~20 s on 2 loaded cores (torch.export tracing)
def test_pt2_export_reloads_with_torch_alone(run_dir: Path, tmp_path: Path) -> None:
    model, meta = load_classifier(run_dir)
    report = export_classifier(model, meta, tmp_path / "model.pt2", fmt="pt2")
    assert report.max_abs_diff < 1e-4 and (tmp_path / "model.pt2").is_file()
    loaded = torch.export.load(str(tmp_path / "model.pt2")).module()
    x = torch.randn(5, 3, 40, 40)
    np.testing.assert_allclose(loaded(x)[0].detach().numpy(), model(x).detach().numpy(), atol=1e-5)


class NoisyClassifier(nn.Module):
    """Outputs that change on every call: no export of it can reproduce a torch run."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3)) @ torch.ones(3, 7) + torch.randn(images.shape[0], 7)


def test_an_export_that_does_not_reproduce_torch_is_refused(run_dir: Path, tmp_path: Path) -> None:
    _, meta = load_classifier(run_dir)
    out = tmp_path / "noisy.onnx"
    with pytest.raises(ExportError, match="differ from torch"):
        export_classifier(NoisyClassifier(), meta, out)
    assert list(tmp_path.glob("*.onnx")) == [] and list(tmp_path.glob(".noisy*")) == []


def test_bad_export_arguments_fail_clearly(run_dir: Path, tmp_path: Path, capsys) -> None:
    main = export_main()
    assert main([str(run_dir), str(tmp_path / "missing" / "model.onnx")]) == 2
    assert "does not exist (create it first)" in capsys.readouterr().err
    assert main([str(run_dir), str(tmp_path / "model.pt2")]) == 2
    assert "the onnx format writes a .onnx file" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing"), str(tmp_path / "model.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(run_dir), str(tmp_path / "model.onnx"), "--tta"])
    assert exit_info.value.code == 2 and "--tta is a prediction option" in capsys.readouterr().err
    assert not (tmp_path / "model.onnx").exists()
