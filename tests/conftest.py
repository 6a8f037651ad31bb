"""Shared test set-up: offline, CPU, tiny real image trees built in tmp dirs."""

from __future__ import annotations

import os

# No test may touch the network; timm/huggingface_hub fail fast instead of retrying.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from faces.runkit.config import register_resolvers  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
# Like every entry point, the test session registers ${project_root:} before composing configs.
register_resolvers()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tiny_synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `tiny` preset rendered once per test session (280 train / 140 test at 32px)."""
    from faces.synthetic import ensure_synthetic_faces

    root = tmp_path_factory.mktemp("synthetic_faces")
    ensure_synthetic_faces(root=root, preset="tiny", seed=0)
    return root


@pytest.fixture(scope="module")
def fit(tiny_synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny preset's fit split (train minus the validation carve-out): the generation tests' real sources."""
    import faces

    cfg = {"name": "synthetic", "preset": "tiny", "seed": 0, "root": str(tiny_synthetic_root)}
    data = faces.load_faces(cfg, cache_dir=tmp_path_factory.mktemp("cache"), splits=("train",))
    return data.train_val()[0]


@pytest.fixture(scope="module")
def model():
    """A real, small, untrained 32 px VAE-GAN (seeded): the generation tests exercise machinery, not quality."""
    from vaegan.model import VAEGAN

    torch.manual_seed(0)
    return VAEGAN(resolution=32, latent_dim=32, num_classes=7, base_channels=8, max_channels=32).eval()


@pytest.fixture
def one_thread():
    """One intra-op thread for tiny models: on a shared 2-core machine OpenMP's spinning threads
    stall each other (10x slower steps observed); restored afterwards for the rest of the suite."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
