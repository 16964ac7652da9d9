"""ONNX external data: a reference may only name a regular file inside the model's folder
and a byte range inside that file; anything else is refused by read_onnx before any byte
of it is read (independently of the installed onnx release's own checks)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from fuzz_formats import seed_onnx, set_external_data

from faceforge.core.onnx_model import read_onnx
from faceforge.errors import CheckpointError


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model" / "model.onnx"
    path.write_bytes(seed_onnx(tmp_path))
    return path


def test_a_model_with_its_data_beside_it_opens(model: Path) -> None:
    assert read_onnx(model).embedding_size == 8


@pytest.mark.parametrize(
    "location, message",
    [
        ("../secret.txt", "not a file inside the model's folder"),
        ("/etc/passwd", "not a file inside the model's folder"),
        ("sub/../../secret.txt", "not a file inside the model's folder"),
        ("", "not a file inside the model's folder"),
        ("missing.bin", "no such file beside the model"),
    ],
)
def test_a_reference_outside_the_folder_is_refused(model: Path, location: str, message: str):
    set_external_data(model, location=location)
    with pytest.raises(CheckpointError, match=f"^{model}: tensor 'w' .*{message}"):
        read_onnx(model)


def test_a_symbolic_link_out_of_the_folder_is_refused(model: Path) -> None:
    os.remove(model.parent / "weights.bin")
    os.symlink(model.parent.parent / "secret.txt", model.parent / "weights.bin")
    with pytest.raises(CheckpointError, match="a link out of the model's folder"):
        read_onnx(model)


@pytest.mark.parametrize(
    "offset, length", [("-1", "96"), ("0", "-4"), ("8", "96"), ("0", str(1 << 62)), ("x", "96")]
)
def test_a_byte_range_outside_the_file_is_refused(model: Path, offset: str, length: str):
    set_external_data(model, offset=offset, length=length)
    with pytest.raises(CheckpointError, match=f"^{model}: tensor 'w' keeps its data in"):
        read_onnx(model)
    assert np.fromfile(model.parent / "weights.bin", np.float32).size == 24  # untouched


def test_a_non_utf8_location_is_refused(model: Path) -> None:
    """protobuf hands a non-UTF-8 location over as bytes (found by bench/fuzz.py)."""
    data = model.read_bytes().replace(b"weights.bin", b"weights\xff\xfein")
    model.write_bytes(data)
    with pytest.raises(CheckpointError, match="location is not UTF-8 text"):
        read_onnx(model)


@pytest.mark.parametrize(
    "shape, message",
    [
        (["n", 3, 112], "its first input must be a float \\(N, 3, H, W\\) batch"),
        (["n", 1, 112, 112], "its first input must be a float \\(N, 3, H, W\\) batch"),
        (None, "its graph has no output"),
    ],
)
def test_a_graph_that_is_no_embedding_model_is_refused_at_open(model: Path, shape, message):
    """Found by bench/fuzz.py: such graphs opened and then failed inside ONNX Runtime."""
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.load(str(model), load_external_data=False)
    if shape is None:
        del proto.graph.output[:]
    else:
        proto.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.FLOAT, shape))
    model.write_bytes(proto.SerializeToString())
    with pytest.raises(CheckpointError, match=f"^{model}: not an embedding model: {message}"):
        read_onnx(model)
