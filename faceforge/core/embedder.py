"""The Embedder: aligned face crops in, embeddings out, whatever the model and runtime.

An :class:`Embedder` owns everything between a crop and its embedding: the model's input
contract (size, colour order, normalisation, alignment template), flip test-time
augmentation (insightface's sum of the plain and mirrored views), batching, L2
normalisation, and a guard against non-finite output. How the network runs is its
*backend*, chosen by name from :data:`EMBEDDER_BACKENDS` (``torch``: BatchNorm folded,
channels-last, autocast; ``onnxruntime``), so a new runtime is one registered factory.

>>> embedder = load_embedder("runs/quickstart/best.pt", flip=True)  # doctest: +SKIP
>>> embedder.embed(aligned_faces).shape  # doctest: +SKIP
(2, 512)
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from faceforge.config import Config
from faceforge.core.model_source import LoadedModel, ModelSource, as_source, load_model
from faceforge.core.onnx_int8 import Int8OnnxBackend
from faceforge.core.onnx_model import OnnxModel, OnnxRuntimeBackend, read_onnx
from faceforge.core.preprocess import Preprocess
from faceforge.core.torch_backend import RuntimeOptions, TorchBackend
from faceforge.core.vectors import l2_normalize
from faceforge.device import resolve_device
from faceforge.errors import CheckpointError, DataError, first_line
from faceforge.registry import Registry

Model = LoadedModel | OnnxModel


class Backend(Protocol):
    """Runs a network on float (N, 3, H, W) model input; see :data:`EMBEDDER_BACKENDS`."""

    #: where the embedder puts the model input
    device: torch.device

    @property
    def accelerated(self) -> bool:
        """Whether the network runs on an accelerator (which embeds faster than one core
        decodes images)."""

    @property
    def precision(self) -> str:
        """What runs now: ``fp32``, ``bf16``, ``fp16`` or ``int8``."""

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """Raw float32 (N, D) embeddings."""

    def fall_back_to_fp32(self) -> None:
        """Compute in fp32 from now on."""


def _torch(model: Model, options: RuntimeOptions) -> Backend:
    if not isinstance(model, LoadedModel):
        raise CheckpointError(f"{model.name}: the torch backend needs a PyTorch model")
    return TorchBackend(model.backbone, options)


def _onnxruntime(model: Model, options: RuntimeOptions) -> Backend:
    if not isinstance(model, OnnxModel):
        raise CheckpointError(f"{model.name}: the onnxruntime backend needs an ONNX file")
    return OnnxRuntimeBackend(model, options)


def _onnxruntime_int8(model: Model, options: RuntimeOptions) -> Backend:
    if not isinstance(model, OnnxModel):
        raise CheckpointError(
            f"{model.name}: int8 runs an ONNX file; export the model first (faceforge export)"
        )
    return Int8OnnxBackend(model, options)


#: backend name -> factory of (loaded model, runtime options)
EMBEDDER_BACKENDS: Registry[Backend] = Registry.of(
    "embedder backend",
    {"torch": _torch, "onnxruntime": _onnxruntime, "onnxruntime-int8": _onnxruntime_int8},
)


class Embedder:
    """Maps aligned uint8 (N, H, W, 3) RGB face crops to embeddings with one model.

    ``flip`` makes :meth:`embed` add the mirrored view; ``batch_size`` faces are converted
    at a time (adjustable). One blank face is embedded at construction: a model that rejects
    its declared input size, or gives another embedding size than declared, raises
    CheckpointError at once. Not thread-safe: use one embedder per thread.
    """

    def __init__(
        self, model: Model, backend: Backend, *, flip: bool = False, batch_size: int = 64
    ) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        model.preprocess.check(model.name)
        self.model = model
        self.backend = backend
        self.flip = flip
        self.batch_size = batch_size
        self._warned = False
        blank = np.zeros((1, *model.preprocess.input_size, 3), np.uint8)
        try:
            size = self.views(blank, flip=False)[0].shape[1]
        except RuntimeError as exc:
            raise CheckpointError(
                f"{model.name}: does not accept its declared input size "
                f"{tuple(model.preprocess.input_size)}: {first_line(exc)}"
            ) from None
        if model.embedding_size is not None and size != model.embedding_size:
            raise CheckpointError(
                f"{model.name}: gives {size}-d embeddings at its declared input size "
                f"{tuple(model.preprocess.input_size)} instead of {model.embedding_size}-d; "
                "the model does not accept that input size"
            )
        self.embedding_size = size

    @classmethod
    def from_backbone(
        cls,
        backbone: nn.Module,
        preprocess: Preprocess | None = None,
        *,
        device: str | torch.device | None = None,
        precision: str = "auto",
        flip: bool = False,
        batch_size: int = 64,
        fold_bn: bool = True,
        channels_last: bool = True,
        compile: bool = False,
        winograd: bool | None = None,
    ) -> Embedder:
        """An embedder for an in-memory backbone (training's evaluation, benchmarks), on its
        own device unless ``device`` is given; the backbone itself is not modified."""
        model = LoadedModel(backbone, preprocess or Preprocess(), Config(), "model")
        target = None if device is None else resolve_device(device)
        options = RuntimeOptions(
            target, precision, fold_bn, channels_last, compile=compile, winograd=winograd
        )
        return cls(model, TorchBackend(backbone, options), flip=flip, batch_size=batch_size)

    def __repr__(self) -> str:
        height, width = self.input_size
        return (
            f"Embedder({self.model.name!r}: {self.backend!r}; input {height}x{width} "
            f"{self.preprocess.color}, {self.embedding_size}-d, flip={self.flip})"
        )

    # ------------------------------------------------------------- what the model is
    @property
    def preprocess(self) -> Preprocess:
        return self.model.preprocess

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.model.preprocess.input_size)  # type: ignore[return-value]

    @property
    def fingerprint(self) -> str:
        return self.model.fingerprint

    @property
    def metrics(self) -> dict[str, Any]:
        return self.model.metrics

    @property
    def config(self) -> Config:
        return self.model.config

    @property
    def description(self) -> str:
        return self.model.name

    # ------------------------------------------------------------------ embedding
    def embed(self, faces: np.ndarray) -> np.ndarray:
        """Unit-length float32 (N, D) embeddings (flip TTA sums both views first)."""
        return l2_normalize(self.embed_raw(faces), np.float32)

    def embed_with_norms(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit-length embeddings and each face's feature norm: the length of its raw
        embedding (of the mean view with flip), which MagFace trains to grow with quality."""
        raw = self.embed_raw(faces)
        norms = np.linalg.norm(raw, axis=1) / (2.0 if self.flip else 1.0)
        return l2_normalize(raw, np.float32), norms.astype(np.float32)

    def embed_raw(self, faces: np.ndarray) -> np.ndarray:
        """Raw float32 (N, D) embeddings, the mirrored view added when ``flip``."""
        plain, mirrored = self.views(faces, self.flip)
        return plain if mirrored is None else plain + mirrored

    def views(self, faces: np.ndarray, flip: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw float32 embeddings of ``faces`` and, with ``flip``, of their mirror images
        (evaluation keeps both for insightface's XNorm)."""
        faces = self._checked(faces)
        if len(faces) == 0:
            empty = np.zeros((0, self.embedding_size), np.float32)
            return empty, (empty.copy() if flip else None)
        plain, mirrored = [], []
        for start in range(0, len(faces), self.batch_size):
            x = self._input(faces[start : start + self.batch_size])
            plain.append(self._run(x))
            if flip:
                mirrored.append(self._run(x.flip(3)))
        return np.concatenate(plain), (np.concatenate(mirrored) if flip else None)

    def _checked(self, faces: np.ndarray) -> np.ndarray:
        faces = np.asarray(faces)
        if faces.ndim == 3:
            faces = faces[None]
        expected = (*self.input_size, 3)
        if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != expected:
            raise DataError(
                f"expected aligned uint8 faces of shape (N, {expected[0]}, {expected[1]}, 3), "
                f"got {faces.dtype} {faces.shape}; align the faces first (or fit them to the "
                "model's input size with a resize mode)"
            )
        return faces

    def _input(self, faces: np.ndarray) -> torch.Tensor:
        pixels = torch.from_numpy(np.ascontiguousarray(faces)).to(self.backend.device)
        return self.model.preprocess.apply(pixels.permute(0, 3, 1, 2))  # NCHW view of NHWC

    def _run(self, x: torch.Tensor) -> np.ndarray:
        """The backend's output, recomputed in fp32 when reduced precision overflowed (a
        one-time warning; the backend stays in fp32), never non-finite."""
        out = self.backend.run(x)
        if not torch.isfinite(out).all():
            precision = self.backend.precision
            if precision == "fp32":
                raise CheckpointError(
                    f"{self.model.name}: gives non-finite embeddings in fp32; its weights are "
                    "damaged or diverged"
                )
            if not self._warned:
                warnings.warn(
                    f"{self.model.name}: {precision} gave non-finite embeddings (overflow); "
                    "recomputing in fp32 from now on",
                    stacklevel=4,
                )
                self._warned = True
            self.backend.fall_back_to_fp32()
            return self._run(x)
        return out.cpu().numpy()


def load_embedder(
    source: str | Path | ModelSource,
    *,
    device: str | torch.device | None = None,
    precision: str = "auto",
    flip: bool = False,
    batch_size: int = 64,
    backend: str | None = None,
    fold_bn: bool = True,
    channels_last: bool = True,
    threads: int = 0,
    compile: bool = False,
    winograd: bool | None = None,
) -> Embedder:
    """An :class:`Embedder` for any :class:`~faceforge.core.model_source.ModelSource`: a
    faceforge checkpoint, an ONNX file (``.onnx``), a weights file with its architecture or a
    pretrained entry's file.

    ``backend`` is an :data:`EMBEDDER_BACKENDS` name (default: ``torch`` for PyTorch models,
    ``onnxruntime`` for ONNX files). ``device`` ``None``/``"auto"`` picks CUDA when
    available; ``precision`` (``auto``: bf16 on CPUs with native bf16, fp16 on CUDA, else
    fp32) applies to PyTorch; ``fold_bn``/``channels_last`` turn those optimisations off;
    ``compile`` runs the PyTorch network through ``torch.compile`` (faster for long jobs,
    after a one-time compile); ``winograd`` forces Winograd 3x3 convolutions on or off
    (default: fp32 on CPU, :mod:`faceforge.core.winograd`); ``threads`` bounds ONNX
    Runtime's threads.

    >>> embedder = load_embedder("runs/quickstart/checkpoint.pt")  # doctest: +SKIP
    >>> embedder.embed(aligned_faces).shape  # doctest: +SKIP
    (2, 512)
    """
    source = as_source(source)
    model: Model = read_onnx(source.path) if source.kind == "onnx" else load_model(source)
    name = backend or _default_backend(model, precision)
    factory = EMBEDDER_BACKENDS.get(name, "backend")
    options = RuntimeOptions(
        resolve_device(device), precision, fold_bn, channels_last, None, threads, compile, winograd
    )
    return Embedder(model, factory(model, options), flip=flip, batch_size=batch_size)


def _default_backend(model: Model, precision: str) -> str:
    """``onnxruntime-int8`` for precision ``int8``, else the model's own runtime."""
    if precision == "int8":
        return "onnxruntime-int8"
    return "onnxruntime" if isinstance(model, OnnxModel) else "torch"


def resolve_flip(embedder: Embedder, flip: bool | None) -> bool:
    """Set and return ``embedder.flip``: ``flip`` (``--flip/--no-flip``) when given, else
    the setting the model's stored thresholds were calibrated with (its ``eval.flip``)."""
    embedder.flip = embedder.config.eval.flip if flip is None else flip
    return embedder.flip
