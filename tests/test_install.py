"""The package as a user installs it: every console script points at a real `main`, the wheel holds every
package and config, and (slow) a wheel installed without -e into a fresh venv runs from another folder."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from deploy_helpers import astronaut, write_checkpoint
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# What the wheel maps from the checkout (package name -> folder).
MAPPED = SETUPTOOLS["package-dir"]


def module_file(module: str) -> Path | None:
    """The checkout file a wheel module comes from (fer_longtail.scripts.x -> scripts/x.py); None for code packages."""
    for package, folder in MAPPED.items():
        if module.startswith(package + "."):
            return ROOT / folder / (module[len(package) + 1 :].replace(".", "/") + ".py")
    return None


def test_every_console_script_points_at_a_function() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    assert {
        "fer-summary",
        "fer-train-vaegan",
        "fer-augment",
        "fer-train",
        "fer-evaluate",
        "fer-ablate",
        "fer-predict",
        "fer-export",
    } <= set(scripts)
    for command, target in scripts.items():
        module, _, function = target.partition(":")
        path = module_file(module)
        if path is None:
            assert callable(getattr(importlib.import_module(module), function)), command
            continue
        assert path.is_file(), f"{command}: {path} is missing"
        defined = {node.name for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef)}
        assert function in defined, f"{command}: {path} defines no top-level {function}()"
    # Every script with a main is a command (the bench scripts too), so nothing needs the checkout.
    commands = {target.partition(":")[0].rpartition(".")[2] for target in scripts.values()}
    for path in (ROOT / "scripts").glob("*.py"):
        if "\ndef main(" in path.read_text():
            assert path.stem in commands, f"scripts/{path.name} has a main() but no console script in pyproject.toml"


def test_the_wheel_lists_every_package_and_config() -> None:
    found = set(find_packages(where=str(ROOT), include=["faces*", "vaegan*", "classifier*", "ablation*"]))
    assert set(SETUPTOOLS["packages"]) == found | set(MAPPED), (
        "pyproject.toml [tool.setuptools] packages is out of date"
    )
    assert (ROOT / "conf" / "__init__.py").is_file()  # Hydra reads pkg:// config folders only from regular packages
    assert SETUPTOOLS["package-data"]["fer_longtail.conf"] == ["**/*.yaml"]
    assert not list((ROOT / "conf").rglob("*.yml")), "configs are .yaml (the wheel ships **/*.yaml)"


def build_wheel(tmp: Path) -> Path:
    """The wheel, built by setuptools' PEP 517 hook from a copy of the checkout (no build/ left in it)."""
    source = tmp / "source"
    top_level = {".git", ".venv", "outputs", ".cache", "data", "build", "tests", ".pytest_cache", "multirun"}

    def skip(folder: str, names: list[str]) -> set[str]:  # run products at the top only: conf/data/ is a config group
        return {
            n
            for n in names
            if n == "__pycache__" or n.endswith(".egg-info") or (Path(folder) == ROOT and n in top_level)
        }

    shutil.copytree(ROOT, source, ignore=skip)
    out = tmp / "dist"
    subprocess.run(
        [sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_wheel({str(out)!r})"],
        cwd=source,
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = out.glob("fer_longtail-*.whl")
    return wheel


def fresh_venv(tmp: Path) -> Path:
    """A new venv that sees this environment's packages through a .pth file (a venv made from a venv's
    python does not inherit its site-packages, and the tests never download)."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (purelib,) = venv.glob("lib/python*/site-packages")
    (purelib / "_reuse_test_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


@pytest.mark.slow
def test_wheel_installs_and_runs_from_another_folder(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    venv = fresh_venv(tmp_path)
    # --ignore-installed: this environment's editable fer-longtail must neither satisfy nor be touched.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def run(*argv: str) -> str:
        done = subprocess.run(
            [str(venv / "bin" / argv[0]), *argv[1:]],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    where = run(
        "python",
        "-c",
        "import faces, faces.runkit.config as c; print(faces.__file__); print(c.CONF_DIR); print(c.project_root())",
    )
    code, conf, root = where.split()
    assert code.startswith(str(venv)) and conf.startswith(str(venv)) and Path(conf, "train_classifier.yaml").is_file()
    assert Path(root) == elsewhere  # outputs, data and caches go under the current folder, not site-packages

    helped = run("fer-train", "--help")
    assert "balance: " in helped and "oversample" in helped  # the configs were found in the wheel
    resolved = run("fer-train", "--cfg", "job", "--resolve")
    assert f"output_dir: {elsewhere}/outputs" in resolved

    from PIL import Image

    write_checkpoint(elsewhere / "run")
    Image.fromarray(astronaut()).save(elsewhere / "astronaut.jpg")
    assert "1 face(s) classified" in run("fer-predict", "run", "astronaut.jpg", "--annotate", "ann")
    assert (elsewhere / "predictions.csv").read_text().count("\n") == 2 and (
        elsewhere / "ann" / "astronaut.png"
    ).is_file()
