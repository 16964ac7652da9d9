"""One way to name and load a model: a faceforge checkpoint, a weights file with its
architecture, a pretrained entry's published file, or an ONNX file.

Every command (``eval`` and its tasks, ``verify``, ``enroll``, ``search``,
``export``, ``import``) and :func:`~faceforge.core.embedder.load_embedder` take a
:class:`ModelSource`, so a model named one way works everywhere. :func:`load_model` is the
only path from a file to a PyTorch backbone; :func:`create_model` is its short form for
Python users, and :func:`import_weights` saves what it loaded as a checkpoint that needs
no options afterwards.

>>> source = ModelSource("backbone.pth", arch="iresnet50")  # doctest: +SKIP
>>> load_model(source).backbone  # doctest: +SKIP
IResNet(...)
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from faceforge.config import Config, DataConfig, ModelConfig
from faceforge.core.checkpoint import DEPLOY_PARTS, Checkpoint, content_hash
from faceforge.core.foreign_weights import (
    apply_key_map,
    load_exactly,
    match_state_dict,
    read_key_map,
    read_state_dict,
)
from faceforge.core.preprocess import Preprocess
from faceforge.core.pretrained import PRETRAINED, pretrained_weights, verify_file
from faceforge.core.weight_adapters import adapted
from faceforge.data.file_kinds import misplaced_hint
from faceforge.errors import CheckpointError
from faceforge.models import build_backbone


@dataclass(frozen=True)
class ModelSource:
    """A model file and what is needed to read it.

    ``arch`` (with ``embedding_size`` and ``preprocess``, insightface's RGB ``(x - 127.5) /
    127.5`` ArcFace 112x112 by default) marks a weights file of another project;
    ``pretrained`` names a :mod:`~faceforge.core.pretrained` entry that brings all three;
    ``key_map`` is a :func:`~faceforge.core.foreign_weights.read_key_map` file for keys that
    cannot be matched otherwise. Checkpoints and ONNX files carry their own contract.
    """

    path: Path
    arch: str | None = None
    embedding_size: int = 512
    preprocess: Preprocess = field(default_factory=Preprocess)
    pretrained: str | None = None
    key_map: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.pretrained is not None and self.arch is not None:
            raise CheckpointError(
                f"{self.path}: a pretrained entry names its architecture and contract; "
                "give either the pretrained name or the architecture, not both"
            )

    @property
    def kind(self) -> str:
        """``onnx`` (by suffix), ``pretrained``, ``weights`` (with ``arch``) or
        ``checkpoint``."""
        if self.path.suffix.lower() == ".onnx":
            return "onnx"
        if self.pretrained is not None:
            return "pretrained"
        return "checkpoint" if self.arch is None else "weights"


def as_source(source: str | Path | ModelSource, **options: Any) -> ModelSource:
    """``source`` as a :class:`ModelSource` (``options`` are its fields for a plain path)."""
    if isinstance(source, ModelSource):
        return source
    return ModelSource(Path(source), **{k: v for k, v in options.items() if v is not None})


def state_dict_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """Short content hash of parameter names, shapes and values: equal weights, equal
    fingerprint (so a gallery can tell which model produced its embeddings)."""
    return content_hash(state)[:16]


@dataclass
class LoadedModel:
    """A PyTorch backbone in eval mode with its input contract and provenance."""

    backbone: nn.Module = field(repr=False)
    preprocess: Preprocess
    #: the checkpoint's config; for other weights, one naming their architecture and size
    config: Config = field(repr=False)
    #: e.g. "iresnet50 from backbone.pth"
    name: str
    #: evaluation results stored at save time, e.g. {"lfw": {"accuracy": ..}}
    metrics: dict[str, Any] = field(default_factory=dict, repr=False)
    #: the embedding size the source declares (None for an in-memory backbone)
    embedding_size: int | None = None

    @property
    def arch(self) -> str:
        return self.config.model.backbone

    @functools.cached_property
    def fingerprint(self) -> str:
        return state_dict_fingerprint(self.backbone.state_dict())


def weights_config(arch: str, embedding_size: int, preprocess: Preprocess) -> Config:
    """The config a checkpoint of external weights records: architecture, size, input."""
    height, width = preprocess.input_size
    return Config(
        data=dataclasses.replace(DataConfig(), image_size=height, image_width=width),
        model=dataclasses.replace(ModelConfig(), backbone=arch, embedding_size=embedding_size),
    )


def load_model(source: str | Path | ModelSource) -> LoadedModel:
    """The PyTorch backbone ``source`` names, in eval mode, with its contract (an ONNX file
    has none: use :func:`~faceforge.core.embedder.load_embedder`). A file that is no model
    (a pairs file, a ``.bin``) is named as what it is in the error."""
    source = as_source(source)
    try:
        return _loaded(source)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}{misplaced_hint(source.path, '--checkpoint')}") from None


def _loaded(source: ModelSource) -> LoadedModel:
    if source.kind == "onnx":
        raise CheckpointError(f"{source.path}: an ONNX model has no PyTorch backbone")
    if source.kind == "checkpoint":
        return _from_checkpoint(source.path)
    if source.kind == "pretrained":
        entry = pretrained_weights(source.pretrained)
        verify_file(entry, source.path)
        config = weights_config(entry.arch, entry.embedding_size, entry.preprocess)
        adapter, drop, contract = entry.adapter, entry.drop, entry.preprocess
    else:
        source.preprocess.check(str(source.path))
        config = weights_config(source.arch, source.embedding_size, source.preprocess)
        adapter, drop, contract = None, (), source.preprocess
    backbone = _build(config.model, contract.input_size)
    state = read_state_dict(source.path)
    if source.key_map is not None:
        state = apply_key_map(state, read_key_map(source.key_map))
    target = backbone.state_dict()
    state = adapted(state, target, adapter)
    size = "x".join(map(str, contract.input_size))
    what = f"{source.path} as {config.model.backbone} at {size} ({config.model.embedding_size}-d)"
    backbone.load_state_dict(match_state_dict(state, target, what, drop=drop), strict=True)
    name = f"{source.pretrained or config.model.backbone} from {source.path.name}"
    return LoadedModel(backbone.eval(), contract, config, name, {}, config.model.embedding_size)


def _build(model: ModelConfig, input_size: tuple[int, int]) -> nn.Module:
    """The backbone ``model`` describes, built for ``input_size``."""
    return build_backbone(
        model.backbone,
        embedding_size=model.embedding_size,
        dropout=model.dropout,
        input_size=tuple(input_size),
    )


def _from_checkpoint(path: Path) -> LoadedModel:
    """A checkpoint's backbone, built for its preprocessing's input size."""
    ckpt = Checkpoint.load(path, parts=DEPLOY_PARTS)
    ckpt.preprocess.check(str(path))
    arch = ckpt.config.model.backbone
    backbone = _build(ckpt.config.model, ckpt.preprocess.input_size)
    size = "x".join(map(str, ckpt.preprocess.input_size))
    where = (
        f"{str(path)!r}: {arch} at its declared input size {size} (if only shapes differ, the "
        "model does not accept that input size)"
    )
    load_exactly(backbone, ckpt.backbone, where)
    name = f"{arch} from {path.name}"
    metrics, size = dict(ckpt.metrics), ckpt.config.model.embedding_size
    return LoadedModel(backbone.eval(), ckpt.preprocess, ckpt.config, name, metrics, size)


def import_weights(source: ModelSource, output: str | Path) -> LoadedModel:
    """Load external weights (``--arch`` or ``--pretrained``) and save them with their
    contract as a faceforge checkpoint, which then loads everywhere without options."""
    if source.kind not in ("weights", "pretrained"):
        raise CheckpointError(
            f"{source.path}: importing needs the architecture (--arch) or a pretrained name"
        )
    model = load_model(source)
    state = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
    Checkpoint(config=model.config, backbone=state, preprocess=model.preprocess).save(output)
    return model


def create_model(
    name: str,
    weights: str | Path | None = None,
    *,
    embedding_size: int = 512,
    input_size: tuple[int, int] = (112, 112),
    dropout: float = 0.0,
    key_map: str | Path | None = None,
) -> nn.Module:
    """A face embedding backbone by name: a :func:`~faceforge.models.backbone_names`
    architecture or a :data:`~faceforge.core.pretrained.PRETRAINED` entry.

    Without ``weights`` an architecture is randomly initialised (as
    :func:`~faceforge.models.build_backbone`). With ``weights``, the file is read safely and
    its keys matched to the architecture (any usual container, foreign key names in the same
    order, the IR layout of TreB1eN and AdaFace, ``key_map`` for the rest); a pretrained name
    needs the entry's published file, whose hash is checked, and fixes the sizes itself
    (``dropout`` applies to a fresh model). The model maps float (N, 3, H, W)
    input prepared as its contract says (:meth:`~faceforge.core.preprocess.Preprocess.apply`;
    :func:`load_model` returns the contract too) to raw (N, D) embeddings; it is returned in
    eval mode when weights were loaded.

    >>> import torch
    >>> model = create_model("mobilefacenet", embedding_size=128).eval()
    >>> model(torch.zeros(2, 3, 112, 112)).shape
    torch.Size([2, 128])
    """
    if name in PRETRAINED:
        if weights is None:
            entry = pretrained_weights(name)
            raise CheckpointError(
                f"faceforge downloads nothing: get {entry.file} from {entry.source} and pass "
                f"it as weights=PATH"
            )
        return load_model(ModelSource(Path(weights), pretrained=name)).backbone
    if weights is None:
        return build_backbone(
            name, embedding_size=embedding_size, dropout=dropout, input_size=tuple(input_size)
        )
    contract = Preprocess(input_size=tuple(input_size))
    key_file = None if key_map is None else Path(key_map)
    source = ModelSource(Path(weights), name, embedding_size, contract, key_map=key_file)
    return load_model(source).backbone
