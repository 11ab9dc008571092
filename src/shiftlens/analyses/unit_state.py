"""The units analysis's cross-part state: per model and patch size, the running per-position sum of every unit over
patches, kept on the run's device and saved as additive, atomically written *shards*.

Why shards: a part (one patch) is saved on its own, but the per-position mean over patches needs every patch. A
shard holds the sum over a set of parts and names them (patch id plus the random token each units part carries),
so a part's contribution is counted exactly once:

- a part saved after the last shard write (a run killed in between) is in no shard: it is recomputed;
- a part that is recomputed (stale, unreadable) gets a new token, so a shard that named its old token no longer
  matches the folder: that whole shard is deleted and its other parts are recomputed too;
- the build sums the shards, which must name exactly the folder's parts. Shards are additive, so several
  processes (one per worker) can each write their own.

Memory bound while running: sum over the tapped layers of positions x units x 8 bytes (float64), e.g. AlexNet fc6 at
stride 1 with 75 px patches: 22,500 x 4,096 x 8 = 737 MB, on the run's device. Building the outputs holds one
layer's sum and one shard's copy of it (twice that layer's share) at a time.
"""

from __future__ import annotations

import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from shiftlens.analyses.cross_part import CrossPartState
from shiftlens.store import PartMeta, ResultsDir, atomic_path, file_key

SHARD_SCHEMA = 1
FLUSH_EVERY_S = 300.0
"""Seconds of work after which the accumulator is written again (also at the end of every model and size): a killed
run loses at most this much, while a large accumulator (hundreds of MB at stride 1) is not rewritten per patch."""
TOKEN_NAME = "token"


class ShardMeta(BaseModel):
    """What a shard holds: the per-position sums of `layers` over the parts named in `parts` (patch id -> token)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SHARD_SCHEMA
    model: str
    patch_size: int
    n: int
    layers: list[str]
    parts: dict[str, str]


def shard_dir(results: ResultsDir, model: str, size: int) -> Path:
    """parts/units/MODEL/pSIZE/: beside the parts, one level deeper than a part, so part globs never see shards."""
    return results.root / "parts" / "units" / file_key(model) / f"p{size}"


def shard_paths(results: ResultsDir, model: str, size: int) -> list[Path]:
    return sorted(shard_dir(results, model, size).glob("shard-*.npz"))


def read_shard_meta(path: Path) -> ShardMeta | None:
    try:
        with np.load(path) as z:
            return ShardMeta.model_validate_json(bytes(z["__meta__"]).decode())
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError, UnicodeDecodeError):
        return None


def new_token() -> str:
    return uuid.uuid4().hex


def token_array(token: str) -> np.ndarray:
    return np.frombuffer(token.encode(), dtype=np.uint8).copy()


def part_token(path: Path) -> str | None:
    """The token a saved units part carries (any layer's: they are equal); None without one."""
    try:
        with np.load(path) as z:
            key = next((k for k in z.files if k.startswith("units/") and k.endswith(f"/{TOKEN_NAME}")), None)
            return bytes(z[key]).decode() if key else None
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError, UnicodeDecodeError):
        return None


def uncounted_parts(results: ResultsDir, model: str, size: int, reusable: list[PartMeta],
                    recomputed: set[str]) -> dict[str, str]:
    """Of the `reusable` finished parts of one model and size, those whose units contribution is in no valid shard,
    with the reason; `recomputed` are the patch ids computed anew in this run. Deletes the shards that no longer
    match the folder (they name a part that is recomputed, gone, or holds another token), and shards that name a
    part twice between them."""
    tokens = {m.patch_id: part_token(results.part_path(model, size, m.patch_id)) for m in reusable}
    valid: dict[Path, ShardMeta] = {}
    for path in shard_paths(results, model, size):
        meta = read_shard_meta(path)
        ok = (meta is not None and meta.model == model and meta.patch_size == size
              and all(pid not in recomputed and tokens.get(pid) == tok for pid, tok in meta.parts.items()))
        if ok:
            valid[path] = meta
        else:
            path.unlink()
    seen: dict[str, Path] = {}
    for path, meta in list(valid.items()):
        twice = [pid for pid in meta.parts if pid in seen]
        if twice:  # cannot happen with one writer per folder; never count a part twice
            for p in {path, *(seen[pid] for pid in twice)}:
                valid.pop(p, None)
                p.unlink(missing_ok=True)
        seen.update({pid: path for pid in meta.parts})
    counted = {pid for meta in valid.values() for pid in meta.parts}
    out = {}
    for m in reusable:
        if m.patch_id not in counted:
            out[m.patch_id] = ("its units contribution was never saved (a run stopped before it)" if tokens[m.patch_id]
                               else "it has no units arrays")
    return out


def uncounted(results: ResultsDir, model: str, done: list[tuple[int, Any, PartMeta]],
              todo: list[tuple[int, Any, PartMeta]]) -> list[tuple[int, Any, PartMeta, str]]:
    """The run's hook: of a model's finished parts `done` (size, patch, meta), those to compute again because their
    units contribution is in no valid shard, with the reason; `todo` are the parts computed anyway."""
    out = []
    for size in sorted({s for s, _, _ in done} | {s for s, _, _ in todo}):
        reusable = [m for s, _, m in done if s == size]
        redo = uncounted_parts(results, model, size, reusable, {m.patch_id for s, _, m in todo if s == size})
        out += [(s, patch, m, redo[m.patch_id]) for s, patch, m in done if s == size and m.patch_id in redo]
    return out


def load_sum(results: ResultsDir, model: str, size: int, layer: str, tokens: dict[str, str]) -> np.ndarray:
    """The per-position sum of `layer` over exactly the parts `tokens` (patch id -> token), from the shards:
    (positions, units) float64. A mismatch between shards and parts is a RuntimeError (a run that did not finish)."""
    total: np.ndarray | None = None
    covered: dict[str, str] = {}
    metas = [(path, read_shard_meta(path)) for path in shard_paths(results, model, size)]
    held = [(path, meta) for path, meta in metas if meta is not None and layer in meta.layers and meta.parts]
    # canonical order, by the parts a shard holds (not the shard's random name): the same sum however the parts
    # were shared out between processes, whenever float64 adds them exactly (see docs/ARCHITECTURE.md)
    for path, meta in sorted(held, key=lambda pm: sorted(pm[1].parts)):
        with np.load(path) as z:
            arr = z[f"sum/{meta.layers.index(layer)}"]
        if total is None:
            total = arr
        else:
            total += arr
        covered.update(meta.parts)
    if covered != tokens:
        missing = sorted(set(tokens) - set(covered))
        raise RuntimeError(f"units accumulator of {model} p{size} does not match its parts ({len(missing)} part(s) "
                           f"not in a shard, e.g. {missing[:3]}): run the same command again to complete it")
    assert total is not None
    return total


class UnitAccumulator(CrossPartState):
    """Per-position sums of every unit of the tapped layers over the parts of one model and patch size.

    The units analysis calls `add` for every batch and `finished` when a part's arrays are made; the executor's
    `CrossPartCompute` calls `saved` once the part is on disk and `close` at the end of the size. Only saved parts
    go into a shard."""

    analysis = "units"

    def __init__(self, results: ResultsDir, model: str, size: int, device: torch.device | str = "cpu",
                 flush_every_s: float = FLUSH_EVERY_S) -> None:
        super().__init__(results, model, size, device)
        self.n: int | None = None
        self.flush_every_s = flush_every_s
        self.sums: dict[str, torch.Tensor] = {}
        self.held: dict[str, str] = {}
        self.broken = False
        self.path = shard_dir(results, model, size) / f"shard-{new_token()[:12]}.npz"
        self._dirty = False
        self._last_flush = time.monotonic()

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.sums.values())

    def set_grid(self, n: int) -> None:
        """The n x n position grid of the parts (the same for every part of a model and size)."""
        if self.n is not None and self.n != n:
            raise RuntimeError(f"units accumulator of a {self.n} x {self.n} grid given a part of {n} x {n}")
        self.n = n

    def add(self, layer: str, idx: torch.Tensor, feats: torch.Tensor) -> None:
        """A batch of one part: `feats` (B, D) at flat positions `idx`, each position once per part."""
        acc = self.sums.get(layer)
        if acc is None:
            acc = self.sums[layer] = torch.zeros((self.n * self.n, feats.shape[1]), dtype=torch.float64,
                                                 device=self.device)
        acc.index_add_(0, idx.to(self.device), feats.to(self.device, torch.float64))

    def finished(self, patch_id: str, token: str) -> None:
        if patch_id in self.pending or patch_id in self.held:
            raise RuntimeError(f"part {patch_id} was added to the units accumulator twice")
        self.pending[patch_id] = token

    def saved(self, patch_id: str) -> None:
        """The part is on disk: its contribution may go into the shard (now, if the last write is old enough)."""
        self.held[patch_id] = self.pending.pop(patch_id)
        self._dirty = True
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def stop_writing(self) -> None:
        self.broken = True

    def flush(self) -> None:
        if self.broken:
            return
        if self.pending:
            raise RuntimeError(f"units accumulator flushed with unsaved parts {sorted(self.pending)[:3]}")
        if not self._dirty:
            return
        layers = list(self.sums)
        meta = ShardMeta(model=self.model, patch_size=self.size, n=self.n or 0, layers=layers, parts=dict(self.held))
        arrays = {f"sum/{i}": self.sums[l].cpu().numpy() for i, l in enumerate(layers)}
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:  # streamed: no in-memory copy of the sums
            np.savez(f, __meta__=np.frombuffer(meta.model_dump_json().encode(), dtype=np.uint8), **arrays)
        self._dirty = False
        self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()
        self.sums.clear()

    @classmethod
    def part_token(cls, path: Path) -> str | None:
        return part_token(path)

    @classmethod
    def uncounted(cls, results: ResultsDir, model: str, done: list[tuple[int, Any, PartMeta]],
                  todo: list[tuple[int, Any, PartMeta]]) -> list[tuple[int, Any, PartMeta, str]]:
        return uncounted(results, model, done, todo)


def shard_summary(results: ResultsDir, model: str, size: int) -> dict[str, int]:
    """Shard count and parts named, for logs and tests."""
    metas = [read_shard_meta(p) for p in shard_paths(results, model, size)]
    return {"shards": len(metas), "parts": sum(len(m.parts) for m in metas if m)}


__all__ = ["FLUSH_EVERY_S", "ShardMeta", "UnitAccumulator", "load_sum", "new_token", "part_token", "read_shard_meta",
           "shard_dir", "shard_paths", "shard_summary", "token_array", "uncounted", "uncounted_parts"]
