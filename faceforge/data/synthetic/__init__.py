"""Deterministic synthetic faces: a training set and an LFW-like benchmark with no download."""

from __future__ import annotations

from faceforge.config import SyntheticConfig
from faceforge.data.synthetic.faces import HELD_OUT_OFFSET, SyntheticFaces, render_workers
from faceforge.data.verification_set import VerificationSet


def synthetic_verification_set(cfg: SyntheticConfig) -> VerificationSet:
    """The held-out synthetic pairs of a config (identities never seen in training)."""
    faces = SyntheticFaces(cfg.seed)
    return faces.verification_set(cfg.val_identities, cfg.val_pairs, workers=render_workers())


__all__ = ["HELD_OUT_OFFSET", "SyntheticFaces", "render_workers", "synthetic_verification_set"]
