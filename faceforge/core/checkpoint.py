"""The faceforge checkpoint: one typed, versioned file for training, evaluation and deployment.

A :class:`Checkpoint` holds the resolved config, the preprocessing contract and the backbone
(enough to embed faces), plus the training state to resume exactly (head, loss, optimizer,
scheduler, grad scaler, step, RNG, history). On disk it is a dict of tensors and plain values:

* read by :func:`~faceforge.core.safe_load.load_weights_only`, so a crafted file can neither
  run code nor make loading allocate or walk more than its size warrants;
* written atomically (temporary file, fsync, rename);
* tagged with a format ``version``: a file from a newer faceforge is refused by name;
* sealed with a SHA-256 per field, checked on load: a flipped bit or a partial copy is a
  :class:`~faceforge.errors.CheckpointError`, never silently different weights. The hashes
  guard against damage, not against a forger (who can recompute them), so no damage can
  switch them off: only a file with neither version nor hash that holds exactly what
  faceforge 0.1 wrote loads unverified, with a warning;
* mapped, not read into memory: the processes of a machine resuming a Partial FC run share
  the page cache and each keeps only its rows of the head, which can take gigabytes;
* read in part: ``load(path, parts=DEPLOY_PARTS)`` reads and checks only what embedding
  needs, never the head and optimizer state (a version 1 file, sealed by one hash, is read
  and checked whole).

>>> ckpt = Checkpoint(config=Config(), backbone=model.state_dict())  # doctest: +SKIP
>>> ckpt.save("model.pt"); Checkpoint.load("model.pt").step  # doctest: +SKIP
0
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from faceforge import __version__
from faceforge.config import Config, config_from_dict, config_to_dict
from faceforge.core.preprocess import Preprocess
from faceforge.core.safe_load import load_weights_only
from faceforge.errors import CheckpointError, ConfigError, shorten
from faceforge.files import atomic_open

FORMAT = "faceforge-checkpoint"
#: version 2: typed fields + ``field_hashes``; version 1: one ``content_hash`` over all
#: fields; faceforge 0.1 wrote neither version nor hash
VERSION = 2
#: entries beside the fields: what the file is, which format, who wrote it, its seal
SEAL_KEYS = frozenset({"kind", "version", "faceforge_version", "content_hash", "field_hashes"})
#: the fields an embedder needs beside the config and preprocessing (which every load reads)
DEPLOY_PARTS = ("backbone", "metrics")
#: everything a faceforge 0.1 checkpoint held
LEGACY_KEYS = frozenset(
    {"kind", "faceforge_version", "backbone", "head", "loss", "optimizer", "scheduler"}
    | {"scaler", "step", "rng", "config", "preprocess", "metrics", "best_accuracy", "history"}
)


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
            "field_hashes": {name: content_hash(value) for name, value in fields.items()},
            **fields,
        }
        with atomic_open(path) as f:
            torch.save(payload, f)

    @classmethod
    def load(
        cls,
        path: str | Path,
        map_location: str | torch.device = "cpu",
        parts: Collection[str] | None = None,
    ) -> Checkpoint:
        """Read and verify a checkpoint (safe unpickler, version and content hashes checked).
        The file is mapped, not read into memory: its tensors are views of the page cache,
        which the processes of one machine share (a caller that keeps a tensor past the
        load clones it). ``parts`` names the fields wanted beside the config and
        preprocessing (e.g. :data:`DEPLOY_PARTS`, or none): the others are neither read nor
        checked, and stay empty."""
        payload = _payload(path, map_location)
        wanted = None if parts is None else {"config", "preprocess", *parts}
        fields = _verified_fields(str(path), payload, wanted)
        fields.setdefault("backbone", {})
        try:
            fields["config"] = config_from_dict(fields["config"])
            fields["preprocess"] = Preprocess.from_dict(
                fields.get("preprocess", Preprocess().to_dict())
            )
            return cls(**fields)
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise CheckpointError(f"{str(path)!r} has unusable contents: {exc}") from None


def read_payload(path: str | Path) -> dict[str, Any] | None:
    """The raw entries of a faceforge checkpoint, mapped and unchecked (to measure its parts;
    :meth:`Checkpoint.load` checks them), or None when ``path`` holds something else."""
    try:
        payload = load_weights_only(path, what="checkpoint", mapped=True)
    except CheckpointError:  # e.g. Python objects beside the tensors: another project's file
        return None
    return payload if _is_checkpoint(payload) else None


def _is_checkpoint(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("kind") == FORMAT


def _payload(path: str | Path, map_location: str | torch.device) -> dict:
    """The dict a faceforge checkpoint file holds (safe unpickler, mapped), else
    CheckpointError."""
    payload = load_weights_only(path, map_location, what="checkpoint", mapped=True)
    if not _is_checkpoint(payload):
        raise CheckpointError(
            f"{str(path)!r} is not a faceforge checkpoint; for an insightface backbone.pth "
            "use the --arch option of the inference commands"
        )
    return payload


def _verified_fields(name: str, payload: dict[str, Any], wanted: set[str] | None) -> dict[str, Any]:
    """The fields of ``payload`` that are ``wanted`` (``None``: all), once they have shown
    they are undamaged: no unknown entries, and a known version with matching hashes, or
    else exactly the layout of faceforge 0.1 (which wrote neither)."""
    names = [f.name for f in dataclasses.fields(Checkpoint)]
    unexpected = sorted(map(str, set(payload) - set(names) - SEAL_KEYS))
    if unexpected:
        raise CheckpointError(
            f"{name!r} is damaged or not written by faceforge: unexpected entry "
            f"{shorten(unexpected[0])}"
        )
    stored = {key: payload[key] for key in names if key in payload}
    fields = {key: value for key, value in stored.items() if wanted is None or key in wanted}
    if not SEAL_KEYS.intersection(payload) - {"kind", "faceforge_version"}:
        _check_legacy(name, payload)
        return fields
    version = payload.get("version")
    if type(version) is not int or version < 1:  # bool is an int, but not a version
        raise CheckpointError(
            f"{name!r} is damaged: it claims format version {shorten(version)}, which "
            "faceforge never wrote (versions start at 1)"
        )
    if version > VERSION:
        raise CheckpointError(
            f"{name!r} has checkpoint format version {version}, newer than this faceforge "
            f"{__version__} reads (up to {VERSION}); upgrade faceforge"
        )
    seal = "content_hash" if version == 1 else "field_hashes"
    hashes = payload.get(seal)
    if version == 1:  # one hash over every field: read and check them all
        intact = hashes == content_hash(stored)
    else:
        intact = isinstance(hashes, dict) and set(hashes) == set(stored)
        intact = intact and all(hashes[key] == content_hash(value) for key, value in fields.items())
    if not intact:
        raise CheckpointError(
            f"{name!r} is corrupt: its content does not match the hashes stored when it was "
            "written (damaged disk or incomplete copy); use another checkpoint"
        )
    return fields


def _check_legacy(name: str, payload: dict[str, Any]) -> None:
    """Accept a checkpoint without version and hash only as faceforge 0.1 wrote it (damage
    that renames an entry is an unexpected key), warning that it cannot be verified."""
    written_by = payload.get("faceforge_version")
    legacy = isinstance(written_by, str) and re.fullmatch(r"0\.1(\.\w+)*", written_by)
    if not legacy or not set(payload) <= LEGACY_KEYS:
        raise CheckpointError(
            f"{name!r} is damaged: it has no content hash, which only faceforge 0.1 "
            f"checkpoints lack, yet it is not one (written by {shorten(written_by)})"
        )
    warnings.warn(
        f"{name} was written by faceforge {written_by} without a content hash, so damage "
        "cannot be detected: loaded unverified (save it again to seal it)",
        stacklevel=4,
    )


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
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))  # no copy
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            _feed(digest, f"{path}/{key}" if path else str(key), value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{path}:[{len(value)}];".encode())
        for i, item in enumerate(value):
            _feed(digest, f"{path}[{i}]", item)
    else:
        digest.update(f"{path}={value!r};".encode())
