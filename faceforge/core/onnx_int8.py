"""The ``onnxruntime-int8`` embedder backend: an ONNX model statically quantised to int8.

ONNX Runtime's static quantisation (QOperator format, per-channel int8 weights, uint8
activations, 7-bit weight range because AVX2 without VNNI saturates 16-bit sums of full-range
u8 x s8 products; https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html)
is calibrated on aligned synthetic faces (:mod:`faceforge.data.synthetic`) in a temporary
directory. Int8 is only used when it keeps accuracy: at load the int8 and fp32 graphs embed
held-out synthetic faces, and unless every cosine similarity is at least
:data:`MIN_COSINE` the backend says so in one warning line and runs fp32 instead. On AVX2
CPUs without VNNI int8 matrix products gain little (see ``bench/infer_speed.py``).
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from faceforge.core.onnx_model import OnnxModel, OnnxRuntimeBackend
from faceforge.core.torch_backend import RuntimeOptions
from faceforge.core.vectors import l2_normalize
from faceforge.data.synthetic.faces import SyntheticFaces
from faceforge.errors import CheckpointError, first_line

#: embeddings within 1e-3 cosine of fp32, or the backend runs fp32
MIN_COSINE = 0.999
#: synthetic faces the activation ranges are calibrated on / the self-check embeds
CALIBRATION_FACES = 64
CHECK_FACES = 32
#: images per calibration batch
CALIBRATION_BATCH = 16


class Int8AccuracyWarning(UserWarning):
    """Int8 embeddings were further than :data:`MIN_COSINE` from fp32; fp32 runs instead."""


def synthetic_inputs(model: OnnxModel, count: int, first_identity: int) -> np.ndarray:
    """``count`` aligned synthetic faces (one per identity), as the model's float input."""
    faces = SyntheticFaces(seed=0)
    height, width = model.preprocess.input_size
    crops = [
        cv2.resize(faces.render(identity, 0), (width, height), interpolation=cv2.INTER_AREA)
        for identity in range(first_identity, first_identity + count)
    ]
    return model.preprocess.normalize(np.stack(crops)).astype(np.float32)


def quantize_int8(model: OnnxModel, target: Path) -> Path:
    """Write ``model`` statically quantised to int8 (calibrated on synthetic faces) to
    ``target``; CheckpointError with one line when ONNX Runtime cannot quantise it."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import CalibrationDataReader
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = ort.InferenceSession(str(model.path)).get_inputs()[0].name
    inputs = synthetic_inputs(model, CALIBRATION_FACES, first_identity=0)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.split(inputs, len(inputs) // CALIBRATION_BATCH))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    prepared = target.with_suffix(".prepared.onnx")
    try:
        quant_pre_process(str(model.path), str(prepared))
        quantize_static(
            str(prepared),
            str(target),
            Reader(),
            quant_format=QuantFormat.QOperator,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=True,  # 7-bit weights: AVX2 without VNNI saturates u8 x s8 sums
        )
    except Exception as exc:  # onnxruntime.quantization raises many types for odd graphs
        raise CheckpointError(
            f"{model.path}: ONNX Runtime cannot quantise this model to int8 ({first_line(exc)}); "
            "use the onnxruntime backend"
        ) from None
    return target


class Int8OnnxBackend:
    """Runs the int8 graph when it agrees with fp32 (checked at load), else fp32."""

    def __init__(self, model: OnnxModel, options: RuntimeOptions) -> None:
        self.fp32 = OnnxRuntimeBackend(model, options)
        self.device = self.fp32.device
        with tempfile.TemporaryDirectory(prefix="faceforge-int8-") as tmp:
            quantised = quantize_int8(model, Path(tmp) / "int8.onnx")
            self.int8 = OnnxRuntimeBackend(dataclasses.replace(model, path=quantised), options)
        self.agreement = self._min_cosine(model)
        self._active = self.int8
        if self.agreement < MIN_COSINE:
            warnings.warn(
                f"{model.name}: int8 embeddings agree with fp32 only to cosine "
                f"{self.agreement:.4f} (< {MIN_COSINE}); running fp32",
                Int8AccuracyWarning,
                stacklevel=3,
            )
            self._active = self.fp32

    def _min_cosine(self, model: OnnxModel) -> float:
        """Smallest cosine between int8 and fp32 embeddings of held-out synthetic faces."""
        x = torch.from_numpy(synthetic_inputs(model, CHECK_FACES, first_identity=10_000))
        fp32 = l2_normalize(self.fp32.run(x).numpy(), np.float32)
        int8 = l2_normalize(self.int8.run(x).numpy(), np.float32)
        return float((fp32 * int8).sum(axis=1).min())

    @property
    def precision(self) -> str:
        return "int8" if self._active is self.int8 else "fp32"

    @property
    def accelerated(self) -> bool:
        return self.fp32.accelerated

    def __repr__(self) -> str:
        return (
            f"ONNX Runtime {self.fp32.provider}, {self.precision} "
            f"(int8 agrees with fp32 to cosine {self.agreement:.4f})"
        )

    def fall_back_to_fp32(self) -> None:
        self._active = self.fp32

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """Raw float32 (N, D) embeddings of float (N, 3, H, W) model input."""
        return self._active.run(x)
