"""The faceforge checkpoint: one typed, versioned file for training, evaluation and deployment.

A :class:`Checkpoint` holds the resolved config, the preprocessing contract and the backbone
(enough to embed faces), plus the training state to resume exactly (head, loss, optimizer,
scheduler, grad scaler, step, RNG, history). On disk it is a dict of tensors and plain values:

* loaded with ``torch.load(weights_only=True)``, so a crafted file cannot run code;
* written atomically (temporary file, fsync, rename);
* tagged with a format ``version``: a file from a newer faceforge is refused by name;
* sealed with a SHA-256 over every stored value, checked on load: a flipped bit or a partial
  copy is a :class:`~faceforge.errors.CheckpointError`, never silently different weights.

>>> ckpt = Checkpoint(config=Config(), backbone=model.state_dict())  # doctest: +SKIP
>>> ckpt.save("model.pt"); Checkpoint.load("model.pt").step  # doctest: +SKIP
0
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from faceforge import __version__
from faceforge.config import Config, config_from_dict, config_to_dict
from faceforge.core.preprocess import Preprocess
from faceforge.errors import CheckpointError, ConfigError, first_line
from faceforge.files import atomic_open

FORMAT = "faceforge-checkpoint"
#: version 1: typed fields + ``content_hash``; version 0 (faceforge 0.1) had no hash
VERSION = 1


@dataclass
class Checkpoint:
    """Everything a run saves. Training-state fields stay empty in a deploy-only checkpoint."""

    config: Config
    backbone: dict[str, Tensor]
    preprocess: Preprocess = field(default_factory=Preprocess)
    #: evaluation results at save time, e.g. {"synthetic": {"accuracy": .., "best_threshold": ..}}
    metrics: dict[str, Any] = field(default_factory=dict)
    head: dict[str, Tensor] = field(default_factory=dict)
    loss: dict[str, Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    scaler: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    rng: dict[str, Tensor] = field(default_factory=dict)
    best_accuracy: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def _fields(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["config"] = config_to_dict(self.config)
        values["preprocess"] = self.preprocess.to_dict()
        return values

    def save(self, path: str | Path) -> None:
        """Write atomically: a crash mid-write leaves the previous file as it was."""
        fields = self._fields()
        payload = {
            "kind": FORMAT,
            "version": VERSION,
            "faceforge_version": __version__,
            "content_hash": content_hash(fields),
            **fields,
        }
        with atomic_open(path) as f:
            torch.save(payload, f)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
        """Read and verify a checkpoint (safe unpickler, version and content hash checked)."""
        payload = _read(Path(path), map_location)
        fields = {f.name: payload[f.name] for f in dataclasses.fields(cls) if f.name in payload}
        if payload.get("version", 0) >= 1 and payload.get("content_hash") != content_hash(fields):
            raise CheckpointError(
                f"{str(path)!r} is corrupt: its content does not match the hash stored when it "
                "was written (damaged disk or incomplete copy); use another checkpoint"
            )
        try:
            fields["config"] = config_from_dict(fields["config"])
            fields["preprocess"] = Preprocess.from_dict(
                fields.get("preprocess", Preprocess().to_dict())
            )
            return cls(**fields)
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise CheckpointError(f"{str(path)!r} has unusable contents: {exc}") from None


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(
            f"cannot load {str(path)!r} safely: {first_line(exc)} "
            "(truncated file, or not a faceforge checkpoint?)"
        ) from None
    if not isinstance(payload, dict) or payload.get("kind") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not a faceforge checkpoint; for an insightface backbone.pth "
            "use the --arch option of the inference commands"
        )
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint format version {version!r}, newer than this "
            f"faceforge {__version__} reads (up to {VERSION}); upgrade faceforge"
        )
    return payload


def content_hash(value: Any) -> str:
    """SHA-256 (hex) over a nested structure of dicts, lists, tensors and plain values.

    Dict keys are visited in sorted order and every tensor contributes its key path, dtype,
    shape and bytes, so equal content gives an equal hash wherever it was computed. For a
    flat state dict this is the weight fingerprint galleries use to recognise their model.
    """
    digest = hashlib.sha256()
    _feed(digest, "", value)
    return digest.hexdigest()


def _feed(digest: Any, path: str, value: Any) -> None:
    if isinstance(value, Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{path}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            _feed(digest, f"{path}/{key}" if path else str(key), value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{path}:[{len(value)}];".encode())
        for i, item in enumerate(value):
            _feed(digest, f"{path}[{i}]", item)
    else:
        digest.update(f"{path}={value!r};".encode())
