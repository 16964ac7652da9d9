"""``faceforge inspect GALLERY``: people, embeddings, index and model of a gallery folder,
checked as a search reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceforge.cli import main
from faceforge.errors import FormatError
from faceforge.inference.matching.gallery import Gallery
from faceforge.inference.matching.gallery_report import describe_gallery_folder


def _gallery(folder: Path, people: int) -> Path:
    rng = np.random.default_rng(0)
    gallery = Gallery(16, "fp1234", model="tiny from last.pt")
    for index in range(people):
        gallery.add(f"p{index:02d}", rng.normal(size=(index % 3 + 1, 16)))
    gallery.save(folder)
    return folder


def test_a_gallery_is_described_largest_people_first(tmp_path: Path) -> None:
    folder = _gallery(tmp_path / "gallery", 7)  # 1, 2, 3, 1, 2, 3, 1 embeddings
    assert describe_gallery_folder(folder) == [
        f"{folder}: faceforge gallery, 7 people, 13 embeddings (mean mode), flat index",
        "model: tiny from last.pt, 16-d, fingerprint fp1234",
        "people: p02 (3), p05 (3), p01 (2), p04 (2), p00 (1), ... (2 more)",
        f"search: faceforge search --gallery {folder} --checkpoint MODEL PHOTOS (the same model)",
    ]
    assert describe_gallery_folder(tmp_path) is None  # no gallery.json: not a gallery


def test_inspect_reads_a_gallery_as_search_does(tmp_path: Path, capsys) -> None:
    folder = _gallery(tmp_path / "gallery", 2)
    assert main(["inspect", str(folder)]) == 0
    assert "2 people, 3 embeddings" in capsys.readouterr().out
    data = next(folder.glob("gallery-*.npz"))
    data.write_bytes(data.read_bytes()[:-10])  # a truncated copy
    with pytest.raises(FormatError):
        describe_gallery_folder(folder)
    assert main(["inspect", str(folder)]) != 0
