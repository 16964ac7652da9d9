"""ONNX export: parity with PyTorch, dynamic batch, metadata props; int8 quantisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from model_helpers import prime_batch_norms
from torch import nn

from faceforge.core.embedder import load_embedder
from faceforge.core.onnx_model import META_METRICS, META_PREPROCESS
from faceforge.core.preprocess import Preprocess
from faceforge.data.image_io import encode_image
from faceforge.inference.export import (
    PARITY_TOLERANCE,
    export_onnx,
    load_calibration_faces,
    quantize_int8,
    synthetic_faces,
)


def test_parity_on_realistic_embeddings(tiny_onnx) -> None:
    assert tiny_onnx.max_abs_diff <= PARITY_TOLERANCE
    assert tiny_onnx.max_abs_value > 0.5  # the bound means something at this scale
    assert tiny_onnx.num_check_images == 16


def test_dynamic_batch_and_metadata(tiny_onnx, tiny_model) -> None:
    session = ort.InferenceSession(str(tiny_onnx.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    for batch in (1, 5):
        x = Preprocess().normalize(synthetic_faces(batch, seed=3))
        got = session.run(None, {"input": x})[0]
        with torch.no_grad():
            expected = tiny_model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, expected, atol=PARITY_TOLERANCE)
    props = {p.key: p.value for p in onnx.load(tiny_onnx.path).metadata_props}
    assert Preprocess.from_dict(json.loads(props[META_PREPROCESS])) == Preprocess()
    assert json.loads(props[META_METRICS]) == {"synthetic": {"best_threshold": 1.0}}
    assert props["faceforge.backbone"] == "mobilefacenet"


def small_embedder() -> nn.Module:
    """A two-layer convolutional embedder: quantises in a fraction of MobileFaceNet's time."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=4),
        nn.BatchNorm2d(8),
        nn.PReLU(8),
        nn.Conv2d(8, 16, 3, stride=2),
        nn.BatchNorm2d(16),
        nn.PReLU(16),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 16),
    )
    return prime_batch_norms(model)


def test_int8_quantisation(tmp_path: Path) -> None:
    fp32_path = tmp_path / "small.onnx"
    report = export_onnx(small_embedder(), Preprocess(), fp32_path, metrics={"x": {}})
    assert report.max_abs_diff <= PARITY_TOLERANCE
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for i, face in enumerate(synthetic_faces(8, seed=9)):
        (calibration / f"{i}.png").write_bytes(encode_image(face, ".png"))
    faces = load_calibration_faces(calibration, (112, 112))
    assert faces.shape == (8, 112, 112, 3)
    quant = quantize_int8(fp32_path, tmp_path / "small.int8.onnx", faces, eval_pairs=100)
    assert quant.num_pairs == 100
    assert 0 <= quant.int8_accuracy <= 1 and 0 <= quant.fp32_accuracy <= 1
    assert quant.accuracy_change == quant.int8_accuracy - quant.fp32_accuracy
    int8, fp32 = load_embedder(quant.path), load_embedder(fp32_path)
    assert int8.fingerprint == fp32.fingerprint and int8.metrics == {"x": {}}
    ops = {node.op_type for node in onnx.load(quant.path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    test = synthetic_faces(8, seed=11)
    agreement = (int8.embed(test) * fp32.embed(test)).sum(axis=1)
    assert agreement.mean() > 0.9  # int8 embeddings point where fp32 ones do


def test_the_onnx_file_keeps_the_config_and_the_model_is_left_alone(tmp_path: Path) -> None:
    """The .onnx behaves as its checkpoint: no flip when the run evaluated without it, and
    MagFace quality for a MagFace head. Exporting leaves the caller's model in train mode."""
    from faceforge.config import load_config

    config = load_config(None, ["eval.flip=false", "head.type=magface"])
    model = small_embedder().train()
    onnx_path = tmp_path / "m.onnx"
    export_onnx(model, Preprocess(input_size=(112, 96)), onnx_path, config=config)
    assert model.training  # a copy was exported
    embedder = load_embedder(onnx_path)
    assert (embedder.config.eval.flip, embedder.config.head.type) == (False, "magface")
    assert embedder.input_size == (112, 96)  # checked on faces fitted to 112x96


def test_a_graph_of_fixed_batch_size_embeds_any_number_of_faces(tmp_path: Path) -> None:
    """ONNX model zoo files take one face: ``(1, 3, 112, 112)``."""
    model = small_embedder().eval()
    path = tmp_path / "zoo.onnx"
    torch.onnx.export(
        model, (torch.zeros(1, 3, 112, 112),), str(path), input_names=["data"], dynamo=False
    )
    embedder = load_embedder(path)
    faces = synthetic_faces(3, seed=1)
    together = embedder.embed(faces)
    alone = np.concatenate([embedder.embed(face[None]) for face in faces])
    np.testing.assert_allclose(together, alone, atol=1e-6)
