"""Load a training recipe and check every choice in it before anything heavy is built.

:func:`faceforge.config.load_config` checks keys and types; :func:`check_config` checks each
named choice against its registry (so ``data.source=foldr`` fails at once, listing
``folder, list, synthetic``) and the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from faceforge.config import Config, load_config
from faceforge.core.precision import PRECISIONS
from faceforge.data.sources import DATA_SOURCES
from faceforge.device import resolve_device
from faceforge.models.heads.build import HEADS
from faceforge.models.registry import BACKBONES
from faceforge.registry import Registry
from faceforge.train.optim import OPTIMIZERS, SCHEDULES

#: config field -> the registry its value must name
CHOICES: dict[tuple[str, str], Registry] = {
    ("data", "source"): DATA_SOURCES,
    ("model", "backbone"): BACKBONES,
    ("head", "type"): HEADS,
    ("optim", "name"): OPTIMIZERS,
    ("optim", "schedule"): SCHEDULES,
    ("train", "amp"): PRECISIONS,
}


def check_config(cfg: Config) -> Config:
    """Raise :class:`~faceforge.errors.ConfigError` naming the first invalid choice."""
    for (section, key), registry in CHOICES.items():
        registry.get(getattr(getattr(cfg, section), key), f"{section}.{key}")
    resolve_device(cfg.train.device)
    return cfg


def load_recipe(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """A recipe (YAML file or shipped name) with ``section.key=value`` overrides, checked."""
    return check_config(load_config(path, overrides))
