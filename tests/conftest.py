"""Shared fixtures: an isolated Avow config dir (identity, user models) and small test pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory):
    """One signing identity for the whole run: creating one per test would only test key generation."""
    return tmp_path_factory.mktemp("avow-home")


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """CI has two cores: one thread keeps model tests deterministic and leaves a core to subprocesses."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def avow_home(shared_home, monkeypatch):
    monkeypatch.setenv("AVOW_CONFIG_DIR", str(shared_home))
    return shared_home


def photo(height: int = 40, width: int = 48, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth picture with edges, so upscalers have something to do and seams would show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 5) % 256, (y * 7) % 256, ((x + y) * 3) % 256], axis=2).astype(np.float64)
    base[height // 3 : height // 2, width // 4 : width // 2] = 230
    noisy = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    if channels == 4:
        alpha = np.clip(x * 255 / max(width - 1, 1), 0, 255).astype(np.uint8)[..., None]
        return np.concatenate([noisy, alpha], axis=2)
    return noisy


@pytest.fixture
def jpeg_in(tmp_path):
    path = tmp_path / "input.jpg"
    Image.fromarray(photo()).save(path, quality=92)
    return path
