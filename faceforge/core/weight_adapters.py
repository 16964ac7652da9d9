"""Adapters for published weights whose network differs from a faceforge backbone only in
ways that have an exact translation (timm's per-model checkpoint filters, as data).

A pretrained entry (:mod:`faceforge.core.pretrained`) names its adapter; weights given with
``--arch`` go through the adapter whose layout their keys show (:func:`adapted`). The
adapter renames the file's keys to the backbone's and supplies, as identity parameters,
what the published network does without.
:func:`~faceforge.core.foreign_weights.match_state_dict` then checks the result like any
other weights, so a wrong ``--arch`` still fails with the keys that do not fit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from faceforge.registry import Registry

#: BatchNorm epsilon of the IResNet layers (PyTorch's default)
BN_EPS = 1e-5
#: the IR layout's top-level layers -> the IResNet's
_IR_TOP = {
    "input_layer.0.": "conv1.",
    "input_layer.1.": "bn1.",
    "input_layer.2.": "prelu.",
    "output_layer.0.": "bn2.",
    "output_layer.3.": "fc.",
    "output_layer.4.": "features.",
}
#: the layer kinds of a block's ``res_layer``, in order -> the IResNet block's layer names
_IR_BLOCKS = {
    # AdaFace: BN, conv, BN, PReLU, conv(stride), BN
    ("bn", "conv", "bn", "prelu", "conv", "bn"): ("bn1", "conv1", "bn2", "prelu", "conv2", "bn3"),
    # TreB1eN's InsightFace_Pytorch: no BatchNorm between the first convolution and PReLU
    ("bn", "conv", "prelu", "conv", "bn"): ("bn1", "conv1", "prelu", "conv2", "bn3"),
}
#: squeeze-excitation convolutions (biasless in both) -> the SE-IResNet's
_SE_LAYERS = {"fc1": "reduce", "fc2": "expand"}
_IR_BODY = re.compile(r"body\.(\d+)\.(res_layer|shortcut_layer)\.(\w+?)\.(.+)")
#: PyTorch Lightning's prefix of the network's keys (AdaFace's ``.ckpt`` files)
LIGHTNING_PREFIX = "model."
_CLASSIFIERS = ("head.", "model.head.")
_LACKED_IN_BLOCK = re.compile(r"\.(downsample|bn2)\.")


def _stage_lengths(target: Mapping[str, Tensor]) -> list[int]:
    """Blocks per stage of an IResNet state dict (``layer1`` .. ``layer4``)."""
    blocks: dict[int, int] = {}
    for key in target:
        found = re.match(r"layer(\d)\.(\d+)\.", key)
        if found:
            stage, block = int(found.group(1)), int(found.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    return [blocks[s] for s in sorted(blocks)]


def _block_name(index: int, stages: list[int]) -> str:
    """The IResNet name of the ``index``-th block of the body (counted over all stages)."""
    stage = 0
    while stage < len(stages) and index >= stages[stage]:
        index -= stages[stage]
        stage += 1
    return f"layer{stage + 1}.{index}"


def _kind(layer: Mapping[str, Tensor]) -> str:
    """``bn``, ``conv``, ``prelu`` or ``se``: what a ``res_layer`` position holds."""
    if "running_mean" in layer:
        return "bn"
    if any(leaf.startswith("fc1.") for leaf in layer):
        return "se"
    weight = layer.get("weight")
    return "conv" if weight is not None and weight.dim() == 4 else "prelu"


def _block_layouts(state: Mapping[str, Tensor]) -> dict[str, dict[str, str]]:
    """Per body block: ``res_layer`` position -> IResNet layer name, read from the kinds of
    its layers; a block in no known layout keeps its names (and then fails to match)."""
    layers: dict[str, dict[str, dict[str, Tensor]]] = {}
    for key, tensor in state.items():
        found = _IR_BODY.fullmatch(key)
        if found and found.group(2) == "res_layer":
            index, _, position, leaf = found.groups()
            layers.setdefault(index, {}).setdefault(position, {})[leaf] = tensor
    layouts = {}
    for index, positions in layers.items():
        order = sorted(positions, key=lambda p: int(p) if p.isdigit() else len(positions))
        kinds = [_kind(positions[p]) for p in order]
        plain = kinds[:-1] if kinds[-1:] == ["se"] else kinds
        names = _IR_BLOCKS.get(tuple(plain))
        if names is not None:
            layouts[index] = dict(zip(order, (*names, "se"), strict=False))
    return layouts


def _ir_name(key: str, stages: list[int], layouts: Mapping[str, Mapping[str, str]]) -> str:
    """An IR-layout key under the IResNet's name (keys in no known place come back as
    they are)."""
    for prefix, name in _IR_TOP.items():
        if key.startswith(prefix):
            return name + key[len(prefix) :]
    found = _IR_BODY.fullmatch(key)
    if found is None or (found.group(2) == "res_layer" and found.group(1) not in layouts):
        return key
    index, part, position, leaf = found.groups()
    block = _block_name(int(index), stages)
    if part == "shortcut_layer":
        return f"{block}.downsample.{position}.{leaf}"
    layer = layouts[index][position]
    if layer == "se":
        conv, _, rest = leaf.partition(".")
        leaf = f"{_SE_LAYERS.get(conv, conv)}.{rest}"
    return f"{block}.{layer}.{leaf}"


def _identity(key: str, like: Tensor) -> Tensor | None:
    """The value of a parameter that makes its layer the identity, for the layers the IR
    layout does without: a stride-2 shortcut (a 1x1 max-pool there, a 1x1 convolution and
    BatchNorm here), the BatchNorm between a block's convolutions (TreB1eN's) and the scale
    and shift of the output BatchNorms (AdaFace's have none)."""
    leaf = key.rpartition(".")[2]
    if leaf == "weight" and like.dim() == 4:  # 1x1 convolution passing channel c to c
        square = like.shape[0] == like.shape[1] and like.shape[2:] == (1, 1)
        return torch.eye(like.shape[0], dtype=like.dtype).view_as(like) if square else None
    if leaf in ("weight", "running_var"):
        one = 1 - BN_EPS if leaf == "running_var" else 1.0  # (x - 0) / sqrt(1 - eps + eps)
        return torch.full_like(like, one)
    if leaf in ("bias", "running_mean"):
        return torch.zeros_like(like)
    return None


def _lacked(key: str) -> bool:
    """Whether ``key`` is in a layer the IR layout may do without (see :func:`_identity`)."""
    return key.startswith(("bn2.", "features.")) or _LACKED_IN_BLOCK.search(key) is not None


def treb1en_ir(state: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The IR and IR-SE networks of TreB1eN's InsightFace_Pytorch
    (https://github.com/TreB1eN/InsightFace_Pytorch, ``model.py``), a layout AdaFace kept
    (https://github.com/mk-minchul/AdaFace, ``net.py``): ``input_layer``, ``body`` blocks
    of a ``shortcut_layer`` and a ``res_layer``, ``output_layer``; a PyTorch Lightning
    ``model.`` prefix and the ``head.`` classifier are dropped. The names become those of the
    IResNet (or SE-IResNet) of the same depth.

    Both compute BN-conv-(BN)-PReLU-conv(stride)-BN blocks, optionally followed by biasless
    squeeze-excitation, and a BN-dropout-FC-BN output. The first block's shortcut is a
    stride-2 1x1 max-pool where insightface has a projection, TreB1eN's blocks have no
    BatchNorm before PReLU and AdaFace's output BatchNorms no scale and shift: those are
    filled in as the identity, so the embeddings are the same function.
    """
    kept = {
        key.removeprefix(LIGHTNING_PREFIX): tensor
        for key, tensor in state.items()
        if not key.startswith(_CLASSIFIERS)
    }
    stages, layouts = _stage_lengths(target), _block_layouts(kept)
    renamed = {_ir_name(key, stages, layouts): tensor for key, tensor in kept.items()}
    for key, like in target.items():
        if key not in renamed and _lacked(key):
            value = _identity(key, like)
            if value is not None:
                renamed[key] = value
    return renamed


def _shows_ir_layout(state: Mapping[str, Tensor]) -> bool:
    return any(_IR_BODY.fullmatch(key.removeprefix(LIGHTNING_PREFIX)) for key in state)


#: adapter name (in a pretrained entry) -> (file state dict, backbone state dict) -> renamed
WEIGHT_ADAPTERS: Registry[dict[str, Tensor]] = Registry.of(
    "weights adapter", {"treb1en_ir": treb1en_ir}
)
#: adapter name -> whether a file's keys are in its layout (for weights given with --arch)
_RECOGNISERS = {"treb1en_ir": _shows_ir_layout}
#: adapter name -> what a user importing a file in its layout should know
_LAYOUT_NOTES = {
    "treb1en_ir": "the IR layout of TreB1eN's InsightFace_Pytorch and AdaFace, whose models "
    "were trained on BGR input (import with --color BGR)"
}


def recognised_adapter(state: Mapping[str, Tensor]) -> str | None:
    """The adapter whose layout ``state``'s keys show, if any."""
    return next((name for name, shows in _RECOGNISERS.items() if shows(state)), None)


def layout_note(state: Mapping[str, Tensor]) -> str | None:
    """What the layout ``state``'s keys show means for importing it (None: no known one)."""
    adapter = recognised_adapter(state)
    return None if adapter is None else _LAYOUT_NOTES[adapter]


def adapted(
    state: Mapping[str, Tensor], target: Mapping[str, Tensor], adapter: str | None = None
) -> dict[str, Tensor]:
    """``state`` renamed for ``target`` by ``adapter`` (a pretrained entry's), else by the
    adapter whose layout its keys show when ``target`` is an IResNet; unchanged otherwise."""
    if adapter is None and _stage_lengths(target):
        adapter = recognised_adapter(state)
    return dict(state) if adapter is None else WEIGHT_ADAPTERS.get(adapter)(state, target)
