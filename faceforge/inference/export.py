"""Export an embedding backbone to ONNX, check it against PyTorch, optionally quantise to int8.

The exported graph has a dynamic batch axis, uses an opset ONNX Runtime's CPU provider runs
natively, and carries the model's preprocessing, evaluation metrics and weight fingerprint
in its ``metadata_props`` (read back by :func:`~faceforge.core.onnx_model.read_onnx`, so an
ONNX model is a drop-in replacement for its checkpoint in every embedder, galleries included).

Parity is measured on synthetic face photos (or your own aligned faces), not random noise,
so the activations are in the range real inputs produce. int8 export uses ONNX Runtime
static quantisation (QDQ, per-channel weights) calibrated on a folder of aligned faces and
reports how verification accuracy changes on held-out synthetic pairs.
"""

from __future__ import annotations

import copy
import json
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from faceforge.config import Config, config_to_dict
from faceforge.core.embedder import load_embedder
from faceforge.core.model_source import ModelSource, load_model, state_dict_fingerprint
from faceforge.core.onnx_model import (
    META_BACKBONE,
    META_CONFIG,
    META_FINGERPRINT,
    META_METRICS,
    META_PREPROCESS,
    cannot_run,
)
from faceforge.core.preprocess import Preprocess
from faceforge.errors import CheckpointError, DataError, first_line
from faceforge.files import atomic_write_bytes

if TYPE_CHECKING:
    import onnx

#: opset 17 runs on every ONNX Runtime >= 1.14 CPU build with all ops the backbones use
DEFAULT_OPSET = 17
#: the parity bound promised after export (max absolute difference of raw embeddings)
PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportReport:
    """What an export produced and how closely ONNX Runtime matches PyTorch."""

    path: Path
    max_abs_diff: float
    #: largest absolute embedding value, to read the difference against
    max_abs_value: float
    num_check_images: int


@dataclass(frozen=True)
class QuantizationReport:
    """Verification accuracy of the fp32 and int8 models on the same pairs."""

    path: Path
    fp32_accuracy: float
    int8_accuracy: float
    num_pairs: int

    @property
    def accuracy_change(self) -> float:
        return self.int8_accuracy - self.fp32_accuracy


def synthetic_faces(count: int, seed: int = 0) -> np.ndarray:
    """``count`` synthetic 112x112 face photos (uint8 RGB) for parity checks."""
    from faceforge.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(seed=seed)
    return np.stack([faces.render(identity=i, index=0) for i in range(count)])


def export_onnx(
    model: nn.Module,
    preprocess: Preprocess,
    path: str | Path,
    *,
    metrics: dict[str, Any] | None = None,
    backbone_name: str = "",
    config: Config | None = None,
    opset: int = DEFAULT_OPSET,
    check_images: np.ndarray | None = None,
) -> ExportReport:
    """Write ``model`` as ONNX to ``path`` and return the parity against PyTorch.

    The file carries the preprocessing contract, fingerprint, metrics and ``config`` (the
    evaluation defaults such as flip, and the head: the ``.onnx`` then behaves as the
    checkpoint). ``check_images`` (aligned uint8 faces) default to 16 synthetic faces,
    fitted to the input size. ``model`` itself is left as it was (a copy is exported).
    """
    import onnx

    path = _output_file(path)
    model = copy.deepcopy(model).eval().cpu()
    proto = _onnx_graph(model, preprocess.input_size, opset)
    metadata = {
        META_PREPROCESS: json.dumps(preprocess.to_dict()),
        META_FINGERPRINT: state_dict_fingerprint(model.state_dict()),
        META_METRICS: json.dumps(metrics or {}),
        META_BACKBONE: backbone_name,
    }
    if config is not None:
        metadata[META_CONFIG] = json.dumps(config_to_dict(config))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise CheckpointError(
            f"the ONNX graph at opset {opset} is invalid: {first_line(exc)}"
        ) from None
    atomic_write_bytes(path, proto.SerializeToString())
    if check_images is None:
        check_images = synthetic_faces(16)
    diff, scale = parity(model, preprocess, path, _fit(check_images, preprocess.input_size))
    return ExportReport(path, diff, scale, len(check_images))


def _onnx_graph(model: nn.Module, input_size: tuple[int, int], opset: int) -> onnx.ModelProto:
    """``model`` exported with a dynamic batch axis (``input`` -> ``embedding``); an exporter
    failure is one CheckpointError line."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        raw_path = Path(tmp) / "model.onnx"
        try:
            torch.onnx.export(
                model,
                (torch.zeros(1, 3, *input_size),),
                str(raw_path),
                input_names=["input"],
                output_names=["embedding"],
                dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        except Exception as exc:  # the exporter raises many types for unsupported models
            raise CheckpointError(
                f"cannot export {type(model).__name__} to ONNX opset {opset}: {first_line(exc)}"
            ) from None
        return onnx.load(str(raw_path))


def parity(
    model: nn.Module, preprocess: Preprocess, onnx_path: Path, faces: np.ndarray
) -> tuple[float, float]:
    """Max absolute difference between PyTorch and ONNX Runtime raw embeddings of ``faces``,
    and the largest absolute PyTorch embedding value."""
    import onnxruntime as ort

    inputs = preprocess.normalize(faces)
    with torch.inference_mode():
        expected = model.eval().cpu()(torch.from_numpy(inputs)).numpy()
    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    except Exception as exc:  # onnxruntime raises its own types
        raise cannot_run(onnx_path, exc) from None
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())


class _CalibrationReader:
    """Feeds calibration batches to ``onnxruntime.quantization.quantize_static``."""

    def __init__(self, input_name: str, batches: Iterator[np.ndarray]) -> None:
        self.input_name = input_name
        self.batches = batches

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def load_calibration_faces(
    folder: str | Path, size: tuple[int, int], limit: int = 256
) -> np.ndarray:
    """Up to ``limit`` aligned faces from ``folder`` (recursively; resized when needed)."""
    from faceforge.data.image_io import list_images
    from faceforge.data.images import load_images

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: calibration folder does not exist")
    files = list_images(folder, recursive=True)[:limit]
    if not files:
        raise DataError(f"{folder}: no images for int8 calibration")
    return load_images(files, [str(f) for f in files], size, resize="center-crop")


def quantize_int8(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration_faces: np.ndarray,
    *,
    eval_pairs: int = 300,
    batch_size: int = 16,
) -> QuantizationReport:
    """Static int8 quantisation of an exported model, with the accuracy change it causes on
    ``eval_pairs`` held-out synthetic verification pairs."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from faceforge.data.synthetic import SyntheticFaces
    from faceforge.evaluation.verification import evaluate

    fp32 = load_embedder(fp32_path)
    int8_path = _output_file(int8_path)
    batches = (
        fp32.preprocess.normalize(calibration_faces[i : i + batch_size])
        for i in range(0, len(calibration_faces), batch_size)
    )
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        quantize_static(
            str(prepared),
            str(int8_path),
            _CalibrationReader(fp32.backend.input_name, batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
    _copy_metadata(Path(fp32_path), int8_path)
    pairs = SyntheticFaces(seed=0).verification_set(num_identities=200, num_pairs=eval_pairs)
    faces = _fit(pairs.images, fp32.input_size)
    accuracy = {}
    for name, embedder in (("fp32", fp32), ("int8", load_embedder(int8_path))):
        embeddings = embedder.embed(faces)
        accuracy[name] = evaluate(embeddings[0::2], embeddings[1::2], pairs.issame).accuracy
    return QuantizationReport(int8_path, accuracy["fp32"], accuracy["int8"], len(pairs))


def _output_file(path: str | Path) -> Path:
    """``path`` with its folder created; DataError when it names a folder."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give the name of the .onnx file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _fit(faces: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if faces.shape[1:3] == tuple(size):
        return faces
    from faceforge.data.images import fit_image

    return np.stack([fit_image(f, size, "stretch", "synthetic face") for f in faces])


def _copy_metadata(source: Path, target: Path) -> None:
    """Carry the faceforge metadata props over to a derived (quantised) model."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(source)).metadata_props}
    proto = onnx.load(str(target))
    existing = {p.key for p in proto.metadata_props}
    for key, value in props.items():
        if key not in existing:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    atomic_write_bytes(target, proto.SerializeToString())


def export_checkpoint(
    checkpoint: str | Path | ModelSource, onnx_path: str | Path, *, opset: int = DEFAULT_OPSET
) -> ExportReport:
    """Export a checkpoint's (or an insightface ``backbone.pth`` source's) backbone with its
    preprocessing and metrics."""
    model = load_model(checkpoint)
    return export_onnx(
        model.backbone,
        model.preprocess,
        onnx_path,
        metrics=model.metrics,
        backbone_name=model.arch,
        config=model.config,
        opset=opset,
    )
