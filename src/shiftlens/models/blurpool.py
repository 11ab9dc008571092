"""BlurPool (Zhang 2019): low-pass filter with a binomial kernel, then subsample, so that striding aliases less.

Written from the paper; its buffer `filt` (channels, 1, k, k) has the name and shape of the released
antialiased-cnns checkpoints, so they load with strict=True.
"""

from __future__ import annotations

from math import comb

import torch
import torch.nn.functional as F
from torch import nn

FILTER_SIZES = tuple(range(1, 8))


def binomial_filter(size: int) -> torch.Tensor:
    """The normalised 2-D binomial kernel: row `size - 1` of Pascal's triangle, outer product, sum 1."""
    row = torch.tensor([comb(size - 1, k) for k in range(size)], dtype=torch.float32)
    kernel = row[:, None] * row[None, :]
    return kernel / kernel.sum()


class BlurPool(nn.Module):
    """Depthwise blur with reflect padding (left/top (k-1)//2, right/bottom the rest), then stride."""

    def __init__(self, channels: int, filter_size: int = 5, stride: int = 2) -> None:
        super().__init__()
        if filter_size not in FILTER_SIZES:
            raise ValueError(f"filter_size must be 1..7, got {filter_size}")
        self.stride = stride
        lo, hi = (filter_size - 1) // 2, filter_size // 2
        self.pad = (lo, hi, lo, hi)
        self.register_buffer("filt", binomial_filter(filter_size)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.filt.shape[-1] == 1:  # identity filter: plain subsampling
            return x[:, :, :: self.stride, :: self.stride]
        return F.conv2d(F.pad(x, self.pad, mode="reflect"), self.filt, stride=self.stride, groups=x.shape[1])
