"""ONNX models: what an ``.onnx`` file says about itself, and the ONNX Runtime backend.

faceforge exports (:mod:`faceforge.inference.export`) store their preprocessing, metrics,
weight fingerprint and backbone name in the ONNX ``metadata_props`` (the ``faceforge.*``
keys below); other recognition files get insightface's conventions at the graph's input
size (see :func:`foreign_onnx_preprocess`). :func:`read_onnx` checks the contract against
the graph when the file is opened, so a mismatch fails at once rather than deep inside.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceforge.config import Config, config_from_dict
from faceforge.core.onnx_external import check_external_data
from faceforge.core.preprocess import Preprocess
from faceforge.core.torch_backend import RuntimeOptions
from faceforge.device import resolve_device
from faceforge.errors import CheckpointError, ConfigError, first_line, shorten

#: ONNX metadata_props keys written by :mod:`faceforge.inference.export`
META_PREPROCESS = "faceforge.preprocess"
META_FINGERPRINT = "faceforge.fingerprint"
META_METRICS = "faceforge.metrics"
META_BACKBONE = "faceforge.backbone"
META_CONFIG = "faceforge.config"
#: how many of the first graph nodes :func:`foreign_onnx_preprocess` inspects
NORMALISING_NODES = 8
#: TensorProto.DataType.FLOAT
FLOAT = 1


@dataclass
class OnnxModel:
    """An ONNX embedding model: its file, contract and provenance (no network loaded)."""

    path: Path
    preprocess: Preprocess
    fingerprint: str
    metrics: dict[str, Any] = field(default_factory=dict, repr=False)
    #: the faceforge backbone it was exported from ("" for foreign files)
    arch: str = ""
    #: the graph's fixed embedding size, or None when the output axis is symbolic
    embedding_size: int | None = None
    #: evaluation defaults (batch size, flip) and the head (MagFace quality) come from here,
    #: as for a checkpoint: the training config exported beside the graph
    config: Config = field(default_factory=Config, repr=False)
    #: the graph's fixed batch size (ONNX model zoo files take 1 face), None when dynamic
    batch_size: int | None = None

    @property
    def name(self) -> str:
        return f"ONNX {self.path.name}"


def file_fingerprint(path: Path) -> str:
    """Short SHA-256 of a model file without faceforge metadata."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def read_onnx(path: str | Path) -> OnnxModel:
    """Open an ONNX file's graph and metadata (its external data is checked, see
    :mod:`~faceforge.core.onnx_external`, not read); CheckpointError for a missing or
    unreadable file, external data outside the model's folder, malformed faceforge
    metadata, or a contract the graph contradicts."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX model {str(path)!r} does not exist")
    try:
        proto = onnx.load(str(path), load_external_data=False)  # the graph, not the weights
    except Exception as exc:  # protobuf and onnx raise several types for bad files
        raise CheckpointError(f"{path}: not a loadable ONNX model ({first_line(exc)})") from None
    check_external_data(proto, path)
    _check_signature(proto, path)
    meta = {prop.key: prop.value for prop in proto.metadata_props}
    graph_size = _dims(proto.graph.input[0])[2:4] if proto.graph.input else []
    fixed = len(graph_size) == 2 and all(isinstance(s, int) for s in graph_size)
    try:
        if META_PREPROCESS in meta:
            preprocess = Preprocess.from_dict(json.loads(meta[META_PREPROCESS]))
        else:
            preprocess = foreign_onnx_preprocess(proto, tuple(graph_size) if fixed else (112, 112))
        metrics = json.loads(meta[META_METRICS]) if META_METRICS in meta else {}
        config = (
            config_from_dict(json.loads(meta[META_CONFIG])) if META_CONFIG in meta else Config()
        )
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: malformed faceforge metadata ({exc})") from None
    preprocess.check(str(path))
    if fixed and tuple(graph_size) != tuple(preprocess.input_size):
        raise CheckpointError(
            f"{path}: graph input is {tuple(graph_size)} but its preprocessing declares "
            f"{tuple(preprocess.input_size)}"
        )
    outputs = _dims(proto.graph.output[0]) if proto.graph.output else []
    size = outputs[-1] if outputs and isinstance(outputs[-1], int) else None
    batch = _dims(proto.graph.input[0])[0]
    return OnnxModel(
        path,
        preprocess,
        meta.get(META_FINGERPRINT) or file_fingerprint(path),
        metrics,
        meta.get(META_BACKBONE, ""),
        size,
        config,
        batch if isinstance(batch, int) and batch > 0 else None,
    )


def _check_signature(proto: Any, path: Path) -> None:
    """An embedding model takes one float (N, 3, H, W) batch and returns at least one output;
    anything else would only fail later, inside ONNX Runtime."""
    data = proto.graph.input[0] if proto.graph.input else None
    dims = _dims(data) if data is not None else []
    float_input = data is not None and data.type.tensor_type.elem_type == FLOAT
    fixed_channels = len(dims) == 4 and isinstance(dims[1], int)
    if len(dims) != 4 or (fixed_channels and dims[1] != 3) or not float_input:
        raise CheckpointError(
            f"{path}: not an embedding model: its first input must be a float (N, 3, H, W) "
            f"batch, got {shorten(dims)}"
        )
    if not proto.graph.output:
        raise CheckpointError(f"{path}: not an embedding model: its graph has no output")


def _dims(value_info: Any) -> list[int | str]:
    """Shape of a graph input/output: ints for fixed axes, names for symbolic ones."""
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]


def foreign_onnx_preprocess(proto: Any, input_size: tuple[int, int]) -> Preprocess:
    """insightface's convention for a recognition ONNX file without faceforge metadata: RGB,
    ``(x - 127.5) / 127.5``, unless one of the first 8 nodes is named Sub/_minus and one
    Mul/_mul (models converted from MXNet normalise inside the graph and take raw pixels)."""
    names = [node.name for node in proto.graph.node[:NORMALISING_NODES]]
    subtracts = any(name.startswith(("Sub", "_minus")) for name in names)
    multiplies = any(name.startswith(("Mul", "_mul")) for name in names)
    if subtracts and multiplies:
        return Preprocess(input_size=input_size, mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3)
    return Preprocess(input_size=input_size)


def onnx_providers(device: str | torch.device | None) -> list[str | tuple[str, dict]]:
    """ONNX Runtime providers for ``device`` (``None``/``auto``: CUDA when available): CUDA
    on that GPU (``cuda:1`` is device 1) first when asked for and installed, else the CPU."""
    import onnxruntime as ort

    cuda, resolved = "CUDAExecutionProvider", resolve_device(device)
    if resolved.type == "cuda" and cuda in ort.get_available_providers():
        return [(cuda, {"device_id": resolved.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def cannot_run(path: Path, exc: Exception) -> CheckpointError:
    """ONNX Runtime's failure to run ``path`` as one line: its message joined, since its
    first line names no cause."""
    message = " ".join(str(exc).split())[:300]
    return CheckpointError(f"{path}: ONNX Runtime cannot run it ({message})")


class OnnxRuntimeBackend:
    """An ONNX model run with ONNX Runtime (CUDA when the device is a GPU and the provider is
    installed, else CPU); always fp32, so there is nothing to fall back from."""

    precision = "fp32"

    def __init__(self, model: OnnxModel, options: RuntimeOptions) -> None:
        import onnxruntime as ort

        self.path = model.path
        self.device = torch.device("cpu")  # inputs are handed over as numpy arrays
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.threads
        providers = onnx_providers(options.device or "cpu")
        try:
            self.session = ort.InferenceSession(
                str(model.path), sess_options=session_options, providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise CheckpointError(f"{model.path}: not a loadable ONNX model ({exc})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.batch_size = model.batch_size

    @property
    def provider(self) -> str:
        """The execution provider that runs the graph first, e.g. ``CPU`` or ``CUDA``."""
        return self.session.get_providers()[0].removesuffix("ExecutionProvider")

    @property
    def accelerated(self) -> bool:
        return self.provider != "CPU"

    def __repr__(self) -> str:
        return f"ONNX Runtime {self.provider}, {self.precision}"

    def fall_back_to_fp32(self) -> None:
        """Nothing to do: ONNX Runtime runs the graph as stored (fp32)."""

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """Raw float32 (N, D) embeddings of float (N, 3, H, W) model input."""
        batch = np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)
        try:
            if not self.batch_size:
                out = self.session.run(None, {self.input_name: batch})[0]
            else:  # a graph of fixed batch size: that many at a time, the last chunk padded
                out = np.concatenate(
                    [
                        self._fixed(batch[i : i + self.batch_size])
                        for i in range(0, len(batch), self.batch_size)
                    ]
                )
        except Exception as exc:  # onnxruntime raises its own types for graphs it cannot run
            raise cannot_run(self.path, exc) from None
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def _fixed(self, chunk: np.ndarray) -> np.ndarray:
        padded = np.zeros((self.batch_size, *chunk.shape[1:]), np.float32)
        padded[: len(chunk)] = chunk
        return self.session.run(None, {self.input_name: padded})[0][: len(chunk)]
