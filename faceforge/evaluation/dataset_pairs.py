"""LFW ``pairs.txt`` files over the images of a dataset file (RecordIO, LMDB, list).

A folder of ``<name>/<name>_NNNN.jpg`` files names its images itself. Inside a dataset file
an image is named by its identity and its position: ``name n`` is the ``n``-th image (from
1, in the dataset's order) of the class named ``name``. ``faceforge pairs`` writes its pairs
files with exactly these names, and exports the same images as ``<name>/<name>_NNNN`` files,
so both readings of a pairs file give the same images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from faceforge.errors import DataError
from faceforge.evaluation.pairs import MAX_LISTED, LfwImage, PairList, parse_lfw_pairs


class EncodedImages(Protocol):
    """A dataset read as encoded images with class labels (a RecordIO, LMDB or list reader)."""

    labels: np.ndarray

    def encoded(self, index: int) -> bytes: ...

    def where(self, index: int) -> str: ...


class DatasetImage(NamedTuple):
    """Image ``index`` of ``dataset``, decoded only when its pair list is loaded."""

    dataset: EncodedImages
    index: int

    def encoded(self) -> bytes:
        return self.dataset.encoded(self.index)

    def __str__(self) -> str:
        return self.dataset.where(self.index)


class IdentityImages:
    """Dataset indices by ``(identity name, number)``: class ``label`` is called
    ``names[label]``, its images are numbered from 1 in dataset order."""

    def __init__(self, labels: np.ndarray, names: Sequence[str]) -> None:
        labels = np.asarray(labels)
        order = np.argsort(labels, kind="stable")
        classes, starts = np.unique(labels[order], return_index=True)
        self.indices = {
            names[int(label)]: group
            for label, group in zip(classes, np.split(order, starts[1:]), strict=True)
        }

    def number(self, index: int, name: str) -> int:
        """The number of dataset image ``index`` within identity ``name``."""
        return int(np.searchsorted(self.indices[name], index)) + 1

    def find(self, image: LfwImage) -> int | None:
        """The dataset index of ``image``, ``None`` when there is no such image."""
        group = self.indices.get(image.name)
        if group is None or not 1 <= image.number <= len(group):
            return None
        return int(group[image.number - 1])


def read_dataset_pairs(
    pairs_file: str | Path, dataset: EncodedImages, names: Sequence[str]
) -> PairList:
    """An LFW ``pairs.txt`` over ``dataset``, whose class ``label`` is called ``names[label]``
    (see the module docs). Every image is looked up before any is decoded: a DataError lists
    the ones the dataset does not hold."""
    pairs, issame, folds = parse_lfw_pairs(pairs_file)
    lookup = IdentityImages(dataset.labels, names)
    images = [image for pair in pairs for image in pair]
    found = [lookup.find(image) for image in images]
    absent = [image for image, index in zip(images, found, strict=True) if index is None]
    missing = list(dict.fromkeys(f"{image.name} {image.number}" for image in absent))
    if missing:
        listed = ", ".join(missing[:MAX_LISTED])
        more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise DataError(
            f"{pairs_file}: {len(missing)} image(s) not in the dataset (name: identity, "
            f"number: its n-th image from 1): {listed}{more}"
        )
    return PairList([DatasetImage(dataset, int(f)) for f in found], issame, folds)
