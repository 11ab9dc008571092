"""Training a decoder (inversion/decoder.py) on shiftlens's own canvases, rendered on the fly, never written to disk.

Each epoch renders a pool of seeded random scenes (1 to `max_objects` training objects, drawn from one or several
sources (`openclipart+sample`, inversion/objects.py), at random sizes and positions on the white canvas, pasted from
an `ObjectBank` that decoded and resized every object once), computes their features once with the frozen encoder
(`FeatureExtractor`), and takes `passes` shuffled passes of generator steps over them: the encoder's forward pass is
the expensive part on a CPU, so each feature serves several steps. Losses (DeePSiM): squared pixel error at the
generator's resolution, a squared error in an early conv stage of the same frozen network (the comparator),
normalised by the target's energy, and optionally a conditional adversarial term.

Everything random is drawn from (seed, epoch) and the learning rate depends on the step alone, so a run resumed
from its checkpoint at any step renders the same pool, shuffles it the same way, and continues exactly as the
uninterrupted run would have.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shiftlens.errors import ShiftlensError
from shiftlens.inversion.decoder import (
    SHIPPED_DIR,
    Decoder,
    DecoderMeta,
    Evaluation,
    Generator,
    SourceRecord,
    StepLoss,
    TrainSettings,
    checkpoint_dict,
    read_decoder_file,
    weights_identity,
)
from shiftlens.inversion.network import FeatureNet
from shiftlens.inversion.objects import (
    ObjectBank,
    Source,
    as_sources,
    cache_path,
    check_shippable,
    licence_record,
    load_sources_cached,
    object_key,
    survives,
)
from shiftlens.models import LayerSpec, build_with_weights, parse_spec
from shiftlens.patches import Patch
from shiftlens.scenes import Scene, SceneObject, SceneRenderer
from shiftlens.stream import FeatureExtractor

# The feature loss's comparator per model family: an early-to-mid conv stage (stride 8) of the encoder itself.
DEFAULT_COMPARATOR = {"efficientnet_lite": "_blocks.4", "alexnet": "features.4"}

Progress = Callable[[int, int, StepLoss], None]


def state_path(out: Path) -> Path:
    """The resumable training state beside the decoder file (the optimiser's moments in fp32: not shipped)."""
    return out.with_name(out.name + ".state")


def held_out_split(ids: list[str], k: int, seed: int, source: str = "") -> tuple[list[str], list[str]]:
    """(training, held-out) patch ids: `k` of the sorted ids drawn with `random.Random(seed)`."""
    ordered = sorted(ids)
    if k < 0 or k >= len(ordered):
        what = f"source {source}" if source else "the patch set"
        raise ShiftlensError(f"--held-out {k}: {what} has {len(ordered)} patches; hold out at least 0 and "
                             "leave at least one to train on")
    held = sorted(random.Random(seed).sample(ordered, k))
    return [i for i in ordered if i not in held], held


def default_comparator(model_name: str, model: nn.Module) -> str:
    for prefix, path in DEFAULT_COMPARATOR.items():
        if model_name.startswith(prefix):
            return path
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ShiftlensError(f"model {model_name} has no Conv2d for the feature loss: give --comparator MODULE")
    return convs[(len(convs) - 1) // 2]  # the middle conv: early enough to keep layout, deep enough to see edges


def random_scenes(rng: np.random.Generator, ids: list[str], n: int, sizes: tuple[int, int], max_objects: int,
                  canvas: int, groups: list[list[str]] | None = None) -> list[Scene]:
    """`n` scenes of 1 to `max_objects` objects of `ids` (each equally likely), or with `groups` (one list per
    source) a source first, each equally likely, then one of its objects."""
    scenes = []
    for _ in range(n):
        objs = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            size = int(rng.integers(sizes[0], sizes[1] + 1))
            y, x = (int(v) for v in rng.integers(0, canvas - size + 1, size=2))
            pick = ids if groups is None else groups[int(rng.integers(len(groups)))]
            objs.append(SceneObject(pick[int(rng.integers(len(pick)))], size, y, x))
        scenes.append(Scene(tuple(objs)))
    return scenes


@dataclass
class Encoder:
    """The frozen network twice: the tap that gives the decoder's input, and the comparator of the feature loss."""

    extractor: FeatureExtractor
    comparator: FeatureNet
    renderer: SceneRenderer
    layer: str
    weights_label: str
    untrained: bool
    weights_id: str = ""
    """`weights_identity` of the encoder's weights, recorded in the decoder file."""

    def features(self, scenes: list[Scene], batch: int = 16, views: np.ndarray | None = None,
                 renderer: SceneRenderer | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (N, D) float32, images (N, 3, canvas, canvas) RGB in [0, 1]); `views` (N, 3): per scene a
        channel permutation index and left-right and up-down flips (`augment_views`), applied before the encoder."""
        feats, images = [], []
        renderer = renderer or self.renderer
        norm = self.renderer.norm
        mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
        std = torch.tensor(norm.std).view(1, 3, 1, 1)
        for i in range(0, len(scenes), batch):
            x = renderer.render(scenes[i : i + batch])
            rgb = (x.float() * std + mean).contiguous()
            if views is not None:
                rgb = apply_views(rgb, views[i : i + batch])
                x = ((rgb - mean) / std).contiguous(memory_format=torch.channels_last).to(x.dtype)
            feats.append(self.extractor(x)[self.layer].float().clone())
            images.append(rgb.clamp(0, 1))
        return torch.cat(feats), torch.cat(images)

    def encode(self, rgb: torch.Tensor, batch: int = 16, layer: str | None = None) -> torch.Tensor:
        """(N, D) float32 features of (N, 3, canvas, canvas) RGB images in [0, 1], at the decoder's layer or at
        `layer` (another tap of the same extractor, e.g. its logits)."""
        norm = self.renderer.norm
        mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
        std = torch.tensor(norm.std).view(1, 3, 1, 1)
        out = []
        for i in range(0, len(rgb), batch):
            x = ((rgb[i : i + batch] - mean) / std).contiguous(memory_format=torch.channels_last)
            out.append(self.extractor(x)[layer or self.layer].float().clone())
        return torch.cat(out)


PERMUTATIONS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def augment_views(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) ints: a channel permutation (index into PERMUTATIONS), a left-right flip and an up-down flip."""
    return np.stack([rng.integers(len(PERMUTATIONS), size=n), rng.integers(2, size=n), rng.integers(2, size=n)], 1)


def apply_views(rgb: torch.Tensor, views: np.ndarray) -> torch.Tensor:
    """Each image of (N, 3, H, W) with its channels permuted and flipped as its row of `views` says."""
    out = []
    for img, (perm, lr, ud) in zip(rgb, views.tolist()):
        img = img[list(PERMUTATIONS[perm])]
        if lr:
            img = img.flip(-1)
        if ud:
            img = img.flip(-2)
        out.append(img)
    return torch.stack(out)


def parse_one_layer(spec: str):
    """The `--model` spec of a decoder: one model and one layer, else one line."""
    parsed = parse_spec(spec)
    if len(parsed.layers) != 1:
        raise ShiftlensError(f"--model {spec!r} names {len(parsed.layers)} layers: a decoder inverts one, e.g. "
                             f"{parsed.entry.name}:{parsed.layers[0]}")
    return parsed


def check_comparator(spec: str, comparator: str) -> None:
    """A `--comparator` the network lacks is one line before any work (the object cache included): the
    architecture is built on the meta device, so no weights are read or allocated."""
    if not comparator:
        return
    from shiftlens.models.taps import get_module

    with torch.device("meta"):
        model = parse_one_layer(spec).entry.build()
    get_module(model, comparator)  # the tap's own one-line message, naming module paths that exist


def build_encoder(spec: str, weights: str, patches: dict[str, Patch], comparator: str = "", precision: str = "bf16",
                  seed: int = 0, canvas: int = 224) -> tuple[Encoder, str]:
    parsed = parse_one_layer(spec)
    entry = parsed.entry
    layer = entry.layer(parsed.layers[0])
    weights = parsed.weights or weights
    model, prov = build_with_weights(entry, weights, seed)
    comp_model, _ = build_with_weights(entry, weights, seed)
    for p in comp_model.parameters():
        p.requires_grad_(False)
    comparator = comparator or default_comparator(entry.name, comp_model)
    try:
        comp = FeatureNet(comp_model, LayerSpec("comparator", comparator, "feature-loss stage"), entry.normalisation,
                          name=f"{entry.name}:{comparator}")
    except AttributeError:
        raise ShiftlensError(f"comparator {comparator!r} is not a module of {entry.name}: give a module path") from None
    extractor = FeatureExtractor(model, [layer], entry.normalisation, torch.device("cpu"), precision)
    renderer = SceneRenderer(patches, canvas, normalisation=entry.normalisation)
    label = str(prov.get("label", weights))
    return Encoder(extractor, comp, renderer, layer.name, label, bool(prov.get("untrained")),
                   weights_identity(weights, seed)), comparator


class Discriminator(nn.Module):
    """Conditional discriminator (DeePSiM's D sees the features too): image convs + a feature branch -> one logit."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        chans = [3, 32, 64, 128, 128]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.image = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature = nn.Sequential(nn.Linear(feature_dim, 128), nn.LeakyReLU(0.2))
        self.head = nn.Linear(256, 1)

    def forward(self, images: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.image(images), self.feature(z)], dim=1)).squeeze(1)


def _downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    return images if images.shape[-1] == size else F.interpolate(images, size=(size, size), mode="area")


def _feature_loss(comp: FeatureNet, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((comp(images) - target) ** 2).mean() / target.pow(2).mean().clamp_min(1e-8)


@dataclass
class Pool:
    epoch: int
    features: torch.Tensor
    truth: torch.Tensor
    comparator_target: torch.Tensor
    order: list[torch.Tensor]


class Trainer:
    """One training run: model, data, losses, optimisers; `step()` advances by one batch."""

    def __init__(self, settings: TrainSettings, patches: list[Patch] | list[Source],
                 encoder: Encoder | None = None) -> None:
        self.settings = s = settings
        self.sources = as_sources(s.patches, patches)
        by_id: dict[str, Patch] = {}
        self.training, self.held_out, self.groups, records = [], [], [], []
        for src in self.sources:
            keys, kept = src.usable(tuple(s.sizes))
            by_id |= dict(zip(keys, kept))
            train_keys, held = held_out_split(keys, s.held_out, s.seed, source=src.name)
            self.training += train_keys
            self.held_out += held
            self.groups.append(train_keys)
            skipped = src.skipped + len(src.patches) - len(keys)
            records.append(SourceRecord(**licence_record(src, len(keys), len(held), skipped)))
        self.source_records = records
        self.patches = by_id
        self.bank = ObjectBank({k: by_id[k] for k in self.training}, s.sizes[1], s.generator.canvas)
        if encoder is None:
            encoder, comparator = build_encoder(s.spec, s.weights, by_id, s.comparator, s.precision, s.seed,
                                                s.generator.canvas)
            self.comparator_path = comparator
        else:
            self.comparator_path = s.comparator
        self.encoder = encoder
        torch.manual_seed(s.seed)
        self.generator = Generator(s.generator)
        self.opt = torch.optim.Adam(self.generator.parameters(), lr=s.lr, betas=(0.9, 0.999))
        self.disc = Discriminator(s.generator.feature_dim) if s.adversarial else None
        self.d_opt = torch.optim.Adam(self.disc.parameters(), lr=s.lr, betas=(0.5, 0.999)) if self.disc else None
        self.batches_per_pass = max(1, s.pool // s.batch)
        self.steps_per_epoch = self.batches_per_pass * s.passes
        self.step_no = 0
        self.losses: list[StepLoss] = []
        self.validation: list[Evaluation] = []
        self.train_seconds = 0.0
        self.stats_set = False
        self._pool: Pool | None = None

    # -- data ------------------------------------------------------------------------------------------------
    def pool(self, epoch: int) -> Pool:
        if self._pool is not None and self._pool.epoch == epoch:
            return self._pool
        s = self.settings
        rng = np.random.default_rng([s.seed, epoch])
        groups = self.groups if s.mix == "sources" else None
        scenes = random_scenes(rng, self.training, s.pool, tuple(s.sizes), s.max_objects, s.generator.canvas, groups)
        images = self.bank.render(scenes)
        if s.augment:  # drawn after everything an unaugmented run draws, which therefore stays the same
            images = apply_views(images, augment_views(np.random.default_rng([s.seed, epoch, 1]), s.pool))
        feats = self.encoder.encode(images)
        truth = _downsample(images, s.generator.out_size)
        with torch.no_grad():
            comp = torch.cat([self.encoder.comparator(truth[i : i + 32]) for i in range(0, len(truth), 32)])
        order = [torch.from_numpy(rng.permutation(s.pool)) for _ in range(s.passes)]
        if not self.stats_set:  # standardise the decoder's input with the first pool's statistics, kept in the file
            self.generator.feature_mean.copy_(feats.mean(0))
            std = feats.std(0)
            self.generator.feature_std.copy_(std + 0.1 * std.mean() + 1e-6)
            self.stats_set = True
        self._pool = Pool(epoch, feats, truth, comp, order)
        return self._pool

    # -- one step --------------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """The learning rate of step `step` (0-based): warm-up, then halving every `lr_half_life` steps."""
        s = self.settings
        lr = s.lr * (min(1.0, (step + 1) / s.warmup) if s.warmup else 1.0)
        return lr * 0.5 ** (step / s.lr_half_life) if s.lr_half_life else lr

    def step(self) -> StepLoss:
        s = self.settings
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step_no)
        epoch, within = divmod(self.step_no, self.steps_per_epoch)
        pool = self.pool(epoch)
        p, b = divmod(within, self.batches_per_pass)
        idx = pool.order[p][b * s.batch : (b + 1) * s.batch]
        feats, truth, comp_t = pool.features[idx], pool.truth[idx], pool.comparator_target[idx]
        self.generator.train()
        fake = self.generator(feats)
        weight = 1.0 + s.object_weight * object_mask(truth, 0.1).unsqueeze(1).float()
        pixel = (weight * (fake - truth) ** 2).mean() / weight.mean()
        feature = _feature_loss(self.encoder.comparator, fake, comp_t)
        total = s.pixel_weight * pixel + s.feature_weight * feature
        adv_value = None
        if self.disc is not None:
            z = ((feats - self.generator.feature_mean) / self.generator.feature_std).detach()
            d_real = self.disc(truth, z)
            d_fake = self.disc(fake.detach(), z)
            d_loss = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                      + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
            self.d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_opt.step()
            for q in self.disc.parameters():
                q.requires_grad_(False)
            g_fake = self.disc(fake, z)
            adv = F.binary_cross_entropy_with_logits(g_fake, torch.ones_like(g_fake))
            for q in self.disc.parameters():
                q.requires_grad_(True)
            total = total + s.adversarial_weight * adv
            adv_value = float(adv.detach())
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        self.step_no += 1
        rec = StepLoss(step=self.step_no, epoch=epoch, total=float(total.detach()), pixel=float(pixel.detach()),
                       feature=float(feature.detach()), adversarial=adv_value)
        self.losses.append(rec)
        return rec

    # -- records ---------------------------------------------------------------------------------------------
    def meta(self) -> DecoderMeta:
        from shiftlens.models import parse_spec

        import shiftlens

        parsed = parse_spec(self.settings.spec)
        return DecoderMeta(model=parsed.entry.name, layer=parsed.layers[0], weights=self.encoder.weights_label,
                           weights_id=self.encoder.weights_id, untrained=self.encoder.untrained,
                           feature_dim=self.settings.generator.feature_dim,
                           canvas=self.settings.generator.canvas, out_size=self.settings.generator.out_size,
                           comparator=self.comparator_path, training_patches=self.training,
                           held_out_patches=self.held_out, settings=self.settings, steps_done=self.step_no,
                           epochs_done=self.step_no // self.steps_per_epoch, losses=self.losses,
                           validation=self.validation, train_seconds=round(self.train_seconds, 1),
                           sources=self.source_records,
                           versions={"shiftlens": getattr(shiftlens, "__version__", "0"), "torch": torch.__version__})

    def decoder(self) -> Decoder:
        return Decoder(self.generator, self.meta())

    def state(self) -> dict:
        return {"settings": self.settings.model_dump(mode="json"), "step": self.step_no,
                "stats_set": self.stats_set, "generator": self.generator.state_dict(),
                "optimizer": self.opt.state_dict(),
                "discriminator": self.disc.state_dict() if self.disc else None,
                "d_optimizer": self.d_opt.state_dict() if self.d_opt else None,
                "meta": self.meta().model_dump(mode="json")}

    def load_state(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.opt.load_state_dict(state["optimizer"])
        if self.disc is not None:
            self.disc.load_state_dict(state["discriminator"])
            self.d_opt.load_state_dict(state["d_optimizer"])
        self.step_no = int(state["step"])
        self.stats_set = bool(state["stats_set"])
        meta = DecoderMeta.model_validate(state["meta"])
        self.losses, self.validation, self.train_seconds = list(meta.losses), list(meta.validation), meta.train_seconds

    def save(self, out: Path) -> None:
        """The resumable state, then the decoder file: each written atomically, so a kill leaves a usable pair."""
        from shiftlens.store import atomic_path

        with atomic_path(state_path(out)) as tmp:
            torch.save(self.state(), tmp)
        with atomic_path(out) as tmp:
            torch.save(checkpoint_dict(self.generator, self.meta()), tmp)


def check_out(out: Path) -> None:
    """`--out` must be a file path whose folder takes a new file: found before any step, not after the last one.
    A temporary file is made and removed in the nearest folder that exists (folders still to be made are made
    only by the first checkpoint)."""
    if out.is_dir():
        raise ShiftlensError(f"--out {out} is a folder: give the decoder's file path, e.g. {out / 'decoder.pt'}")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ShiftlensError(f"--out {out}: {folder} is a file, not a folder: give a path in a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{out.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ShiftlensError(f"cannot write {out}: {exc.strerror or exc} in {folder}: choose a writable "
                             "--out") from None


def feature_dim_of(encoder: Encoder) -> int:
    blank = Scene(())
    feats, _ = encoder.features([blank])
    return int(feats.shape[1])


def _settings_differ(a: TrainSettings, b: TrainSettings) -> list[str]:
    da, db = a.model_dump(exclude={"steps"}), b.model_dump(exclude={"steps"})
    return [k for k in da if da[k] != db[k]]


def load_training_patches(spec: str) -> list[Patch]:
    from shiftlens.config import RunConfig
    from shiftlens.patches import load_patches

    return load_patches(RunConfig(patches=spec))


def train(settings: TrainSettings, out: Path, resume: bool = True, force: bool = False,
          progress: Progress | None = None, log: Callable[[str], None] | None = None,
          patches: list[Patch] | None = None) -> DecoderMeta:
    """Train (or resume training) the decoder `out` to `settings.steps` steps; returns its metadata.

    `settings.generator.feature_dim` may be 0: it is then measured from the encoder. A checkpoint at `out` made
    with other settings (besides `steps`) is refused unless `force`, which starts over."""
    log = log or (lambda s: None)
    out = Path(out)
    parse_one_layer(settings.spec)
    check_out(out)
    check_comparator(settings.spec, settings.comparator)
    if patches is None:
        patches = load_sources_cached(settings.patches, settings.per_category, tuple(settings.sizes),
                                      cache_path(out), log)
    sources = as_sources(settings.patches, patches)
    for src in sources:
        held_out_split(src.usable(tuple(settings.sizes))[0], settings.held_out, settings.seed, source=src.name)
    check_shippable([licence_record(src, len(src.patches), 0) for src in sources], out, SHIPPED_DIR)
    state = None
    if out.exists() or state_path(out).exists():
        if out.exists():
            read_decoder_file(out)  # never overwrite a file that is not a decoder
        if resume and state_path(out).exists():
            try:
                state = torch.load(state_path(out), map_location="cpu", weights_only=True)
                old = TrainSettings.model_validate(state["settings"])
            except Exception as exc:
                raise ShiftlensError(f"training state {state_path(out)} cannot be read ({type(exc).__name__}): "
                                     "start over with --no-resume") from None
            if settings.generator.feature_dim == 0:
                settings = settings.model_copy(update={"generator": old.generator})
            if not settings.comparator:  # the default, which the checkpoint records resolved
                settings = settings.model_copy(update={"comparator": old.comparator})
            diff = _settings_differ(old, settings)
            if diff and not force:
                raise ShiftlensError(f"{out} was trained with other settings ({', '.join(diff)} differ): give the same "
                                     "settings to resume, --force to start over, or another --out")
            if diff:
                state = None
        elif resume and not force:
            raise ShiftlensError(f"{out} exists without its training state {state_path(out).name}: it cannot be "
                                 "resumed; give --no-resume to train it again from the start, or another --out")
    by_id = {k: p for src in sources for k, p in zip(src.keys(), src.patches)}
    encoder, comparator = build_encoder(settings.spec, settings.weights, by_id, settings.comparator,
                                        settings.precision, settings.seed, settings.generator.canvas)
    if settings.generator.feature_dim == 0:
        settings = settings.model_copy(update={"generator": settings.generator.model_copy(
            update={"feature_dim": feature_dim_of(encoder)})})
    settings = settings.model_copy(update={"comparator": comparator})
    trainer = Trainer(settings, sources, encoder)
    if state is not None:
        trainer.load_state(state)
        log(f"resuming {out} at step {trainer.step_no} of {settings.steps}")
    if trainer.step_no > settings.steps:
        raise ShiftlensError(f"{out} already has {trainer.step_no} steps, more than --steps {settings.steps}: ask for "
                             f"{trainer.step_no} or more, or give --no-resume to train {settings.steps} from the start")
    if trainer.step_no == settings.steps:
        if state is not None and state["settings"]["steps"] != settings.steps:
            # nothing depends on the planned total (constant learning rate, data drawn per epoch), so a run stopped
            # at a checkpoint is the run of that many steps: record it as such
            trainer.save(out)
            log(f"{out} recorded as a run of {settings.steps} steps")
        else:
            log(f"{out} already has {trainer.step_no} steps: nothing to train")
        return trainer.meta()
    t0 = time.perf_counter()
    start_seconds = trainer.train_seconds
    while trainer.step_no < settings.steps:
        rec = trainer.step()
        trainer.train_seconds = start_seconds + time.perf_counter() - t0
        if progress:
            progress(trainer.step_no, settings.steps, rec)
        done = trainer.step_no >= settings.steps
        if trainer.step_no % settings.checkpoint_every == 0 or done:
            ev = evaluate(trainer.decoder(), list(trainer.patches.values()), settings.validate_n,
                          seed=settings.seed + 1, encoder=encoder, checked=True)
            trainer.validation.append(ev.model_copy(update={"step": trainer.step_no}))
            trainer.save(out)
            log(f"step {trainer.step_no}: loss {rec.total:.4f} (pixel {rec.pixel:.4f}, feature {rec.feature:.3f}); "
                f"held-out MAE {ev.held_out_mae:.3f} vs training {ev.training_mae:.3f}, held-out centroid within "
                f"{ev.radius_px:g}px {ev.held_out_centroid_share:.2f}")
    return trainer.meta()


# -- validation --------------------------------------------------------------------------------------------------

def object_mask(images: torch.Tensor, threshold: float) -> torch.Tensor:
    """Non-background pixels: those whose largest channel distance from white exceeds `threshold`. (N, H, W)."""
    return (1.0 - images).amax(1) > threshold


def centroids(mask: torch.Tensor) -> torch.Tensor:
    """(N, 2) mean (y, x) of each mask's pixels; NaN where the mask is empty."""
    n, h, w = mask.shape
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    m = mask.float()
    count = m.sum((1, 2))
    cy = (m * ys).sum((1, 2)) / count
    cx = (m * xs).sum((1, 2)) / count
    return torch.stack([cy, cx], 1)


@dataclass
class GroupResult:
    """One group's single-object scenes (held-out or training objects), reconstructed: what every measure needs."""

    scenes: list[Scene]
    truth: torch.Tensor
    """(n, 3, canvas, canvas) RGB in [0, 1]."""
    recon: torch.Tensor
    features: torch.Tensor
    centroid_error: torch.Tensor
    """(n,) px between the reconstruction's object centroid and the truth's (the canvas diagonal where nothing
    was drawn)."""
    centre_error: torch.Tensor
    """(n,) px between the canvas centre and the truth's centroid: the guess-the-centre baseline."""

    @property
    def mae(self) -> float:
        return float((self.recon - self.truth).abs().mean())

    def share_within(self, radius_px: float) -> float:
        return float((self.centroid_error <= radius_px).float().mean())


def split_keys(meta: DecoderMeta, patches: list[Patch],
               checked: bool = False) -> tuple[dict[str, Patch], list[str], list[str]]:
    """(patches by the decoder's keys, held-out keys, training keys): held-out = every object of `patches` it was
    not trained on (its own held-out ones and any other source's), training = those it was trained on. Objects
    whose mask vanishes at a training size are left out, unless `checked` says they were already."""
    sizes = tuple(meta.settings.sizes)
    by_key = {object_key(p, meta.qualified): p for p in patches if checked or survives(p, sizes)}
    trained = set(meta.training_patches)
    return by_key, sorted(k for k in by_key if k not in trained), sorted(k for k in by_key if k in trained)


def measure_group(decoder: Decoder, encoder: Encoder, renderer: SceneRenderer, keys: list[str], n: int,
                  rng: np.random.Generator, threshold: float = 0.2, batch: int = 16) -> GroupResult:
    """`n` seeded single-object scenes of `keys` (sizes from the decoder's training range, positions anywhere),
    encoded and decoded."""
    meta = decoder.meta
    scenes = random_scenes(rng, keys, n, tuple(meta.settings.sizes), 1, meta.canvas)
    feats, truth = encoder.features(scenes, renderer=renderer, batch=batch)
    recon = torch.cat([decoder.decode(feats[i : i + batch]).cpu() for i in range(0, len(feats), batch)])
    true_c = centroids(object_mask(truth, threshold))
    dist = (centroids(object_mask(recon, threshold)) - true_c).norm(dim=1)
    dist = torch.nan_to_num(dist, nan=math.hypot(meta.canvas, meta.canvas))
    centre = torch.full((1, 2), (meta.canvas - 1) / 2)
    return GroupResult(scenes, truth, recon, feats, dist, (true_c - centre).norm(dim=1))


def evaluate(decoder: Decoder, patches: list[Patch], n: int, seed: int, encoder: Encoder | None = None,
             radius_px: float = 10.0, threshold: float = 0.2, checked: bool = False) -> Evaluation:
    """Reconstruction of `n` single-object scenes of held-out patches and `n` of training patches (seeded sizes
    and positions from the decoder's training range): mean absolute pixel error and the share of scenes whose
    reconstruction's object centroid is within `radius_px` of the truth's."""
    meta = decoder.meta
    by_key, held, trained = split_keys(meta, patches, checked)
    if not held or not trained:
        raise ShiftlensError(f"evaluating {decoder.source or meta.spec} needs its held-out patches "
                             f"({', '.join(meta.held_out_patches)}) and training patches in the patch set: use the "
                             f"patches it was trained on ({meta.settings.patches})")
    if n < 1:
        raise ShiftlensError(f"evaluation size {n}: give 1 or more scenes")
    if encoder is None:
        encoder, _ = build_encoder(meta.settings.spec, meta.settings.weights, by_key, meta.comparator,
                                   meta.settings.precision, meta.settings.seed, meta.canvas)
    renderer = SceneRenderer(by_key, meta.canvas, normalisation=encoder.renderer.norm)
    rng = np.random.default_rng([seed, 7])
    out = {}
    for name, ids in (("held_out", held), ("training", trained)):
        g = measure_group(decoder, encoder, renderer, ids, n, rng, threshold)
        out[name] = (g.mae, g.share_within(radius_px), float(g.centroid_error.median()))
    return Evaluation(n=n, seed=seed, held_out_mae=out["held_out"][0], training_mae=out["training"][0],
                      held_out_centroid_share=out["held_out"][1], training_centroid_share=out["training"][1],
                      held_out_centroid_error_px=out["held_out"][2], radius_px=radius_px, threshold=threshold)
