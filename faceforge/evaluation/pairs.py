"""Verification pairs over an image folder: LFW ``pairs.txt`` and generic CSV/TSV pair lists.

Both are parsed into a :class:`PairList` whose every file is checked *before* any image is
decoded, so a typo or an incomplete download is reported at once, by name.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.core.images import load_images
from faceforge.data.image_io import IMAGE_EXTENSIONS
from faceforge.data.verification_set import VerificationSet
from faceforge.errors import DataError

#: how many missing files an error message lists before summarising the rest
MAX_LISTED = 20

# "same" is deliberately not a label: it is the usual header of the label column
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


@dataclass
class PairList:
    """Image files of 1:1 pairs: pair ``i`` is ``paths[2i]`` and ``paths[2i+1]``."""

    paths: list[Path]
    issame: np.ndarray

    def __len__(self) -> int:
        return len(self.issame)

    def load(
        self,
        name: str,
        image_size: tuple[int, int] = (112, 112),
        resize: str | None = None,
        workers: int | None = None,
    ) -> VerificationSet:
        """Decode every image (in parallel) into a :class:`VerificationSet`."""
        images = load_images(self.paths, [str(p) for p in self.paths], image_size, resize, workers)
        return VerificationSet(name, images, self.issame)


def _check_missing(paths: Iterable[Path], what: str) -> None:
    missing = list(dict.fromkeys(str(p) for p in paths if not p.is_file()))
    if missing:
        listed = "\n  ".join(missing[:MAX_LISTED])
        more = f"\n  ... and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise DataError(f"{what}: {len(missing)} image file(s) not found:\n  {listed}{more}")


class _LfwFolder:
    """Finds ``<root>/<name>/<name>_<NNNN>.<any image extension>``, listing each folder once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._listing: dict[str, dict[str, str]] = {}

    def path(self, name: str, number: int) -> Path:
        stem = f"{name}_{number:04d}"
        if name not in self._listing:
            folder = self.root / name
            files = os.listdir(folder) if folder.is_dir() else []
            self._listing[name] = {
                os.path.splitext(f)[0]: f
                for f in sorted(files)
                if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
            }
        found = self._listing[name].get(stem)
        return self.root / name / (found or f"{stem}.jpg")


def read_lfw_pairs(pairs_file: str | Path, images_dir: str | Path) -> PairList:
    """Parse an LFW ``pairs.txt`` (``name n1 n2`` same, ``name1 n1 name2 n2`` different).

    The optional header (``10 300`` for View 2, ``1100`` / ``500`` for View 1) is skipped;
    files are ``images_dir/<name>/<name>_%04d`` with any image extension. Raises DataError
    for malformed lines and, listing them, for missing images.
    """
    pairs_file, images_dir = Path(pairs_file), Path(images_dir)
    try:
        lines = pairs_file.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"{pairs_file}: cannot read pairs file ({exc.strerror or exc})") from None
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: image folder does not exist")
    folder = _LfwFolder(images_dir)
    paths: list[Path] = []
    issame: list[bool] = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or (number == 1 and len(fields) <= 2 and all(f.isdigit() for f in fields)):
            continue
        try:
            if len(fields) == 3:
                pair = [(fields[0], int(fields[1])), (fields[0], int(fields[2]))]
            elif len(fields) == 4:
                pair = [(fields[0], int(fields[1])), (fields[2], int(fields[3]))]
            else:
                raise ValueError
        except ValueError:
            raise DataError(
                f"{pairs_file}:{number}: expected 'name n1 n2' or 'name1 n1 name2 n2', "
                f"got {line.strip()!r}"
            ) from None
        paths.extend(folder.path(name, n) for name, n in pair)
        issame.append(len(fields) == 3)
    if not issame:
        raise DataError(f"{pairs_file}: no pairs found")
    _check_missing(paths, str(pairs_file))
    return PairList(paths, np.array(issame))


def _label(value: str) -> bool | None:
    value = value.strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None


def read_pair_list(list_file: str | Path, root: str | Path | None = None) -> PairList:
    """Parse a CSV/TSV list of ``path_a, path_b, same`` rows (extra columns are ignored).

    The delimiter (comma, tab, semicolon, pipe) is detected; a first row whose third field is
    not a label (1/0, true/false, yes/no) is taken as a header. Relative
    paths are resolved against ``root`` (default: the list's folder). Raises DataError for
    malformed rows and, listing them, for missing images.
    """
    list_file = Path(list_file)
    base = Path(root) if root is not None else list_file.parent
    try:
        text = list_file.read_text()
    except OSError as exc:
        raise DataError(f"{list_file}: cannot read pair list ({exc.strerror or exc})") from None
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",\t;|")
    except csv.Error:
        raise DataError(
            f"{list_file}: cannot tell the delimiter; expected 'path_a,path_b,same' rows "
            "separated by commas or tabs"
        ) from None
    paths: list[Path] = []
    issame: list[bool] = []
    for number, row in enumerate(csv.reader(text.splitlines(), dialect), 1):
        if not row or not "".join(row).strip():
            continue
        label = _label(row[2]) if len(row) >= 3 else None
        if label is None:
            if number == 1:
                continue  # header
            raise DataError(
                f"{list_file}:{number}: expected 'path_a{dialect.delimiter}path_b"
                f"{dialect.delimiter}same' with same in 1/0/true/false, got {row!r}"
            )
        paths.extend((base / row[0].strip(), base / row[1].strip()))
        issame.append(label)
    if not issame:
        raise DataError(f"{list_file}: no pairs found")
    _check_missing(paths, str(list_file))
    return PairList(paths, np.array(issame))
