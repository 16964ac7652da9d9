"""The onnxruntime-int8 embedder backend: accuracy against fp32, its self-check, failure modes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from faceforge.config import Config
from faceforge.core.embedder import EMBEDDER_BACKENDS, load_embedder
from faceforge.core.model_source import LoadedModel
from faceforge.core.onnx_int8 import MIN_COSINE, Int8AccuracyWarning
from faceforge.core.precision import resolve_precision
from faceforge.core.preprocess import Preprocess
from faceforge.core.torch_backend import RuntimeOptions
from faceforge.data.synthetic.faces import SyntheticFaces
from faceforge.errors import CheckpointError, ConfigError
from faceforge.inference.export import export_onnx

pytest.importorskip("onnxruntime.quantization")


def shallow_net() -> nn.Module:
    """A network whose embedding keeps the faces' spatial detail, so int8 rounding stays small
    against it (untrained deep networks map all faces alike, which int8 noise swamps)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 8, stride=8), nn.ReLU(), nn.Flatten()).eval()


def held_out_faces(count: int) -> np.ndarray:
    """Synthetic faces of identities neither calibration nor the self-check uses."""
    faces = SyntheticFaces(seed=0)
    return np.stack([faces.render(identity, 1) for identity in range(50_000, 50_000 + count)])


def exported(model: nn.Module, tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    export_onnx(model, Preprocess(), path)
    return path


def test_int8_embeddings_stay_within_tolerance_of_fp32(tmp_path: Path) -> None:
    path = exported(shallow_net(), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Int8AccuracyWarning)
        int8 = load_embedder(path, precision="int8")
    assert int8.backend.precision == "int8"
    agreement = f"{int8.backend.agreement:.4f}"
    assert f"ONNX Runtime CPU, int8 (int8 agrees with fp32 to cosine {agreement})" in repr(int8)
    faces = held_out_faces(24)
    cosines = (int8.embed(faces) * load_embedder(path).embed(faces)).sum(axis=1)
    assert cosines.min() >= MIN_COSINE


def test_int8_verification_decisions_match_fp32(tmp_path: Path) -> None:
    """Same-or-different decisions at fp32's median score differ on at most one pair of 66
    (int8 moves each cosine score by at most about 2 * (1 - MIN_COSINE) ** 0.5)."""
    path = exported(shallow_net(), tmp_path)
    faces = held_out_faces(12)
    scores = []
    for embedder in (load_embedder(path), load_embedder(path, precision="int8")):
        e = embedder.embed(faces)
        scores.append((e @ e.T)[np.triu_indices(len(faces), 1)])
    threshold = np.median(scores[0])
    assert np.sum((scores[0] > threshold) != (scores[1] > threshold)) <= 1


def test_int8_that_disagrees_falls_back_to_fp32_with_one_line(tmp_path: Path) -> None:
    from faceforge.models import build_backbone

    torch.manual_seed(0)
    path = exported(build_backbone("mobilefacenet").eval(), tmp_path)
    with pytest.warns(Int8AccuracyWarning, match="running fp32") as record:
        int8 = load_embedder(path, precision="int8")
    if int8.backend.agreement >= MIN_COSINE:
        pytest.skip("int8 happens to agree with fp32 for this untrained network")
    assert "\n" not in str(record[0].message)
    assert int8.backend.precision == "fp32"
    assert ": ONNX Runtime CPU, fp32 (int8 agrees with fp32 to cosine" in repr(int8)
    faces = held_out_faces(4)
    np.testing.assert_array_equal(int8.embed(faces), load_embedder(path).embed(faces))


def test_int8_needs_an_onnx_model() -> None:
    model = LoadedModel(shallow_net(), Preprocess(), Config(), "model")
    factory = EMBEDDER_BACKENDS.get("onnxruntime-int8")
    with pytest.raises(CheckpointError, match="export the model first"):
        factory(model, RuntimeOptions())


def test_int8_is_no_pytorch_precision() -> None:
    with pytest.raises(ConfigError, match="int8 is an inference precision"):
        resolve_precision("int8", torch.device("cpu"))
