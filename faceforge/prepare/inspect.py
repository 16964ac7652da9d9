"""``faceforge inspect``: what a dataset file holds: format, images, classes, bytes, and
histograms of images per class, encoded sizes and pixel sizes (the last two from a sample)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceforge.data.image_io import MAX_DATASET_PIXELS, decode_image, walk_files
from faceforge.data.readers import list_files_in
from faceforge.errors import DataError
from faceforge.files import set_aside_note
from faceforge.prepare.formats import dataset_format, dataset_paths, open_source


@dataclass
class Inspection:
    """The facts :func:`inspect_dataset` gathers."""

    path: str
    format: str
    images: int
    classes: int
    #: bytes on disk (all files of the dataset)
    disk_bytes: int
    #: (min, median, max) images per class
    per_class: tuple[int, int, int]
    sampled: int = 0
    #: encoded size bucket (KB, upper bound) -> sampled images
    encoded_kb: dict[int, int] = field(default_factory=dict)
    #: "HxW" -> sampled images
    pixel_sizes: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    #: a line on what the path may have been meant as
    note: str = ""

    def lines(self) -> list[str]:
        low, mid, high = self.per_class
        out = [
            f"{self.path}: {self.format}",
            f"images      {self.images}",
            f"classes     {self.classes} ({low} / {mid} / {high} images per class, "
            "min / median / max)",
            f"on disk     {self.disk_bytes / 1e6:.1f} MB",
            f"sampled     {self.sampled} images, {len(self.unreadable)} unreadable",
        ]
        out += [f"  <= {kb:>5} KB  {n}" for kb, n in sorted(self.encoded_kb.items())]
        out += [f"  {size:>9} px  {n}" for size, n in sorted(self.pixel_sizes.items())]
        out += [f"  unreadable: {text}" for text in self.unreadable[:10]]
        return out + ([f"note: {self.note}"] if self.note else [])


def _disk_bytes(path: Path) -> int:
    files = []
    for part in dataset_paths(path):
        files += list(walk_files(part)) if part.is_dir() else [part]
    return sum(p.stat().st_size for p in files if p.is_file())


def _kb_bucket(size: int) -> int:
    """Power-of-two KB bucket an encoded size falls into."""
    return 1 << max(0, int(np.ceil(np.log2(max(size, 1) / 1024))))


def _one_identity_note(path: Path, report: Inspection) -> str:
    """An image folder of one identity with a list file on top (arcface_paddle's
    ``label.txt`` beside ``images/``) was probably meant as that list."""
    lists = list_files_in(path) if report.format == "folder" and report.classes == 1 else []
    if not lists:
        return ""
    return (
        f"{lists[0]} is a 'path label' list of this folder's images: faceforge inspect {lists[0]}"
    )


def inspect_dataset(
    path: str | Path, sample: int = 1000, max_pixels: int = MAX_DATASET_PIXELS
) -> Inspection:
    """Count the dataset at ``path`` and decode up to ``sample`` evenly spaced images (those
    declaring more than ``max_pixels`` are listed as unreadable, undecoded)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such dataset{set_aside_note(*dataset_paths(path))}")
    source = open_source(path)
    counts = np.unique(source.labels, return_counts=True)[1] if len(source) else np.zeros(1, int)
    report = Inspection(
        str(path),
        dataset_format(path),
        len(source),
        len(counts) if len(source) else 0,
        _disk_bytes(path),
        (int(counts.min()), int(np.median(counts)), int(counts.max())),
    )
    report.note = _one_identity_note(path, report)
    picks = np.unique(np.linspace(0, len(source) - 1, min(sample, len(source))).astype(int))
    encoded: Counter[int] = Counter()
    pixels: Counter[str] = Counter()
    for index in picks.tolist():
        try:
            data = source.encoded(index)
            image = decode_image(data, source.where(index), max_pixels)
        except DataError as exc:
            report.unreadable.append(str(exc))
            continue
        encoded[_kb_bucket(len(data))] += 1
        pixels[f"{image.shape[0]}x{image.shape[1]}"] += 1
    report.sampled = len(picks)
    report.encoded_kb, report.pixel_sizes = dict(encoded), dict(pixels)
    return report
