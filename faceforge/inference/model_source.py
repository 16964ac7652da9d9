"""One way to name a model: a faceforge checkpoint, an insightface ``backbone.pth`` with its
architecture, or an ONNX file.

Every command (``eval``, ``verify``, ``enroll``, ``search``, ``export``, ``identify``) and
:func:`~faceforge.inference.embedding.load_embedder` take a :class:`ModelSource`, so a model
named one way works everywhere. :func:`import_backbone` turns external weights plus their
preprocessing contract into a faceforge checkpoint that needs no ``--arch`` afterwards.

>>> source = ModelSource("backbone.pth", arch="iresnet50")  # doctest: +SKIP
>>> load_embedder(source).embed(aligned_faces).shape  # doctest: +SKIP
(2, 512)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from faceforge.config import Config, DataConfig, ModelConfig
from faceforge.core.checkpoint import Checkpoint
from faceforge.core.preprocess import Preprocess
from faceforge.core.safe_load import load_weights_only
from faceforge.errors import CheckpointError, first_line
from faceforge.inference.alignment import template_points
from faceforge.models import build_backbone

COLOR_ORDERS = ("RGB", "BGR")


def check_preprocess(preprocess: Preprocess, source: str) -> None:
    """Raise CheckpointError when ``preprocess`` cannot describe a usable model input."""
    if preprocess.color not in COLOR_ORDERS:
        raise CheckpointError(
            f"{source}: unknown colour order {preprocess.color!r}; expected one of {COLOR_ORDERS}"
        )
    if any(s <= 0 for s in preprocess.std):
        raise CheckpointError(f"{source}: preprocessing std must be positive, got {preprocess.std}")
    try:
        template_points(tuple(preprocess.input_size), preprocess.template)
    except ValueError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


@dataclass(frozen=True)
class ModelSource:
    """A model file and what is needed to read it.

    ``arch`` (and ``embedding_size``) mark an insightface ``backbone.pth``; ``preprocess``
    is its input contract (insightface's RGB, ``(x - 127.5) / 127.5``, ArcFace 112x112 by
    default). Checkpoints and ONNX files carry their own contract.
    """

    path: Path
    arch: str | None = None
    embedding_size: int = 512
    preprocess: Preprocess = field(default_factory=Preprocess)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def kind(self) -> str:
        """``onnx`` (by suffix), ``insightface`` (with ``arch``) or ``checkpoint``."""
        if self.path.suffix.lower() == ".onnx":
            return "onnx"
        return "checkpoint" if self.arch is None else "insightface"


@dataclass
class TorchModel:
    """A PyTorch backbone in eval mode with its contract and provenance."""

    backbone: nn.Module
    preprocess: Preprocess
    embedding_size: int
    #: architecture name in the backbone registry
    arch: str
    #: e.g. "iresnet50 from backbone.pth"
    name: str
    metrics: dict[str, Any] = field(default_factory=dict)
    #: the checkpoint's config (defaults for external weights)
    config: Config = field(default_factory=Config)


def as_source(source: str | Path | ModelSource, **options: Any) -> ModelSource:
    """``source`` as a :class:`ModelSource` (``options`` are its fields for a plain path)."""
    if isinstance(source, ModelSource):
        return source
    options = {k: v for k, v in options.items() if v is not None}
    return ModelSource(Path(source), **options)


def load_insightface_backbone(
    path: str | Path,
    arch: str,
    embedding_size: int = 512,
    input_size: tuple[int, int] = (112, 112),
) -> nn.Module:
    """An insightface ``backbone.pth`` (plain state dict) loaded strictly into ``arch``."""
    path = Path(path)
    state = load_weights_only(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors, as in a backbone.pth")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = build_backbone(arch, embedding_size=embedding_size, input_size=tuple(input_size))
    size = "x".join(map(str, input_size))
    _load_strict(
        model,
        state,
        f"{path}: weights do not fit --arch {arch} at {size} (embedding size {embedding_size})",
    )
    return model.eval()


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{what}: {first_line(exc)}") from None


def load_torch_model(source: str | Path | ModelSource) -> TorchModel:
    """The PyTorch backbone of a checkpoint or insightface source (ONNX has none)."""
    source = as_source(source)
    if source.kind == "onnx":
        raise CheckpointError(f"{source.path}: an ONNX model has no PyTorch backbone")
    if source.kind == "insightface":
        check_preprocess(source.preprocess, str(source.path))
        backbone = load_insightface_backbone(
            source.path, source.arch, source.embedding_size, source.preprocess.input_size
        )
        name = f"{source.arch} from {source.path.name}"
        return TorchModel(backbone, source.preprocess, source.embedding_size, source.arch, name)
    ckpt = Checkpoint.load(source.path)
    try:
        backbone = ckpt.build_backbone()
    except CheckpointError as exc:
        raise CheckpointError(f"{str(source.path)!r}: {exc}") from None
    model = ckpt.config.model
    name = f"{model.backbone} from {source.path.name}"
    return TorchModel(
        backbone,
        ckpt.preprocess,
        model.embedding_size,
        model.backbone,
        name,
        dict(ckpt.metrics),
        ckpt.config,
    )


def import_backbone(source: ModelSource, output: str | Path) -> Path:
    """Write external ``backbone.pth`` weights and their contract as a faceforge checkpoint.

    The checkpoint's config names the architecture, embedding size and input size, so it
    loads in every command without ``--arch``.
    """
    if source.kind != "insightface":
        raise CheckpointError(f"{source.path}: importing needs the architecture (--arch)")
    check_preprocess(source.preprocess, str(source.path))
    model = load_torch_model(source)
    height, width = source.preprocess.input_size
    config = Config(
        data=dataclasses.replace(DataConfig(), image_size=height, image_width=width),
        model=dataclasses.replace(
            ModelConfig(), backbone=source.arch, embedding_size=source.embedding_size
        ),
    )
    state = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
    Checkpoint(config=config, backbone=state, preprocess=source.preprocess).save(output)
    return Path(output)
