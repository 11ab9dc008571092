"""Image priors of natural pre-images (Mahendran & Vedaldi): total variation, the alpha-norm and random jitter.

Each prior returns one value per image, so that images optimised in one batch do not interact: a batch gives the
same images as the same targets one by one. Images are RGB in [0, 1], NCHW.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TV_SCALE = 0.05
"""A typical difference between neighbouring pixels of a natural image in [0, 1] units (Mahendran & Vedaldi's V,
about B / 6.5 for their pixel range B): TV is measured in these units, so its weight reads on the paper's scale."""
TV_EPS = 1e-4
"""Keeps the gradient of the TV term finite where neighbouring pixels are equal (beta < 2), in TV_SCALE units."""


def total_variation(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean over pixels of ((dx^2 + dy^2) / V^2)^(beta/2), per image: beta = 2 smooths, beta = 1 keeps sharper
    edges."""
    dx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    dy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    return ((dx.square() + dy.square()) / TV_SCALE**2 + TV_EPS).pow(beta / 2).mean(dim=(1, 2, 3))


def alpha_norm(x: torch.Tensor, alpha: float, centre: float = 0.5) -> torch.Tensor:
    """Mean over pixels of |2 (x - centre)|^alpha, per image: near 0 inside the range, 1 at its ends, so a large
    alpha leaves ordinary pixels alone and only holds back pixels that run to the bounds."""
    return (2 * (x - centre)).abs().pow(alpha).mean(dim=(1, 2, 3))


def jitter(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The batch translated by (dy, dx) pixels, edges repeated: a different small shift at every step keeps the
    optimiser from fitting the features with pixel-exact high-frequency patterns."""
    if dy == 0 and dx == 0:
        return x
    m = max(abs(dy), abs(dx))
    padded = F.pad(x, (m, m, m, m), mode="replicate")
    h, w = x.shape[-2:]
    return padded[:, :, m - dy : m - dy + h, m - dx : m - dx + w]
