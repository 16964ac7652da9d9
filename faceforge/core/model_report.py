"""What a model file is (``faceforge inspect MODEL``): a faceforge checkpoint, an ONNX model or
another project's weights file, told apart and described without running a network.

A checkpoint's tensors stay mapped (only their sizes are counted) and an ONNX file's weights
unread; a weights file of another project is matched (through the adapter its key layout
calls for) against every registered backbone built on the ``meta`` device (shapes, no
memory), so the report names the ``--arch`` that ``faceforge import`` would accept, or says
that none fits as it is.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from faceforge.core.checkpoint import Checkpoint, read_payload
from faceforge.core.foreign_weights import match_state_dict, read_state_dict, weight_count
from faceforge.core.preprocess import Preprocess
from faceforge.core.weight_adapters import adapted, layout_note
from faceforge.errors import CheckpointError
from faceforge.models.registry import BACKBONES, build_backbone

#: file name endings ``faceforge inspect`` reads as models (anything else as a dataset)
MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".onnx", ".tar")
#: the checkpoint fields a report reads and checks (small ones; the rest is only measured)
_REPORTED = ("metrics", "step", "best_accuracy")
#: input sizes a weights file is tried at (square, and SphereFace-style crops)
TRIED_SIZES = ((112, 112), (112, 96))


def is_model_file(path: str | Path) -> bool:
    """Whether ``inspect`` should describe ``path`` as a model rather than a dataset (by its
    name: a missing model file is then reported as one)."""
    path = Path(path)
    return not path.is_dir() and path.suffix.lower() in MODEL_SUFFIXES


def describe_model_file(path: str | Path) -> list[str]:
    """Lines saying what the model file ``path`` holds (CheckpointError when it is none)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return _onnx_lines(path)
    payload = read_payload(path)
    if payload is not None:
        return _checkpoint_lines(path, payload)
    return _weights_lines(path)


def _contract(preprocess: Preprocess) -> str:
    height, width = preprocess.input_size
    return (
        f"input {height}x{width} {preprocess.color}, mean {list(preprocess.mean)}, "
        f"std {list(preprocess.std)}, template {preprocess.template}"
    )


def _metrics(metrics: dict[str, Any]) -> list[str]:
    return [
        f"  {name}: accuracy {100 * value['accuracy']:.2f} %"
        for name, value in metrics.items()
        if isinstance(value, dict) and isinstance(value.get("accuracy"), (int, float))
    ]


def _checkpoint_lines(path: Path, payload: dict[str, Any]) -> list[str]:
    ckpt = Checkpoint.load(path, parts=_REPORTED)
    model, train = ckpt.config.model, ckpt.config.train
    head = ckpt.config.head.type + (", Partial FC" * ckpt.config.head.partial_fc)
    lines = [
        f"{path}: faceforge checkpoint, format {payload.get('version', 0)}, written by "
        f"faceforge {payload.get('faceforge_version', '?')}",
        f"model: {model.backbone}, {model.embedding_size}-d; {_contract(ckpt.preprocess)}",
        f"training: step {ckpt.step} of {train.max_steps}, head {head}"
        + (f", best accuracy {100 * ckpt.best_accuracy:.2f} %" if ckpt.best_accuracy else ""),
    ]
    sizes = [_tensor_size(name, payload[name]) for name in ("backbone", "head", "loss")]
    sizes.append(_tensor_size("optimizer", payload.get("optimizer", {})))
    lines.append("parts: " + "; ".join(size for size in sizes if size))
    metrics = _metrics(ckpt.metrics)
    return lines + (["metrics:", *metrics] if metrics else [])


def _tensor_size(name: str, value: Any) -> str:
    """``name: N tensors, X MB`` of the tensors in ``value`` ('' when it holds none)."""
    tensors = list(_tensors(value))
    if not tensors:
        return ""
    megabytes = sum(t.numel() * t.element_size() for t in tensors) / 2**20
    return f"{name} {len(tensors)} tensors, {megabytes:,.1f} MB"


def _tensors(value: Any) -> Any:
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _onnx_lines(path: Path) -> list[str]:
    from faceforge.core.onnx_model import read_onnx

    model = read_onnx(path)
    origin = f"exported by faceforge from {model.arch}" if model.arch else "from another tool"
    size = f"{model.embedding_size}-d" if model.embedding_size else "embedding size symbolic"
    lines = [
        f"{path}: ONNX model {origin}, {path.stat().st_size / 2**20:,.1f} MB",
        f"model: {size}; {_contract(model.preprocess)}"
        + ("" if model.arch else " (assumed: a foreign file records none)"),
        f"fingerprint: {model.fingerprint}",
    ]
    metrics = _metrics(model.metrics)
    return lines + (["metrics:", *metrics] if metrics else [])


def _weights_lines(path: Path) -> list[str]:
    with warnings.catch_warnings():  # objects beside the tensors are left out: no matter here
        warnings.simplefilter("ignore")
        state = read_state_dict(path)
    parameters = sum(t.numel() for t in state.values() if t.is_floating_point())
    lines = [
        f"{path}: weights of another project, {len(state)} tensors, "
        f"{parameters / 1e6:,.2f} M parameters; no preprocessing recorded (a published "
        "model's is in faceforge models: import it with --pretrained NAME)",
    ]
    note = layout_note(state)
    if note is not None:
        lines.append(f"keys in {note}")
    fits = _fitting_backbones(state)
    if not fits:
        return [
            *lines,
            "fits no faceforge backbone by name, order or shape as it is: faceforge import "
            "--arch NAME --key-map FILE renames its keys (faceforge models lists the names)",
        ]
    lines.append("fits (faceforge import --arch NAME [--input-size HxW] --embedding-size E):")
    for name, (height, width), size in fits:
        lines.append(f"  {name} at {height}x{width}, {size}-d")
    return lines


def _fitting_backbones(state: dict[str, Tensor]) -> list[tuple[str, tuple[int, int], int]]:
    """Every (backbone, input size, embedding size) whose state dict ``state`` loads into;
    the embedding size is the last 1-D tensor's length."""
    vectors = [t for t in state.values() if t.ndim == 1]
    if not vectors:
        return []
    size = vectors[-1].numel()
    fits = []
    for name in BACKBONES.names():
        for input_size in TRIED_SIZES:
            try:
                with torch.device("meta"):
                    target = build_backbone(name, embedding_size=size, input_size=input_size)
            except (ValueError, RuntimeError):  # a size this design does not take
                continue
            wanted = target.state_dict()
            candidate = adapted(state, wanted)
            if weight_count(wanted) != weight_count(candidate):
                break  # the input size changes shapes, never how many weights there are
            try:
                match_state_dict(candidate, wanted, name)
            except (CheckpointError, ValueError, RuntimeError):
                continue
            fits.append((name, input_size, size))
    return fits
