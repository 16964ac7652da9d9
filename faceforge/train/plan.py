"""How much memory each GPU of a run needs, planned on a CPU before renting the GPUs.

Per GPU: the backbone's weights, gradients and SGD momentum (fp32 under AMP too), its
activations for the per-GPU batch (measured: the bytes autograd saves during one forward
pass of two images at the run's precision, with gradient checkpointing as configured), the
classifier (each GPU holds ``classes / gpus`` centers with Partial FC, all of them without;
weights, gradients, momentum) and the logits of a step (the global batch against the
sampled centers, with their gradient and softmax buffers).

>>> cfg = load_recipe("ms1mv3_iresnet50_arcface_pfc")  # doctest: +SKIP
>>> plan_memory(cfg, gpus=8, classes=93431).total / 2**30  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from faceforge.config import Config
from faceforge.core.precision import PRECISIONS, Precision
from faceforge.models import build_backbone

FP32 = 4
#: copies of each trained parameter: weight, gradient, SGD momentum
PARAMETER_COPIES = 3
#: copies of each logit: the logits, their gradient and one softmax buffer
LOGIT_COPIES = 3
#: images whose forward pass is measured (per-sample bytes are the mean)
MEASURED_IMAGES = 2


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per GPU by component (see the module docstring)."""

    gpus: int
    batch_per_gpu: int
    classes_per_gpu: int
    backbone: int
    activations: int
    classifier: int
    logits: int

    @property
    def total(self) -> int:
        return self.backbone + self.activations + self.classifier + self.logits

    def rows(self) -> list[tuple[str, int]]:
        return [
            ("backbone weights + gradients + momentum", self.backbone),
            (f"activations ({self.batch_per_gpu} images)", self.activations),
            (f"classifier ({self.classes_per_gpu:,} centers) + gradients", self.classifier),
            ("logits of one step (+ gradient, softmax)", self.logits),
            ("total per GPU", self.total),
        ]


def activation_bytes_per_image(backbone: nn.Module, cfg: Config) -> float:
    """Bytes autograd keeps per image for the backward pass of ``backbone`` under ``cfg``'s
    precision and gradient checkpointing (measured on CPU)."""
    if cfg.model.grad_checkpointing:
        backbone.set_grad_checkpointing()
    size = cfg.data.image_size
    images = torch.randn(MEASURED_IMAGES, 3, size, size)
    return _saved_bytes(backbone.train(), images, gpu_like(cfg.train.amp)) / MEASURED_IMAGES


def gpu_like(amp: str) -> Precision:
    """A CPU precision whose activations take the bytes a GPU run at ``amp`` takes: 2 per
    value for auto, fp16 and bf16 (bf16 stands for fp16 here, natively computed or not:
    only its speed differs), 4 for fp32. What ``amp`` resolves to on this CPU is beside the
    point: ``auto`` is fp32 on a CPU without native bf16, but fp16 on every GPU."""
    PRECISIONS.get(amp, field="train.amp")  # a known name
    return Precision("cpu", None if amp == "fp32" else torch.bfloat16)


def _saved_bytes(model: nn.Module, images: torch.Tensor, precision: Precision) -> int:
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), precision.autocast():
        model(images)
    return sum(seen.values())


def plan_memory(cfg: Config, gpus: int, classes: int) -> MemoryPlan:
    """The per-GPU memory of training ``cfg`` on ``gpus`` GPUs with ``classes`` identities."""
    backbone = build_backbone(cfg.model.backbone, embedding_size=cfg.model.embedding_size)
    params = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
    batch = cfg.train.batch_size
    shard = math.ceil(classes / gpus) if cfg.head.partial_fc else classes
    sampled = math.ceil(shard * cfg.head.sample_rate) if cfg.head.partial_fc else classes
    logits_batch = batch * gpus if cfg.head.partial_fc else batch
    return MemoryPlan(
        gpus=gpus,
        batch_per_gpu=batch,
        classes_per_gpu=shard,
        backbone=params * FP32 * PARAMETER_COPIES,
        activations=round(activation_bytes_per_image(backbone, cfg) * batch),
        classifier=shard * cfg.model.embedding_size * FP32 * PARAMETER_COPIES,
        logits=logits_batch * sampled * FP32 * LOGIT_COPIES,
    )
