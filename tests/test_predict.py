"""fer-predict on real photos (scikit-image's astronaut, alone and pasted into a canvas), folders, a video,
and bad input: every file gets its row, nothing stops the batch, the CSV is complete or absent."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from deploy_helpers import astronaut, pasted_faces, write_checkpoint
from PIL import Image

cv2 = pytest.importorskip("cv2", reason="face detection needs opencv-python-headless (the deploy extra)")

from faces.align import FaceAligner, template_for  # noqa: E402 (after importorskip: skipped cleanly without the deploy extra)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "predict.py"


def predict_main():
    spec = importlib.util.spec_from_file_location("predict_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_astronaut_face_is_found_and_its_eyes_levelled() -> None:
    image = astronaut()
    faces = FaceAligner(size=100, template=template_for("rafdb"))(image)
    assert len(faces) == 1
    x, y, w, _ = faces[0].box
    assert 150 < x < 210 and 40 < y < 100 and 70 < w < 130  # her face, not the flag or the suit
    assert faces[0].eyes_found and faces[0].crop.shape == (100, 100, 3)

    # The same photo turned by 10 degrees: the eye line found is tilted by about that much, and levelled.
    turned = np.asarray(Image.fromarray(image).rotate(10, resample=Image.Resampling.BICUBIC, center=(225, 110)))
    tilted = FaceAligner(size=100, template=template_for("rafdb"))(turned)
    assert len(tilted) == 1 and tilted[0].eyes_found
    (lx, ly), (rx, ry) = tilted[0].eyes
    (l0x, l0y), (r0x, r0y) = faces[0].eyes
    change = math.degrees(math.atan2(ry - ly, rx - lx) - math.atan2(r0y - l0y, r0x - l0x))
    assert -15 < change < -5  # PIL turns counter-clockwise: the eye line's angle in image coordinates drops


def test_faces_pasted_into_a_canvas_are_all_found() -> None:
    faces = FaceAligner(size=64, template=template_for("synthetic"))(pasted_faces(copies=3))
    assert len(faces) == 3
    assert sorted(f.box[0] // 320 for f in faces) == [0, 1, 2]  # one per pasted copy


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    write_checkpoint(tmp_path / "run")
    return tmp_path / "run"


def test_predict_folder_with_faces_blanks_and_a_broken_file(run_dir: Path, tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.fromarray(astronaut()).save(photos / "astronaut.jpg")
    Image.fromarray(pasted_faces(copies=2)).save(photos / "sub" / "two.png")
    Image.fromarray(np.full((90, 120, 3), 90, np.uint8)).save(photos / "blank.png")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    (photos / "notes.txt").write_text("ignored: not an image")
    out = tmp_path / "out" / "predictions.csv"
    assert (
        predict_main()([str(run_dir), str(photos), "--tta", "--annotate", str(tmp_path / "ann"), "--out", str(out)])
        == 0
    )

    rows = read_rows(out)
    by_file = {}
    for row in rows:
        by_file.setdefault(Path(row["file"]).name, []).append(row)
    assert sorted(by_file) == ["astronaut.jpg", "blank.png", "broken.jpg", "two.png"]
    assert [r["status"] for r in by_file["blank.png"]] == ["no face"]
    assert (
        by_file["broken.jpg"][0]["status"].startswith("unreadable")
        and "broken.jpg" in by_file["broken.jpg"][0]["status"]
    )
    faces = by_file["astronaut.jpg"] + by_file["two.png"]
    assert len(by_file["two.png"]) == 2 and all(r["status"] == "ok" for r in faces)
    for row in faces:
        probs = [float(v) for k, v in row.items() if k.startswith("p_")]
        assert len(probs) == 7 and abs(sum(probs) - 1) < 1e-4
        assert row["class"] == max((k for k in row if k.startswith("p_")), key=lambda k: float(row[k]))[2:]
        assert int(row["width"]) > 50
    assert (tmp_path / "ann" / "astronaut.png").is_file() and (tmp_path / "ann" / "sub" / "two.png").is_file()
    annotated = np.asarray(Image.open(tmp_path / "ann" / "astronaut.png"))
    assert annotated.shape == astronaut().shape and not np.array_equal(annotated, astronaut())  # boxes drawn
    assert "3 face(s) classified, 1 picture(s) without a face, 1 unreadable" in capsys.readouterr().out


def test_flip_tta_gives_a_mirrored_crop_the_same_probabilities(run_dir: Path, tmp_path: Path, capsys) -> None:
    crop = astronaut()[60:180, 165:285]
    Image.fromarray(crop).save(tmp_path / "a.png")
    Image.fromarray(np.ascontiguousarray(crop[:, ::-1])).save(tmp_path / "b.png")
    probs = {}
    for tta in (False, True):
        out = tmp_path / f"tta{tta}.csv"
        predict_main()(
            [str(run_dir), str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--aligned", "--out", str(out), "--quiet"]
            + (["--tta"] if tta else [])
        )
        assert capsys.readouterr() == ("", "")  # --quiet: the CSV, and nothing on the console
        rows = read_rows(out)
        probs[tta] = [np.array([float(v) for k, v in r.items() if k.startswith("p_")]) for r in rows]
        assert [r["x"] for r in rows] == ["0", "0"]  # --aligned: the whole picture is the face
    assert np.abs(probs[True][0] - probs[True][1]).max() < 1e-5
    assert np.abs(probs[False][0] - probs[False][1]).max() > 1e-5  # without TTA the random network is not symmetric


def test_video_every_nth_frame_and_an_unreadable_video(run_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    frame = cv2.cvtColor(np.ascontiguousarray(astronaut()[:256, 96:352]), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (256, 256))
    for _ in range(5):
        writer.write(frame)
    writer.release()
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    out = tmp_path / "p.csv"
    assert (
        predict_main()(
            [
                str(run_dir),
                str(path),
                str(tmp_path / "broken.mp4"),
                "--every",
                "2",
                "--out",
                str(out),
                "--annotate",
                str(tmp_path / "ann"),
            ]
        )
        == 0
    )
    rows = read_rows(out)
    assert [(Path(r["file"]).name, r["frame"], r["status"]) for r in rows[:3]] == [
        ("clip.avi", str(k), "ok") for k in (0, 2, 4)
    ]
    assert rows[3]["file"].endswith("broken.mp4") and rows[3]["status"].startswith("unreadable")
    assert sorted(p.name for p in (tmp_path / "ann").iterdir()) == [f"clip_frame{k:06d}.png" for k in (0, 2, 4)]


def test_bad_input_fails_clearly_and_keeps_the_old_csv(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "p.csv"
    out.write_text("earlier results\n")
    empty = tmp_path / "empty"
    (empty / "deeper").mkdir(parents=True)
    (empty / "readme.txt").write_text("x")
    main = predict_main()
    assert main([str(run_dir), str(empty), "--out", str(out)]) == 2
    assert f"{empty} holds no images or videos" in capsys.readouterr().err
    assert main([str(run_dir), str(tmp_path / "missing.jpg"), "--out", str(out)]) == 2
    assert "missing.jpg does not exist" in capsys.readouterr().err

    Image.fromarray(astronaut()).save(tmp_path / "a.jpg")
    foreign = tmp_path / "vaegan.safetensors"
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"other": "{}"})
    assert main([str(foreign), str(tmp_path / "a.jpg"), "--out", str(out)]) == 2
    assert "vaegan.safetensors" in capsys.readouterr().err
    assert main([str(tmp_path), str(tmp_path / "a.jpg"), "--out", str(out)]) == 2  # a folder that is no run folder
    assert "checkpoints/best.safetensors" in capsys.readouterr().err
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    assert main([str(tmp_path / "model.onnx"), str(tmp_path / "a.jpg"), "--tta", "--out", str(out)]) == 2
    assert "exported model" in capsys.readouterr().err
    assert out.read_text() == "earlier results\n"
