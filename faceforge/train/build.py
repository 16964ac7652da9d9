"""Build everything a training run needs from its config: data, model, optimizer, schedule.

The flow reads as the folders do: data (reader -> dataset -> sampler -> loader) -> transforms
-> backbone -> head -> losses, wrapped as one :class:`TrainingModel` that DDP can wrap whole.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from faceforge.config import Config
from faceforge.core.precision import Precision, resolve_precision
from faceforge.core.preprocess import Preprocess
from faceforge.data.dataset import Batch, EpochSampler, FaceDataset, collate_faces
from faceforge.data.sources import build_reader
from faceforge.data.transforms import build_train_transform
from faceforge.errors import ConfigError
from faceforge.losses import CompositeLoss, build_loss
from faceforge.models import build_backbone
from faceforge.models.heads import Head, build_head
from faceforge.train.distributed import Distributed
from faceforge.train.optim import build_optimizer, build_scheduler
from faceforge.train.reporting import Reporter


class TrainingModel(nn.Module):
    """backbone -> head -> loss as one module: the unit DDP wraps (so head and center-loss
    gradients are reduced across ranks too) and the ``model_without_ddp`` checkpoints read.

    The backbone runs under the loop's autocast; the head and the losses in float32.
    """

    def __init__(
        self, backbone: nn.Module, head: Head, loss: CompositeLoss, precision: Precision
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.loss = loss
        self.precision = precision

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        with self.precision.autocast():
            embeddings = self.backbone(images)
        embeddings = embeddings.float()
        return self.loss(self.head(embeddings, labels), embeddings, labels)


@dataclass
class TrainingRun:
    """The parts of one run; ``model`` is what the step calls (DDP-wrapped when
    distributed), ``model_without_ddp`` what is saved and evaluated."""

    cfg: Config
    dist: Distributed
    device: torch.device
    preprocess: Preprocess
    dataset: FaceDataset
    sampler: EpochSampler
    model_without_ddp: TrainingModel
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    report: Reporter
    steps_per_epoch: int
    total_steps: int
    #: what gradient clipping covers: backbone and head, not the center-loss centers, whose
    #: update follows the paper's own rule and must not shrink the others' gradients
    clipped: list[nn.Parameter]

    @property
    def backbone(self) -> nn.Module:
        return self.model_without_ddp.backbone

    def loader(self, epoch: int, start_sample: int = 0) -> DataLoader:
        """The batches of ``epoch``, skipping this rank's first ``start_sample`` samples
        (exact mid-epoch resume)."""
        self.dataset.set_epoch(epoch)
        self.sampler.set_epoch(epoch, start_sample)
        workers = self.cfg.data.num_workers
        return DataLoader(
            self.dataset,
            batch_size=self.cfg.train.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate_faces,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers else None,
        )

    @functools.cached_property
    def _affine(self) -> tuple[Tensor, Tensor]:
        return self.preprocess.affine(self.device)

    def inputs(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """uint8 images -> normalised floats on the device (cheap there, even on GPU)."""
        scale, shift = self._affine
        x = batch.images.to(self.device, non_blocking=True).float().mul_(scale).sub_(shift)
        if self.cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, batch.labels.to(self.device, non_blocking=True)


def build_dataset(cfg: Config, dist: Distributed) -> tuple[FaceDataset, EpochSampler]:
    """Reader -> augmentations -> dataset, and this rank's share of each epoch."""
    dataset = FaceDataset(
        build_reader(cfg.data),
        build_train_transform(cfg.augment),
        image_size=cfg.data.image_size,
        seed=cfg.train.seed,
        skip_corrupt=cfg.data.skip_corrupt,
    )
    sampler = EpochSampler(len(dataset), cfg.train.seed, dist.rank, dist.world_size)
    return dataset, sampler


def build_model(
    cfg: Config, num_classes: int, device: torch.device, precision: Precision
) -> TrainingModel:
    """Backbone, head and losses on ``device`` (channels-last / compiled as configured)."""
    emb = cfg.model.embedding_size
    backbone = build_backbone(cfg.model.backbone, embedding_size=emb, dropout=cfg.model.dropout)
    backbone = backbone.to(device)
    if cfg.train.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    if cfg.train.compile:
        backbone.compile()
    head = build_head(cfg.head, emb, num_classes).to(device)
    loss = build_loss(cfg.loss, emb, num_classes).to(device)
    return TrainingModel(backbone, head, loss, precision)


def build_run(cfg: Config, dist: Distributed, log: Callable[[str], None] = print) -> TrainingRun:
    """Every part of a run, on this process's device. Seed the global RNG before calling
    (weights are initialised from it)."""
    device = dist.device(cfg.train.device)
    dist.setup(device)
    precision = resolve_precision(cfg.train.amp, device)
    dataset, sampler = build_dataset(cfg, dist)
    steps_per_epoch = len(sampler) // cfg.train.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} exceeds the dataset size "
            f"({len(dataset)} images over {dist.world_size} process(es))"
        )
    total_steps = cfg.train.max_steps or cfg.train.epochs * steps_per_epoch
    model = build_model(cfg, dataset.reader.num_classes, device, precision)
    optimizer = build_optimizer(cfg.optim, [model.backbone, model.head], model.loss.param_groups())
    own = {id(p) for p in model.loss.parameters()}
    clipped = [p for g in optimizer.param_groups for p in g["params"] if id(p) not in own]
    return TrainingRun(
        cfg=cfg,
        dist=dist,
        device=device,
        preprocess=Preprocess(input_size=(cfg.data.image_size, cfg.data.image_size)),
        dataset=dataset,
        sampler=sampler,
        model_without_ddp=model,
        model=dist.wrap(model, device),
        optimizer=optimizer,
        scheduler=build_scheduler(cfg.optim, optimizer, total_steps),
        scaler=precision.grad_scaler(),
        report=Reporter(cfg, enabled=dist.is_main, log=log),
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        clipped=clipped,
    )
