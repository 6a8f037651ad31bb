"""Training throughput: images/s with real data served from the uint8 cache vs the same model fed a
batch already on the device; the difference is what the data path costs.

    python scripts/bench_classifier.py                                          # CPU: resnet18, 64px, small preset
    python scripts/bench_classifier.py --backbone resnet18 --image-size 112 --batch-size 256 --preset full --steps 100   # GPU (bf16, channels_last)
    python scripts/bench_classifier.py --matrix --threads 2                    # CPU fast paths per model (BENCHMARKS.md)

Both modes run the identical step: uint8 -> device -> batched augmentation -> normalise -> forward,
backward and AdamW update (bf16 autocast and channels_last on CUDA, plain fp32 on CPU; the per-model CPU
fast paths are --matrix's subject). Weights are random (speed does
not depend on them), so the benchmark runs offline.

--matrix times that step (on a fixed uint8 batch, no loader) per model and per CPU path:
fp32, fp32 + channels_last, bf16 autocast, bf16 autocast + channels_last (the choices behind
classifier.cpu_precision / classifier.cpu_channels_last). The variants are interleaved, round after
round, and the best round of each is kept: on a shared machine a burst of load from another job
then hits every variant alike instead of one, so the ratios are more trustworthy than the absolute
figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time

import torch
import torch.nn.functional as F

import faces
from classifier.backbones import create_backbone
from classifier.model import FERClassifier, preprocess
from classifier.transforms import TensorAugment
from faces.runkit.config import project_root
from faces.torchdata import BatchedFaceDataset, EpochSampler, make_loader


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument(
        "--image-size", type=int, default=64, help="side of the cached uint8 images and of the network input"
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per mode (cudnn autotune, allocator)")
    p.add_argument("--preset", default="small", help="synthetic faces preset: tiny | small | full")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--cache-dir", default=os.path.join(project_root(), ".cache", "faces"))
    p.add_argument("--data-dir", default=os.path.join(project_root(), "data", "synthetic_faces"))
    p.add_argument(
        "--matrix",
        action="store_true",
        help="CPU fast-path matrix: every --models x (fp32 | bf16) x (contiguous | channels_last)",
    )
    p.add_argument("--models", default="efficientnet_lite0,resnet18", help="--matrix: comma-separated timm backbones")
    p.add_argument(
        "--rounds", type=int, default=3, help="--matrix: interleaved rounds; the best round per variant counts"
    )
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return p.parse_args()


MATRIX = (("fp32", False), ("fp32 channels_last", True), ("bf16 autocast", False), ("bf16 channels_last", True))


def cpu_matrix(args: argparse.Namespace) -> None:
    """Training images/s of the classifier's step per model x CPU path, interleaved rounds, best of `rounds`."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (args.batch_size, 3, args.image_size, args.image_size), dtype=torch.uint8, generator=generator
    )
    labels = torch.randint(0, 7, (args.batch_size,), generator=generator)
    augment = TensorAugment()
    runs = {}
    for name in args.models.split(","):
        for variant, channels_last in MATRIX:
            torch.manual_seed(0)
            backbone, _ = create_backbone(name, pretrained="none")
            model = FERClassifier(backbone=backbone, num_classes=7).train()
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            runs[(name, variant)] = (
                model,
                optimizer,
                channels_last,
                variant.startswith("bf16"),
                backbone.pretrained_cfg,
            )

    def step(key: tuple[str, str]) -> None:
        model, optimizer, channels_last, bf16, cfg = runs[key]
        x = preprocess(augment(images.float().div(255.0)), input_size=args.image_size, mean=cfg["mean"], std=cfg["std"])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            features = model.features(x)
        loss = F.cross_entropy(model.classify(features), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    best = {key: 0.0 for key in runs}
    for key in runs:
        for _ in range(args.warmup):
            step(key)
    for _ in range(args.rounds):
        for key in runs:  # interleaved: every variant once per round
            start = time.perf_counter()
            for _ in range(args.steps):
                step(key)
            best[key] = max(best[key], args.steps * args.batch_size / (time.perf_counter() - start))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"device: CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads; torch {torch.__version__}; "
        f"load average (1 min) at the end: {load:.2f}"
    )
    print(
        f"step: uint8 -> augment -> preprocess -> forward -> cross-entropy -> backward -> AdamW; random init; "
        f"batch {args.batch_size} at {args.image_size}px; best of {args.rounds} interleaved rounds x {args.steps} steps "
        f"after {args.warmup} warm-up; training images/s"
    )
    names = [variant for variant, _ in MATRIX]
    print("| model | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for name in args.models.split(","):
        row = [best[(name, variant)] for variant in names]
        print(f"| {name} | " + " | ".join(f"{v:.1f} ({v / row[0]:.2f}x)" for v in row) + " |")


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.matrix:
        cpu_matrix(args)
        return
    device = select_device(args.device)
    cuda = device.type == "cuda"
    data = faces.load_faces(
        {"name": "synthetic", "preset": args.preset, "root": args.data_dir, "seed": 0, "image_size": args.image_size},
        cache_dir=args.cache_dir,
        splits=("train",),
    )
    train = data.train
    backbone, _ = create_backbone(args.backbone, pretrained="none")
    model = FERClassifier(backbone=backbone, num_classes=len(train.class_names)).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    augment = TensorAugment()
    mean, std = backbone.pretrained_cfg["mean"], backbone.pretrained_cfg["std"]

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        x = augment(images.float().div_(255.0))
        x = preprocess(x, input_size=args.image_size, mean=mean, std=std)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def timed(batches) -> float:
        for _ in range(args.warmup):
            step(*next(batches))
        sync()
        start = time.perf_counter()
        for _ in range(args.steps):
            step(*next(batches))
        sync()
        return args.steps * args.batch_size / (time.perf_counter() - start)

    fixed = (train.images[: args.batch_size].to(device), train.labels[: args.batch_size].to(device))

    def device_batches():
        while True:
            yield fixed

    model.train()
    on_device = timed(device_batches())
    from_cache = timed(cache_batches(train, batch_size=args.batch_size, device=device))
    on_device_2 = timed(device_batches())  # again, so drift in clocks/contention shows up
    print_throughput(args, device=device, num_train=len(train), rates=(on_device, from_cache, on_device_2))


def select_device(requested: str) -> torch.device:
    """The device to time on ("auto": CUDA if present); on CUDA, the fast-path settings training uses."""
    device = torch.device(
        "cuda" if requested == "auto" and torch.cuda.is_available() else ("cpu" if requested == "auto" else requested)
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def cache_batches(train, *, batch_size: int, device: torch.device):
    """Endless training batches from the uint8 cache, served as FaceDataModule serves them."""
    cuda = device.type == "cuda"
    dataset = BatchedFaceDataset(split=train, role="train")
    epoch = 0
    while True:
        sampler = EpochSampler(num_items=len(train), seed=0)
        sampler.set_epoch(epoch)
        # As FaceDataModule serves it: on CUDA the split lives on the GPU (DeviceBatches); on CPU a host gather.
        for images, labels in make_loader(
            dataset,
            sampler=sampler,
            batch_size=batch_size,
            drop_last=True,
            pin_memory=cuda,
            device=device if cuda else None,
        ):
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        epoch += 1


def print_throughput(args, *, device: torch.device, num_train: int, rates: tuple[float, float, float]) -> None:
    on_device, from_cache, on_device_2 = rates
    cuda = device.type == "cuda"
    reference = max(on_device, on_device_2)
    name = (
        torch.cuda.get_device_name(device)
        if cuda
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    print(f"device: {name}; torch {torch.__version__}; {'bf16 autocast, channels_last' if cuda else 'fp32'}")
    print(
        f"model: {args.backbone} (random init), input {args.image_size}x{args.image_size}, batch {args.batch_size}, "
        f"{args.steps} timed steps after {args.warmup} warm-up; data: synthetic {args.preset} ({num_train} train images, uint8 cache)"
    )
    print(f"tensors already on device : {on_device:10.1f} images/s (repeat: {on_device_2:.1f})")
    print(f"real data from the cache  : {from_cache:10.1f} images/s")
    print(f"loader overhead           : {100 * (1 - from_cache / reference):9.1f} %")


if __name__ == "__main__":
    main()
