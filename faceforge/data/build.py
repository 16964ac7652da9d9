"""Build the training reader and the evaluation sets a config asks for."""

from __future__ import annotations

import os

from faceforge.config import Config
from faceforge.data.readers import ImageFolderReader, ListFileReader, Reader, SyntheticReader
from faceforge.data.synthetic import SyntheticFaces
from faceforge.errors import ConfigError
from faceforge.evaluation.verification_set import VerificationSet


def build_reader(cfg: Config) -> Reader:
    """The storage reader for ``cfg.data.source``."""
    data = cfg.data
    if data.source == "synthetic":
        syn = data.synthetic
        return SyntheticReader(
            SyntheticFaces(syn.seed),
            syn.num_identities,
            syn.images_per_identity,
            cache=syn.cache,
            workers=render_workers(),
        )
    if not data.path:
        raise ConfigError(f"data.source={data.source!r} needs data.path")
    if data.source == "folder":
        return ImageFolderReader(data.path)
    if data.source == "list":
        return ListFileReader(data.path, data.root or None)
    raise ConfigError(f"unknown data.source {data.source!r}; use synthetic, folder or list")


def synthetic_verification_set(cfg: Config) -> VerificationSet:
    """The held-out synthetic pairs of a config (identities never seen in training)."""
    syn = cfg.data.synthetic
    faces = SyntheticFaces(syn.seed)
    return faces.verification_set(syn.val_identities, syn.val_pairs, workers=render_workers())


def render_workers() -> int:
    """Processes used to pre-render synthetic images: every core (rendering is CPU-bound)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
