"""Adapters for published weights whose network differs from a faceforge backbone only in
ways that have an exact translation (timm's per-model checkpoint filters, as data).

A pretrained entry (:mod:`faceforge.core.pretrained`) names its adapter; the adapter renames
the file's keys to the backbone's and supplies, as identity parameters, what the published
network does without. :func:`~faceforge.core.foreign_weights.match_state_dict` then checks
the result like any other weights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from faceforge.registry import Registry

#: BatchNorm epsilon of the IResNet layers (PyTorch's default)
BN_EPS = 1e-5
#: AdaFace's ``res_layer`` positions -> the IResNet block's layer names
_ADAFACE_BLOCK = ("bn1", "conv1", "bn2", "prelu", "conv2", "bn3")
_ADAFACE_TOP = {
    "input_layer.0.": "conv1.",
    "input_layer.1.": "bn1.",
    "input_layer.2.": "prelu.",
    "output_layer.0.": "bn2.",
    "output_layer.3.": "fc.",
    "output_layer.4.": "features.",
}
_ADAFACE_BODY = re.compile(r"body\.(\d+)\.(res_layer|shortcut_layer)\.(\d+)\.(.+)")


def _stage_lengths(target: Mapping[str, Tensor]) -> list[int]:
    """Blocks per stage of an IResNet state dict (``layer1`` .. ``layer4``)."""
    blocks: dict[int, int] = {}
    for key in target:
        found = re.match(r"layer(\d)\.(\d+)\.", key)
        if found:
            stage, block = int(found.group(1)), int(found.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    return [blocks[s] for s in sorted(blocks)]


def _adaface_name(key: str, stages: list[int]) -> str:
    """An AdaFace IR key under the IResNet's name (unknown keys come back unchanged)."""
    for prefix, name in _ADAFACE_TOP.items():
        if key.startswith(prefix):
            return name + key[len(prefix) :]
    found = _ADAFACE_BODY.fullmatch(key)
    if found is None:
        return key
    index, part, position, leaf = found.groups()
    stage, block = 0, int(index)
    while stage < len(stages) and block >= stages[stage]:
        block -= stages[stage]
        stage += 1
    if part == "shortcut_layer":
        return f"layer{stage + 1}.{block}.downsample.{position}.{leaf}"
    return f"layer{stage + 1}.{block}.{_ADAFACE_BLOCK[int(position)]}.{leaf}"


def _identity(key: str, like: Tensor) -> Tensor | None:
    """The value of a parameter that makes its layer the identity, for the layers AdaFace's
    network lacks: the stride-2 shortcut (a 1x1 max-pool there, a 1x1 convolution and
    BatchNorm here) and the scale and shift of its two non-affine BatchNorms."""
    leaf = key.rpartition(".")[2]
    if leaf == "weight" and like.dim() == 4:  # 1x1 convolution passing channel c to c
        return torch.eye(like.shape[0], dtype=like.dtype).view_as(like)
    if leaf in ("weight", "running_var"):
        one = 1 - BN_EPS if leaf == "running_var" else 1.0  # (x - 0) / sqrt(1 - eps + eps)
        return torch.full_like(like, one)
    if leaf in ("bias", "running_mean"):
        return torch.zeros_like(like)
    return None


def adaface_ir(state: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """AdaFace's IR networks (https://github.com/mk-minchul/AdaFace: ``input_layer``,
    ``body``, ``output_layer``; a PyTorch Lightning ``model.`` prefix and the ``head.``
    classifier are dropped) under the names of the IResNet of the same depth.

    Both compute BN-conv-BN-PReLU-conv(stride)-BN blocks and a BN-dropout-FC-BN output;
    AdaFace's first block shortcut is a stride-2 1x1 max-pool where insightface has a
    projection, and its output BatchNorms have no scale and shift: those are filled in as
    the identity, so the embeddings are the same function.
    """
    stages = _stage_lengths(target)
    renamed = {
        _adaface_name(key.removeprefix("model."), stages): tensor
        for key, tensor in state.items()
        if not key.startswith(("head.", "model.head."))
    }
    for key, like in target.items():
        if key not in renamed and (key.startswith(("bn2.", "features.")) or ".downsample." in key):
            value = _identity(key, like)
            if value is not None:
                renamed[key] = value
    return renamed


#: adapter name (in a pretrained entry) -> (file state dict, backbone state dict) -> renamed
WEIGHT_ADAPTERS: Registry[dict[str, Tensor]] = Registry.of(
    "weights adapter", {"adaface_ir": adaface_ir}
)
