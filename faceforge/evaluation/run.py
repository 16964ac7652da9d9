"""Evaluate a model on a verification set: batched embedding, flip TTA, insightface metrics.

Every path goes through one :class:`~faceforge.core.embedder.Embedder`: the trainer's
periodic evaluation (:func:`evaluate_model`, an in-memory backbone), ``faceforge eval`` on
``.bin`` and synthetic sets (:func:`evaluate_embedder`) and on pair lists over image
folders (:func:`evaluate_pair_list`), so a number printed during training is the number the
CLI reproduces, whatever the model format. Pair lists are streamed: each distinct image is
decoded and embedded once, the next batch decoding while the current one is embedded.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from faceforge.core.embedder import Embedder
from faceforge.core.preprocess import Preprocess
from faceforge.data.image_io import MAX_PHOTO_PIXELS
from faceforge.data.prefetch import ahead, decode_threads
from faceforge.data.verification_set import VerificationSet
from faceforge.evaluation.pairs import PairList, StoredImage, load_pair_images
from faceforge.evaluation.verification import VerificationResult, evaluate_embeddings

#: uint8 (N, H, W, 3) faces of the model's input size from image files or stored images
FaceLoader = Callable[[Sequence[Path | StoredImage]], np.ndarray]


def decoding_threads(embedder: Embedder) -> int:
    """Threads decoding the next batches: one beside a CPU network, which it keeps up with;
    :func:`~faceforge.data.prefetch.decode_threads` beside an accelerator."""
    return decode_threads() if embedder.backend.accelerated else 1


def embed_batches(
    embedder: Embedder,
    batches: Iterable[np.ndarray],
    *,
    flip: bool,
    total: int,
    progress: bool = False,
    desc: str = "embedding",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw plain and (with ``flip``) mirrored embeddings of a stream of uint8 face batches;
    ``total`` faces in all, counted on a progress bar when ``progress``."""
    from tqdm import tqdm

    plain, mirrored = [], []
    with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for batch in batches:
            views = embedder.views(batch, flip)
            plain.append(views[0])
            if views[1] is not None:
                mirrored.append(views[1])
            bar.update(len(batch))
    width = (0, embedder.embedding_size)
    joined = np.concatenate(plain) if plain else np.zeros(width, np.float32)
    return joined, (np.concatenate(mirrored) if flip and mirrored else None)


def _slices(images: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(images), size):
        yield images[start : start + size]


def _scored(
    name: str,
    plain: np.ndarray,
    mirrored: np.ndarray | None,
    issame: np.ndarray,
    *,
    folds: int,
    images: int,
    seconds: float,
) -> VerificationResult:
    """insightface's verification metrics of embedded pairs; ``result.extra`` records the
    set's name, whether flip TTA ran, and the images embedded per second (both views)."""
    result = evaluate_embeddings(plain, issame, flipped=mirrored, folds=folds)
    views = 1 if mirrored is None else 2
    result.extra.update(
        name=name,
        flip=mirrored is not None,
        images_per_second=round(views * images / max(seconds, 1e-9), 1),
    )
    return result


def evaluate_embedder(
    embedder: Embedder,
    vset: VerificationSet,
    *,
    flip: bool = True,
    folds: int = 10,
    progress: bool = False,
) -> VerificationResult:
    """insightface's verification test ("Accuracy-Flip" by default) of an in-memory set."""
    started = time.perf_counter()
    batches = _slices(vset.images, embedder.batch_size)
    plain, mirrored = embed_batches(
        embedder, batches, flip=flip, total=len(vset.images), progress=progress
    )
    seconds = time.perf_counter() - started
    return _scored(
        vset.name, plain, mirrored, vset.issame, folds=folds, images=len(plain), seconds=seconds
    )


def evaluate_pair_list(
    embedder: Embedder,
    name: str,
    pairs: PairList,
    *,
    resize: str | None = None,
    flip: bool = True,
    folds: int = 10,
    progress: bool = False,
    max_pixels: int = MAX_PHOTO_PIXELS,
    load: FaceLoader | None = None,
) -> VerificationResult:
    """The verification test of pairs of image files: every distinct file is decoded (and
    fitted by ``resize``, see :func:`~faceforge.data.images.fit_image`) and embedded once,
    decoding overlapped with embedding; a file declaring more than ``max_pixels`` is refused
    before decoding. ``load`` replaces that decoding (e.g. photos detected and aligned by
    the caller's face pipeline). ``images_per_second`` counts distinct images, with their
    decoding."""
    started = time.perf_counter()
    files, index = pairs.unique()
    size, step = embedder.input_size, embedder.batch_size
    own_decoding = load is None
    load = load or functools.partial(
        load_pair_images, image_size=size, resize=resize, max_pixels=max_pixels
    )
    jobs = (
        functools.partial(load, chunk)
        for chunk in (files[start : start + step] for start in range(0, len(files), step))
    )
    threads = decoding_threads(embedder) if own_decoding else 1  # ``load``: one at a time
    plain, mirrored = embed_batches(
        embedder, ahead(jobs, threads), flip=flip, total=len(files), progress=progress, desc=name
    )
    seconds = time.perf_counter() - started
    return _scored(
        name,
        plain[index],
        None if mirrored is None else mirrored[index],
        pairs.issame,
        folds=folds,
        images=len(files),
        seconds=seconds,
    )


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
    """:func:`evaluate_embedder` of an in-memory backbone (training's periodic evaluation);
    the caller's model is left unchanged (weights and train/eval mode)."""
    embedder = Embedder.from_backbone(
        model, preprocess, device=device, precision=precision, batch_size=batch_size
    )
    return evaluate_embedder(embedder, vset, flip=flip, folds=folds, progress=progress)
