"""Speed paths of the classifier, checked on CPU: the per-model CPU fast path (bf16 autocast, channels_last)
keeps same seed, same result; the head, the post-hoc bias and predicted probabilities stay fp32 under
autocast; deterministic=true is mapped to "warn" on a GPU; batches indexed on the device equal the
DataLoader's; a non-finite loss stops training; the judge trains on the GPU it is given."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import timm
import torch
from classifier_helpers import tiny_cfg
from omegaconf import OmegaConf

from ablation.judge import judge_trainer
from classifier.balance import resolve_balance
from classifier.checkpoint import read_meta
from classifier.model import FERClassifier
from classifier.predict import predict_logits, predict_proba
from classifier.train import build_run, fit, load_run_data, run_training
from classifier.trainer import (
    DDP_TIMEOUT,
    deterministic_setting,
    trainer_kwargs,
    training_fast_path,
)
from faces import load_faces
from faces.torchdata import (
    BatchedFaceDataset,
    DeviceBatches,
    EpochSampler,
    ShardSampler,
    make_loader,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_deterministic_true_becomes_warn_on_gpu_only() -> None:
    value, message = deterministic_setting(True, gpu=True)
    assert value == "warn" and "no deterministic CUDA backward" in message and "trainer=cpu" in message
    assert deterministic_setting(True, gpu=False) == (True, None)
    assert deterministic_setting("warn", gpu=True) == ("warn", None)
    assert deterministic_setting(False, gpu=True) == (False, None)
    assert trainer_kwargs(OmegaConf.create({"accelerator": "cpu", "deterministic": True}))["deterministic"] is True


def test_ddp_ranks_wait_for_each_other_at_most_the_timeout() -> None:
    cfg = OmegaConf.create({"accelerator": "cpu", "strategy": "ddp", "devices": 2})
    for freeze_epochs, unused in ((0, False), (2, True)):  # a frozen stage leaves the backbone without gradients
        strategy = trainer_kwargs(cfg, freeze_epochs=freeze_epochs)["strategy"]
        assert strategy._timeout == DDP_TIMEOUT and strategy._ddp_kwargs.get("find_unused_parameters", False) is unused


def test_fast_path_per_model_and_bad_values() -> None:
    cpu, gpu = OmegaConf.create({"accelerator": "cpu"}), OmegaConf.create({"accelerator": "gpu"})
    for name in ("efficientnet_lite0", "resnet18", "resnet10t_scratch"):
        classifier = OmegaConf.load(CONF / "classifier" / f"{name}.yaml")
        fast = training_fast_path(classifier, cpu)
        assert fast.autocast == (torch.bfloat16 if classifier.cpu_precision == "bf16-mixed" else None)
        assert fast.channels_last is classifier.cpu_channels_last
        # On a GPU, trainer.precision (bf16-mixed) autocasts every step; channels_last always.
        assert training_fast_path(classifier, gpu) == type(fast)(autocast=None, channels_last=True)
    with pytest.raises(ValueError, match=r"classifier.cpu_precision='bf16'; choose one of \['32-true', 'bf16-mixed'\]"):
        training_fast_path(OmegaConf.create({"cpu_precision": "bf16"}), cpu)
    with pytest.raises(ValueError, match=r"classifier.cpu_channels_last='yes'; choose true or false"):
        training_fast_path(OmegaConf.create({"cpu_channels_last": "yes"}), cpu)


def test_head_bias_and_probabilities_stay_fp32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = FERClassifier(backbone=timm.create_model("resnet10t", num_classes=0), num_classes=7).eval()
    model.logit_bias.copy_(torch.linspace(-1.0, 1.0, 7))
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    meta = {"input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "class_names": [str(i) for i in range(7)]}
    x = (images.float() / 255 - 0.5) / 0.25
    with torch.no_grad(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        features = model.features(x)
        logits = model(x)
        probs = predict_proba(model, images, meta=meta, batch_size=4)
    assert features.dtype == torch.bfloat16  # the backbone does run in bf16 ...
    assert logits.dtype == torch.float32 and model.logit_bias.dtype == torch.float32  # ... the head and the bias do not
    with torch.no_grad():
        assert torch.equal(logits, model.head(features.float()) + model.logit_bias)
    assert probs.dtype == torch.float32 and torch.allclose(probs.sum(1), torch.ones(6))
    # Outside autocast, prediction is plain fp32 end to end.
    assert torch.equal(predict_logits(model, images, meta=meta, batch_size=4), model(x).detach())


def test_device_batches_equal_the_host_loader(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    train = load_faces(
        {"name": "synthetic", "preset": "tiny", "root": str(tiny_synthetic_root), "seed": 0, "image_size": 32},
        cache_dir=tmp_path / "cache",
        splits=("train",),
    ).train
    dataset = BatchedFaceDataset(split=train, role="train")
    for drop_last in (True, False):
        sampler = EpochSampler(num_items=len(train), seed=3, rank=1, world_size=2)
        host = make_loader(dataset, sampler=sampler, batch_size=16, drop_last=drop_last, pin_memory=False)
        device = make_loader(dataset, sampler=sampler, batch_size=16, drop_last=drop_last, device="cpu")
        assert isinstance(device, DeviceBatches) and device.sampler is sampler and len(device) == len(host)
        for epoch in (0, 1):
            sampler.set_epoch(epoch)  # what Lightning does through `.sampler` each epoch
            expected, served = list(host), list(device)
            assert len(served) == len(expected)
            for (hx, hy), (dx, dy) in zip(expected, served):
                assert dx.dtype == torch.uint8 and torch.equal(hx, dx) and torch.equal(hy, dy)
    shard = ShardSampler(num_items=len(train), rank=0, world_size=1)
    assert sum(len(y) for _, y in make_loader(dataset, sampler=shard, batch_size=50, device="cpu")) == len(train)


def test_lightning_trains_from_device_batches(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    """What FaceDataModule serves on a GPU, run through Lightning on the CPU: sized, and re-shuffled per epoch."""
    cfg = tiny_cfg(tiny_synthetic_root, tmp_path, "train.epochs=2")
    spec = resolve_balance(cfg.balance)
    built = build_run(cfg, spec=spec, run=load_run_data(cfg, spec=spec, evaluate_test=False), cascade_from=None)
    dm = built.datamodule
    sampler = EpochSampler(num_items=len(dm.train_set), seed=0)
    train = DeviceBatches(dm.train_set, sampler=sampler, batch_size=16, drop_last=True, device="cpu")
    val = DeviceBatches(dm.val_set, sampler=ShardSampler(num_items=len(dm.val_set)), batch_size=64, device="cpu")
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(built.module, train_dataloaders=train, val_dataloaders=val)
    assert (
        trainer.global_step == 4
        and sampler.epoch == 1
        and built.module.last_val_metrics["num_samples"] == len(dm.val_set)
    )


def test_cpu_prediction_takes_the_checkpoints_memory_format() -> None:
    """A checkpoint whose model trained channels_last on the CPU predicts in NHWC there too: the same logits
    up to float summation order; without the flag (older checkpoints) the model stays contiguous."""
    torch.manual_seed(0)
    model = FERClassifier(backbone=timm.create_model("resnet10t", num_classes=0), num_classes=7).eval()
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    meta = {"input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "class_names": [str(i) for i in range(7)]}
    plain = predict_logits(model, images, meta=meta)
    stem = model.backbone.conv1[0].weight
    assert stem.is_contiguous()
    nhwc = predict_logits(model, images, meta={**meta, "cpu_channels_last": True})
    assert stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous()
    assert torch.allclose(nhwc, plain, atol=1e-4, rtol=1e-4)
    assert nhwc.argmax(1).tolist() == plain.argmax(1).tolist()


def test_fast_path_same_seed_same_result(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    """The default backbone on its CPU default path (and the fast path switched on for the tiny test
    backbone too): two runs with one seed give identical metrics."""
    runs = {
        "lite0": ["classifier=efficientnet_lite0", "classifier.input_size=32", "train.freeze_epochs=0"],
        "fast": ["classifier.cpu_precision=bf16-mixed", "classifier.cpu_channels_last=true"],
    }
    keys = ("accuracy", "mean_class_accuracy", "macro_f1", "confusion_matrix")
    for name, overrides in runs.items():
        cfg = tiny_cfg(tiny_synthetic_root, tmp_path, "seed=3", *overrides)
        first = run_training(cfg, run_dir=tmp_path / f"{name}_a")
        second = run_training(cfg, run_dir=tmp_path / f"{name}_b")
        assert {k: first[k] for k in keys} == {k: second[k] for k in keys}, name
        # The checkpoint records the memory format its model trained in, for prediction on the CPU.
        assert read_meta(tmp_path / f"{name}_a" / "checkpoints" / "best.safetensors")["cpu_channels_last"] is True


def test_non_finite_loss_stops_training(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(tiny_synthetic_root, tmp_path, "train.limit_train_batches=3")
    spec = resolve_balance(cfg.balance)
    built = build_run(cfg, spec=spec, run=load_run_data(cfg, spec=spec, evaluate_test=False), cascade_from=None)
    with torch.no_grad():
        built.module.model.head.weight.fill_(float("nan"))  # every logit, hence every loss, is NaN
    with pytest.raises(
        FloatingPointError, match=r"non-finite training loss in the last steps of epoch 0 \(on 1 of 1 rank"
    ):
        fit(cfg, built=built, run_dir=tmp_path / "run")


def test_judge_trains_on_the_gpu_it_is_given() -> None:
    assert judge_trainer(torch.device("cpu")) == "cpu"
    trainer = judge_trainer(torch.device("cuda:1"))  # composed only: no GPU needed to check the choice
    assert trainer.accelerator == "gpu" and list(trainer.devices) == [1]
