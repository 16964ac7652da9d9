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

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforge.errors import DataError

TARGETS = {"IJBB": ("S1", "S2"), "IJBC": ("G1", "G2")}


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


def meta_file(root: Path, target: str, name: str) -> Path:
    """``root/meta/<target>_<name>`` (target lower-cased, as insightface names them)."""
    return root / "meta" / f"{target.lower()}_{name}"


def _rows(path: Path, columns: int, what: str) -> list[list[str]]:
    if not path.is_file():
        raise DataError(f"{what} file {str(path)!r} does not exist (not an IJB_release folder?)")
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    bad = next((i for i, row in enumerate(rows, 1) if len(row) != columns), None)
    if bad is not None:
        raise DataError(f"{path}:{bad}: expected {columns} whitespace-separated fields")
    return rows


def _numbers(rows: list[list[str]], columns: slice, dtype: type, path: Path) -> np.ndarray:
    try:
        return np.array([row[columns] for row in rows], dtype=dtype)
    except ValueError as exc:
        raise DataError(f"{path}: a field is not a number ({exc})") from None


def read_subjects(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(template ids, subject ids)`` of a 1:N CSV (header line skipped)."""
    lines = [line for line in path.read_text().splitlines()[1:] if line.strip()]
    rows = [line.split(",") for line in lines]
    if any(len(row) < 2 for row in rows):
        raise DataError(f"{path}: expected TEMPLATE_ID,SUBJECT_ID,... rows")
    values = _numbers(rows, slice(0, 2), np.int64, path)
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


def read_ijb(root: str | Path, target: str = "IJBC") -> IjbMeta:
    """Read and cross-check the meta files of ``target`` under an ``IJB_release`` root."""
    if target not in TARGETS:
        raise DataError(f"unknown IJB target {target!r}; expected one of {sorted(TARGETS)}")
    root = Path(root)
    tid_path = meta_file(root, target, "face_tid_mid.txt")
    tid_rows = _rows(tid_path, 3, "template/media")
    points_path = meta_file(root, target, "name_5pts_score.txt")
    point_rows = _rows(points_path, 12, "landmark")
    names = [row[0] for row in tid_rows]
    if names != [row[0] for row in point_rows]:
        raise DataError(f"{tid_path} and {points_path} do not list the same images in order")
    ids = _numbers(tid_rows, slice(1, 3), np.int64, tid_path)
    points = _numbers(point_rows, slice(1, 12), np.float32, points_path)
    pair_path = meta_file(root, target, "template_pair_label.txt")
    pairs = _numbers(_rows(pair_path, 3, "template pair"), slice(0, 3), np.int64, pair_path)
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
