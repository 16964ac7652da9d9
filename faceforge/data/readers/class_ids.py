"""Class ids as training needs them: contiguous from 0, whatever a dataset file stores."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


def contiguous_labels(
    labels: np.ndarray, declared: int | None, source: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, class_ids)``: stored labels renumbered ``0..k-1`` in sorted order, and
    the stored id of each new class.

    Contiguous labels are returned as they are. Gaps (ids with no image) would give the
    classifier dead classes, so they are remapped with a warning; a ``declared`` class count
    (e.g. insightface's ``property`` file) that disagrees with the images is warned about.
    """
    class_ids, remapped = np.unique(labels, return_inverse=True)
    count = len(class_ids)
    contiguous = count == 0 or class_ids[-1] == count - 1
    if not contiguous:
        warnings.warn(
            f"{source}: class ids are not contiguous ({count} ids used between "
            f"{class_ids[0]} and {class_ids[-1]}); remapped to 0..{count - 1} in sorted order",
            stacklevel=3,
        )
    if declared is not None and declared != count:
        warnings.warn(
            f"{source}: {declared} classes declared, but the images hold {count}; "
            f"training uses {count}",
            stacklevel=3,
        )
    out = labels if contiguous else remapped.astype(np.int64).reshape(-1)
    return out, class_ids.astype(np.int64)
