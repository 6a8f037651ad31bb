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


@pytest.fixture
def one_thread():
    """One intra-op thread for tiny models: on a shared 2-core machine OpenMP's spinning threads
    stall each other (10x slower steps observed); restored afterwards for the rest of the suite."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
