"""The results folder and its typed records: run.json (`RunRecord`), one part per finished (model, size, patch)
(`PartMeta` + arrays = `Part`), tables, a zarr store of maps.

Every write is atomic (temporary file, then rename) and keeps the permissions the umask gives a plain `open()`, so a
run killed at any moment leaves only whole files and a copied site stays readable. A second run with the same command
skips the parts whose inputs (config, patch pixels, weights) are unchanged and recomputes the others. run.json and
part metadata are written and read only through the models below, with a schema version: a folder written by another
version is refused with one line, never read with guessed defaults.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import itertools
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from shiftlens.arithmetic.config import ArithmeticConfig
from shiftlens.config import RunConfig
from shiftlens.errors import ShiftlensError

SCHEMA_VERSION = 2
"""Bumped whenever run.json or part metadata change shape; folders of another version are refused, not guessed at."""

# -- atomic writes that respect the umask ---------------------------------------------------------------------


def _umask() -> int:
    """The process umask, read without changing it where the kernel reports it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _chmod_default(path: Path, directory: bool = False) -> None:
    """The mode a plain open() or mkdir() would have given (mkstemp and mkdtemp make owner-only files)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside `path` to write to (writers must be told the format: the name ends in .tmp);
    on success it replaces `path` in one rename, so readers and a killed run never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _chmod_default(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def temp_dir(parent: Path, prefix: str, suffix: str = "") -> Path:
    """A fresh folder beside its final place, to be filled and then swapped in (see `swap_in_dir`)."""
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix, suffix=suffix))
    _chmod_default(tmp, directory=True)
    return tmp


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


@contextlib.contextmanager
def atomic_dir(target: Path, prefix: str, suffix: str = "") -> Iterator[Path]:
    """Yields a fresh folder beside `target` to fill; on success it replaces `target` (`swap_in_dir`), on failure it
    is removed and `target` is left as it was: the folder-sized `atomic_path`."""
    tmp = temp_dir(target.parent, prefix=prefix, suffix=suffix)
    try:
        yield tmp
        swap_in_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def file_key(text: str) -> str:
    """A file name for a model or patch name: a readable slug plus a hash of the exact name, so two names never
    share a file (`cat 1` and `cat_1`, `猫` and `犬`) while the tables and the site keep the original names."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:48] or "x"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def digest_bytes(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()[:16]


# -- typed records ----------------------------------------------------------------------------------------------


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WeightsRecord(_Record):
    """Where a model's weights came from; `label` marks every table row, figure and page (`random (untrained)`)."""

    source: Literal["imagenet", "random", "file", "given module"]
    label: str
    untrained: bool
    digest: str
    """What resume compares: the weights file's sha256, `random:SEED`, or a hash of a given module's tensors."""
    file: str | None = None
    origin: str | None = None
    sha256: str | None = None
    seed: int | None = None


class ModelRecord(_Record):
    layers: list[str]
    description: str
    weights: WeightsRecord
    mean: list[float]
    std: list[float]
    net_stride: int | None
    """Total downsampling of the network (None where it could not be measured; the grid share is then left out)."""
    batch_size: int | None = None
    compiled: bool | None = None


class PatchRecord(_Record):
    id: str
    category: str
    source: str
    licence: str
    provenance: dict[str, Any]
    file: str
    """`file_key(id)`: the stem of the patch's files under parts/ and patches/."""


class Timing(_Record):
    seconds: float
    images: int
    images_per_s: float


class DeviceRecord(_Record):
    type: str
    name: str


class _RunBase(_Record):
    """What every results folder's run.json records, whichever command wrote it."""

    schema_version: int
    fingerprint: str
    versions: dict[str, str]
    device: DeviceRecord
    precision: str
    models: dict[str, ModelRecord]
    patches: list[PatchRecord]
    timings: dict[str, Timing]
    started: str
    status: Literal["running", "complete"]
    notes: list[str]
    finished: str | None = None
    tables: list[str] = []

    @property
    def untrained(self) -> bool:
        return any(m.weights.untrained for m in self.models.values())


class RunRecord(_RunBase):
    """run.json of `shiftlens run`: everything needed to read, trust and rebuild a run's results."""

    config: RunConfig
    positions: dict[int, int]
    figures: list[str] = []


class InversionRecord(_Record):
    """One (model, layer) of an arithmetic run inverted: which inverter, its settings, what it reached."""

    model: str
    layer: str
    inverter: Literal["optimise", "decoder"]
    settings: dict[str, Any]
    """The optimiser's InversionSettings fields, or the decoder's source, sha256 and training record."""
    key: str
    """What the stored images are reused against: the numbers' fingerprint, weights, patches and these settings."""
    images: int
    seconds: float
    median_feature_loss: float


class ArithmeticRecord(_RunBase):
    """run.json of `shiftlens arithmetic` (kind "arithmetic"): its config, models, scenes and expressions."""

    kind: Literal["arithmetic"]
    config: ArithmeticConfig
    scenes: dict[str, str]
    """Each scene as its compact string with every size written out (`cat_01:75@10,20 ...`)."""
    expressions: dict[str, str]
    problems: int
    inversions: list[InversionRecord] = []
    """How each (model, layer) was turned back into images (`--inverter`); empty with `none`."""
    figures: list[str] = []


class PartMeta(_Record):
    """A part's identity and the digests of its inputs: a part is reused only while all of them still match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION
    model: str
    weights: str
    untrained: bool
    patch_size: int
    patch_id: str
    category: str
    n: int
    fingerprint: str
    patch_digest: str
    weights_digest: str
    net_stride: int | None

    def stale_reason(self, stored: "PartMeta") -> str | None:
        """Why `stored` (the part on disk) cannot stand for this expected part; None if it can."""
        if stored.schema_version != self.schema_version:
            return "written by another version"
        if stored.fingerprint != self.fingerprint:
            return "config changed"
        if stored.patch_digest != self.patch_digest:
            return "patch image changed"
        if stored.weights_digest != self.weights_digest:
            return "weights changed"
        if (stored.model, stored.patch_size, stored.patch_id) != (self.model, self.patch_size, self.patch_id):
            return "belongs to another unit"
        return None


PART_COLUMNS = ["model", "layer", "weights", "patch_size", "patch", "category"]
"""The identity columns that open every per-patch table, in this order."""


@dataclass
class Part:
    """A finished unit loaded back from the store: its metadata and arrays keyed `analysis/layer/name`."""

    meta: PartMeta
    arrays: dict[str, np.ndarray]

    model = property(lambda self: self.meta.model)
    weights = property(lambda self: self.meta.weights)
    untrained = property(lambda self: self.meta.untrained)
    patch_size = property(lambda self: self.meta.patch_size)
    patch_id = property(lambda self: self.meta.patch_id)
    category = property(lambda self: self.meta.category)
    n = property(lambda self: self.meta.n)
    net_stride = property(lambda self: self.meta.net_stride)

    def row(self, layer: str, **values) -> dict:
        """A per-patch table row: the part's identity (PART_COLUMNS) followed by `values`."""
        return dict(model=self.model, layer=layer, weights=self.weights, patch_size=self.patch_size,
                    patch=self.patch_id, category=self.category, **values)

    def get(self, analysis: str, layer: str, name: str) -> np.ndarray | None:
        return self.arrays.get(f"{analysis}/{layer}/{name}")

    def layers(self, analysis: str) -> list[str]:
        seen = []
        for key in self.arrays:
            a, layer, _ = key.split("/", 2)
            if a == analysis and layer not in seen:
                seen.append(layer)
        return seen


# -- the folder -------------------------------------------------------------------------------------------------

OWN_ENTRIES = ("run.json", "parts", "tables", "figures", "maps.zarr", "site", "patches", "background.png",
               ".shiftlens.lock")
"""Top-level names a run writes; --force removes shiftlens's own files under them and nothing else."""
_LEFTOVER = re.compile(r"^\.(maps\..*\.zarr|site\..*|maps\.zarr\.old|site\.old|.*\.tmp)$")
"""Temporary files and folders a killed run can leave (atomic writes, store and site being built)."""


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

    @property
    def site_dir(self) -> Path:
        return self.root / "site"

    def part_path(self, model: str, size: int, patch_id: str) -> Path:
        return self.root / "parts" / file_key(model) / f"p{size}" / f"{file_key(patch_id)}.npz"

    def patch_png(self, size: int, patch_id: str) -> Path:
        return self.root / "patches" / f"p{size}" / f"{file_key(patch_id)}.png"

    @property
    def background_png(self) -> Path:
        """The canvas-sized background of a run whose background is an image or texture (not a flat colour)."""
        return self.root / "background.png"

    # -- run.json -------------------------------------------------------------------------------------------
    def read_run(self, record_type: type[_RunBase] = RunRecord) -> _RunBase | None:
        if not self.run_json.is_file():
            return None
        try:
            raw = json.loads(self.run_json.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ShiftlensError(f"{self.run_json} is corrupt: use another --out, or --force to replace the run") from None
        if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
            found = raw.get("schema_version", "none") if isinstance(raw, dict) else "none"
            raise ShiftlensError(f"{self.run_json} was written by another version of shiftlens (results schema {found}, "
                                 f"this version reads {SCHEMA_VERSION}): use another --out, or --force to replace the run")
        try:
            return record_type.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise ShiftlensError(f"{self.run_json} is not a valid run record ({where}: {first['msg']}): "
                                 "use another --out, or --force to replace the run") from None

    def write_run(self, record: RunRecord) -> None:
        atomic_write_text(self.run_json, record.model_dump_json(indent=2))

    # -- ownership, locking, leftovers ----------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One writer at a time: a second run into the same folder is refused while the first holds it (the kernel
        drops the lock when its process dies, even by kill -9)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".shiftlens.lock"
        with open(path, "a+") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise ShiftlensError(f"{self.root} is being written by another shiftlens run ({holder}): wait for it to "
                                     "finish, or use another --out") from None
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()}")
            f.flush()
            try:
                yield
            finally:
                f.seek(0)
                f.truncate()
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def remove_leftovers(self) -> list[Path]:
        """Delete the temporary files and folders a killed run left (names only shiftlens uses)."""
        removed = []
        for folder in [self.root] + [self.root / d for d in ("parts", "tables", "figures", "patches")]:
            if not folder.is_dir():
                continue
            for path in (folder.rglob(".*") if folder != self.root else folder.glob(".*")):
                if _LEFTOVER.match(path.name) and path.exists():
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                    removed.append(path)
        return removed

    def _own_files(self, record: _RunBase) -> list[Path]:
        """The files a shiftlens command writes, by their exact names: what --force may delete."""
        own = [self.run_json]
        own += [self.tables_dir / f"{t}.csv" for t in record.tables]
        own += [self.root / f for f in getattr(record, "figures", [])]
        own += list((self.root / "parts").glob("*/p*/*.npz"))
        own += list((self.root / "parts" / "arithmetic").glob("*.json"))
        own += list((self.root / "parts" / "arithmetic").glob("*.npz"))
        own += list((self.root / "parts" / "units").glob("*/p*/shard-*.npz"))  # the units analysis's sums
        own += list((self.root / "patches").glob("p*/*.png"))
        own += [self.background_png]
        return [p for p in own if p.is_file()]

    def clear(self, record: _RunBase) -> None:
        """Remove a previous run's results, and only them: a user's own files in the folder stay."""
        for path in self._own_files(record):
            path.unlink()
        for folder in (self.maps_zarr, self.site_dir):
            if folder.is_dir():
                shutil.rmtree(folder)
        for top in ("parts", "patches", "tables", "figures"):
            base = self.root / top
            if base.is_dir():
                for d in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [base]:
                    with contextlib.suppress(OSError):
                        d.rmdir()  # only when empty: anything else in it is not ours

    def free_sibling(self) -> Path:
        """The first `ROOT-2`, `ROOT-3`, ... that does not exist: where a run of another config can go instead."""
        return next(p for i in itertools.count(2) if not (p := self.root.with_name(f"{self.root.name}-{i}")).exists())

    def owned_summary(self, record: _RunBase) -> str:
        """What `--force` would delete, counted, for the refusal that offers it."""
        own = self._own_files(record)
        parts = sum(1 for p in own if self.root / "parts" in p.parents)
        tables = sum(1 for p in own if p.parent == self.tables_dir)
        figures = sum(1 for p in own if self.figures_dir in p.parents)
        folders = "".join(f", {f.name}/" for f in (self.maps_zarr, self.site_dir) if f.is_dir())
        return f"{parts} part(s), {tables} table(s), {figures} figure(s){folders} (files shiftlens did not write stay)"

    def prepare(self, cfg: Any, force: bool, record_type: type[_RunBase] = RunRecord) -> _RunBase | None:
        """Check the folder belongs to this config (anything with a `fingerprint()`: a RunConfig, an arithmetic
        config) or is new; with `force`, clear a shiftlens run of another config. Returns the previous record of
        the same config, to resume. Call it while holding `lock()`."""
        if self.root.exists() and not self.root.is_dir():
            raise ShiftlensError(f"--out {self.root} is a file: give a folder")
        try:
            previous = self.read_run(record_type)
        except ShiftlensError:
            if not force:
                raise
            raise ShiftlensError(f"--out {self.root}: its run.json cannot be read, so shiftlens cannot tell its own files "
                                 "from others and will not delete anything: use another --out") from None
        if previous is None:
            foreign = [p.name for p in self.root.iterdir() if p.name != ".shiftlens.lock"] if self.root.is_dir() else []
            if foreign:
                raise ShiftlensError(
                    f"--out {self.root} is not empty and holds no shiftlens run (it has {', '.join(sorted(foreign)[:3])}"
                    f"{', ...' if len(foreign) > 3 else ''}): choose an empty or new folder; --force never deletes "
                    "files shiftlens did not write"
                )
        elif previous.fingerprint != cfg.fingerprint():
            if not force:
                raise ShiftlensError(
                    f"--out {self.root} holds results of a different config (fingerprint {previous.fingerprint} "
                    f"vs {cfg.fingerprint()}): give a new folder, e.g. --out {self.free_sibling()}, or run that config "
                    f"again to resume it; --force would delete its {self.owned_summary(previous)}"
                )
            self.clear(previous)
            previous = None
        self.root.mkdir(parents=True, exist_ok=True)
        self.remove_leftovers()
        return previous

    # -- parts ----------------------------------------------------------------------------------------------
    def read_part_meta(self, path: Path) -> PartMeta | None:
        """The stored metadata alone (no arrays); None when the file is unreadable or of another schema."""
        try:
            with np.load(path) as z:
                return PartMeta.model_validate_json(bytes(z["__meta__"]).decode())
        except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError, UnicodeDecodeError):
            return None

    def part_state(self, expected: PartMeta) -> str | None:
        """None when a reusable part exists for `expected`, else why it must be computed ('new', or the reason)."""
        path = self.part_path(expected.model, expected.patch_size, expected.patch_id)
        if not path.is_file():
            return "new"
        stored = self.read_part_meta(path)
        if stored is None:
            return "its file is unreadable (truncated, or written by another version)"
        return expected.stale_reason(stored)

    def save_part(self, meta: PartMeta, arrays: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.frombuffer(meta.model_dump_json().encode(), dtype=np.uint8), **arrays)
        atomic_write_bytes(self.part_path(meta.model, meta.patch_size, meta.patch_id), buf.getvalue())

    def load_part(self, path: Path) -> Part:
        try:
            with np.load(path) as z:
                meta = PartMeta.model_validate_json(bytes(z["__meta__"]).decode())
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
        except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError, UnicodeDecodeError):
            raise ShiftlensError(f"result part {path} is corrupt or from another version: delete it and run the same "
                                 "command again to redo it") from None
        return Part(meta, arrays)

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
