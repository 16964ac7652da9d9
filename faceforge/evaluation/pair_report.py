"""What a verification file holds (``faceforge inspect lfw.bin`` / ``pairs.txt`` / a CSV or TSV
pair list): its pairs, their classes and folds, read without decoding an image.

A list sorted by label puts one class in each contiguous fold, which makes a 10-fold accuracy
meaningless (see :func:`~faceforge.evaluation.verification.one_class_folds`): the report says so
before anything is embedded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.data.image_header import declared_size, image_format
from faceforge.errors import DataError
from faceforge.evaluation.bin_format import read_bin
from faceforge.evaluation.pairs import parse_lfw_pairs, read_pairs
from faceforge.evaluation.verification import fold_slices, one_class_folds

#: folds insightface evaluates a ``.bin`` in, and faceforge a pairs file without a header
DEFAULT_FOLDS = 10


def describe_verification_file(path: str | Path) -> list[str] | None:
    """Lines describing the insightface ``.bin``, LFW ``pairs.txt`` or CSV/TSV pair list at
    ``path``; ``None`` when it is none of them (a ``.txt`` that is not a pairs file: a
    training list)."""
    path = Path(path)
    if path.suffix.lower() == ".bin":
        return _bin_lines(path)
    if path.suffix.lower() in (".csv", ".tsv"):
        return _pair_list_lines(path)
    if path.suffix.lower() != ".txt" or not path.is_file():
        return None
    try:
        lfw = parse_lfw_pairs(path)
    except DataError:
        return None
    images = {image for pair in lfw.pairs for image in pair}
    people = {image.name for image in images}
    folds = lfw.folds or DEFAULT_FOLDS
    source = f"from its header '{folds} N'" if lfw.folds else "no 'K N' header: --folds or 10"
    return [
        f"{path}: LFW pairs file, {_classes(lfw.issame)} over {len(images):,} images of "
        f"{len(people):,} people",
        f"folds: {folds} ({source}){_fold_note(lfw.issame, folds)}",
        f"evaluate: faceforge eval --pairs {path} --images DIR (aligned crops; raw photos: "
        "--align)",
    ]


def _pair_list_lines(path: Path) -> list[str]:
    pairs = read_pairs(path)
    issame = np.array([pair.same for pair in pairs])
    files = {file for pair in pairs for file in (pair.a, pair.b)}
    found = sum(file.is_file() for file in files)
    return [
        f"{path}: pair list, {_classes(issame)} over {len(files):,} files ({found:,} of them "
        f"found from {path.parent}: relative paths start there unless --root says otherwise)",
        f"folds: {DEFAULT_FOLDS} (--folds){_fold_note(issame, DEFAULT_FOLDS)}",
        f"evaluate: faceforge eval --pair-list {path} [--root DIR] (aligned crops; raw photos: "
        "--align)",
    ]


def _bin_lines(path: Path) -> list[str]:
    encoded, issame = read_bin(path)
    where = f"{path} image 0"
    width, height = declared_size(encoded[0], where)  # its header: nothing decoded
    return [
        f"{path}: insightface verification .bin, {_classes(issame)}, {len(encoded):,} "
        f"{image_format(encoded[0], where).name} images of {height}x{width} (the first)",
        f"folds: {DEFAULT_FOLDS} (insightface's){_fold_note(issame, DEFAULT_FOLDS)}",
        f"evaluate: faceforge eval --bin {path}",
    ]


def _classes(issame: np.ndarray) -> str:
    same = int(np.count_nonzero(issame))
    return f"{len(issame):,} pairs ({same:,} same, {len(issame) - same:,} different)"


def _fold_note(issame: np.ndarray, folds: int) -> str:
    """Where contiguous folds hold one class only: how many, and the fix."""
    if len(set(issame.tolist())) < 2:
        return "; every pair is of one class: verification needs 'same' and 'different' pairs"
    if len(issame) < folds:
        return f"; too few pairs for them: evaluate with --folds {len(issame)} or fewer"
    one_class = one_class_folds(issame, fold_slices(len(issame), folds))
    if not one_class:
        return ", each holding both classes"
    return (
        f"; {one_class} hold only one class (sorted by label?): evaluate or pack with "
        "--shuffle-pairs"
    )
