"""The two cross-validation protocols shared by separability and the location probe.

`paper`: StratifiedKFold(5, shuffle=False) over the row-major order, as `cross_val_score(cv=5)` does for a classifier
(docs/protocol.md, Experiment 2): contiguous bands of rows. For top/bottom, fold k holds the k-th band of top rows
and the k-th band of bottom rows, so the first and the last fold take a band at the midline out of the training rows
and the max-margin boundary falls inside it (docs/protocol.md works out what that costs).
`shuffled`: StratifiedKFold(5, shuffle=True, random_state=seed), features standardised on the training folds: the
second protocol that shiftlens adds.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from shiftlens.errors import ShiftlensError

PROTOCOLS = ("paper", "shuffled")
N_FOLDS = 5
CROSS_VALIDATED = ("separability", "location")
"""The analyses that cross-validate over a patch's positions with these folds."""
TASKS = ("left_right", "top_bottom")
"""Task labels: 1 = left (x index < n/2) and 1 = top (y index < n/2); for odd n the middle column is left and the
middle row is top."""


def task_labels(n: int) -> np.ndarray:
    """(2, n*n) labels in row-major order: left/right, then top/bottom."""
    r, c = np.divmod(np.arange(n * n), n)
    return np.stack([(c < n / 2), (r < n / 2)]).astype(np.int64)


def splitter(protocol: str, seed: int, stratified: bool = True):
    if protocol not in PROTOCOLS:
        raise ShiftlensError(f"unknown CV protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    cls = StratifiedKFold if stratified else KFold
    if protocol == "paper":
        return cls(n_splits=N_FOLDS, shuffle=False)
    return cls(n_splits=N_FOLDS, shuffle=True, random_state=seed)


def fold_masks(labels: np.ndarray, protocol: str, seed: int) -> np.ndarray:
    """(T, K, N) boolean test masks, stratified per task's labels."""
    t, n = labels.shape
    if n < 2 * N_FOLDS:
        raise ShiftlensError(f"{n} positions are too few for {N_FOLDS}-fold cross-validation: use a smaller --stride")
    out = np.zeros((t, N_FOLDS, n), bool)
    for i in range(t):
        for k, (_, te) in enumerate(splitter(protocol, seed).split(np.zeros(n), labels[i])):
            out[i, k, te] = True
    return out


def regression_masks(n: int, protocol: str, seed: int) -> np.ndarray:
    """(K, N) test masks for a regression target (plain KFold with the same shuffle rule)."""
    out = np.zeros((N_FOLDS, n), bool)
    for k, (_, te) in enumerate(splitter(protocol, seed, stratified=False).split(np.zeros(n))):
        out[k, te] = True
    return out


def check_positions(analyses: list[str], positions: dict[int, int], stride: int) -> None:
    """Before any work: every patch size must give enough positions for the folds of the cross-validated analyses
    selected (`positions`: patch size -> positions per patch)."""
    cross_validated = [a for a in analyses if a in CROSS_VALIDATED]
    if not cross_validated:
        return
    size, fewest = min(positions.items(), key=lambda kv: kv[1])
    if fewest < 2 * N_FOLDS:
        raise ShiftlensError(
            f"{cross_validated[0]} needs at least {2 * N_FOLDS} positions per patch for {N_FOLDS}-fold "
            f"cross-validation, but {size}px patches at stride {stride} give {fewest}: use a smaller --stride "
            f"or leave out --analyses {','.join(cross_validated)}"
        )
