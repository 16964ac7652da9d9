"""Atomic, safely loadable checkpoints that also rebuild the backbone for inference.

A checkpoint is a dict of tensors and plain Python values only, so it loads with
``torch.load(weights_only=True)``: no pickled classes, no code execution from a crafted file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from faceforge import __version__
from faceforge.config import Config, config_from_dict
from faceforge.core.preprocess import Preprocess
from faceforge.errors import CheckpointError, ConfigError
from faceforge.files import atomic_open

CHECKPOINT_KIND = "faceforge-checkpoint"


@dataclass
class LoadedModel:
    """A backbone ready for inference plus everything needed to use it correctly."""

    backbone: nn.Module
    config: Config
    preprocess: Preprocess
    #: evaluation results stored at save time, e.g. {"synthetic": {"accuracy": ..}}
    metrics: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: a crash mid-write never leaves a broken file
    where a good one was (write to a temporary file in the same folder, fsync, rename)."""
    payload = {"kind": CHECKPOINT_KIND, "faceforge_version": __version__, **payload}
    with atomic_open(path) as f:
        torch.save(payload, f)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a faceforge checkpoint with the safe (weights-only) unpickler."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(
            f"cannot load {str(path)!r} safely: {str(exc).splitlines()[0]} "
            "(truncated file, or not a faceforge checkpoint?)"
        ) from None
    if not isinstance(payload, dict) or payload.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(
            f"{str(path)!r} is not a faceforge checkpoint; for an insightface backbone.pth "
            "use the --arch option of the inference commands"
        )
    return payload


def load_backbone(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the backbone of a checkpoint (config inside) in eval mode, ready to embed."""
    from faceforge.models import build_backbone

    payload = load_checkpoint(path, map_location)
    try:
        config = config_from_dict(payload["config"])
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"{str(path)!r} has no usable config: {exc}") from None
    backbone = build_backbone(
        config.model.backbone,
        embedding_size=config.model.embedding_size,
        dropout=config.model.dropout,
    )
    try:
        backbone.load_state_dict(payload["backbone"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{str(path)!r}: backbone weights do not fit: {exc}") from None
    backbone.eval()
    preprocess = Preprocess.from_dict(payload.get("preprocess", Preprocess().to_dict()))
    return LoadedModel(backbone, config, preprocess, dict(payload.get("metrics", {})))
