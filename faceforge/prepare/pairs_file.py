"""``faceforge pairs``: an LFW View 2 style ``pairs.txt`` from any dataset faceforge reads.

The file is LFW's: a ``folds per_fold`` header, then per fold ``per_fold`` lines
``name n1 n2`` (same person) followed by ``per_fold`` lines ``name1 n1 name2 n2``; folds are
identity-disjoint and balanced (:mod:`faceforge.prepare.pair_folds`). How it names images:

============== ===================== ==============================================
dataset        identity name         image number
============== ===================== ==============================================
folder         the folder            ``NNNN`` of ``<name>_NNNN.<ext>`` files (LFW);
                                     other file names need ``--export``
list           the label             the image's position in its identity, from 1
RecordIO, LMDB the stored class id   the image's position in its identity, from 1
============== ===================== ==============================================

``faceforge eval --pairs OUT.txt --images SRC`` reads the file against the dataset itself
(:func:`read_pairs_on`); ``export`` copies the paired images to ``<name>/<name>_NNNN.<ext>``
files (an LFW folder) under the same names, for ``eval``, ``pack-bin`` or other tools.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.errors import DataError
from faceforge.evaluation.dataset_pairs import IdentityImages, read_dataset_pairs
from faceforge.evaluation.pairs import PairList, read_lfw_pairs
from faceforge.files import atomic_write_bytes
from faceforge.prepare.formats import Source, dataset_format, image_extension, open_source
from faceforge.prepare.pair_folds import Fold, make_folds

_WHITESPACE = re.compile(r"\s")


@dataclass(frozen=True)
class PairsOptions:
    """``folds`` identity-disjoint folds of ``per_fold`` same and ``per_fold`` different
    pairs, drawn with ``seed`` (LFW View 2: 10 folds of 300 + 300)."""

    folds: int = 10
    per_fold: int = 300
    seed: int = 0


@dataclass
class PairsReport:
    """What :func:`make_pairs` wrote."""

    output: Path
    folds: int
    per_fold: int
    #: identities owned by each fold
    fold_identities: list[int]
    #: distinct images the pairs use
    images: int
    #: the ``--images`` argument ``eval`` reads the pairs with
    images_for_eval: Path
    export: Path | None = None

    def summary(self) -> str:
        identities = sum(self.fold_identities)
        return (
            f"wrote {self.output}: {self.folds} folds x ({self.per_fold} same + {self.per_fold} "
            f"different) pairs over {self.images} images of {identities} identities; evaluate "
            f"with --pairs {self.output} --images {self.images_for_eval}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "folds": self.folds,
            "per_fold": self.per_fold,
            "fold_identities": self.fold_identities,
            "images": self.images,
            "images_for_eval": str(self.images_for_eval),
            "export": None if self.export is None else str(self.export),
        }


def identity_names(source: Source) -> list[str]:
    """The name of every class label as pairs files use it (see the module docs)."""
    classes = getattr(source, "classes", None)
    if classes is not None:
        return list(classes)
    class_ids = getattr(source, "class_ids", None)
    if class_ids is not None:
        return [str(int(c)) for c in class_ids]
    return [str(label) for label in range(int(source.labels.max()) + 1)]


def lfw_numbers(
    paths: Sequence[Path], labels: np.ndarray, names: Sequence[str]
) -> np.ndarray | None:
    """``NNNN`` of every ``<name>/<name>_NNNN.<ext>`` file; ``None`` when any file is named
    otherwise (an LFW ``pairs.txt`` could not name it)."""
    numbers = np.empty(len(paths), np.int64)
    for i, (path, label) in enumerate(zip(paths, labels, strict=True)):
        name, _, digits = path.stem.rpartition("_")
        if name != names[label] or not digits.isdigit() or path.stem != f"{name}_{int(digits):04d}":
            return None
        numbers[i] = int(digits)
    return numbers


def positions(labels: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The number of every image: its position in its identity, from 1, in dataset order."""
    lookup = IdentityImages(labels, names)
    numbers = np.empty(len(labels), np.int64)
    for group in lookup.indices.values():
        numbers[group] = np.arange(1, len(group) + 1)
    return numbers


def pairs_text(
    folds: Sequence[Fold],
    per_fold: int,
    names: Sequence[str],
    labels: np.ndarray,
    numbers: np.ndarray,
) -> str:
    """The ``pairs.txt`` of ``folds`` (tab-separated, as LFW's)."""
    lines = [f"{len(folds)}\t{per_fold}"]
    for fold in folds:
        for a, b in fold.same:
            lines.append(f"{names[labels[a]]}\t{numbers[a]}\t{numbers[b]}")
        for a, b in fold.different:
            lines.append(f"{names[labels[a]]}\t{numbers[a]}\t{names[labels[b]]}\t{numbers[b]}")
    return "\n".join(lines) + "\n"


def _check_names(folds: Sequence[Fold], names: Sequence[str]) -> None:
    for fold in folds:
        for label in fold.labels:
            if not names[label] or _WHITESPACE.search(names[label]):
                raise DataError(
                    f"identity {names[label]!r} cannot be written in a pairs file, whose fields "
                    "are separated by whitespace: rename it (e.g. with underscores)"
                )


def export_images(
    source: Source,
    indices: Sequence[int],
    names: Sequence[str],
    numbers: np.ndarray,
    folder: Path,
    progress: bool = False,
) -> None:
    """Copy images ``indices`` of ``source`` (bytes as stored) to
    ``folder/<name>/<name>_NNNN.<ext>``; written in a temporary folder renamed at the end."""
    from tqdm import tqdm

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would stay on the finished folder
        for index in tqdm(indices, desc="exporting", unit="img", disable=not progress):
            data = source.encoded(index)
            name = names[source.labels[index]]
            ext = image_extension(data, source.where(index))
            (tmp / name).mkdir(exist_ok=True)
            (tmp / name / f"{name}_{numbers[index]:04d}{ext}").write_bytes(data)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def make_pairs(
    src: str | Path,
    output: str | Path,
    options: PairsOptions | None = None,
    *,
    export: str | Path | None = None,
    progress: bool = False,
) -> PairsReport:
    """Write the pairs file ``output`` for the dataset at ``src`` (and, with ``export``, its
    paired images as an LFW folder); see the module docs. The file is written last, whole."""
    options = options or PairsOptions()
    src, output = Path(src), Path(output)
    if export is not None and Path(export).exists():
        raise DataError(f"--export {export}: already exists; give a new folder")
    source = open_source(src)
    names = identity_names(source)
    folds = make_folds(source.labels, options.folds, options.per_fold, options.seed)
    _check_names(folds, names)
    numbers = None
    if dataset_format(src) == "folder":
        numbers = lfw_numbers(source.paths, source.labels, names)  # type: ignore[attr-defined]
        if numbers is None and export is None:
            raise DataError(
                f"{src}: the image files are not named <identity>_NNNN.<ext> (as LFW's), so a "
                "pairs file cannot name them; add --export DIR to copy the paired images "
                "there under such names"
            )
    readable = numbers is not None or dataset_format(src) != "folder"
    if numbers is None:
        numbers = positions(source.labels, names)
    used = sorted({i for fold in folds for pair in fold.same + fold.different for i in pair})
    if export is not None:
        export_images(source, used, names, numbers, Path(export), progress)
    text = pairs_text(folds, options.per_fold, names, source.labels, numbers)
    atomic_write_bytes(output, text.encode())
    return PairsReport(
        output=output,
        folds=options.folds,
        per_fold=options.per_fold,
        fold_identities=[len(fold.labels) for fold in folds],
        images=len(used),
        images_for_eval=src if readable else Path(export),  # type: ignore[arg-type]
        export=None if export is None else Path(export),
    )


def read_pairs_on(pairs_file: str | Path, images: str | Path) -> PairList:
    """An LFW ``pairs.txt`` over ``images``: an LFW folder, or a RecordIO, LMDB or list
    dataset whose images are named as :func:`make_pairs` names them."""
    if dataset_format(images) == "folder":
        return read_lfw_pairs(pairs_file, images)
    source = open_source(images)
    return read_dataset_pairs(pairs_file, source, identity_names(source))


def write_report_json(path: str | Path, report: PairsReport) -> None:
    """``report`` as JSON at ``path``."""
    atomic_write_bytes(path, (json.dumps(report.to_dict(), indent=2) + "\n").encode())
