"""A file given to the wrong option is named as what it is: the hint the errors add."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from faceforge.core.model_source import load_model
from faceforge.data.file_kinds import file_kind, misplaced_hint
from faceforge.errors import CheckpointError, DataError
from faceforge.evaluation.bin_format import read_bin
from faceforge.evaluation.pairs import parse_lfw_pairs


def _files(folder: Path) -> dict[str, Path]:
    files = {name: folder / name for name in ("w.pt", "old.pth", "lfw.bin", "pairs.txt")}
    torch.save({"w": torch.zeros(2)}, files["w.pt"])
    torch.save({"w": torch.zeros(2)}, files["old.pth"], _use_new_zipfile_serialization=False)
    files["lfw.bin"].write_bytes(pickle.dumps(([b"x", b"y"], [True]), protocol=2))
    files["pairs.txt"].write_text("10 300\nAnn 1 2\n")
    image = np.zeros((8, 8, 3), np.uint8)
    for name in ("a.jpg", "a.png"):
        cv2.imwrite(str(folder / name), image)
        files[name] = folder / name
    (folder / "m.onnx").write_bytes(b"\x08\x07")
    (folder / "noise.dat").write_bytes(bytes(range(256)))
    return files | {"m.onnx": folder / "m.onnx", "noise.dat": folder / "noise.dat"}


def test_kinds_from_the_first_bytes(tmp_path: Path) -> None:
    files = _files(tmp_path)
    expected = {"w.pt": "torch", "old.pth": "torch", "lfw.bin": "bin", "pairs.txt": "text"}
    expected |= {"a.jpg": "image", "a.png": "image", "m.onnx": None, "noise.dat": None}
    assert {name: file_kind(path) for name, path in files.items()} == expected
    assert file_kind(tmp_path / "missing.pt") is None
    assert misplaced_hint(files["lfw.bin"], "--bin") == ""
    assert misplaced_hint(files["lfw.bin"], "--checkpoint") == (
        "; it looks like an insightface verification .bin, which goes to --bin"
    )


def test_each_reader_names_a_file_meant_for_another_option(tmp_path: Path) -> None:
    files = _files(tmp_path)
    with pytest.raises(CheckpointError, match="pairs list, which goes to --pairs or --pair-list"):
        load_model(files["pairs.txt"])
    with pytest.raises(
        DataError, match="PyTorch checkpoint or weights file, which goes to --check"
    ):
        read_bin(files["w.pt"])
    with pytest.raises(DataError, match="verification .bin, which goes to --bin"):
        parse_lfw_pairs(files["lfw.bin"])
    with pytest.raises(CheckpointError) as refused:  # a model file that is damaged: no hint
        load_model(files["noise.dat"])
    assert "looks like" not in str(refused.value)
