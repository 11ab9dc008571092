"""The results folder and its typed records: run.json (`RunRecord`), one part per finished (model, size, patch)
(`PartMeta` + arrays = `Part`), tables, a zarr store of maps.

Every write is atomic (temporary file, then rename) and keeps the permissions the umask gives a plain `open()`, so a
run killed at any moment leaves only whole files and a copied site stays readable. A second run with the same command
skips the parts whose inputs (config, patch pixels, weights) are unchanged and recomputes the others. run.json and
part metadata are written and read only through the models below, with a schema version: a folder written by another
version is refused with one line, never read with guessed defaults, and one whose config no longer gives the
fingerprint it records (edited by hand) is not trusted. Nothing is written or deleted through a symbolic link; the
folders built whole (maps.zarr, site) list the files shiftlens wrote in `.shiftlens-files`, so a rebuild or --force
removes those and keeps a user's.
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


def copy_file(src: Path, dst: Path) -> None:
    """Copy a file's bytes with the mode the umask gives (shutil.copy2 keeps the source's, e.g. a package's 644
    under umask 027); a symbolic link is refused, so nothing outside the folder is published through one."""
    if src.is_symlink():
        raise ShiftlensError(f"{src} is a symbolic link, which shiftlens never makes: replace it by the file, or "
                             "remove it and run the command that writes it again")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    _chmod_default(dst)


MANIFEST = ".shiftlens-files"
"""Inside a folder shiftlens builds whole (maps.zarr, site): the files it wrote there, one relative path a line, so
a rebuild or --force removes those and keeps anything a user added."""


def _files_under(folder: Path) -> list[str]:
    """Every file and link under `folder` as relative POSIX paths, never descending into a linked folder."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        out += [(base / n).relative_to(folder).as_posix() for n in filenames]
        out += [(base / n).relative_to(folder).as_posix() for n in dirnames if (base / n).is_symlink()]
    return sorted(out)


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise ShiftlensError(f"{path} is a symbolic link, which shiftlens never makes: remove the link (what it points "
                             "to is left alone) and run again")


def own_files_in(folder: Path) -> tuple[list[Path], list[Path]]:
    """(files shiftlens wrote in `folder` by its manifest, the other files and links there); a folder without a
    manifest (an earlier version's) is refused, since its files cannot be told from a user's."""
    _refuse_link(folder)
    if not folder.exists():
        return [], []
    if not folder.is_dir():
        raise ShiftlensError(f"{folder} is a file, not the folder shiftlens writes there: move it away and run again")
    present = _files_under(folder)
    manifest = folder / MANIFEST
    if manifest.is_symlink() or not manifest.is_file():
        raise ShiftlensError(f"{folder} holds no list of the files shiftlens wrote in it (an earlier version built "
                             "it), so they cannot be told from yours: move out anything of yours, delete the folder "
                             "(shiftlens rebuilds it from the parts), and run again")
    listed = set(manifest.read_text(encoding="utf-8", errors="surrogateescape").splitlines()) | {MANIFEST}
    ours = [folder / r for r in present if r in listed and not (folder / r).is_symlink()]
    return ours, [folder / r for r in present if folder / r not in set(ours)]


def _write_manifest(folder: Path) -> None:
    text = "".join(f"{r}\n" for r in _files_under(folder))
    (folder / MANIFEST).write_text(text, encoding="utf-8", errors="surrogateescape")


def _remove_empty_dirs(top: Path) -> None:
    """Remove the empty folders under `top` and `top` itself if it ends empty (a non-empty one holds a user's file)."""
    if top.is_symlink() or not top.is_dir():
        return
    for d in sorted((Path(p) for p, _, _ in os.walk(top)), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()


def _rmtree_own(path: Path) -> None:
    """Remove a folder shiftlens made itself (a temporary or old copy); a link there is removed, never followed."""
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def swap_in_dir(built: Path, target: Path) -> None:
    """Replace the folder `target` by the finished folder `built` (same parent), so readers never see half of it.
    Files a user added to `target` (not in its manifest) are moved into the new folder, never deleted; a link at
    `target` is refused."""
    _write_manifest(built)
    old = target.with_name(f".{target.name}.old")
    _rmtree_own(old)
    if target.exists() or target.is_symlink():
        _, foreign = own_files_in(target)
        clash = [f for f in foreign if (built / f.relative_to(target)).exists()]
        if clash:
            raise ShiftlensError(f"{clash[0]} was not written by shiftlens, and the rebuilt {target.name} writes a "
                                 "file of that name: move yours elsewhere and run again")
        moved: list[tuple[Path, Path]] = []
        try:
            for f in foreign:
                dest = built / f.relative_to(target)
                dest.parent.mkdir(parents=True, exist_ok=True)
                f.rename(dest)
                moved.append((f, dest))
            target.rename(old)
        except OSError:
            for f, dest in reversed(moved):
                dest.rename(f)
            raise
    built.rename(target)
    _rmtree_own(old)


@contextlib.contextmanager
def atomic_dir(target: Path, prefix: str, suffix: str = "") -> Iterator[Path]:
    """Yields a fresh folder beside `target` to fill; on success it replaces `target` (`swap_in_dir`), on failure it
    is removed and `target` is left as it was: the folder-sized `atomic_path`."""
    own_files_in(target)  # refuse a link or a folder of unknown files before any work
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
    table_sha256: dict[str, str] = {}
    """Each table's sha256 as written, checked before `report` publishes it (a truncated or edited CSV is refused)."""

    @property
    def untrained(self) -> bool:
        return any(m.weights.untrained for m in self.models.values())


@dataclass(frozen=True)
class RecordKind:
    """One kind of results folder: run.json's `kind`, the command that writes such folders, and its record type."""

    kind: str | None
    command: str
    record_type: type[_RunBase]


RECORD_KINDS: dict[str | None, RecordKind] = {}
"""run.json's `kind` -> its RecordKind. The store knows no experiment: each command's module registers its record
(`shiftlens run`'s below, `shiftlens arithmetic`'s in analyses/arithmetic/record.py)."""


def register_record_kind(kind: str | None, command: str):
    """Class decorator: `record_type` is what run.json of `kind` (None: no `kind` field) holds, written by `command`."""
    def register(record_type: type[_RunBase]) -> type[_RunBase]:
        RECORD_KINDS[kind] = RecordKind(kind, command, record_type)
        return record_type
    return register


@register_record_kind(None, "`shiftlens run`")
class RunRecord(_RunBase):
    """run.json of `shiftlens run`: everything needed to read, trust and rebuild a run's results."""

    config: RunConfig
    positions: dict[int, int]
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

LOCK_NAME = ".shiftlens.lock"
TRASH = ".shiftlens-trash."
"""Prefix of the folder inside --out that --force moves a previous run's files into before deleting them."""
OWN_ENTRIES = ("run.json", "parts", "tables", "figures", "maps.zarr", "site", "patches", "background.png", LOCK_NAME)
"""Top-level names a run writes; --force removes shiftlens's own files under them and nothing else."""
_LEFTOVER = re.compile(r"^\.(maps\..*\.zarr|site\..*|maps\.zarr\.old|site\.old|shiftlens-trash\..*|.*\.tmp)$")
"""Temporary files and folders a killed run can leave (atomic writes, store and site being built, --force's trash)."""
_KEYED = re.compile(r"^[A-Za-z0-9._-]+-[0-9a-f]{8}\.(npz|png)$")
"""A part or patch file's name: `file_key` of its patch id."""


class OtherKind(ShiftlensError):
    """The folder holds another command's results (a `shiftlens run` vs a `shiftlens arithmetic`)."""


class EditedRecord(ShiftlensError):
    """run.json reads, but disagrees with itself (edited by hand): its files are known, its results not trusted."""


def _command_of(record_type: type[_RunBase]) -> str:
    return next(k.command for k in RECORD_KINDS.values() if k.record_type is record_type)


def _field_problem(exc: ValidationError) -> str:
    """The first problem of a record in shiftlens's words (pydantic's own wording never reaches a user)."""
    first = exc.errors()[0]
    where = ".".join(str(x) for x in first["loc"]) or "the record"
    kind = first["type"]
    if kind == "missing":
        return f"{where} is missing"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"{where} is not a field shiftlens writes"
    return f"{where} has a value of the wrong type or out of range"


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _acquire(path: Path, root: Path) -> int:
    """An exclusive flock on `path`, or one line naming the holder. Retried when the file was unlinked by its holder
    between our open and our flock, so two processes never hold locks on two different files of one name."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                _refuse_link(path)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise ShiftlensError(f"{root} is being written by another shiftlens run ({holder}): wait for it to "
                                 "finish, or use another --out") from None
        if _same_file(fd, path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
            return fd
        os.close(fd)


def _remove_created(created: list[Path]) -> None:
    """Remove the folders a command created (innermost first) while they are empty: a refused command leaves the
    place as it found it."""
    for d in created:
        try:
            d.rmdir()
        except OSError:
            return


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
    def _load_record(self, record_type: type[_RunBase]) -> _RunBase | None:
        """run.json as `record_type`, or one line saying why it cannot be read (corrupt, another schema, another
        kind of folder, a field out of place)."""
        if not self.run_json.is_file():
            return None
        try:
            raw = json.loads(self.run_json.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ShiftlensError(f"{self.run_json} is corrupt: use another --out, or --force to replace the run") from None
        if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
            found = raw.get("schema_version", "none") if isinstance(raw, dict) else "none"
            raise ShiftlensError(f"{self.run_json} was written by another version of shiftlens (results schema {found}, "
                                 f"this version reads {SCHEMA_VERSION}): use another --out, or --force to replace the run")
        kind = raw.get("kind")
        if not (kind is None or isinstance(kind, str)):
            raise ShiftlensError(f"{self.run_json} records an unknown kind of folder ({str(raw.get('kind'))[:40]!r}): "
                                 "use another --out")
        wanted = _command_of(record_type)
        known = RECORD_KINDS.get(kind)  # a kind whose module is not loaded here is another command's all the same
        held = known.command if known is not None else f"another shiftlens command (kind {kind[:40]!r})"
        if held != wanted:
            raise OtherKind(f"{self.root} holds the results of {held}, not of {wanted}: give this command a folder of "
                            f"{wanted} or a new one (--force never replaces another command's results)")
        try:
            return record_type.model_validate(raw)
        except ValidationError as exc:
            raise ShiftlensError(f"{self.run_json} is not a valid run record ({_field_problem(exc)}): "
                                 "use another --out, or --force to replace the run") from None

    def read_run(self, record_type: type[_RunBase] = RunRecord) -> _RunBase | None:
        """The folder's record, refused in one line when it cannot be trusted: its config does not give the
        fingerprint it records (run.json edited by hand), or it says complete without a model."""
        record = self._load_record(record_type)
        if record is None:
            return None
        found = record.config.fingerprint()
        if found != record.fingerprint:
            raise EditedRecord(f"{self.run_json} has been edited (or written by a shiftlens with other config fields): "
                               f"its config gives fingerprint {found}, not the {record.fingerprint} its results were "
                               "computed for: restore the file, or replace the run with --force (or use another --out)")
        if record.status == "complete" and not record.models:
            raise EditedRecord(f"{self.run_json} says the run is complete but records no models: restore the file, or "
                               "replace the run with --force (or use another --out)")
        return record

    def check_part(self, part: "Part", record: _RunBase, path: Path) -> None:
        """Refuse a part that the record does not account for (replaced run.json or part file), in one line. A running
        record names its models as it reaches them, so only a complete one must name the part's."""
        unknown_model = record.status == "complete" and part.model not in record.models
        if part.meta.fingerprint != record.fingerprint or unknown_model:
            raise ShiftlensError(f"result part {path} belongs to another run (model {part.model}, config fingerprint "
                                 f"{part.meta.fingerprint}) than {self.run_json} records ({record.fingerprint}): run "
                                 "the command that made the folder again to redo it, or delete the part")

    def write_run(self, record: RunRecord) -> None:
        atomic_write_text(self.run_json, record.model_dump_json(indent=2))

    # -- ownership, locking, leftovers ----------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One writer at a time: a second run into the same folder is refused while the first holds it (the kernel
        drops the lock when its process dies, even by kill -9). The lock file goes when the holder is done, and a
        folder the command created is removed again when the command leaves nothing in it (a refusal)."""
        if self.root.exists() and not self.root.is_dir():
            raise ShiftlensError(f"--out {self.root} is a file: give a folder")
        created = [d for d in [self.root, *self.root.parents] if not d.exists()]
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK_NAME
        try:
            fd = _acquire(path, self.root)
        except BaseException:
            _remove_created(created)
            raise
        try:
            yield
        finally:
            # unlinked while still held: a process that opened this file meanwhile sees it was replaced (_acquire)
            with contextlib.suppress(OSError):
                if _same_file(fd, path):
                    path.unlink()
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            _remove_created(created)

    def links(self) -> list[Path]:
        """Symbolic links under the names shiftlens writes: it never makes one, and writing or deleting through one
        would reach files outside the folder."""
        found = []
        for name in OWN_ENTRIES:
            top = self.root / name
            if top.is_symlink():
                found.append(top)
            elif top.is_dir():
                found += [top / r for r in _files_under(top) if (top / r).is_symlink()]
        return found

    def refuse_links(self) -> None:
        links = self.links()
        if links:
            more = f" (and {len(links) - 1} more)" if len(links) > 1 else ""
            raise ShiftlensError(f"{self.root}: {links[0].relative_to(self.root)} is a symbolic link{more}, which "
                                 "shiftlens never makes and will not read, write or delete through: remove it (what "
                                 "it points to is left alone), or use another folder")

    def remove_leftovers(self) -> list[Path]:
        """Delete the temporary files and folders a killed run left (names only shiftlens uses)."""
        removed = []
        for folder in [self.root] + [self.root / d for d in ("parts", "tables", "figures", "patches")]:
            if folder.is_symlink() or not folder.is_dir():
                continue
            for path in (folder.rglob(".*") if folder != self.root else folder.glob(".*")):
                if _LEFTOVER.match(path.name) and not path.is_symlink() and path.exists():
                    if path.is_dir() and (path / MANIFEST).is_file() and own_files_in(path)[1]:
                        continue  # killed while a user's files were carried into a rebuilt folder: keep them
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                    removed.append(path)
        return removed

    def is_inside(self, path: Path, under: Path) -> bool:
        """`path` lies in `under` (both in this folder) by name, with no link on the way."""
        rel = os.path.normpath(os.path.relpath(path, self.root))
        if rel.startswith("..") or os.path.isabs(rel) or not (self.root / rel).is_relative_to(under):
            return False
        step = self.root
        for name in Path(rel).parts:
            step = step / name
            if step.is_symlink():
                return False
        return True

    def _own_files(self, record: _RunBase) -> list[Path]:
        """The files a shiftlens command writes, by their exact names (and maps.zarr's and site's manifests): what
        --force may delete. Nothing reached through a link, nothing a name in run.json would place outside."""
        named = [(self.tables_dir / f"{t}.csv", self.tables_dir) for t in record.tables]
        named += [(self.root / f, self.figures_dir) for f in getattr(record, "figures", [])]
        own = [p for p, under in named if self.is_inside(p, under)]  # a name in run.json never leads elsewhere
        own += [p for p in (self.root / "parts").glob("*/p*/*.npz")  # a part: its name and its metadata say so
                if _KEYED.match(p.name) and self.read_part_meta(p) is not None]
        own += list((self.root / "parts" / "arithmetic").glob("*.json"))
        own += list((self.root / "parts" / "arithmetic").glob("*.npz"))
        own += list((self.root / "parts" / "units").glob("*/p*/shard-*.npz"))  # the units analysis's sums
        own += [p for p in (self.root / "patches").glob("p*/*.png") if _KEYED.match(p.name)]
        own += [self.background_png]
        for folder in (self.maps_zarr, self.site_dir):
            own += own_files_in(folder)[0]
        own = [p for p in own if self.is_inside(p, self.root) and p.is_file() and p != self.run_json]
        return list(dict.fromkeys(own)) + [self.run_json]  # run.json last: a folder without it is not a run

    def clear(self, record: _RunBase) -> None:
        """Remove a previous run's results, and only them: a user's own files in the folder stay. All or nothing:
        everything is first moved into a trash folder inside --out, put back if any move fails, and deleted at the
        end."""
        self.refuse_links()
        own = self._own_files(record)
        trash = temp_dir(self.root, prefix=TRASH)
        moved: list[tuple[Path, Path]] = []
        try:
            for path in own:
                dest = trash / path.relative_to(self.root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                path.rename(dest)
                moved.append((path, dest))
        except OSError as exc:
            for path, dest in reversed(moved):
                path.parent.mkdir(parents=True, exist_ok=True)
                dest.rename(path)
            shutil.rmtree(trash, ignore_errors=True)
            raise ShiftlensError(f"--out {self.root}: {path.relative_to(self.root)} cannot be removed "
                                 f"({exc.strerror}), so nothing was: make the folder writable, or use another --out"
                                 ) from None
        shutil.rmtree(trash)
        for top in ("parts", "patches", "tables", "figures", "maps.zarr", "site"):
            _remove_empty_dirs(self.root / top)  # only empty ones: anything else in them is not ours
        for folder in (self.maps_zarr, self.site_dir):
            if folder.is_dir():  # a user's files stay; an empty list says none of them is shiftlens's
                (folder / MANIFEST).write_text("", encoding="utf-8")

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
        self.refuse_links()
        own_files_in(self.maps_zarr)  # a store an earlier version built is refused before any work, not after it
        edited = False
        try:
            previous = self.read_run(record_type)
        except EditedRecord:
            if not force:
                raise
            previous, edited = self._load_record(record_type), True  # its file names are still known
        except OtherKind:
            raise
        except ShiftlensError:
            if not force:
                raise
            raise ShiftlensError(f"--out {self.root}: its run.json cannot be read, so shiftlens cannot tell its own files "
                                 "from others and will not delete anything: use another --out") from None
        if previous is None:
            # a clear killed after it moved run.json into its trash left only the trash: that is shiftlens's own
            foreign = ([p.name for p in self.root.iterdir() if p.name != LOCK_NAME and not p.name.startswith(TRASH)]
                       if self.root.is_dir() else [])
            if foreign:
                raise ShiftlensError(
                    f"--out {self.root} is not empty and holds no shiftlens run (it has {', '.join(sorted(foreign)[:3])}"
                    f"{', ...' if len(foreign) > 3 else ''}): choose an empty or new folder; --force never deletes "
                    "files shiftlens did not write"
                )
        elif edited or previous.fingerprint != cfg.fingerprint():
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
    def _read_part_head(self, path: Path) -> tuple[PartMeta, set[str]] | None:
        """The stored metadata and the names of the stored arrays (no array is read); None when unreadable."""
        try:
            with np.load(path) as z:
                return PartMeta.model_validate_json(bytes(z["__meta__"]).decode()), set(z.files)
        except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError, UnicodeDecodeError):
            return None

    def read_part_meta(self, path: Path) -> PartMeta | None:
        """The stored metadata alone (no arrays); None when the file is unreadable or of another schema."""
        head = self._read_part_head(path)
        return None if head is None else head[0]

    def part_state(self, expected: PartMeta, required: dict[str, list[str]] | None = None) -> str | None:
        """None when a reusable part exists for `expected`, else why it must be computed ('new', or the reason).
        `required`: analysis -> the array keys its part must hold; a part without one of them was written before
        that analysis stored it (an earlier version) and is recomputed."""
        path = self.part_path(expected.model, expected.patch_size, expected.patch_id)
        if not path.is_file():
            return "new"
        head = self._read_part_head(path)
        if head is None:
            return "its file is unreadable (truncated, or written by another version)"
        stored, names = head
        reason = expected.stale_reason(stored)
        if reason is not None:
            return reason
        for analysis, keys in (required or {}).items():
            absent = [k for k in keys if k not in names]
            if absent:
                return f"analysis {analysis} missing from the part ({absent[0]} not stored: an earlier version wrote it)"
        return None

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

    def table_digests(self, names: list[str]) -> dict[str, str]:
        """The sha256 of each table as just written (under the lock), for run.json's `table_sha256`."""
        return {n: hashlib.sha256((self.tables_dir / f"{n}.csv").read_bytes()).hexdigest() for n in names}

    def checked_table(self, record: _RunBase, name: str) -> str:
        """A table's text, refused in one line unless it is the file the run wrote (same sha256 as run.json says):
        a truncated, emptied, deleted or edited CSV is never published."""
        path = self.tables_dir / f"{name}.csv"
        again = "run the command that made the folder again to rebuild its tables"
        if not self.is_inside(path, self.tables_dir) or path.parent != self.tables_dir:
            raise ShiftlensError(f"{self.run_json} names a table {name[:60]!r} outside tables/: restore the file, or "
                                 f"{again}")
        expected = record.table_sha256.get(name)
        if expected is None:
            raise ShiftlensError(f"{path}: run.json records no digest for it (an earlier version wrote it): {again}")
        if path.is_symlink() or not path.is_file():
            raise ShiftlensError(f"{path} is missing: {again}")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected:
            raise ShiftlensError(f"{path} is damaged or was edited ({len(data)} bytes, not what the run wrote): "
                                 f"{again}")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ShiftlensError(f"{path} is not UTF-8 text: {again}") from None
