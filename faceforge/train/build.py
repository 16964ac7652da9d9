"""Build everything a training run needs from its config: data, model, optimizer, schedule.

The flow reads as the folders do: data (reader -> dataset -> sampler -> loader) -> transforms
-> backbone -> head -> losses, wrapped as one :class:`TrainingModel` that DDP can wrap whole.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.utils.data import Sampler

from faceforge.config import Config, DataConfig
from faceforge.core.checkpoint import Checkpoint
from faceforge.core.foreign_weights import load_exactly
from faceforge.core.precision import Precision, resolve_precision
from faceforge.core.preprocess import Preprocess
from faceforge.data.dataset import Batch, FaceDataset
from faceforge.data.loader import build_loader
from faceforge.data.readers import list_files_in
from faceforge.data.recordio.dali import DaliBatches
from faceforge.data.samplers import SAMPLERS
from faceforge.data.sources import build_reader
from faceforge.data.transforms import build_train_transform
from faceforge.errors import ConfigError
from faceforge.losses import CompositeLoss, build_loss
from faceforge.models import build_backbone
from faceforge.models.heads import MarginHead, NoHead, PartialFC, build_head, build_margin
from faceforge.train.distributed import Distributed
from faceforge.train.optim import build_optimizer, build_scheduler
from faceforge.train.reporting import Reporter


class Criterion(nn.Module):
    """Head -> losses: embeddings and labels in, the training loss and its parts out.

    With a sharded head (Partial FC) the head itself returns the cross-entropy over all
    classes of all processes; otherwise it returns logits for the composite loss, plus the
    margin's regulariser (MagFace); ``head.type: none`` trains on embedding losses alone.
    """

    def __init__(self, head: nn.Module, loss: CompositeLoss, sharded: bool = False) -> None:
        super().__init__()
        self.head = head
        self.loss = loss
        self.sharded = sharded

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if self.sharded:
            return self.loss.combine(self.head(embeddings, labels), embeddings, labels)
        if isinstance(self.head, NoHead):
            return self.loss(None, embeddings, labels)
        logits = self.head(embeddings, labels)
        return self.loss(logits, embeddings, labels, self._regularizer(embeddings))

    def _regularizer(self, embeddings: Tensor) -> dict[str, Tensor]:
        """The head's own loss term, by its name (MagFace's ``g``), if it has one."""
        term = self.head.regularizer(embeddings) if isinstance(self.head, MarginHead) else None
        return {} if term is None else {"regularizer": term}


class TrainingModel(nn.Module):
    """backbone -> criterion: the ``model_without_ddp`` that checkpoints read.

    Under torchrun the backbone and a replicated criterion are each wrapped in DDP (their
    gradients averaged across processes); a sharded Partial FC head stays unwrapped, since
    every process holds other classes, and its global-batch loss makes the backbone's
    gradients a sum over processes instead. The backbone runs under the loop's autocast,
    the criterion in float32.
    """

    def __init__(self, backbone: nn.Module, criterion: Criterion, precision: Precision) -> None:
        super().__init__()
        self.backbone = backbone
        self.criterion = criterion
        self.precision = precision
        #: what forward calls (the DDP wrappers when distributed); a plain dict, so the
        #: wrappers are not registered as submodules (no duplicate state-dict entries)
        self.parallel: dict[str, nn.Module] = {"backbone": backbone, "criterion": criterion}

    @property
    def head(self) -> nn.Module:
        return self.criterion.head

    @property
    def loss(self) -> CompositeLoss:
        return self.criterion.loss

    def distribute(self, dist: Distributed, device: torch.device) -> None:
        """Wrap the parts in DDP when running with more than one process."""
        sharded = self.criterion.sharded
        self.parallel["backbone"] = dist.wrap(self.backbone, device, sum_gradients=sharded)
        trained = any(p.requires_grad for p in self.criterion.parameters())
        if not sharded and trained:  # head.type=none with a triplet loss has no parameters
            self.parallel["criterion"] = dist.wrap(self.criterion, device)

    def no_sync(self) -> contextlib.AbstractContextManager:
        """Skip the gradient all-reduce (all but the last batch of an accumulated step)."""
        stack = contextlib.ExitStack()
        for part in self.parallel.values():
            if isinstance(part, nn.parallel.DistributedDataParallel):
                stack.enter_context(part.no_sync())
        return stack

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        with self.precision.autocast():
            embeddings = self.parallel["backbone"](images)
        return self.parallel["criterion"](embeddings.float(), labels)


@dataclass
class TrainingRun:
    """The parts of one run. ``model`` holds the unwrapped parts (``model_without_ddp`` in
    the torchvision references: what is saved and evaluated) and calls their DDP wrappers
    when distributed."""

    cfg: Config
    dist: Distributed
    device: torch.device
    preprocess: Preprocess
    dataset: FaceDataset
    sampler: Sampler[int]
    model: TrainingModel
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
    def model_without_ddp(self) -> TrainingModel:
        return self.model

    @property
    def backbone(self) -> nn.Module:
        return self.model.backbone

    def describe(self) -> str:
        """One line saying what this run trains, on what, how long, where and in which
        precision (what ``auto`` resolved to on this machine)."""
        cfg, data = self.cfg, self.cfg.data
        source = f"{data.source} {data.path}".strip()
        global_batch = cfg.train.batch_size * cfg.train.accumulate * self.dist.world_size
        processes = f" x {self.dist.world_size} processes" if self.dist.world_size > 1 else ""
        steps = f"{self.total_steps} step{'s' if self.total_steps != 1 else ''}"
        layout = ", channels-last" if cfg.train.channels_last else ""
        return (
            f"training {cfg.model.backbone} + {cfg.head.type} on {len(self.dataset)} images "
            f"of {self.dataset.reader.num_classes} identities ({source}): {steps} of "
            f"{global_batch} images ({self.total_steps / self.steps_per_epoch:.1f} epochs), "
            f"{self.model.precision.name} (train.amp={cfg.train.amp}){layout} on "
            f"{self.device}{processes}, into {cfg.train.output_dir}"
        )

    def loader(self, epoch: int, start_sample: int = 0) -> Iterable[Batch]:
        """The batches of ``epoch``, skipping this rank's first ``start_sample`` samples
        (exact mid-epoch resume)."""
        self.dataset.set_epoch(epoch)
        self.sampler.set_epoch(epoch, start_sample)
        return self._batches

    @functools.cached_property
    def _batches(self) -> Iterable[Batch]:
        """One loader for the whole run (its workers may persist across epochs). With
        ``data.dali`` every process uses DALI or none does: where one process falls back to
        the CPU loader (no DALI there), the others do too, so all draw the same data."""
        data = self.cfg.data
        build = functools.partial(
            build_loader,
            self.dataset,
            self.sampler,
            self.cfg.train.batch_size,
            data.num_workers,
            self.device,
            persistent_workers=data.persistent_workers,
        )
        batches = build(dali=data.dali)
        if data.dali:
            fell_back = not isinstance(batches, DaliBatches)
            if self.dist.agree([int(fell_back)], "every process's DALI check")[0] and not fell_back:
                batches = build(dali=False)
        return batches

    def inputs(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """uint8 images -> model input on the device, as the preprocessing contract says
        (cheap there, even on GPU)."""
        x = self.preprocess.apply(batch.images.to(self.device, non_blocking=True))
        if self.cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, batch.labels.to(self.device, non_blocking=True)


def _data_path_hint(data: DataConfig) -> str:
    """What to check when the data holds one identity: a list file beside the images (an
    arcface_paddle folder read as an image folder) is named with the options that read it."""
    lists = list_files_in(data.path) if data.source == "folder" else []
    if not lists:
        return "check data.path"
    return f"{lists[0]} is a 'path label' list: data.source=list data.path={lists[0]}"


def build_dataset(cfg: Config, dist: Distributed) -> tuple[FaceDataset, Sampler[int]]:
    """Reader -> augmentations -> dataset, and this rank's share of each epoch (the sampler
    named by ``data.sampler``)."""
    reader = build_reader(cfg.data)
    if reader.num_classes < 2:
        raise ConfigError(
            f"the training data has {reader.num_classes} identity: a classifier needs at least "
            f"two ({_data_path_hint(cfg.data)})"
        )
    dataset = FaceDataset(
        reader,
        build_train_transform(cfg.augment),
        input_size=cfg.data.input_size,
        seed=cfg.train.seed,
        skip_corrupt=cfg.data.skip_corrupt,
    )
    if cfg.data.sampler == "pk" and cfg.train.batch_size % cfg.data.pk_images:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} must be a multiple of "
            f"data.pk_images={cfg.data.pk_images} with data.sampler=pk"
        )
    sampler = SAMPLERS.get(cfg.data.sampler, "data.sampler")(
        dataset.reader.labels, cfg.data.pk_images, cfg.train.seed, dist.rank, dist.world_size
    )
    return dataset, sampler


def build_backbone_for(cfg: Config, device: torch.device, dist: Distributed) -> nn.Module:
    """The configured backbone on ``device``: SyncBatchNorm, gradient checkpointing,
    channels-last and torch.compile as asked."""
    model = cfg.model
    backbone = build_backbone(
        model.backbone,
        embedding_size=model.embedding_size,
        dropout=model.dropout,
        input_size=cfg.data.input_size,
    )
    if model.init_from:
        _load_initial_backbone(backbone, cfg)
    if model.grad_checkpointing:
        if not hasattr(backbone, "set_grad_checkpointing"):
            raise ConfigError(
                f"model.grad_checkpointing is not supported by {model.backbone}; "
                "use an iresnet, resnet or sphereface backbone or turn it off"
            )
        backbone.set_grad_checkpointing()
    if cfg.train.sync_bn and dist.enabled and device.type == "cuda":
        backbone = nn.SyncBatchNorm.convert_sync_batchnorm(backbone)
    backbone = backbone.to(device)
    if cfg.train.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    if cfg.train.compile:
        backbone.compile()
    return backbone


def _load_initial_backbone(backbone: nn.Module, cfg: Config) -> None:
    """Fine-tuning: start from the backbone of ``model.init_from`` (strict, same architecture);
    its head, optimizer and step are left behind."""
    ckpt = Checkpoint.load(cfg.model.init_from, parts=("backbone",))
    saved = ckpt.config.model
    for name in ("backbone", "embedding_size"):
        if getattr(saved, name) != getattr(cfg.model, name):
            raise ConfigError(
                f"model.init_from={cfg.model.init_from!r} holds model.{name}="
                f"{getattr(saved, name)!r}, the config says {getattr(cfg.model, name)!r}"
            )
    load_exactly(backbone, ckpt.backbone, f"model.init_from={cfg.model.init_from!r}")


def build_criterion(cfg: Config, num_classes: int, dist: Distributed) -> Criterion:
    """The head (full, or sharded over the processes with Partial FC) and the losses."""
    emb = cfg.model.embedding_size
    loss = build_loss(cfg.loss, emb, num_classes)
    if cfg.head.type == "none" and loss.triplet is None:
        raise ConfigError("head.type=none trains on embedding losses: set loss.triplet_weight > 0")
    if not cfg.head.partial_fc:
        # the sub-centre head counts forward passes: train.accumulate of them per step
        drop_step = cfg.head.subcenter_drop_step * cfg.train.accumulate
        head_cfg = replace(cfg.head, subcenter_drop_step=drop_step)
        return Criterion(build_head(head_cfg, emb, num_classes), loss)
    head = PartialFC(
        build_margin(cfg.head), emb, num_classes, cfg.head.sample_rate, dist.rank, dist.world_size
    )
    return Criterion(head, loss, sharded=True)


def build_model(
    cfg: Config, num_classes: int, device: torch.device, dist: Distributed, precision: Precision
) -> TrainingModel:
    """Backbone, head and losses on ``device``, wrapped for DDP when distributed."""
    backbone = build_backbone_for(cfg, device, dist)
    model = TrainingModel(backbone, build_criterion(cfg, num_classes, dist).to(device), precision)
    model.distribute(dist, device)
    return model


def build_run(cfg: Config, dist: Distributed, log: Callable[[str], None] = print) -> TrainingRun:
    """Every part of a run, on this process's device. Seed the global RNG before calling
    (weights are initialised from it)."""
    device = dist.device(cfg.train.device)
    dist.setup(device, cfg.train.collective_timeout_minutes)
    precision = resolve_precision(cfg.train.amp, device)
    dataset, sampler = build_dataset(cfg, dist)
    images_per_step = cfg.train.batch_size * cfg.train.accumulate
    steps_per_epoch = len(sampler) // images_per_step
    if steps_per_epoch == 0:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} x train.accumulate="
            f"{cfg.train.accumulate} exceeds the dataset size ({len(dataset)} images over "
            f"{dist.world_size} process(es))"
        )
    total_steps = cfg.train.max_steps or cfg.train.epochs * steps_per_epoch
    model = build_model(cfg, dataset.reader.num_classes, device, dist, precision)
    optimizer = build_optimizer(cfg.optim, [model.backbone, model.head], model.loss.param_groups())
    own = {id(p) for p in model.loss.parameters()}
    clipped = [p for g in optimizer.param_groups for p in g["params"] if id(p) not in own]
    return TrainingRun(
        cfg=cfg,
        dist=dist,
        device=device,
        preprocess=Preprocess(input_size=cfg.data.input_size),
        dataset=dataset,
        sampler=sampler,
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(cfg.optim, optimizer, total_steps),
        scaler=precision.grad_scaler(),
        report=Reporter(cfg, enabled=dist.is_main, log=log),
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        clipped=clipped,
    )
