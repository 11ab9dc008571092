"""Patches from Debian's clip-art packages, read where apt installed them: `tuxpaint` (tuxpaint-stamps-default,
photographic cut-outs) and `openclipart` (openclipart-png, drawings).

A spec is `NAME[:ITEM,...]`: an item is a folder of the package (`animals/birds`, the category of its patches) or an
option, `depth=N` (the category is the first N folders of each path) or `classes=FILE` (a TOML file of ImageNet class
sets per category, over the bundled `stamps.toml`). Which files become patches is decided by `survey`, whose rules
docs/patches.md lists; the pixels are cut out exactly as `folder:` does (`patch.alpha_cutout`).
"""

from __future__ import annotations

import difflib
import functools
import gzip
import os
import re
import shutil
import subprocess
import tomllib
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from shiftlens.errors import ShiftlensError
from shiftlens.patches.patch import ALPHA_OBJECT, Patch, alpha_cutout, read_rgba

CLASSES_FILE = Path(__file__).parent / "stamps.toml"
ICON_SIDE = 32
"""A PNG no larger than this on both sides is an icon or a thumbnail, not an object's picture."""
MIN_CONNECTED = 0.75
"""A mask whose largest 8-connected part holds less than this share of its pixels is fragments, not one object."""
MIN_COLOURS = 512
"""A `photographic` source refuses a cut-out with fewer distinct colours than this (or than a quarter of its mask's
pixels, for small objects): a palette drawing or line art."""
THUMBNAIL = re.compile(r"[._-]thumb(nail)?s?$", re.IGNORECASE)
THUMBNAIL_DIRS = {"thumbnails", ".thumbnails", "thumbs", ".thumbs"}


@dataclass(frozen=True)
class Package:
    """One Debian package of images: where it installs them, its licence, and which of its folders are no objects."""

    name: str
    package: str
    default_root: Path
    env: str
    licence: str
    depth: int
    not_objects: tuple[str, ...]
    photographic: bool

    @property
    def root(self) -> Path:
        return Path(os.environ.get(self.env) or self.default_root)


PACKAGES: dict[str, Package] = {
    "tuxpaint": Package(
        "tuxpaint", "tuxpaint-stamps-default", Path("/usr/share/tuxpaint/stamps"), "SHIFTLENS_TUXPAINT_ROOT", "GPL-2", 2,
        # letters, digits and operators, notes, outline shapes, face icons, chess glyphs, currency signs
        ("symbols/alphabets", "symbols/math", "symbols/music", "symbols/shapes", "symbols/faces", "symbols/chess",
         "symbols/money/00_symbols"),
        photographic=True),
    "openclipart": Package(
        "openclipart", "openclipart-png", Path("/usr/share/openclipart/png"), "SHIFTLENS_OPENCLIPART_ROOT",
        "public domain (Creative Commons Public Domain Dedication)", 1,
        # geometric shapes, arrows, signs, logos, buttons, patterns and gradients, desktop icons
        ("shapes", "signs_and_symbols", "logos", "buttons", "special", "computer/icons"),
        photographic=False),
}


@dataclass(frozen=True)
class Spec:
    """A parsed `NAME[:ITEM,...]`."""

    package: Package
    folders: tuple[str, ...] = ()
    depth: int | None = None
    classes: Path | None = None


@dataclass
class Survey:
    """What a source holds: the files that pass the rules (relative path -> category, sorted) with their cut-outs,
    and the files it skipped (relative path -> (category, reason))."""

    root: Path
    kept: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, tuple[str, str]] = field(default_factory=dict)
    cutouts: dict[str, np.ndarray] = field(default_factory=dict)

    def categories(self) -> dict[str, tuple[int, Counter]]:
        """Per category (sorted): the number kept and the number skipped by each rule (a reason without its details)."""
        out: dict[str, tuple[int, Counter]] = {}
        for cat in sorted(set(self.kept.values()) | {c for c, _ in self.skipped.values()}):
            kept = sum(1 for c in self.kept.values() if c == cat)
            out[cat] = (kept, Counter(_rule(why) for c, why in self.skipped.values() if c == cat))
        return out

    def reasons(self) -> Counter:
        """How many files each rule skipped, over all categories."""
        return Counter(_rule(why) for _, why in self.skipped.values())


def _rule(why: str) -> str:
    """A reason without its details: `mask fragmented (6 parts, the largest 62%)` -> `mask fragmented`."""
    return why.split(" (")[0]


def parse_spec(spec: str) -> Spec:
    """`NAME[:ITEM,...]` -> Spec; an item with `=` is an option, any other a folder of the package."""
    name, _, rest = spec.partition(":")
    package = PACKAGES[name]
    folders, depth, classes = [], None, None
    for item in (i.strip() for i in rest.split(",")):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq:
            folders.append(item.strip("/"))
        elif key == "depth" and value.isdigit() and int(value) >= 1:
            depth = int(value)
        elif key == "classes" and value:
            classes = Path(value)
        else:
            raise ShiftlensError(f"--patches {spec!r}: {item!r} is not an option of {name}; give folders of the package, "
                                 "depth=N (N >= 1) or classes=FILE.toml")
    return Spec(package, tuple(folders), depth, classes)


@functools.cache
def package_version(package: str) -> str | None:
    """The installed version, from dpkg-query, else the first line of the package's changelog.Debian.gz."""
    if shutil.which("dpkg-query"):
        done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    changelog = Path("/usr/share/doc") / package / "changelog.Debian.gz"
    try:
        with gzip.open(changelog, "rt") as fh:
            found = re.match(r"\S+ \(([^)]+)\)", fh.readline())
    except OSError:
        return None
    return found.group(1) if found else None


def _root(package: Package) -> Path:
    root = package.root
    if not root.is_dir():
        given = f"${package.env}={root}" if os.environ.get(package.env) else str(root)
        raise ShiftlensError(f"patch source {package.name} needs the Debian package {package.package} (nothing at {given}): "
                             f"install it with `sudo apt-get install {package.package}`, or set {package.env} to its folder")
    return root


def _folders(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir())


def _check_folders(spec: Spec, root: Path) -> None:
    for folder in spec.folders:
        if Path(folder).is_absolute() or ".." in Path(folder).parts:
            raise ShiftlensError(f"{spec.package.name}: category {folder!r} is outside the package: give a folder "
                                 f"relative to {root}, e.g. animals/birds")
        if not (root / folder).is_dir():
            near = difflib.get_close_matches(folder, _folders(root), n=3, cutoff=0.5)
            hint = f"nearest: {', '.join(near)}" if near else "`shiftlens patches " + spec.package.name + "` lists them"
            raise ShiftlensError(f"{spec.package.name} has no category {folder!r} ({hint})")


def _category(rel: str, spec: Spec) -> str:
    parts = rel.split("/")[:-1] or ["."]
    if spec.depth is None:
        for folder in spec.folders:
            if rel.startswith(folder + "/"):
                return folder
    return "/".join(parts[: spec.depth or spec.package.depth])


def path_rule(path: Path, root: Path, package: Package, taken: set[Path]) -> str | None:
    """Why a PNG is skipped before it is decoded (None: read it)."""
    rel = path.relative_to(root)
    folders = rel.parts[:-1]
    if "cartoon" in folders:
        return "cartoon folder"
    if THUMBNAIL_DIRS & set(folders) or THUMBNAIL.search(path.stem):
        return "thumbnail"
    if any(rel.as_posix().startswith(prefix + "/") for prefix in package.not_objects):
        return "symbols, not objects"
    if path.stem.endswith("_mirror") and path.with_name(path.stem[: -len("_mirror")] + path.suffix).is_file():
        return "mirrored copy of another stamp"
    if path.with_suffix(".svg").is_file():
        return "raster copy of a vector drawing (.svg beside it)"
    if path.resolve() in taken:
        return "duplicate (the same file as one listed before, through a link)"
    return None


def image_rule(path: Path, package: Package, min_size: float) -> tuple[str | None, np.ndarray | None]:
    """(why the image is skipped, None) or (None, its cut-out cropped to the mask's box)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # the header only: an icon is skipped before it is decoded
                size = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "too large to read safely", None
    except (OSError, SyntaxError, ValueError):
        return "cannot be read", None
    try:
        rgba = None if max(size) <= ICON_SIDE else read_rgba(path)
    except ShiftlensError:
        return "cannot be read", None
    if max(size) <= ICON_SIDE:
        return f"thumbnail or icon ({size[0]}x{size[1]} px)", None
    if rgba is None:
        return "no transparency", None
    mask = rgba[..., 3] >= ALPHA_OBJECT
    if mask.all() or not mask.any():
        return "no transparency" if mask.all() else "empty mask", None
    ys, xs = np.nonzero(mask)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    if w < min_size and h < min_size:
        return f"mask too small ({w}x{h} px, both sides under {min_size:g})", None
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    largest = np.bincount(labels.ravel())[1:].max() / mask.sum()
    if largest < MIN_CONNECTED:
        return f"mask fragmented ({n} parts, the largest {largest:.0%})", None
    if package.photographic:
        rgb = np.ascontiguousarray(rgba[..., :3][mask])
        colours = np.unique(rgb.view([("", rgb.dtype)] * 3)).size
        if colours < min(MIN_COLOURS, mask.sum() // 4):
            return f"drawing, not a photograph ({colours} colours)", None
    return None, alpha_cutout(rgba, f"patch {path}")


def survey(spec: Spec, min_size: float = 37.5, per_category: int | None = None, cutouts: bool = False) -> Survey:
    """Apply the rules to the source's PNGs in sorted path order; with `per_category`, stop reading a category's
    images once it has that many. With `cutouts`, keep each passing file's pixels (a listing of the whole package
    keeps none: openclipart's would fill gigabytes)."""
    root = _root(spec.package)
    _check_folders(spec, root)
    out = Survey(root)
    taken: set[Path] = set()
    tops = [root / f for f in spec.folders] or [root]
    files = sorted({p for top in tops for p in top.rglob("*.png")}, key=lambda p: p.relative_to(root).as_posix())
    kept_per: Counter = Counter()
    for path in files:
        rel = path.relative_to(root).as_posix()
        category = _category(rel, spec)
        if per_category is not None and kept_per[category] >= per_category:
            continue
        why = path_rule(path, root, spec.package, taken)
        cutout = None
        if why is None:
            why, cutout = image_rule(path, spec.package, min_size)
        if why is not None:
            out.skipped[rel] = (category, why)
            continue
        taken.add(path.resolve())
        out.kept[rel] = category
        if cutouts:
            out.cutouts[rel] = cutout
        kept_per[category] += 1
    return out


def _description(path: Path) -> str | None:
    """A Tux Paint stamp's English description: the first line of NAME.txt beside it."""
    txt = path.with_suffix(".txt")
    try:
        return txt.read_text(errors="replace").splitlines()[0].strip() or None
    except (OSError, IndexError):
        return None


def load_classes(spec: Spec) -> dict[str, dict]:
    """The ImageNet class sets per category of this package: the bundled table, then the user's `classes=FILE`."""
    def read(path: Path) -> dict:
        if not path.is_file():
            raise ShiftlensError(f"classes file {path} does not exist: give classes=FILE.toml (see docs/patches.md)")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ShiftlensError(f"classes file {path} is not valid TOML ({exc}): fix it (see docs/patches.md)") from None
        table = data.get(spec.package.name, {})
        if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
            raise ShiftlensError(f"classes file {path}: [{spec.package.name}.\"CATEGORY\"] tables expected, each with "
                                 "imagenet_classes = [...] or none = \"why\" (see docs/patches.md)")
        return table

    table = read(CLASSES_FILE)
    if spec.classes is not None:
        table = table | read(spec.classes)
    return table


def package_counts(patches: list[Patch]) -> str:
    """The objects a run got per category, in one line for its log and run.json's notes."""
    counts = Counter(p.category for p in patches)
    first = patches[0].provenance
    return (f"{len(patches)} patches from {first['package']} {first['version']}: "
            + ", ".join(f"{cat} {n}" for cat, n in counts.items()))


def load_package(spec_text: str, per_category: int, min_size: float, limit: int | None = None) -> list[Patch]:
    """The patches of a `tuxpaint[...]` / `openclipart[...]` spec: per category, the first `per_category` files in
    sorted path order that pass the rules; categories in sorted order."""
    spec = parse_spec(spec_text)
    found = survey(spec, min_size, per_category, cutouts=True)
    if not found.kept:
        reasons = found.reasons().most_common(3)
        raise ShiftlensError(f"--patches {spec_text}: no file passes the rules ({', '.join(f'{n} {r}' for r, n in reasons)}"
                             f"): choose other categories; `shiftlens patches {spec_text}` lists them")
    classes = load_classes(spec)
    version = package_version(spec.package.package) if found.root == spec.package.default_root else None
    patches = []
    for rel, category in sorted(found.kept.items(), key=lambda kv: (kv[1], kv[0])):
        if limit is not None and len(patches) >= limit:
            break
        path = found.root / rel
        entry = classes.get(category, {})
        provenance = {"package": spec.package.package, "version": version or "unknown (not the installed package)",
                      "licence": spec.package.licence, "file": str(path), "root": str(found.root)}
        if spec.package.name == "tuxpaint" and (desc := _description(path)):
            provenance["description"] = desc
        if "imagenet_classes" in entry:
            provenance["imagenet_classes"] = entry["imagenet_classes"]
        elif "none" in entry:  # an empty set: the class analysis says so instead of using a forced one
            provenance |= {"imagenet_classes": [], "imagenet_classes_none": str(entry["none"])}
        patches.append(Patch(id=str(Path(rel).with_suffix("")), category=category, rgba=found.cutouts[rel], source=spec_text,
                             licence=spec.package.licence, provenance=provenance))
    return patches
