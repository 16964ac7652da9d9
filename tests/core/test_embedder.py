"""Embedders from every model source (checkpoint, weights file + architecture, ONNX) agree
with the backbone run by hand, and a model whose preprocessing cannot work is refused when it
is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from model_helpers import write_checkpoint

from faceforge.core.embedder import EMBEDDER_BACKENDS, load_embedder
from faceforge.core.model_source import ModelSource, state_dict_fingerprint
from faceforge.core.onnx_model import META_PREPROCESS, OnnxRuntimeBackend
from faceforge.core.preprocess import Preprocess
from faceforge.core.torch_backend import TorchBackend
from faceforge.errors import CheckpointError, DataError, UnknownChoiceError
from faceforge.inference.export import synthetic_faces


def by_hand(model, faces: np.ndarray, preprocess: Preprocess, flip: bool = False) -> np.ndarray:
    """Normalised embeddings computed directly from the backbone and the preprocessing."""
    x = faces[..., ::-1] if preprocess.color == "BGR" else faces
    x = (x.astype(np.float32) / 255 - np.array(preprocess.mean, np.float32)) / np.array(
        preprocess.std, np.float32
    )
    tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        out = model(tensor)
        if flip:
            out = out + model(torch.flip(tensor, dims=[3]))
    out = out.numpy()
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return synthetic_faces(6, seed=1)


def test_checkpoint_embedder(tiny_checkpoint: Path, tiny_model, faces: np.ndarray) -> None:
    embedder = load_embedder(tiny_checkpoint, device="cpu", precision="fp32")
    assert isinstance(embedder.backend, TorchBackend)
    assert embedder.embedding_size == 32 and embedder.input_size == (112, 112)
    assert embedder.metrics == {"synthetic": {"best_threshold": 1.0}}
    assert embedder.fingerprint == state_dict_fingerprint(tiny_model.state_dict())
    out = embedder.embed(faces)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out, by_hand(tiny_model, faces, Preprocess()), atol=1e-5)
    flipped = load_embedder(tiny_checkpoint, device="cpu", flip=True, precision="fp32")
    expected = by_hand(tiny_model, faces, Preprocess(), flip=True)
    np.testing.assert_allclose(flipped.embed(faces), expected, atol=1e-5)
    # the default (bf16 where the CPU computes it natively) points the same way
    fast = load_embedder(tiny_checkpoint, device="cpu").embed(faces)
    assert (fast * out).sum(axis=1).min() > 0.99
    # many batches: same result as one
    many = load_embedder(tiny_checkpoint, device="cpu", precision="fp32", batch_size=4)
    np.testing.assert_allclose(many.embed(faces), out, atol=1e-6)


def test_feature_norms_are_the_raw_lengths(tiny_checkpoint: Path, tiny_model, faces) -> None:
    """The norm of the raw embedding (MagFace's quality), of the mean view with flip."""
    for flip in (False, True):
        embedder = load_embedder(tiny_checkpoint, device="cpu", flip=flip, precision="fp32")
        unit, norms = embedder.embed_with_norms(faces)
        tensor = torch.from_numpy(Preprocess().normalize(faces))
        with torch.no_grad():
            views = [tiny_model(tensor)] + ([tiny_model(tensor.flip(3))] if flip else [])
        mean_view = (sum(views) / len(views)).numpy()
        np.testing.assert_allclose(norms, np.linalg.norm(mean_view, axis=1), rtol=1e-4)
        np.testing.assert_allclose(unit, embedder.embed(faces), atol=1e-6)


def test_stored_preprocessing_is_applied(tmp_path: Path, tiny_model, faces: np.ndarray) -> None:
    bgr = Preprocess(color="BGR", mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    path = write_checkpoint(tmp_path / "bgr.pt", tiny_model, preprocess=bgr)
    embedder = load_embedder(path, device="cpu", precision="fp32")
    assert embedder.preprocess == bgr
    np.testing.assert_allclose(embedder.embed(faces), by_hand(tiny_model, faces, bgr), atol=1e-5)
    assert not np.allclose(embedder.embed(faces), by_hand(tiny_model, faces, Preprocess()))


@pytest.mark.parametrize(
    "preprocess, message",
    [
        (Preprocess(color="YUV"), "colour order"),
        (Preprocess(input_size=(100, 100)), "no arcface template"),
        (Preprocess(input_size=(224, 224)), "does not accept that input size"),
        (Preprocess(std=(0.5, 0.0, 0.5)), "std"),
    ],
)
def test_unusable_preprocessing_is_refused_at_load(
    tmp_path: Path, tiny_model, preprocess: Preprocess, message: str
) -> None:
    path = write_checkpoint(tmp_path / "bad.pt", tiny_model, preprocess=preprocess)
    with pytest.raises(CheckpointError, match=message):
        load_embedder(path, device="cpu")


def test_wrong_face_shape_is_a_data_error(tiny_checkpoint: Path) -> None:
    embedder = load_embedder(tiny_checkpoint, device="cpu")
    with pytest.raises(DataError, match="align the faces first"):
        embedder.embed(np.zeros((2, 100, 100, 3), np.uint8))
    with pytest.raises(DataError, match="uint8"):
        embedder.embed(np.zeros((2, 112, 112, 3), np.float32))
    assert embedder.embed(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, 32)


def test_insightface_state_dict(tmp_path: Path, tiny_model, faces: np.ndarray) -> None:
    path = tmp_path / "backbone.pth"
    torch.save({f"module.{k}": v for k, v in tiny_model.state_dict().items()}, path)
    embedder = load_embedder(ModelSource(path, "mobilefacenet", 32), device="cpu", precision="fp32")
    assert embedder.preprocess == Preprocess() and embedder.metrics == {}
    expected = by_hand(tiny_model, faces, Preprocess())
    np.testing.assert_allclose(embedder.embed(faces), expected, atol=1e-5)
    with pytest.raises(CheckpointError, match="as iresnet18 at 112x112 .32-d.: weights do not"):
        load_embedder(ModelSource(path, "iresnet18", 32))
    with pytest.raises(UnknownChoiceError, match="valid choices"):
        load_embedder(ModelSource(path, "resnet9000"))
    torch.save({"weights": [1, 2, 3]}, tmp_path / "not_a_state_dict.pth")
    with pytest.raises(CheckpointError, match="state dict"):
        load_embedder(ModelSource(tmp_path / "not_a_state_dict.pth", "mobilefacenet"))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_embedder(ModelSource(tmp_path / "missing.pth", "mobilefacenet"))


def test_onnx_embedder_carries_everything(tiny_onnx, tiny_model, faces: np.ndarray) -> None:
    embedder = load_embedder(tiny_onnx.path, flip=True)
    assert isinstance(embedder.backend, OnnxRuntimeBackend)
    assert embedder.preprocess == Preprocess()
    assert embedder.metrics == {"synthetic": {"best_threshold": 1.0}}
    assert embedder.fingerprint == state_dict_fingerprint(tiny_model.state_dict())
    assert embedder.embedding_size == 32
    expected = by_hand(tiny_model, faces, Preprocess(), flip=True)
    np.testing.assert_allclose(embedder.embed(faces), expected, atol=1e-5)
    assert repr(embedder) == (
        f"Embedder('ONNX {tiny_onnx.path.name}': ONNX Runtime CPU, fp32; "
        "input 112x112 RGB, 32-d, flip=True)"
    )


def test_embedders_and_models_say_what_they_run(tiny_checkpoint: Path) -> None:
    """A printed embedder names its model, runtime, precision and input; a loaded model leaves
    out the network, config and metrics (pages of text)."""
    embedder = load_embedder(tiny_checkpoint, device="cpu", precision="fp32", flip=False)
    assert repr(embedder) == (
        f"Embedder('mobilefacenet from {tiny_checkpoint.name}': torch on cpu, fp32, "
        "channels-last; input 112x112 RGB, 32-d, flip=False)"
    )
    model = embedder.model
    assert repr(model) == (
        f"LoadedModel(preprocess={model.preprocess!r}, name={model.name!r}, embedding_size=32)"
    )


def test_onnx_preprocessing_is_checked(tmp_path: Path, tiny_onnx) -> None:
    model = onnx.load(tiny_onnx.path)
    del model.metadata_props[:]
    onnx.save(model, tmp_path / "foreign.onnx")
    embedder = load_embedder(tmp_path / "foreign.onnx")
    assert embedder.preprocess == Preprocess() and embedder.metrics == {}  # insightface's
    assert len(embedder.fingerprint) == 16
    assert embedder.fingerprint != load_embedder(tiny_onnx.path).fingerprint
    entry = model.metadata_props.add()
    entry.key = META_PREPROCESS
    entry.value = json.dumps(Preprocess(input_size=(224, 224)).to_dict())
    onnx.save(model, tmp_path / "mismatch.onnx")
    with pytest.raises(CheckpointError, match="graph input is"):
        load_embedder(tmp_path / "mismatch.onnx")
    entry.value = "{not json"
    onnx.save(model, tmp_path / "malformed.onnx")
    with pytest.raises(CheckpointError, match="malformed faceforge metadata"):
        load_embedder(tmp_path / "malformed.onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"not onnx")
    with pytest.raises(CheckpointError, match="not a loadable ONNX"):
        load_embedder(tmp_path / "garbage.onnx")


def test_foreign_onnx_that_normalises_inside_the_graph(tmp_path: Path) -> None:
    """A converted-MXNet-style graph (Sub, Mul first) takes raw pixels, as insightface assumes."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Sub", ["data", "mean"], ["centred"], name="_minus0"),
        helper.make_node("Mul", ["centred", "scale"], ["scaled"], name="_mul0"),
        helper.make_node("ReduceMean", ["scaled"], ["pooled"], axes=[2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "mxnet_style",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", 3])],
        [
            numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
            numpy_helper.from_array(np.array(1 / 128, np.float32), "scale"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "mxnet_style.onnx")
    embedder = load_embedder(tmp_path / "mxnet_style.onnx")
    assert embedder.preprocess.mean == (0.0, 0.0, 0.0)
    faces = synthetic_faces(3, seed=2)
    expected = (faces.reshape(3, -1, 3).astype(np.float64).mean(axis=1) - 127.5) / 128
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.embed(faces), expected, atol=1e-5)


def test_backends_are_chosen_by_name(tiny_checkpoint: Path, tiny_onnx) -> None:
    assert EMBEDDER_BACKENDS.names() == ["onnxruntime", "onnxruntime-int8", "torch"]
    with pytest.raises(UnknownChoiceError, match="backend='tensorrt'; valid choices"):
        load_embedder(tiny_checkpoint, backend="tensorrt")
    with pytest.raises(CheckpointError, match="the onnxruntime backend needs an ONNX file"):
        load_embedder(tiny_checkpoint, backend="onnxruntime")
    with pytest.raises(CheckpointError, match="the torch backend needs a PyTorch model"):
        load_embedder(tiny_onnx.path, backend="torch")
