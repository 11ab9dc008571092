#!/usr/bin/env python
"""Regenerate the bundled sample patch set ``src/shiftlens/patches/sample/``.

Every patch is a real photograph that ships *inside* an installed PyPI wheel
(scikit-image, scikit-learn, imgaug), cut out with a binary mask that follows
the object's outline.  Nothing is downloaded: the source files are read
directly from the installed packages (``imgaug`` is located but never
imported, because it does not import with recent NumPy).
Install its sources first: ``pip install -e '.[tools]'``.

Masks were authored as follows (see ``OBJECTS`` below for the per-patch
details recorded in ``manifest.json``):

* hand-placed polygons, drawn on zoomed coordinate-grid renders of the source
  photo and corrected after inspecting red-outline overlays;
* smooth outlines (saucer rim) as periodic cubic splines through hand-placed
  control points;
* colour/brightness segmentation with scikit-image/scipy (flower: brightness
  threshold; pagoda: Lab sky/lake classifier flood-filled from outside a hand
  region of interest whose lower edge follows the occluding tree line);
* the quokka outline polygon that imgaug ships in ``quokka_annotations.json``.

Every mask is binary (alpha exactly 0 or 255).  Each patch is cropped to the
mask's bounding box and, if its longest side exceeds ``MAX_SIDE``, shrunk with
Lanczos (RGB) and area-averaging + 0.5 threshold (mask).  RGB under alpha 0 is
set to white.  The script is deterministic; run it with

    .venv/bin/python tools/make_sample_patches.py

It rewrites ``src/shiftlens/patches/sample/*.png``, ``manifest.json``,
``LICENCES.md`` and ``docs/sample_patches.png``.
"""
from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import interpolate
from scipy import ndimage as ndi

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "src" / "shiftlens" / "patches" / "sample"
SHEET = ROOT / "docs" / "sample_patches.png"
MAX_SIDE = 256

# ImageNet-1k indices -> names (standard index order, names as in
# torchvision's ``ResNet50_Weights.IMAGENET1K_V1.meta['categories']``).
IMAGENET = {
    104: "wallaby",
    106: "wombat",
    281: "tabby",
    282: "tiger cat",
    285: "Egyptian cat",
    442: "bell cote",
    518: "crash helmet",
    560: "football helmet",
    504: "coffee mug",
    657: "missile",
    663: "monastery",
    698: "palace",
    744: "projectile",
    812: "space shuttle",
    832: "stupa",
    872: "tripod",
    967: "espresso",
    968: "cup",
    985: "daisy",
}


# --------------------------------------------------------------------------
# source lookup (installed packages, no imports of the packages themselves)
# --------------------------------------------------------------------------
def package_dir(name: str) -> pathlib.Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {name!r} is not installed")
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def source_path(rel: str) -> pathlib.Path:
    """``rel`` is '<top-level package>/<path inside it>'."""
    pkg, _, inner = rel.partition("/")
    return package_dir(pkg) / inner


def load_rgb(rel: str) -> np.ndarray:
    with Image.open(source_path(rel)) as im:
        return np.asarray(im.convert("RGB"))


# --------------------------------------------------------------------------
# mask helpers
# --------------------------------------------------------------------------
def poly_mask(shape, pts) -> np.ndarray:
    im = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(im).polygon([(float(x), float(y)) for x, y in pts], fill=255)
    return np.asarray(im) > 0


def spline_closed(pts, n: int = 720):
    p = np.asarray(pts, float)
    tck, _ = interpolate.splprep([p[:, 0], p[:, 1]], s=0, per=1)
    x, y = interpolate.splev(np.linspace(0.0, 1.0, n, endpoint=False), tck)
    return list(zip(np.round(x, 3), np.round(y, 3)))


def largest_component(m: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(m)
    if n == 0:
        raise ValueError("empty mask")
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def disk(r: int) -> np.ndarray:
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


# --------------------------------------------------------------------------
# per-object masks
# --------------------------------------------------------------------------
def mask_cat(img):
    h, w = img.shape[:2]
    # Chelsea's head fills the frame: top, bottom and lower-left are cut by the
    # photo border; the outline follows the left cheek, the right ear and the
    # (defocused) right cheek.
    pts = [(32, -1), (397, -1), (392, 10), (386, 25), (379, 40), (372, 55), (365, 70),
           (360, 85), (357, 100), (355, 120), (354, 140), (352, 160), (350, 180),
           (347, 200), (343, 220), (339, 240), (335, 260), (332, 280), (330, h),
           (-1, h), (-1, 135), (10, 128), (22, 122), (30, 110), (32, 80), (31, 40)]
    return poly_mask(img.shape, pts)


def mask_cup(img):
    # saucer rim: periodic cubic spline through hand-placed rim points (its top
    # arc runs hidden behind the cup)
    saucer = [(160, 73), (133, 80), (110, 100), (98, 120), (90, 140), (83, 160), (79, 180),
              (76.7, 200), (76, 220), (76.7, 240), (82, 260), (92, 280), (102, 300),
              (117, 320), (134, 340), (150, 350), (167, 360), (197, 370), (240, 379),
              (290, 383), (330, 381), (360, 375), (398, 360), (420, 340), (442.5, 320),
              (457.5, 300), (468.75, 280), (475, 260), (479.5, 220), (473.75, 180),
              (456.7, 157), (436.7, 130), (420, 115), (380, 100), (300, 70), (220, 66)]
    # cup rim above the saucer + spoon handle tip
    cup = [(176, 130), (176, 110), (179, 71), (181, 66), (186, 59), (193, 50), (200, 41),
           (210, 33), (225, 26), (240, 22), (260, 19), (280, 18), (300, 19), (317, 21),
           (335, 26), (355, 33), (371.5, 49), (383, 59), (391.5, 69), (399, 79), (400, 84),
           (403, 75), (406, 69), (410, 66.5), (414, 66.5), (419, 68.5), (422, 72.5),
           (423.5, 80), (421.5, 90), (419.5, 100), (416, 112), (400, 130)]
    return poly_mask(img.shape, spline_closed(saucer)) | poly_mask(img.shape, cup)


def mask_rocket(img):
    # Falcon 9 in its strongback: body edges are straight, payload fairing is an
    # ogive; the strongback lattice and the launch mount are excluded.
    pts = [(322, 125), (325.5, 127), (328.5, 130), (331, 135), (332.5, 140), (333.5, 146),
           (334, 152), (334, 172), (332.5, 178), (332.5, 404), (312, 404), (312, 178),
           (310, 172), (309.5, 152), (310, 146), (311.5, 140), (313.5, 135), (316, 130),
           (319, 127)]
    return poly_mask(img.shape, pts)


def mask_shuttle(img):
    # Space-shuttle stack model behind the astronaut: external tank (its tip is
    # cut by the top photo border), two solid rocket boosters, orbiter with its
    # delta wing; cut at the top of the dark display stand.
    pts = [(403, 0), (430, 0), (434, 10), (437, 22), (438, 32), (438, 40), (441, 38),
           (445, 40), (449, 46), (451, 53), (453, 62), (453, 175), (454, 222), (456, 236),
           (457, 262), (375, 262), (376, 230), (356, 224), (354, 218), (362, 205),
           (370, 192), (378, 178), (380, 170), (380, 65), (381, 55), (383, 48), (387, 41),
           (391, 44), (394, 50), (397, 57), (398, 45), (399, 20), (401, 8)]
    return poly_mask(img.shape, pts)


def mask_helmet(img):
    h, w = img.shape[:2]
    # Spacesuit helmet (white shell, black visor) in the astronaut photo; the
    # bottom and the neck ring on the right are cut by the photo border.
    arc = [(278, 480), (283, 440), (293, 413), (307, 387), (323, 367), (343, 353),
           (367, 345), (393, 343), (420, 347), (447, 360), (467, 377), (483, 397),
           (493, 420), (495, 443), (493, 457)]
    p = np.asarray(arc, float)
    tck, _ = interpolate.splprep([p[:, 0], p[:, 1]], s=0)
    x, y = interpolate.splev(np.linspace(0.0, 1.0, 300), tck)
    smooth = list(zip(np.round(x, 3), np.round(y, 3)))
    pts = [(277, h)] + smooth + [(500, 462), (507, 470), (w, 480), (w, h)]
    return poly_mask(img.shape, pts)


def mask_quokka(img):
    path = source_path("imgaug/quokka_annotations.json")
    ann = json.loads(path.read_text())
    pts = [(k["x"], k["y"]) for k in ann["polygons"][0]["keypoints"]]
    return poly_mask(img.shape, pts)


def mask_flower(img):
    # dahlia on a dark, defocused background: HSV value (max channel) > 0.4,
    # largest component, holes (dark florets in the centre) filled, opened r=2
    v = img.max(axis=2).astype(float) / 255.0
    m = largest_component(v > 0.4)
    m = ndi.binary_fill_holes(m)
    m = ndi.binary_opening(m, structure=disk(2))
    return largest_component(m)


def mask_pagoda(img):
    from skimage import color  # scikit-image is a tool dependency only

    lab = color.rgb2lab(img)
    L, A, B = lab[..., 0], lab[..., 1], lab[..., 2]
    C = np.hypot(A, B)
    # sky and hazy lake: bright and bluish/neutral; plus the bright low-chroma
    # pixels in blobs wider than ~5 px (thin white ledges of the tower survive)
    sky = ((L > 60) & (B < 3) & (np.abs(A) < 8)) | ndi.binary_opening(
        (L > 62) & (C < 22) & (A < 8), structure=disk(2))
    # hand region of interest: loose in the sky, tight where the tower meets
    # the trees (its lower edge follows the tree tops that occlude the base)
    roi_pts = [(190, 22), (220, 22), (230, 60), (300, 100), (335, 115), (345, 140),
               (330, 150), (360, 160), (385, 180), (375, 205), (365, 230), (385, 245),
               (390, 255), (362, 262), (346, 266), (345, 305), (352, 318), (360, 327),
               (373, 330), (360, 345), (345, 358), (330, 366), (314, 370), (305, 362),
               (294, 368), (290, 386), (217, 387), (208, 375), (200, 366), (189, 363),
               (174, 360), (163, 344), (154, 339), (137, 334), (126, 331), (111, 334),
               (97, 337), (72, 342), (72, 326), (79, 320), (80, 290), (78, 281), (64, 275),
               (62, 266), (68, 256), (75, 246), (85, 234), (97, 228), (97, 200), (70, 190),
               (55, 160), (90, 150), (75, 120), (95, 90), (170, 60)]
    roi = poly_mask(img.shape, roi_pts)
    outside = ~roi
    s = sky & roi
    lbl, _ = ndi.label(s | outside)
    touching = np.unique(lbl[outside])
    background = np.isin(lbl, touching[touching > 0]) & s
    m = roi & ~background
    m = ndi.binary_opening(m, structure=disk(1))
    m = largest_component(m)
    return ndi.binary_fill_holes(m)


def mask_tripod(img):
    # camera tripod of the "cameraman" photo below the photographer's gloves:
    # centre column, head collar with pan handle, two visible legs (the left
    # one is a double tube), spreader bars and leg clamps; legs run off the
    # bottom border.
    parts = [
        [(289, 224), (297, 224), (297, 486), (289, 486)],
        [(283, 313), (303, 313), (309, 316), (309, 330), (278, 330), (278, 316)],
        [(302, 312), (323, 301), (324, 300), (338, 300), (339, 307), (325, 308), (304, 316)],
        [(281, 328), (288, 328), (279, 370), (270, 410), (258, 445), (247, 505), (245, 512),
         (232, 512), (234, 505), (244, 445), (260, 410), (270, 370)],
        [(307, 328), (313, 328), (336, 370), (371, 445), (380, 465), (389, 469), (393, 480),
         (395, 490), (397, 497), (406, 505), (409, 512), (401, 512), (398, 505), (389, 498),
         (385, 490), (381, 480), (379, 470), (365, 445), (330, 370)],
        [(255, 462), (291, 475), (291, 481), (255, 469)],
        [(243, 487), (289, 484), (289, 488), (243, 491)],
        [(296, 481), (383, 480), (383, 484), (296, 485)],
        [(231, 483), (241, 483), (241, 501), (231, 501)],
    ]
    m = np.zeros(img.shape[:2], bool)
    for p in parts:
        m |= poly_mask(img.shape, p)
    return m


# --------------------------------------------------------------------------
# catalogue
# --------------------------------------------------------------------------
SKIMAGE_LIC = "skimage/data/_fetchers.py (docstring of skimage.data.{fn}())"
CC_BY_NOTE = ("CC BY 2.0 requires attribution; this patch is a modification "
              "(cropped, segmented with a binary mask, resized)")

OBJECTS = [
    dict(id="cat_01", category="cat", source_package="scikit-image",
         source_file="skimage/data/chelsea.png", mask_fn=mask_cat,
         licence="CC0", licence_source=SKIMAGE_LIC.format(fn="chelsea"),
         licence_statement="No copyright restrictions.  CC0 by the photographer (Stefan van der Walt).",
         author="Stefan van der Walt",
         mask_method="hand polygon (26 vertices) on zoomed grid renders, checked on overlays; "
                     "top, bottom and lower-left edges are the photo border",
         imagenet_classes=[281, 282, 285]),
    dict(id="cup_01", category="cup", source_package="scikit-image",
         source_file="skimage/data/coffee.png", mask_fn=mask_cup,
         licence="CC0", licence_source=SKIMAGE_LIC.format(fn="coffee"),
         licence_statement="No copyright restrictions.  CC0 by the photographer (Rachel Michetti). "
                           "This photograph is courtesy of Pikolo Espresso Bar.",
         author="Rachel Michetti (courtesy of Pikolo Espresso Bar)",
         mask_method="espresso cup on saucer with spoon: saucer rim as a periodic cubic spline "
                     "through 36 hand-placed rim points, union with a hand polygon for the cup rim "
                     "and spoon handle; checked on zoomed overlays",
         imagenet_classes=[968, 504, 967]),
    dict(id="rocket_01", category="rocket", source_package="scikit-image",
         source_file="skimage/data/rocket.jpg", mask_fn=mask_rocket,
         licence="Public domain", licence_source=SKIMAGE_LIC.format(fn="rocket"),
         licence_statement="The image was captured by SpaceX and released in the public domain "
                           "(https://www.flickr.com/photos/spacexphotos/16511594820/).",
         author="SpaceX",
         mask_method="hand polygon (19 vertices): fairing ogive and straight body of the Falcon 9, "
                     "strongback lattice and launch mount excluded; checked on 8x zoomed overlays",
         imagenet_classes=[657, 744, 812]),
    dict(id="rocket_02", category="rocket", source_package="scikit-image",
         source_file="skimage/data/astronaut.png", mask_fn=mask_shuttle,
         licence="Public domain", licence_source=SKIMAGE_LIC.format(fn="astronaut"),
         licence_statement="Downloaded from the NASA Great Images database (https://flic.kr/p/r9qvLn). "
                           "No known copyright restrictions, released into the public domain.",
         author="NASA",
         mask_method="hand polygon (33 vertices) of the space-shuttle stack model (tank, boosters, "
                     "orbiter wing), cut at the top of its dark stand; tank tip cut by the photo border",
         imagenet_classes=[812, 657, 744]),
    dict(id="helmet_01", category="helmet", source_package="scikit-image",
         source_file="skimage/data/astronaut.png", mask_fn=mask_helmet,
         licence="Public domain", licence_source=SKIMAGE_LIC.format(fn="astronaut"),
         licence_statement="Downloaded from the NASA Great Images database (https://flic.kr/p/r9qvLn). "
                           "No known copyright restrictions, released into the public domain.",
         author="NASA",
         mask_method="cubic spline through 15 hand-placed points on the helmet shell/visor outline, "
                     "closed along the photo border (bottom and right edges are cut by the frame)",
         imagenet_classes=[518, 560]),
    dict(id="quokka_01", category="quokka", source_package="imgaug",
         source_file="imgaug/quokka.jpg", mask_fn=mask_quokka,
         licence="MIT (imgaug package licence; see note)",
         licence_source="imgaug-0.4.0.dist-info/LICENSE (MIT, Copyright (c) 2015 aleju); "
                        "the package states no separate licence or photographer for quokka.jpg",
         licence_statement="The MIT License (MIT) Copyright (c) 2015 aleju",
         author="unknown (shipped by Alexander Jung / aleju with imgaug)",
         licence_note="DOUBTFUL: imgaug does not name the photographer or give a licence for the "
                      "photo itself; it is redistributed in the MIT-licensed wheel.",
         mask_method="outline polygon shipped by imgaug (imgaug/quokka_annotations.json, 39 vertices), "
                     "used unchanged; bottom edge is the photo border",
         imagenet_classes=[104, 106]),
    dict(id="flower_01", category="flower", source_package="scikit-learn",
         source_file="sklearn/datasets/images/flower.jpg", mask_fn=mask_flower,
         licence="CC BY 2.0", licence_source="sklearn/datasets/images/README.txt",
         licence_statement="Released under a creative commons license "
                           "(https://creativecommons.org/licenses/by/2.0/). Retrieved 21st August, "
                           "2011 from https://www.flickr.com/photos/vultilion/6056698931/ by Robert Layton.",
         author="vultilion (Flickr); note: the README's attribution line says 'danielbuechele' but "
                "its author and photo links point to flickr.com/photos/vultilion",
         licence_note=CC_BY_NOTE,
         mask_method="scikit-image style threshold: max-channel (HSV value) > 0.4, largest "
                     "component, holes filled, binary opening r=2; checked on zoomed overlays",
         imagenet_classes=[985]),
    dict(id="pagoda_01", category="pagoda", source_package="scikit-learn",
         source_file="sklearn/datasets/images/china.jpg", mask_fn=mask_pagoda,
         licence="CC BY 2.0", licence_source="sklearn/datasets/images/README.txt",
         licence_statement="Released under a creative commons license "
                           "(https://creativecommons.org/licenses/by/2.0/). Attribution: Some rights "
                           "reserved by danielbuechele. Retrieved 21st August, 2011 from "
                           "https://www.flickr.com/photos/danielbuechele/6061409035/ by Robert Layton.",
         author="danielbuechele (Flickr)",
         licence_note=CC_BY_NOTE,
         mask_method="Lab colour classifier for sky/lake flood-filled from outside a hand ROI polygon "
                     "(55 vertices) whose lower edge follows the tree tops occluding the base; "
                     "opening r=1, largest component, holes filled",
         imagenet_classes=[698, 442, 663, 832]),
    dict(id="tripod_01", category="tripod", source_package="scikit-image",
         source_file="skimage/data/camera.png", mask_fn=mask_tripod,
         licence="CC0", licence_source=SKIMAGE_LIC.format(fn="camera"),
         licence_statement="No copyright restrictions. CC0 by the photographer (Lav Varshney).",
         author="Lav Varshney",
         mask_method="union of 9 hand polygons (column, head collar, pan handle, legs, spreaders, "
                     "clamp) traced on 5-7x zoomed renders; grayscale photo stored as RGB; top cut "
                     "where the photographer's gloves occlude the tripod, legs cut by the photo border",
         imagenet_classes=[872]),
]


# --------------------------------------------------------------------------
# patch extraction
# --------------------------------------------------------------------------
def make_patch(img: np.ndarray, mask: np.ndarray) -> Image.Image:
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    rgb = img[y0:y1, x0:x1]
    m = mask[y0:y1, x0:x1]
    h, w = m.shape
    scale = min(1.0, MAX_SIDE / max(h, w))
    if scale < 1.0:
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        rgb = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.LANCZOS))
        mf = np.asarray(Image.fromarray((m * 255).astype(np.uint8)).resize((nw, nh), Image.BOX))
        m = mf >= 128
        # re-crop in case the thresholded mask lost a border row/column
        ys, xs = np.nonzero(m)
        rgb = rgb[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        m = m[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    out = np.empty(m.shape + (4,), np.uint8)
    out[..., :3] = np.where(m[..., None], rgb, 255)
    out[..., 3] = np.where(m, 255, 0)
    return Image.fromarray(out, "RGBA")


def contact_sheet(patches, path: pathlib.Path, cell: int = 224, cols: int = 5):
    font_path = package_dir("matplotlib") / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    font = ImageFont.truetype(str(font_path), 15)
    label_h, pad = 24, 8
    rows = (len(patches) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (cell + pad) + pad, rows * (cell + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (pid, patch) in enumerate(patches):
        r, c = divmod(i, cols)
        ox, oy = pad + c * (cell + pad), pad + r * (cell + label_h + pad)
        s = min(1.0, (cell - 8) / max(patch.size))
        p = patch if s == 1.0 else patch.resize(
            (max(1, round(patch.width * s)), max(1, round(patch.height * s))), Image.LANCZOS)
        # binary alpha again after resampling (the sheet shows exactly what ships)
        alpha = p.getchannel("A").point(lambda a: 255 if a >= 128 else 0)
        canvas = Image.new("RGB", (cell, cell), "white")
        canvas.paste(p.convert("RGB"), ((cell - p.width) // 2, (cell - p.height) // 2), alpha)
        sheet.paste(canvas, (ox, oy))
        draw.rectangle([ox - 1, oy - 1, ox + cell, oy + cell], outline=(200, 200, 200))
        tw = draw.textlength(pid, font=font)
        draw.text((ox + (cell - tw) / 2, oy + cell + 3), pid, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def licences_md(entries) -> str:
    lines = [
        "# Sample patch licences",
        "",
        "All patches are cut-outs of photographs that ship inside PyPI packages. "
        "Each was cropped, masked with a binary alpha mask and resized by "
        "`tools/make_sample_patches.py`; the full records are in `manifest.json`.",
        "",
        "| Patch | Source (package: file) | Author / attribution | Licence | Licence statement found in |",
        "|---|---|---|---|---|",
    ]
    for e in entries:
        lines.append(f"| `{e['file']}` | {e['source_package']}: `{e['source_file']}` | {e['author']} "
                     f"| {e['licence']} | `{e['licence_source']}` |")
    lines += [
        "",
        "Notes:",
        "",
        "- CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/): `flower_01.png` is derived from "
        "\"flower.jpg\" by vultilion (https://www.flickr.com/photos/vultilion/6056698931/) and "
        "`pagoda_01.png` from \"china.jpg\" by danielbuechele "
        "(https://www.flickr.com/photos/danielbuechele/6061409035/), both as distributed with "
        "scikit-learn; modified (cropped, segmented, resized). scikit-learn's README credits "
        "\"danielbuechele\" for flower.jpg too, but its links point to vultilion's photo page.",
        "- `quokka_01.png`: imgaug ships quokka.jpg (and the outline polygon used for the mask) "
        "in its MIT-licensed wheel but names no photographer and no separate licence for the photo; "
        "treat its provenance as unverified.",
        "- Public domain / CC0 items need no attribution; authors are listed as a courtesy.",
        "",
    ]
    mit = imgaug_licence_text()
    if mit:
        lines += ["## imgaug licence (applies to `quokka_01.png` as distributed in imgaug)", "",
                  "```", mit.strip(), "```", ""]
    return "\n".join(lines)


def imgaug_licence_text() -> str:
    from importlib import metadata

    try:
        return metadata.distribution("imgaug").read_text("LICENSE") or ""
    except metadata.PackageNotFoundError:
        return ""


def check_imagenet_names():
    """Cross-check the hard-coded class names against torchvision, if present."""
    try:
        from torchvision.models import ResNet50_Weights
    except Exception:  # torchvision is optional for this tool
        return
    cats = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    for idx, name in IMAGENET.items():
        if cats[idx] != name:
            raise SystemExit(f"ImageNet index {idx}: expected {name!r}, torchvision says {cats[idx]!r}")


def main() -> int:
    check_imagenet_names()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in OUT_DIR.glob("*.png"):
        old.unlink()
    entries, sheet_items = [], []
    for obj in OBJECTS:
        img = load_rgb(obj["source_file"])
        mask = obj["mask_fn"](img)
        patch = make_patch(img, mask)
        fname = f"{obj['id']}.png"
        patch.save(OUT_DIR / fname, optimize=True)
        alpha = np.asarray(patch.getchannel("A"))
        entry = {
            "id": obj["id"],
            "file": fname,
            "category": obj["category"],
            "width": patch.width,
            "height": patch.height,
            "mask_fraction": round(float((alpha == 255).mean()), 4),
            "source_package": obj["source_package"],
            "source_file": obj["source_file"],
            "licence": obj["licence"],
            "licence_source": obj["licence_source"],
            "licence_statement": obj["licence_statement"],
            "author": obj["author"],
            "mask_method": obj["mask_method"],
            "imagenet_classes": list(obj["imagenet_classes"]),
            "imagenet_class_names": [IMAGENET[i] for i in obj["imagenet_classes"]],
        }
        if "licence_note" in obj:
            entry["licence_note"] = obj["licence_note"]
        entries.append(entry)
        sheet_items.append((obj["id"], patch))
        print(f"{fname:16s} {patch.width:4d}x{patch.height:<4d} mask={entry['mask_fraction']:.3f}")
    manifest = {
        "description": (
            "Bundled sample object patches for shiftlens: RGBA cut-outs (binary alpha, 0 or 255) of "
            "real photographs that ship inside PyPI packages under open licences, cropped to the "
            "mask's bounding box (longest side <= 256 px). Regenerate with "
            "tools/make_sample_patches.py. imagenet_classes are suggested ImageNet-1k indices "
            "(standard index order)."
        ),
        "patches": entries,
    }
    (OUT_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    (OUT_DIR / "LICENCES.md").write_text(licences_md(entries))
    contact_sheet(sheet_items, SHEET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
