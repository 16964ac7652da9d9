"""Load a training recipe and check it whole before anything heavy is built.

:func:`faceforge.config.load_config` checks keys and types; :func:`check_config` checks each
named choice against its registry (so ``data.source=foldr`` fails at once, listing
``folder, list, synthetic``), every number against its range, the head and loss settings
(by building them at toy size) and the device. Each failure is one
:class:`~faceforge.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from faceforge.config import Config, load_config, override_config
from faceforge.core.checkpoint import Checkpoint
from faceforge.core.precision import PRECISIONS
from faceforge.data.face_masks import MASK_SHAPES
from faceforge.data.samplers import SAMPLERS
from faceforge.data.sources import DATA_SOURCES
from faceforge.device import resolve_device
from faceforge.errors import ConfigError
from faceforge.losses import build_loss
from faceforge.losses.triplet import DISTANCES, MINERS
from faceforge.models.heads.build import HEADS, build_head, build_margin
from faceforge.models.registry import BACKBONES
from faceforge.registry import Registry
from faceforge.train.optim import OPTIMIZERS, SCHEDULES

#: config field -> the registry its value must name
CHOICES: dict[str, Registry] = {
    "data.source": DATA_SOURCES,
    "model.backbone": BACKBONES,
    "head.type": HEADS,
    "optim.name": OPTIMIZERS,
    "optim.schedule": SCHEDULES,
    "train.amp": PRECISIONS,
    "data.sampler": SAMPLERS,
    "loss.triplet_mining": MINERS,
    "loss.triplet_distance": DISTANCES,
}


def _positive(x: float) -> bool:
    return x > 0


def _non_negative(x: float) -> bool:
    return x >= 0


def _probability(x: float) -> bool:
    return 0 <= x <= 1


def _range(low: float, high: float) -> Callable[[Sequence[float]], bool]:
    """A ``[a, b]`` pair with ``low < a <= b <= high``."""
    return lambda r: len(r) == 2 and low < r[0] <= r[1] <= high


def _mask_shapes(shapes: Sequence[str]) -> bool:
    return len(shapes) > 0 and all(shape in MASK_SHAPES for shape in shapes)


#: field -> (test, what the value must be)
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.image_size": (lambda x: x == 112, "112 (the backbones end on a 7-row feature map)"),
    "data.image_width": (
        lambda x: x in (0, 96, 112),
        "0 (square), 112 or 96 (SphereFace-style 112x96 crops)",
    ),
    "data.num_workers": (_non_negative, ">= 0"),
    "data.max_pixels": (_positive, ">= 1"),
    "data.synthetic.num_identities": (lambda x: x >= 2, ">= 2 (one identity teaches nothing)"),
    "data.synthetic.images_per_identity": (_positive, ">= 1"),
    "data.synthetic.val_identities": (lambda x: x >= 2, ">= 2"),
    "data.synthetic.val_pairs": (lambda x: x > 0 and x % 20 == 0, "a positive multiple of 20"),
    "augment.hflip": (_probability, "a probability in [0, 1]"),
    "augment.cutout_prob": (_probability, "a probability in [0, 1]"),
    "augment.half_face_prob": (_probability, "a probability in [0, 1]"),
    "augment.brightness": (_probability, "in [0, 1]"),
    "augment.contrast": (_probability, "in [0, 1]"),
    "augment.random_crop_scale": (_non_negative, ">= 0"),
    "augment.cutout_size": (_positive, ">= 1"),
    "augment.mesh_prob": (_probability, "a probability in [0, 1]"),
    "augment.mesh_period": (_range(0, 1e4), "a range [low, high] of pixels, 0 < low <= high"),
    "augment.mesh_thickness": (_range(0, 1e4), "a range [low, high] of pixels, 0 < low <= high"),
    "augment.mesh_opacity": (_range(0, 1), "a range [low, high] with 0 < low <= high <= 1"),
    "augment.mask_prob": (_probability, "a probability in [0, 1]"),
    "augment.mask_shapes": (_mask_shapes, f"a non-empty list of {', '.join(MASK_SHAPES.names())}"),
    "model.embedding_size": (_positive, ">= 1"),
    "model.dropout": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "optim.lr": (_positive, "> 0"),
    "optim.momentum": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "optim.weight_decay": (_non_negative, ">= 0"),
    "optim.warmup_steps": (_non_negative, ">= 0"),
    "optim.milestones": (
        lambda m: all(0 < x < 1 for x in m) and list(m) == sorted(m),
        "increasing fractions in (0, 1)",
    ),
    "optim.gamma": (_positive, "> 0"),
    "optim.power": (_positive, "> 0 (2 in arcface_torch's poly schedule)"),
    "optim.grad_clip": (_non_negative, ">= 0 (0 disables clipping)"),
    "eval.every": (_non_negative, ">= 0 (0: only at the end)"),
    "eval.batch_size": (_positive, ">= 1"),
    "train.epochs": (_positive, ">= 1"),
    "train.max_steps": (_non_negative, ">= 0 (0: use train.epochs)"),
    "train.batch_size": (_positive, ">= 1"),
    "train.accumulate": (_positive, ">= 1"),
    "train.max_skipped_steps": (_non_negative, ">= 0"),
    "head.sample_rate": (lambda x: 0 < x <= 1, "in (0, 1]"),
    "head.adaface_h": (_positive, "> 0 (0.333 in the AdaFace paper)"),
    "head.ema_alpha": (lambda x: 0 < x <= 1, "in (0, 1] (0.01 in the papers)"),
    "head.mag_lambda_g": (_non_negative, ">= 0 (35 in the MagFace paper)"),
    "head.subcenters": (_positive, ">= 1 (3 in the paper)"),
    "head.subcenter_drop_step": (_non_negative, ">= 0 (0: never drop)"),
    "head.subcenter_drop_angle": (lambda x: 0 < x < 3.1416, "an angle in (0, pi) radians"),
    "head.elastic_sigma": (_non_negative, ">= 0 (0.05 in the ElasticFace paper)"),
    "data.pk_images": (lambda x: x >= 2, ">= 2 (each anchor needs a positive)"),
    "loss.triplet_margin": (_non_negative, ">= 0 (typically 0.2)"),
    "train.log_every": (_positive, ">= 1"),
    "train.seed": (_non_negative, ">= 0"),
    "data.synthetic.seed": (_non_negative, ">= 0"),
    "loss.center_lr": (_positive, "> 0 (0.5 in the center loss paper)"),
    "train.save_every": (_non_negative, ">= 0 (0: by time only)"),
    "train.save_minutes": (_non_negative, ">= 0 (0: by steps only)"),
    "train.collective_timeout_minutes": (_positive, "> 0 (minutes a process waits for others)"),
}


def field_value(cfg: Config, dotted: str) -> Any:
    """``field_value(cfg, "optim.lr")`` is ``cfg.optim.lr``."""
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def check_config(cfg: Config) -> Config:
    """Raise :class:`~faceforge.errors.ConfigError` naming the first invalid setting."""
    for name, registry in CHOICES.items():
        registry.get(field_value(cfg, name), name)
    for name, (test, expected) in RANGES.items():
        value = field_value(cfg, name)
        if not test(value):
            raise ConfigError(f"{name}={value!r}: must be {expected}")
    build_head(cfg.head, embedding_size=8, num_classes=2)
    build_loss(cfg.loss, embedding_size=8, num_classes=2)
    if cfg.head.partial_fc:
        _check_partial_fc(cfg)
    if cfg.loss.center_weight and cfg.optim.name != "sgd":
        raise ConfigError(
            f"loss.center_weight={cfg.loss.center_weight} needs optim.name=sgd: the centers "
            f"follow the paper's update at their own rate, which {cfg.optim.name} would turn "
            "into steps of about that rate whatever the gradient"
        )
    resolve_device(cfg.train.device)
    return cfg


def _check_partial_fc(cfg: Config) -> None:
    """Partial FC computes a plain cross-entropy over the sharded classes itself, and sums
    the backbone's gradients over processes (a per-process loss term such as the triplet's
    would count once per process)."""
    build_margin(cfg.head)
    extra = {
        "loss.focal_gamma": cfg.loss.focal_gamma,
        "loss.label_smoothing": cfg.loss.label_smoothing,
        "loss.center_weight": cfg.loss.center_weight,
        "loss.triplet_weight": cfg.loss.triplet_weight,
    }
    used = [f"{name}={value}" for name, value in extra.items() if value]
    if used:
        raise ConfigError(
            f"head.partial_fc trains with plain cross-entropy; set {', '.join(used)} to 0"
        )


def load_recipe(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """A recipe (YAML file or shipped name) with ``section.key=value`` overrides, checked."""
    return check_config(load_config(path, overrides))


def resumed_recipe(checkpoint: str | Path, overrides: Sequence[str] = ()) -> Config:
    """The recipe ``checkpoint`` was trained with, writing into the checkpoint's folder, with
    ``overrides``, checked: what ``faceforge train --resume last.pt`` without ``--config``
    continues (rather than the defaults, which would not fit the checkpoint)."""
    saved = Checkpoint.load(checkpoint, parts=()).config  # not its tensors: the run loads them
    folder = str(Path(checkpoint).parent)
    here = dataclasses.replace(saved, train=dataclasses.replace(saved.train, output_dir=folder))
    return check_config(override_config(here, list(overrides)))
