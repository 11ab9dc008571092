"""A model's input convention as an affine map per channel; it commutes with pasting, so blocks and backgrounds are
normalised once and composed afterwards."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Normalisation:
    """The model's input convention as an affine map per channel on RGB in [0, 1]: (x - mean) / std."""

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., 3) channels-last values in [0, 1]."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)
        return (x - mean) / std
