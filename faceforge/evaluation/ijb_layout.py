"""Reading insightface's ``IJB_release`` layout of IJB-B / IJB-C (the files, not the images).

For a target ``IJBC`` (``IJBB`` likewise, with ``ijbb_`` names) the root holds::

    loose_crop/<image>                    the face images
    meta/ijbc_face_tid_mid.txt            "<image> <template id> <media id>" per image
    meta/ijbc_name_5pts_score.txt         "<image> x1 y1 ... x5 y5 <faceness>" per image,
                                          in the same order
    meta/ijbc_template_pair_label.txt     "<template 1> <template 2> <1 same | 0 different>"
    meta/ijbc_1N_gallery_G1.csv, _G2.csv  1:N galleries (IJB-B: _S1.csv, _S2.csv), and
    meta/ijbc_1N_probe_mixed.csv          the mixed probes: a header line, then
                                          "TEMPLATE_ID,SUBJECT_ID,..." rows

The 1:N files are optional: without them only 1:1 verification can be run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.errors import DataError, shorten

TARGETS = {"IJBB": ("S1", "S2"), "IJBC": ("G1", "G2")}
#: bytes parsed at a time: reading needs the result plus about this much, whatever the file
BLOCK_BYTES = 8 << 20
#: an IJB meta line is under 200 bytes; a longer one means the file is something else
MAX_LINE_BYTES = 64 << 10


@dataclass
class IjbMeta:
    """Everything the meta files say, one row per image (in file order)."""

    images: list[str]
    landmarks: np.ndarray  # (N, 5, 2) float32, pixels of the loose crop
    faceness: np.ndarray  # (N,) float32 detector scores
    template_ids: np.ndarray  # (N,) int64
    media_ids: np.ndarray  # (N,) int64
    pairs: np.ndarray  # (P, 2) int64 template ids
    labels: np.ndarray  # (P,) int64, 1 = same subject
    gallery: tuple[np.ndarray, np.ndarray] | None  # (templates, subjects) of G1 + G2
    probes: tuple[np.ndarray, np.ndarray] | None  # (templates, subjects) of the mixed probes


@dataclass(frozen=True)
class MetaLayout:
    """What each line of one meta file holds: ``numbers`` numeric fields of ``dtype``, after
    an image name when ``named``; a 1:N ``csv`` has a header line and extra columns."""

    what: str
    #: the line as the error message describes it
    line: str
    numbers: int
    dtype: type
    named: bool = False
    csv: bool = False
    #: rows (of the parsed numbers) that are valid; every row when None
    valid: Callable[[np.ndarray], np.ndarray] | None = None


TEMPLATE_MEDIA = MetaLayout(
    "template/media", "'<image> <template id> <media id>'", 2, np.int64, named=True
)
LANDMARKS = MetaLayout(
    "landmark",
    "'<image> x1 y1 ... x5 y5 <faceness>', all finite",
    11,
    np.float32,
    named=True,
    valid=lambda rows: np.isfinite(rows).all(axis=1),
)
TEMPLATE_PAIRS = MetaLayout(
    "template pair",
    "'<template 1> <template 2> <1 same | 0 different>'",
    3,
    np.int64,
    valid=lambda rows: (rows[:, 2] == 0) | (rows[:, 2] == 1),
)
SUBJECTS = MetaLayout("1:N", "'TEMPLATE_ID,SUBJECT_ID,...'", 2, np.int64, csv=True)


def meta_file(root: Path, target: str, name: str) -> Path:
    """``root/meta/<target>_<name>`` (target lower-cased, as insightface names them)."""
    return root / "meta" / f"{target.lower()}_{name}"


def read_table(path: Path, layout: MetaLayout) -> tuple[list[str], np.ndarray]:
    """The image names (``named`` layouts) and ``(rows, numbers)`` array of every non-blank
    line of a meta file. It is parsed block by block, so memory is the result plus one block;
    undecodable or malformed input is one :class:`DataError` naming the file and line."""
    if not path.is_file():
        raise DataError(
            f"{layout.what} file {str(path)!r} does not exist (not an IJB_release folder?)"
        )
    names: list[str] = []
    parts = [np.empty((0, layout.numbers), layout.dtype)]
    for first, lines in _blocks(path):
        if layout.csv and first == 1:
            first, lines = 2, lines[1:]  # the header
        try:
            block_names, values = _parse(lines, layout)
        except _Malformed:
            bad = first + _first_malformed(lines, layout)
            raise DataError(
                f"{path}:{bad}: expected {layout.line}, got {shorten(lines[bad - first])}"
            ) from None
        names += block_names
        parts.append(values)
    return names, np.concatenate(parts)


def _blocks(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(number of the first line, lines)`` of ``path`` in blocks of whole lines of about
    :data:`BLOCK_BYTES`, decoded as UTF-8."""
    with path.open("rb") as f:
        number, pending = 1, b""
        while data := f.read(BLOCK_BYTES):
            data = pending + data
            cut = data.rfind(b"\n") + 1
            block, pending = data[:cut], data[cut:]
            if len(pending) > MAX_LINE_BYTES:
                line = number + block.count(b"\n")
                raise DataError(
                    f"{path}:{line}: a line of over {MAX_LINE_BYTES:,} bytes (not an IJB meta "
                    "file?)"
                )
            if block:
                yield number, _decode(block, path, number).split("\n")[:-1]
                number += block.count(b"\n")
        if pending:
            yield number, [_decode(pending, path, number)]


def _decode(block: bytes, path: Path, first: int) -> str:
    """``block`` as text with Windows line ends made plain, or a DataError naming the line."""
    try:
        return block.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        line = first + block.count(b"\n", 0, exc.start)
        column = exc.start - block.rfind(b"\n", 0, exc.start)
        raise DataError(
            f"{path}:{line}: byte 0x{block[exc.start]:02x} at column {column} is not UTF-8 "
            "text (not an IJB meta file?)"
        ) from None


class _Malformed(Exception):
    """Some line of a block does not fit the layout."""


def _parse(lines: list[str], layout: MetaLayout) -> tuple[list[str], np.ndarray]:
    """Names and numbers of ``lines`` (blank ones skipped), or :class:`_Malformed`. numpy's C
    parser reads the numbers straight into the array (the 15.7M pairs of IJB-C in seconds)."""
    names: list[str] = []
    if layout.named:
        split = [line.split(None, 1) for line in lines if line.strip()]
        if any(len(parts) != 2 for parts in split):
            raise _Malformed
        names, lines = [parts[0] for parts in split], [parts[1] for parts in split]
    if not any(line.strip() for line in lines):
        return names, np.empty((0, layout.numbers), layout.dtype)
    try:
        values = np.loadtxt(
            lines,
            dtype=layout.dtype,
            ndmin=2,
            comments=None,
            delimiter="," if layout.csv else None,
            usecols=range(layout.numbers) if layout.csv else None,
        )
    except ValueError:
        raise _Malformed from None
    if values.shape[1] != layout.numbers or (layout.valid and not layout.valid(values).all()):
        raise _Malformed
    return names, values


def _first_malformed(lines: list[str], layout: MetaLayout) -> int:
    """Index of the first line that does not fit (each fits or not on its own): bisection,
    about two parses of the block."""
    low, high = 0, len(lines)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            _parse(lines[low:middle], layout)
            low = middle
        except _Malformed:
            high = middle
    return low


def read_subjects(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(template ids, subject ids)`` of a 1:N CSV (header line skipped)."""
    _, values = read_table(path, SUBJECTS)
    return values[:, 0], values[:, 1]


def _identification_lists(root: Path, target: str) -> tuple[tuple, tuple] | tuple[None, None]:
    first, second = TARGETS[target]
    paths = [meta_file(root, target, f"1N_gallery_{g}.csv") for g in (first, second)]
    paths.append(meta_file(root, target, "1N_probe_mixed.csv"))
    if not all(p.is_file() for p in paths):
        return None, None
    galleries = [read_subjects(p) for p in paths[:2]]
    gallery = tuple(np.concatenate(parts) for parts in zip(*galleries, strict=True))
    return gallery, read_subjects(paths[2])


def _check_same_images(path: Path, names: list[str], other: Path, others: list[str]) -> None:
    if names == others:
        return
    row = next((i for i, (a, b) in enumerate(zip(names, others, strict=False)) if a != b), None)
    difference = (
        f"{len(names):,} images against {len(others):,}"
        if row is None
        else f"image {row + 1} is {shorten(names[row])} in one, {shorten(others[row])} in the other"
    )
    raise DataError(f"{path} and {other} do not list the same images in order: {difference}")


def read_ijb(root: str | Path, target: str = "IJBC") -> IjbMeta:
    """Read and cross-check the meta files of ``target`` under an ``IJB_release`` root."""
    if target not in TARGETS:
        raise DataError(f"unknown IJB target {target!r}; expected one of {sorted(TARGETS)}")
    root = Path(root)
    tid_path = meta_file(root, target, "face_tid_mid.txt")
    names, ids = read_table(tid_path, TEMPLATE_MEDIA)
    if not names:
        raise DataError(f"{tid_path} lists no images")
    points_path = meta_file(root, target, "name_5pts_score.txt")
    point_names, points = read_table(points_path, LANDMARKS)
    _check_same_images(tid_path, names, points_path, point_names)
    pair_path = meta_file(root, target, "template_pair_label.txt")
    _, pairs = read_table(pair_path, TEMPLATE_PAIRS)
    if not len(pairs):
        raise DataError(f"{pair_path} lists no template pairs")
    gallery, probes = _identification_lists(root, target)
    return IjbMeta(
        images=names,
        landmarks=points[:, :10].reshape(-1, 5, 2),
        faceness=points[:, 10],
        template_ids=ids[:, 0],
        media_ids=ids[:, 1],
        pairs=pairs[:, :2],
        labels=pairs[:, 2],
        gallery=gallery,
        probes=probes,
    )
