"""The results folder: run.json, one part per finished (model, size, patch), tables, a zarr store of maps.

Every write is atomic (temporary file, then rename), so a run killed at any moment leaves only whole files, and a
second run with the same command skips the parts that exist. A folder made by another config is refused.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from shiftlens.analyses.base import Part
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def swap_in_dir(built: Path, target: Path) -> None:
    """Replace the folder `target` by the finished folder `built` (same parent), so readers never see half of it."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    built.rename(target)
    if old.exists():
        shutil.rmtree(old)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


class ResultsDir:
    """A run's results folder."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # -- layout ---------------------------------------------------------------------------------------------
    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    @property
    def maps_zarr(self) -> Path:
        return self.root / "maps.zarr"

    def part_path(self, model: str, size: int, patch_id: str) -> Path:
        return self.root / "parts" / safe_name(model) / f"p{size}" / f"{safe_name(patch_id)}.npz"

    def patch_png(self, size: int, patch_id: str) -> Path:
        return self.root / "patches" / f"p{size}" / f"{safe_name(patch_id)}.png"

    # -- run.json and config check --------------------------------------------------------------------------
    def read_run(self) -> dict[str, Any] | None:
        if not self.run_json.is_file():
            return None
        try:
            return json.loads(self.run_json.read_text())
        except json.JSONDecodeError:
            raise ShiftlensError(f"{self.run_json} is corrupt: remove the folder or run with --force") from None

    def write_run(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.run_json, json.dumps(info, indent=2, default=str))

    def prepare(self, cfg: RunConfig, force: bool) -> dict[str, Any] | None:
        """Check the folder belongs to this config; with `force`, clear the results of another config."""
        if self.root.exists() and not self.root.is_dir():
            raise ShiftlensError(f"--out {self.root} is a file: give a folder")
        previous = self.read_run() if self.root.is_dir() else None
        if previous is None and self.root.is_dir() and any(self.root.iterdir()) and not force:
            if not (self.root / "parts").is_dir():
                raise ShiftlensError(
                    f"--out {self.root} is not empty and holds no shiftlens run: choose an empty folder or pass --force"
                )
        if previous is not None and previous.get("fingerprint") != cfg.fingerprint():
            if not force:
                raise ShiftlensError(
                    f"--out {self.root} holds results of a different config (fingerprint {previous.get('fingerprint')} "
                    f"vs {cfg.fingerprint()}): use another --out, the same config, or --force to replace them"
                )
            previous = None
        if force and previous is None and self.root.is_dir():
            for name in ("parts", "tables", "figures", "maps.zarr", "site", "patches", "run.json"):
                target = self.root / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        self.root.mkdir(parents=True, exist_ok=True)
        return previous

    # -- parts ----------------------------------------------------------------------------------------------
    def has_part(self, model: str, size: int, patch_id: str) -> bool:
        return self.part_path(model, size, patch_id).is_file()

    def save_part(self, model: str, size: int, patch_id: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
        atomic_write_bytes(self.part_path(model, size, patch_id), buf.getvalue())

    def load_part(self, path: Path) -> Part:
        try:
            with np.load(path) as z:
                meta = json.loads(bytes(z["__meta__"]).decode())
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
        except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError):
            raise ShiftlensError(f"result part {path} is corrupt: delete it and run the same command again to redo it") from None
        return Part(model=meta["model"], weights=meta["weights"], patch_size=meta["patch_size"],
                    patch_id=meta["patch_id"], category=meta["category"], n=meta["n"], arrays=arrays, meta=meta)

    def iter_parts(self) -> Iterator[Part]:
        for path in sorted((self.root / "parts").glob("*/p*/*.npz")):
            yield self.load_part(path)

    def parts(self, order: list[tuple[str, int, str]] | None = None) -> list[Part]:
        """All parts; in `order` (model, size, patch) when given, so tables follow the config's order."""
        if order is None:
            return list(self.iter_parts())
        return [self.load_part(self.part_path(*key)) for key in order if self.part_path(*key).is_file()]

    # -- tables ---------------------------------------------------------------------------------------------
    def write_table(self, name: str, df: pd.DataFrame) -> Path:
        path = self.tables_dir / f"{name}.csv"
        atomic_write_text(path, df.to_csv(index=False, float_format="%.6g"))
        return path

    def read_table(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.tables_dir / f"{name}.csv")
