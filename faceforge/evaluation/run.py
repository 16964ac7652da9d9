"""Evaluate a backbone on a verification set: batched embedding, flip TTA, insightface metrics.

The trainer's periodic evaluation and ``faceforge eval`` both go through
:func:`evaluate_model`, so a number printed during training is the number the CLI reproduces.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from faceforge.core.batch_embed import embed_image_views
from faceforge.core.preprocess import Preprocess
from faceforge.data.verification_set import VerificationSet
from faceforge.evaluation.verification import VerificationResult, evaluate_embeddings


def evaluate_model(
    model: nn.Module,
    vset: VerificationSet,
    *,
    preprocess: Preprocess | None = None,
    batch_size: int = 128,
    flip: bool = True,
    folds: int = 10,
    device: str | torch.device | None = None,
    precision: str = "auto",
    progress: bool = False,
) -> VerificationResult:
    """insightface's verification test of ``model`` on ``vset`` ("Accuracy-Flip" by default).

    Embeds every image (and its mirror image with ``flip``) through
    :func:`~faceforge.core.batch_embed.embed_image_views`, then scores the pairs with
    :func:`~faceforge.evaluation.verification.evaluate_embeddings` (``xnorm`` filled in).
    ``result.extra`` records the set's name, ``flip`` and the embedding throughput.
    The caller's model is left unchanged (weights and train/eval mode).
    """
    started = time.perf_counter()
    plain, mirrored = embed_image_views(
        model,
        vset.images,
        preprocess,
        batch_size=batch_size,
        flip=flip,
        device=device,
        precision=precision,
        progress=progress,
    )
    seconds = time.perf_counter() - started
    result = evaluate_embeddings(plain, vset.issame, flipped=mirrored, folds=folds)
    views = 2 if flip else 1
    result.extra.update(
        name=vset.name,
        flip=flip,
        images_per_second=round(views * len(vset.images) / max(seconds, 1e-9), 1),
    )
    return result
