"""Shared fixtures: small synthetic patch folders, a tiny config, and test-only models with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

torch.set_num_threads(min(2, torch.get_num_threads()))


def blob_rgba(size: int = 40, seed: int = 0) -> np.ndarray:
    """A textured object with an irregular (non-rectangular) binary mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0] = (255 * xx).astype(np.uint8)
    rgba[..., 1] = (255 * yy).astype(np.uint8)
    rgba[..., 2] = rng.integers(0, 255, (size, size), dtype=np.uint8)
    r = 0.35 + 0.1 * np.sin(6 * np.arctan2(yy - 0.5, xx - 0.5) + seed)
    rgba[..., 3] = np.where((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < r**2, 255, 0)
    return rgba


def write_patch_dir(root: Path, n: int = 2, categories=("cat", "cup")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cat = categories[i % len(categories)]
        Image.fromarray(blob_rgba(40 + 4 * i, seed=i), "RGBA").save(root / f"{cat}_{i:02d}.png")
    return root


@pytest.fixture
def patch_dir(tmp_path: Path) -> Path:
    return write_patch_dir(tmp_path / "patches")


class ConstantNet(nn.Module):
    """A network whose `const` tap cannot depend on the input and whose `mean` tap can."""

    def __init__(self) -> None:
        super().__init__()
        self.const = nn.Linear(1, 8)
        self.spatial = nn.Conv2d(3, 4, 5, stride=4)
        self.head = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(x.shape[0], 1, device=x.device)
        c = self.const(ones)
        s = self.spatial(x).flatten(1)
        return self.head(torch.cat([c, s], dim=1))


@pytest.fixture(scope="session")
def constant_model() -> str:
    from shiftlens.canvases import Normalisation
    from shiftlens.models import LayerSpec, ModelEntry, register

    register(
        ModelEntry(
            name="test_constant",
            description="test network: `const` does not depend on the input",
            build=ConstantNet,
            normalisation=Normalisation(),
            layers={
                "const": LayerSpec("const", "const", "input-independent"),
                "spatial": LayerSpec("spatial", "spatial", "a strided conv feature map, position-dependent"),
            },
            default_layers=("const", "spatial"),
        )
    )
    return "test_constant"


@pytest.fixture
def tiny_config(tmp_path: Path, patch_dir: Path):
    from shiftlens.config import RunConfig

    return RunConfig(models=["efficientnet_lite0:pool,fc"], patches=f"folder:{patch_dir}", sizes=[96, 160], stride=32,
                     weights="random", out=str(tmp_path / "out"), batch_size=16, site=False, analyses=["similarity"])


def part_meta(**fields):
    """A part's metadata for tests that build parts by hand; any field can be overridden."""
    from shiftlens.store import PartMeta

    values = dict(model="m", weights="imagenet", untrained=False, patch_size=75, patch_id="p", category="cat", n=3,
                  fingerprint="f", patch_digest="d", weights_digest="w", net_stride=32)
    return PartMeta(**(values | fields))
