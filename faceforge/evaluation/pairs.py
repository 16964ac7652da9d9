"""Verification pairs over an image folder: LFW ``pairs.txt`` and generic CSV/TSV pair lists.

:func:`read_pairs` is the one CSV/TSV parser, for labelled lists (evaluation) and unlabelled
ones (``faceforge verify --pairs``). Evaluation lists become a :class:`PairList` whose every
file is checked *before* any image is decoded, so a typo or an incomplete download is
reported at once, by name. Files are read as UTF-8 (a byte-order mark is dropped) or, failing
that, Latin-1, so lists written by any editor or spreadsheet parse the same.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from faceforge.data.file_kinds import misplaced_hint
from faceforge.data.image_io import MAX_PHOTO_PIXELS, list_images
from faceforge.data.images import load_images
from faceforge.data.verification_set import VerificationSet
from faceforge.errors import DataError
from faceforge.evaluation.bin_format import write_bin

#: how many missing files an error message lists before summarising the rest
MAX_LISTED = 20

# "same" is deliberately not a label: it is the usual header of the label column
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}
#: column separators of pair lists, in the order they are looked for in the first line
DELIMITERS = ("\t", ",", ";", "|")
#: images decoded between two progress updates
LOAD_CHUNK = 256
#: control characters no text pair list contains: their presence means binary data
_BINARY = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


class StoredImage(Protocol):
    """An image kept inside a dataset file (RecordIO, LMDB) rather than as a file of its own;
    ``str()`` names it in errors."""

    def encoded(self) -> bytes: ...


def load_pair_images(
    entries: Sequence[Path | StoredImage],
    image_size: tuple[int, int],
    resize: str | None = None,
    workers: int | None = None,
    max_pixels: int = MAX_PHOTO_PIXELS,
) -> np.ndarray:
    """Decode image files and stored images alike into uint8 (N, H, W, 3) RGB, each of at
    most ``max_pixels`` (see :func:`~faceforge.data.images.load_images`)."""
    data = [entry if isinstance(entry, Path) else entry.encoded() for entry in entries]
    names = [str(entry) for entry in entries]
    return load_images(data, names, image_size, resize, workers, max_pixels)


@dataclass
class PairList:
    """Images of 1:1 pairs: pair ``i`` is ``paths[2i]`` and ``paths[2i+1]``, image files or
    images stored in a dataset."""

    paths: Sequence[Path | StoredImage]
    issame: np.ndarray
    #: the folds a pairs.txt header declares (``10 300``: 10 folds of 300 same + 300
    #: different pairs), None when it declares none; evaluations default to it
    folds: int | None = None

    def __len__(self) -> int:
        return len(self.issame)

    def shuffled(self, seed: int = 0) -> PairList:
        """The same pairs in a seeded random order, so that the contiguous folds of a list
        sorted by label (all 'same' pairs first) hold both classes."""
        order = np.random.default_rng(seed).permutation(len(self))
        paths = [self.paths[2 * pair + side] for pair in order.tolist() for side in (0, 1)]
        return PairList(paths, self.issame[order], self.folds)

    def unique(self) -> tuple[list[Path], np.ndarray]:
        """The distinct image files (in first-seen order) and, for each of ``paths``, its
        row among them: LFW View 2's 12,000 pair slots hold 7,701 images."""
        rows: dict[Path, int] = {}
        index = np.array([rows.setdefault(path, len(rows)) for path in self.paths], np.int64)
        return list(rows), index

    def image(
        self, index: int, image_size: tuple[int, int] = (112, 112), resize: str = "letterbox"
    ) -> np.ndarray:
        """Image ``index`` alone, decoded and fitted to ``image_size`` (a report's
        thumbnail)."""
        return load_pair_images([self.paths[index]], image_size, resize)[0]

    def load(
        self,
        name: str,
        image_size: tuple[int, int] = (112, 112),
        resize: str | None = None,
        workers: int | None = None,
        progress: bool = False,
    ) -> VerificationSet:
        """Decode every image (in parallel) into a :class:`VerificationSet`, with a progress
        bar on stderr if ``progress``."""
        from tqdm import tqdm

        images = np.empty((len(self.paths), *image_size, 3), np.uint8)
        with tqdm(total=len(self.paths), desc=name, unit="img", disable=not progress) as bar:
            for start in range(0, len(self.paths), LOAD_CHUNK):
                chunk = self.paths[start : start + LOAD_CHUNK]
                images[start : start + len(chunk)] = load_pair_images(
                    chunk, image_size, resize, workers
                )
                bar.update(len(chunk))
        return VerificationSet(name, images, self.issame)

    def pack(
        self,
        name: str,
        output: str | Path,
        *,
        image_size: tuple[int, int] = (112, 112),
        resize: str | None = None,
        ext: str = ".jpg",
        progress: bool = False,
    ) -> VerificationSet:
        """Decode the pairs and write them as an insightface ``.bin`` (what ``faceforge
        pack-bin`` does); returns the set written."""
        vset = self.load(name, image_size, resize, progress=progress)
        write_bin(output, vset, ext=ext)
        return vset


def _read_text(path: Path, what: str) -> str:
    """The text of a pairs file: UTF-8 (a byte-order mark dropped), else Latin-1; DataError
    naming the file when it cannot be read or holds binary data."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    binary = _BINARY.search(text)
    if binary:
        raise DataError(
            f"{path}: not a text {what} (binary data at character {binary.start()}); "
            "expected lines of text in UTF-8 or Latin-1"
            + misplaced_hint(path, "--pairs or --pair-list")
        )
    return text


def _check_missing(paths: Iterable[Path], what: str, hint: str = "") -> None:
    """DataError listing the first missing files (``hint``: where the paths start from)."""
    missing = list(dict.fromkeys(str(p) for p in paths if not p.is_file()))
    if missing:
        listed = "\n  ".join(missing[:MAX_LISTED])
        more = f"\n  ... and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise DataError(f"{what}: {len(missing)} image file(s) not found{hint}:\n  {listed}{more}")


class _LfwFolder:
    """Finds ``<root>/<name>/<name>_<NNNN>.<any image extension>``, listing each folder once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._listing: dict[str, dict[str, str]] = {}

    def path(self, name: str, number: int) -> Path:
        stem = f"{name}_{number:04d}"
        if name not in self._listing:
            folder = self.root / name
            files = list_images(folder) if folder.is_dir() else []
            self._listing[name] = {file.stem: file.name for file in files}
        found = self._listing[name].get(stem)
        return self.root / name / (found or f"{stem}.jpg")


class LfwImage(NamedTuple):
    """How an LFW ``pairs.txt`` names an image: the person and the image's number."""

    name: str
    number: int


class LfwPairs(NamedTuple):
    """What an LFW ``pairs.txt`` holds."""

    pairs: list[tuple[LfwImage, LfwImage]]
    issame: np.ndarray
    #: K of a ``K N`` header that matches the pairs (K folds of N same + N different)
    folds: int | None


def parse_lfw_pairs(pairs_file: str | Path) -> LfwPairs:
    """The pairs of an LFW ``pairs.txt`` (``name n1 n2`` same, ``name1 n1 name2 n2``
    different), their same flags and folds; the optional header (``10 300`` for View 2,
    ``1100`` / ``500`` for View 1) gives the folds when it counts the pairs that follow.
    Raises DataError for malformed lines and an empty file."""
    pairs_file = Path(pairs_file)
    lines = _read_text(pairs_file, "pairs file").splitlines()
    pairs: list[tuple[LfwImage, LfwImage]] = []
    issame: list[bool] = []
    header: list[int] = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:  # blank lines (a trailing one, CRLF endings) are no pairs
            continue
        if not pairs and not header and len(fields) <= 2 and all(f.isdigit() for f in fields):
            header = [int(f) for f in fields]
            continue
        try:
            if len(fields) == 3:
                pair = (LfwImage(fields[0], int(fields[1])), LfwImage(fields[0], int(fields[2])))
            elif len(fields) == 4:
                pair = (LfwImage(fields[0], int(fields[1])), LfwImage(fields[2], int(fields[3])))
            else:
                raise ValueError
        except ValueError:
            raise DataError(
                f"{pairs_file}:{number}: expected 'name n1 n2' or 'name1 n1 name2 n2', "
                f"got {line.strip()!r}"
            ) from None
        pairs.append(pair)
        issame.append(len(fields) == 3)
    if not issame:
        raise DataError(f"{pairs_file}: no pairs found")
    folds = header[0] if len(header) == 2 and header[0] * header[1] * 2 == len(pairs) else None
    return LfwPairs(pairs, np.array(issame), folds)


def read_lfw_pairs(pairs_file: str | Path, images_dir: str | Path) -> PairList:
    """An LFW ``pairs.txt`` (see :func:`parse_lfw_pairs`) over an image folder: files are
    ``images_dir/<name>/<name>_%04d`` with any image extension. Raises DataError for
    malformed lines and, listing them, for missing images."""
    images_dir = Path(images_dir)
    pairs, issame, folds = parse_lfw_pairs(pairs_file)
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: image folder does not exist")
    folder = _LfwFolder(images_dir)
    paths = [folder.path(*image) for pair in pairs for image in pair]
    _check_missing(paths, str(pairs_file))
    return PairList(paths, issame, folds)


class Pair(NamedTuple):
    """One row of a pair list: two image files and, in labelled lists, whether they show the
    same person."""

    a: Path
    b: Path
    same: bool | None = None


def _label(value: str) -> bool | None:
    value = value.strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None


def _delimiter(text: str) -> str:
    first = next((line for line in text.splitlines() if line.strip()), "")
    return next((d for d in DELIMITERS if d in first), ",")


def read_pairs(
    list_file: str | Path, root: str | Path | None = None, *, labelled: bool = True
) -> list[Pair]:
    """Parse a CSV/TSV list of ``path_a, path_b[, same]`` rows (extra columns are ignored).

    The delimiter is the first of tab, comma, semicolon, pipe found in the first line.
    ``labelled`` lists need a third column ``same`` in 1/0, true/false, yes/no; unlabelled
    lists ignore it. A first row that is not a pair (labelled: no valid label; unlabelled:
    neither file exists) is taken as a header. Relative paths are resolved against ``root``
    (default: the list's folder). Files are not checked here. Raises DataError for malformed
    rows and for a list without pairs.
    """
    list_file = Path(list_file)
    base = Path(root) if root is not None else list_file.parent
    text = _read_text(list_file, "pair list")
    delimiter = _delimiter(text)
    columns = delimiter.join(["path_a", "path_b", "same"] if labelled else ["path_a", "path_b"])
    hint = " with same in 1/0/true/false/yes/no" if labelled else ""
    lines = enumerate(csv.reader(text.splitlines(), delimiter=delimiter), 1)
    rows = [(number, row) for number, row in lines if "".join(row).strip()]
    pairs = []
    for index, (number, row) in enumerate(rows):
        pair = _pair(row, base, labelled)
        if index == 0 and (pair is None or _is_header(pair, labelled)):
            continue
        if pair is None:
            raise DataError(f"{list_file}:{number}: expected '{columns}'{hint}, got {row!r}")
        pairs.append(pair)
    if not pairs:
        raise DataError(f"{list_file}: no pairs found")
    return pairs


def _pair(row: list[str], base: Path, labelled: bool) -> Pair | None:
    """The pair a row holds, or ``None`` when it has too few columns or no valid label."""
    if len(row) < 2:
        return None
    a, b = base / row[0].strip(), base / row[1].strip()
    if not labelled:
        return Pair(a, b)
    same = _label(row[2]) if len(row) >= 3 else None
    return None if same is None else Pair(a, b, same)


def _is_header(pair: Pair, labelled: bool) -> bool:
    """An unlabelled first row naming two files that do not exist is a header (``a,b``)."""
    return not labelled and not pair.a.exists() and not pair.b.exists()


def read_pair_list(list_file: str | Path, root: str | Path | None = None) -> PairList:
    """A labelled pair list (see :func:`read_pairs`) with every file checked: DataError
    listing the missing ones."""
    pairs = read_pairs(list_file, root, labelled=True)
    paths = [path for pair in pairs for path in (pair.a, pair.b)]
    base = Path(root) if root is not None else Path(list_file).parent
    _check_missing(paths, str(list_file), f" (relative paths start from {base}: --root DIR)")
    return PairList(paths, np.array([pair.same for pair in pairs]))
