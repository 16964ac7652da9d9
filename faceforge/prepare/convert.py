"""``faceforge convert``: copy a dataset between image folders, list files, RecordIO and LMDB
(formats chosen by path, see :mod:`faceforge.prepare.formats`), and pack verification pairs
into an insightface ``.bin``.

Images are copied byte for byte unless a JPEG ``quality`` or a ``size`` asks for decoding
and re-encoding, so a conversion without them is lossless. Every image must be in a format
faceforge decodes and declare at most ``max_pixels`` in its header (what training will
accept), so that no image the training would refuse is carried over. Class ids come out
contiguous (renumbered with a warning when the source has gaps). The output is written under
a temporary name and renamed when complete: an interrupted conversion leaves no partial
dataset behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.data.image_io import MAX_DATASET_PIXELS, check_pixels, decode_image, encode_image
from faceforge.data.images import fit_image
from faceforge.data.readers.class_ids import contiguous_labels
from faceforge.errors import ConfigError, DataError
from faceforge.prepare.formats import (
    SINKS,
    Source,
    dataset_format,
    dataset_paths,
    numbered_name,
    open_source,
    replacing,
)


@dataclass(frozen=True)
class ConvertOptions:
    """How images are carried over. ``quality`` (JPEG) or ``size`` (square side) re-encode;
    ``shuffle`` writes them in a random order of ``seed`` (RecordIO output then has no MS1M
    header, as DALI needs); ``skip_corrupt`` logs and counts unreadable images (and images
    declaring more than ``max_pixels``) instead of stopping."""

    quality: int | None = None
    size: int | None = None
    shuffle: bool = False
    seed: int = 0
    skip_corrupt: bool = False
    overwrite: bool = False
    progress: bool = True
    max_pixels: int = MAX_DATASET_PIXELS

    def __post_init__(self) -> None:
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise ConfigError(f"--quality must be in 1..100, got {self.quality}")
        if self.size is not None and self.size < 1:
            raise ConfigError(f"--size must be a positive number of pixels, got {self.size}")
        if self.max_pixels < 1:
            raise ConfigError(f"--max-pixels must be positive, got {self.max_pixels}")


@dataclass
class ConvertSummary:
    """What a conversion wrote."""

    source_format: str
    target_format: str
    images: int = 0
    identities: int = 0
    #: encoded image bytes written
    bytes: int = 0
    skipped: int = 0

    def text(self, target: str | Path) -> str:
        return (
            f"wrote {target} ({self.target_format}, from {self.source_format}): "
            f"{self.images} images of {self.identities} identities, "
            f"{self.bytes / 1e6:.1f} MB of image data; skipped {self.skipped} unreadable"
        )


def reencode(data: bytes, where: str, options: ConvertOptions) -> bytes:
    """``data`` as stored, or decoded, resized and re-encoded as JPEG when asked."""
    if options.quality is None and options.size is None:
        return data
    image = decode_image(data, where, options.max_pixels)
    if options.size:
        image = fit_image(image, (options.size, options.size), "stretch", "image")
    return encode_image(image, ".jpg", options.quality or 95)


def image_order(labels: np.ndarray, options: ConvertOptions) -> np.ndarray:
    """Sample order of the output: shuffled, or grouped by class (stable)."""
    if options.shuffle:
        return np.random.default_rng(options.seed).permutation(len(labels))
    return np.argsort(labels, kind="stable")


def _check_target(source: Path, target: Path, overwrite: bool) -> None:
    if source.resolve() == target.resolve():
        raise DataError("the output must differ from the source")
    taken = [str(p) for p in dataset_paths(target) if p.exists()]
    if taken and not overwrite:
        raise DataError(f"{', '.join(taken)} exist(s); pass --overwrite to replace")


def convert(
    src: str | Path,
    dst: str | Path,
    options: ConvertOptions | None = None,
    log: Callable[[str], None] = print,
) -> ConvertSummary:
    """Convert the dataset at ``src`` into the format ``dst`` names; see the module docs."""
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    options = options or ConvertOptions()
    _check_target(src, dst, options.overwrite)
    source = open_source(src, options.skip_corrupt)
    labels, class_ids = contiguous_labels(source.labels, None, src)
    names = getattr(source, "classes", None)
    names = (
        [names[c] for c in class_ids]
        if names
        else [numbered_name(label, len(class_ids)) for label in range(len(class_ids))]
    )
    summary = ConvertSummary(dataset_format(src), dataset_format(dst))
    summary.skipped = getattr(source, "skipped", 0)  # records a reader left out
    sink = SINKS.get(summary.target_format)(dst, names, options.shuffle, options.size or 112)
    try:
        seen = set()
        for index in tqdm(image_order(labels, options).tolist(), disable=not options.progress):
            try:
                image = _image(source, index, options)
            except DataError as exc:
                if not options.skip_corrupt:
                    raise
                summary.skipped += 1
                log(f"skipped: {exc}")
                continue
            sink.add(int(labels[index]), image)
            seen.add(int(labels[index]))
            summary.images += 1
            summary.bytes += len(image)
    except BaseException:
        sink.abort()
        raise
    with replacing(dst):  # --overwrite: the old dataset goes only once the new one is complete
        sink.close()
    summary.identities = len(seen)
    if len(seen) < len(class_ids):  # every image of a class skipped: its id stays, empty
        empty = sorted(set(range(len(class_ids))) - seen)
        log(
            f"warning: every image of {len(empty)} identities was skipped (class ids "
            f"{', '.join(map(str, empty[:5]))}{' ...' if len(empty) > 5 else ''}): their ids "
            "stay in the output without images (they never appear in a batch)"
        )
    return summary


def _image(source: Source, index: int, options: ConvertOptions) -> bytes:
    where = source.where(index)
    data = source.encoded(index)
    check_pixels(data, where, options.max_pixels)
    return reencode(data, where, options)
