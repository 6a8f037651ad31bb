"""Loggers as a config group (conf/logger/): the default is still CSV + TensorBoard, several at once work,
W&B logs offline and MLflow to a local store (slow: each starts its own service; skipped without the
`loggers` extra), and a logger whose package is missing fails before training, naming the extra."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from classifier_helpers import tiny_cfg
from hydra import compose, initialize_config_dir
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from classifier.train import run_training
from faces.runkit.config import CONF_DIR
from faces.runkit.loggers import build_loggers


def composed(config_name: str, *overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name=config_name, overrides=list(overrides))


@pytest.mark.parametrize("config_name", ["train_classifier", "train_vaegan"])
def test_default_is_csv_and_tensorboard_and_choices_compose(config_name: str, tmp_path: Path) -> None:
    default = build_loggers(composed(config_name).logger, save_dir=tmp_path)
    assert [type(x) for x in default] == [CSVLogger, TensorBoardLogger]
    assert Path(default[0].log_dir) == tmp_path / "logs" and Path(default[1].log_dir) == tmp_path / "tensorboard"
    assert [type(x) for x in build_loggers(composed(config_name, "logger=csv").logger, save_dir=tmp_path)] == [
        CSVLogger
    ]
    assert build_loggers(composed(config_name, "logger=[]").logger, save_dir=tmp_path) == []
    # A run config saved before the group existed (an ablation being resumed) keeps the old loggers.
    assert [type(x) for x in build_loggers(None, save_dir=tmp_path)] == [CSVLogger, TensorBoardLogger]


def test_a_logger_without_its_package_names_the_extra(tmp_path: Path) -> None:
    if importlib.util.find_spec("comet_ml") is not None:
        pytest.skip("comet_ml is installed here: no missing package to report")
    spec = {"comet": {"_target_": "pytorch_lightning.loggers.CometLogger", "offline_directory": str(tmp_path)}}
    with pytest.raises(
        ImportError, match=r"logger=comet needs a package that is not installed.*fer-longtail\[loggers\]"
    ):
        build_loggers(spec, save_dir=tmp_path)
    with pytest.raises(ValueError, match="logger.bad must be a mapping with a _target_"):
        build_loggers({"bad": {"name": "x"}}, save_dir=tmp_path)


@pytest.mark.slow
def test_wandb_logs_offline_beside_csv_and_tensorboard(tiny_synthetic_root: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("wandb", reason="logger=wandb needs the loggers extra")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = tiny_cfg(tiny_synthetic_root, tmp_path, "logger=[csv,tensorboard,wandb]")
    run_training(cfg, run_dir=tmp_path / "run")
    (offline,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb"))  # the run, ready for `wandb sync`; nothing was sent
    assert (tmp_path / "run" / "logs" / "metrics.csv").is_file()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_mlflow_logs_to_a_local_store(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("mlflow", reason="logger=mlflow needs the loggers extra")
    from mlflow.tracking import MlflowClient

    cfg = tiny_cfg(tiny_synthetic_root, tmp_path, "logger=[csv,mlflow]")
    run_training(cfg, run_dir=tmp_path / "run")
    client = MlflowClient(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fer-longtail")
    (run,) = client.search_runs([experiment.experiment_id])
    assert any(key.startswith("train/loss") for key in run.data.metrics), sorted(run.data.metrics)
