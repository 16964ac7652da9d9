"""Embedders: aligned face crops in, L2-normalised embeddings out, whatever the model format.

Three sources are supported, each carrying the preprocessing the model was trained with, so
colour order, normalisation, template and input size cannot silently drift:

* a faceforge checkpoint (config, preprocessing and evaluation metrics inside);
* an insightface ``backbone.pth`` state dict plus the architecture name (``iresnet50``, ...),
  with insightface's preprocessing (RGB, ``(x - 127.5) / 127.5``, ArcFace 112x112);
* an ONNX model, run with ONNX Runtime; faceforge exports store their preprocessing, metrics
  and weight fingerprint in the ONNX metadata props (``faceforge.*``), other files get
  insightface's conventions at the graph's input size (see :func:`foreign_onnx_preprocess`).

The preprocessing is checked when the model is loaded: a template/size combination that does
not exist, an unknown colour order, or a model that rejects its declared input size raises
:class:`~faceforge.errors.CheckpointError` at once rather than failing deep inside later.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faceforge.core.batch_embed import iter_embedding_views
from faceforge.core.checkpoint import content_hash
from faceforge.core.preprocess import Preprocess
from faceforge.core.vectors import l2_normalize
from faceforge.device import resolve_device
from faceforge.errors import CheckpointError, DataError, first_line
from faceforge.inference.model_source import (
    ModelSource,
    as_source,
    check_preprocess,
    load_torch_model,
)
from faceforge.inference.model_source import (
    load_insightface_backbone as load_insightface_backbone,  # re-exported: it lived here
)

#: ONNX metadata_props keys written by :mod:`faceforge.inference.export`
META_PREPROCESS = "faceforge.preprocess"
META_FINGERPRINT = "faceforge.fingerprint"
META_METRICS = "faceforge.metrics"
META_BACKBONE = "faceforge.backbone"


def state_dict_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """Short content hash of parameter names, shapes and values: equal weights, equal
    fingerprint (so a gallery can tell which model produced its embeddings)."""
    return content_hash(state)[:16]


def file_fingerprint(path: Path) -> str:
    """Short SHA-256 of a model file without faceforge metadata."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def model_input(faces: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB crops -> float32 (N, 3, H, W) in the model's colour order."""
    if preprocess.color == "BGR":
        faces = faces[..., ::-1]
    return preprocess.normalize(faces)


class Embedder(ABC):
    """Maps aligned uint8 (N, H, W, 3) RGB face crops to L2-normalised (N, D) embeddings."""

    def __init__(
        self,
        preprocess: Preprocess,
        embedding_size: int,
        fingerprint: str,
        *,
        metrics: dict[str, Any] | None = None,
        flip: bool = False,
        description: str = "",
    ) -> None:
        self.preprocess = preprocess
        self.embedding_size = embedding_size
        self.fingerprint = fingerprint
        self.metrics = dict(metrics or {})
        self.flip = flip
        self.description = description

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.preprocess.input_size)  # type: ignore[return-value]

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """Unit-length float32 embeddings of aligned crops (flip TTA sums both views first)."""
        faces = np.asarray(faces)
        if faces.ndim == 3:
            faces = faces[None]
        expected = (*self.input_size, 3)
        if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != expected:
            raise DataError(
                f"expected aligned uint8 faces of shape (N, {expected[0]}, {expected[1]}, 3), "
                f"got {faces.dtype} {faces.shape}; align the faces first"
            )
        if len(faces) == 0:
            return np.zeros((0, self.embedding_size), np.float32)
        return l2_normalize(self.embed_raw(faces)).astype(np.float32)

    @abstractmethod
    def embed_raw(self, faces: np.ndarray) -> np.ndarray:
        """Unnormalised (N, D) embeddings of validated crops."""


class _Mailbox:
    """An endless iterable yielding the batch posted last: it lets one long-lived
    :func:`iter_embedding_views` generator (which prepares the model once) serve many calls."""

    def __init__(self) -> None:
        self.batch: np.ndarray | None = None

    def __iter__(self) -> Iterator[np.ndarray | None]:
        while True:
            yield self.batch


class TorchEmbedder(Embedder):
    """A PyTorch backbone run through faceforge's batched CPU/GPU path
    (:mod:`faceforge.core.batch_embed`: BatchNorm folded, channels-last, bf16/fp16
    autocast where the hardware computes it natively), prepared once at construction.

    One blank face is embedded at load time: a model that rejects its declared input size, or
    (with ``embedding_size``) returns another embedding size there, raises CheckpointError.
    Not thread-safe: use one embedder per thread.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocess: Preprocess,
        *,
        fingerprint: str | None = None,
        metrics: dict[str, Any] | None = None,
        flip: bool = False,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        precision: str = "auto",
        description: str = "",
        embedding_size: int | None = None,
    ) -> None:
        name = description or "model"
        check_preprocess(preprocess, name)
        self.device = resolve_device(device)
        self.model = model.eval()
        self.batch_size = batch_size
        self._options = {"flip": flip, "device": self.device, "precision": precision}
        self._mailbox = _Mailbox()
        self._views: Iterator[tuple[np.ndarray, np.ndarray | None]] | None = None
        if fingerprint is None:
            fingerprint = state_dict_fingerprint(model.state_dict())
        try:
            size = self._run(np.zeros((1, *preprocess.input_size, 3), np.uint8), preprocess)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{name}: does not accept its declared input size "
                f"{tuple(preprocess.input_size)}: {first_line(exc)}"
            ) from None
        size = size.shape[1]
        if embedding_size is not None and size != embedding_size:
            raise CheckpointError(
                f"{name}: gives {size}-d embeddings at its declared input size "
                f"{tuple(preprocess.input_size)} instead of {embedding_size}-d; the model "
                "does not accept that input size"
            )
        super().__init__(
            preprocess, size, fingerprint, metrics=metrics, flip=flip, description=description
        )

    def _run(self, faces: np.ndarray, preprocess: Preprocess) -> np.ndarray:
        if self._views is None:
            self._views = iter_embedding_views(
                self.model, self._mailbox, preprocess, **self._options
            )
        self._mailbox.batch = faces
        try:
            plain, mirrored = next(self._views)
        except Exception:
            self._views = None  # a failed generator is finished: prepare afresh next time
            raise
        return plain if mirrored is None else plain + mirrored

    def embed_raw(self, faces: np.ndarray) -> np.ndarray:
        parts = [
            self._run(faces[start : start + self.batch_size], self.preprocess)
            for start in range(0, len(faces), self.batch_size)
        ]
        return np.concatenate(parts)


class OnnxEmbedder(Embedder):
    """An ONNX model run with ONNX Runtime (CPU, or CUDA when that provider is installed);
    ``threads`` bounds ONNX Runtime's intra-op threads (0: its default)."""

    def __init__(
        self,
        path: str | Path,
        *,
        flip: bool = False,
        batch_size: int = 64,
        providers: list[str] | None = None,
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"ONNX model {str(path)!r} does not exist")
        if providers is None:
            preferred = ("CUDAExecutionProvider", "CPUExecutionProvider")
            providers = [p for p in preferred if p in ort.get_available_providers()]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default (one per core)
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise CheckpointError(f"{path}: not a loadable ONNX model ({exc})") from None
        self.batch_size = batch_size
        meta = self.session.get_modelmeta().custom_metadata_map
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        graph_size = tuple(graph_input.shape[2:4])
        fixed = all(isinstance(s, int) for s in graph_size)
        try:
            if META_PREPROCESS in meta:
                preprocess = Preprocess.from_dict(json.loads(meta[META_PREPROCESS]))
            else:
                preprocess = foreign_onnx_preprocess(path, graph_size if fixed else (112, 112))
            metrics = json.loads(meta[META_METRICS]) if META_METRICS in meta else {}
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: malformed faceforge metadata ({exc})") from None
        check_preprocess(preprocess, str(path))
        if fixed and graph_size != tuple(preprocess.input_size):
            raise CheckpointError(
                f"{path}: graph input is {graph_size} but its preprocessing declares "
                f"{tuple(preprocess.input_size)}"
            )
        fingerprint = meta.get(META_FINGERPRINT) or file_fingerprint(path)
        size = self.session.get_outputs()[0].shape[-1]
        if not isinstance(size, int):
            size = self._run(np.zeros((1, 3, *preprocess.input_size), np.float32)).shape[1]
        super().__init__(
            preprocess,
            size,
            fingerprint,
            metrics=metrics,
            flip=flip,
            description=f"ONNX {path.name}",
        )

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def embed_raw(self, faces: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(faces), self.batch_size):
            batch = model_input(faces[start : start + self.batch_size], self.preprocess)
            embedding = self._run(batch)
            if self.flip:
                embedding = embedding + self._run(np.ascontiguousarray(batch[..., ::-1]))
            out.append(embedding)
        return np.concatenate(out).astype(np.float32, copy=False)


def foreign_onnx_preprocess(path: Path, input_size: tuple[int, int]) -> Preprocess:
    """insightface's convention for a recognition ONNX file without faceforge metadata: RGB,
    ``(x - 127.5) / 127.5``, unless one of the first 8 nodes is named Sub/_minus and one
    Mul/_mul (models converted from MXNet normalise inside the graph and take raw pixels)."""
    import onnx

    names = [node.name for node in onnx.load(str(path), load_external_data=False).graph.node[:8]]
    subtracts = any(name.startswith(("Sub", "_minus")) for name in names)
    multiplies = any(name.startswith(("Mul", "_mul")) for name in names)
    if subtracts and multiplies:
        return Preprocess(input_size=input_size, mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3)
    return Preprocess(input_size=input_size)


def load_embedder(
    source: str | Path | ModelSource,
    *,
    arch: str | None = None,
    embedding_size: int | None = None,
    device: str | torch.device | None = None,
    flip: bool = False,
    batch_size: int = 64,
    precision: str = "auto",
) -> Embedder:
    """An :class:`Embedder` for any :class:`~faceforge.inference.model_source.ModelSource`: a
    faceforge checkpoint, an ONNX file (``.onnx``) or, with ``arch``, an insightface
    ``backbone.pth``. ``precision`` applies to PyTorch models (see
    :func:`~faceforge.core.batch_embed.embed_images`; ``"fp32"`` for bit-for-bit
    comparisons with ONNX Runtime).

    >>> embedder = load_embedder("runs/quickstart/checkpoint.pt")  # doctest: +SKIP
    >>> embedder.embed(aligned_faces).shape  # doctest: +SKIP
    (2, 512)
    """
    source = as_source(source, arch=arch, embedding_size=embedding_size)
    if source.kind == "onnx":
        return OnnxEmbedder(source.path, flip=flip, batch_size=batch_size)
    model = load_torch_model(source)
    return TorchEmbedder(
        model.backbone,
        model.preprocess,
        metrics=model.metrics,
        flip=flip,
        device=device,
        batch_size=batch_size,
        precision=precision,
        description=model.name,
        embedding_size=model.embedding_size,
    )
