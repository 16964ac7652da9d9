"""The training loop: data -> backbone -> head -> losses, with evaluation and checkpoints.

Split as in the torchvision references: :meth:`Trainer.train_step` (one batch),
:meth:`Trainer.evaluate` (verification sets), :meth:`Trainer.fit` (the run: schedule,
logging, checkpoints, resume). Mixed precision lives here, never inside the models.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from faceforge.config import Config, config_to_dict, save_config
from faceforge.core.checkpoint import load_checkpoint, save_checkpoint
from faceforge.core.precision import resolve_precision
from faceforge.core.preprocess import Preprocess
from faceforge.data.dataset import Batch, EpochSampler, FaceDataset, collate_faces
from faceforge.data.sources import build_reader
from faceforge.data.transforms import build_train_transform
from faceforge.data.verification_set import VerificationSet
from faceforge.device import resolve_device
from faceforge.errors import CheckpointError, ConfigError, TrainingError
from faceforge.evaluation.run import evaluate_model
from faceforge.evaluation.verification import VerificationResult
from faceforge.losses import build_loss
from faceforge.models import build_backbone
from faceforge.models.heads import build_head
from faceforge.train.optim import build_optimizer, build_scheduler
from faceforge.train.tensorboard import ScalarLogger


@dataclass
class TrainSummary:
    """What a finished run reports."""

    steps: int
    images_per_second: float
    wall_seconds: float
    final_loss: float
    #: the last evaluation per set
    results: dict[str, VerificationResult] = field(default_factory=dict)
    best_accuracy: float | None = None
    skipped_images: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def result_metrics(result: VerificationResult) -> dict[str, Any]:
    """The part of an evaluation stored in checkpoints (used later to pick thresholds)."""
    return result.to_dict(include_roc=False)


class Trainer:
    """Owns the model, head, losses, optimizer and schedule of one run.

    ``verification_sets`` are evaluated every ``eval.every`` steps and at the end; the
    first set's accuracy selects ``best.pt``. ``log`` receives one-line messages.
    """

    def __init__(
        self,
        cfg: Config,
        verification_sets: Sequence[VerificationSet] = (),
        log: Callable[[str], None] = print,
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.verification_sets = list(verification_sets)
        self.device = resolve_device(cfg.train.device)
        self.precision = resolve_precision(cfg.train.amp, self.device)
        self.preprocess = Preprocess(input_size=(cfg.data.image_size, cfg.data.image_size))
        self._scale, self._shift = self.preprocess.affine(self.device)
        self.output_dir = Path(cfg.train.output_dir)
        torch.manual_seed(cfg.train.seed)

        reader = build_reader(cfg.data)
        self.dataset = FaceDataset(
            reader,
            build_train_transform(cfg.augment),
            image_size=cfg.data.image_size,
            seed=cfg.train.seed,
            skip_corrupt=cfg.data.skip_corrupt,
        )
        self.sampler = EpochSampler(len(self.dataset), seed=cfg.train.seed)
        self.steps_per_epoch = len(self.sampler) // cfg.train.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"train.batch_size={cfg.train.batch_size} exceeds the dataset size "
                f"({len(self.dataset)} images)"
            )
        self.total_steps = cfg.train.max_steps or cfg.train.epochs * self.steps_per_epoch

        emb = cfg.model.embedding_size
        self.backbone = build_backbone(
            cfg.model.backbone, embedding_size=emb, dropout=cfg.model.dropout
        ).to(self.device)
        if cfg.train.channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        #: what the training step calls: the backbone itself or its compiled graph
        self.forward = torch.compile(self.backbone) if cfg.train.compile else self.backbone
        self.head = build_head(cfg.head, emb, reader.num_classes).to(self.device)
        self.loss = build_loss(cfg.loss, emb, reader.num_classes).to(self.device)
        self.optimizer = build_optimizer(
            cfg.optim, [self.backbone, self.head], self.loss.param_groups()
        )
        self.scheduler = build_scheduler(cfg.optim, self.optimizer, self.total_steps)
        self.scaler = self.precision.grad_scaler()
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.best_accuracy: float | None = None
        self.metrics: dict[str, Any] = {}
        #: time spent evaluating, excluded from the training images/s
        self.eval_seconds = 0.0

    # -- one batch ---------------------------------------------------------------------

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> float in [-1, 1] on the device (cheap there, even on GPU)."""
        x = images.to(self.device, non_blocking=True).float().mul_(self._scale).sub_(self._shift)
        if self.cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train_step(self, batch: Batch) -> dict[str, float]:
        """Forward, guard against a non-finite loss, backward, clip, step; returns the parts."""
        x = self._normalize(batch.images)
        labels = batch.labels.to(self.device, non_blocking=True)
        with self.precision.autocast():
            embeddings = self.forward(x)
        logits = self.head(embeddings.float(), labels)
        loss, parts = self.loss(logits, embeddings.float(), labels)
        if not torch.isfinite(loss):
            last = self.output_dir / "last.pt"
            kept = (
                f"the last good checkpoint {last} is intact"
                if last.exists()
                else "no checkpoint was written yet"
            )
            raise TrainingError(
                f"loss became {loss.item()} at step {self.step}; {kept}. Lower optim.lr, "
                "raise optim.warmup_steps or keep optim.grad_clip > 0, then resume."
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return {"loss": float(loss.item()), **parts}

    # -- evaluation --------------------------------------------------------------------

    def evaluate(self, flip: bool | None = None) -> dict[str, VerificationResult]:
        """Verification accuracy of the current backbone on every configured set
        (``flip`` overrides ``eval.flip``)."""
        flip = self.cfg.eval.flip if flip is None else flip
        results = {}
        was_training = self.backbone.training
        for vset in self.verification_sets:
            results[vset.name] = evaluate_model(
                self.backbone,
                vset,
                preprocess=self.preprocess,
                batch_size=self.cfg.eval.batch_size,
                flip=flip,
                device=self.device,
            )
        self.backbone.train(was_training)
        return results

    # -- checkpoints -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly, and to rebuild the backbone alone."""
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "backbone": self.backbone.state_dict(),
            "head": self.head.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "rng": rng,
            "config": config_to_dict(self.cfg),
            "preprocess": self.preprocess.to_dict(),
            "metrics": self.metrics,
            "best_accuracy": self.best_accuracy,
            "history": self.history,
        }

    def save(self, name: str) -> Path:
        path = self.output_dir / name
        save_checkpoint(path, self.state())
        return path

    def resume(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save`; training continues bit-exactly."""
        payload = load_checkpoint(path, map_location=self.device)
        saved = payload["config"]
        for section, key in (("model", "backbone"), ("model", "embedding_size")):
            if saved[section][key] != getattr(getattr(self.cfg, section), key):
                raise CheckpointError(
                    f"{path}: trained with {section}.{key}={saved[section][key]!r}, the config "
                    f"says {getattr(getattr(self.cfg, section), key)!r}"
                )
        try:
            self.backbone.load_state_dict(payload["backbone"])
            self.head.load_state_dict(payload["head"])
            self.loss.load_state_dict(payload["loss"])
            self.optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{path}: does not fit this run ({exc})") from None
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.step = int(payload["step"])
        torch.set_rng_state(payload["rng"]["torch"].cpu())
        if "cuda" in payload["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
        self.metrics = payload.get("metrics", {})
        self.best_accuracy = payload.get("best_accuracy")
        self.history = list(payload.get("history", []))
        self.log(f"resumed from {path} at step {self.step}/{self.total_steps}")

    # -- the run -----------------------------------------------------------------------

    def _loader(self, epoch: int, start_sample: int) -> DataLoader:
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

    def _record_evaluation(self, tb: ScalarLogger) -> dict[str, VerificationResult]:
        started = time.perf_counter()
        results = self.evaluate()
        self.eval_seconds += time.perf_counter() - started
        row: dict[str, float] = {"step": float(self.step)}
        for name, result in results.items():
            self.metrics[name] = result_metrics(result)
            row[f"{name}/accuracy"] = result.accuracy
            tb.scalars(f"val/{name}", {"accuracy": result.accuracy, "auc": result.auc}, self.step)
            self.log(
                f"step {self.step}: {name} accuracy {100 * result.accuracy:.2f} "
                f"+- {100 * result.accuracy_std:.2f} @ threshold {result.best_threshold:.2f}"
            )
        self.history.append(row)
        if results:
            first = next(iter(results.values())).accuracy
            if self.best_accuracy is None or first > self.best_accuracy:
                self.best_accuracy = first
                self.save("best.pt")
        return results

    def fit(self) -> TrainSummary:
        """Train to ``total_steps`` (continuing from :meth:`resume` if called), evaluating
        every ``eval.every`` steps and at the end; writes last.pt / best.pt atomically."""
        cfg = self.cfg.train
        self.output_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.output_dir / "config.yaml")
        tb = ScalarLogger(self.output_dir / "tensorboard" if cfg.tensorboard else None)
        batch = cfg.batch_size
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            unit="step",
            disable=not cfg.progress,
            dynamic_ncols=True,
        )
        self.backbone.train()
        started, window_start, window_images = time.perf_counter(), time.perf_counter(), 0
        trained_images = skipped = 0
        last: dict[str, float] = {"loss": math.nan}
        results: dict[str, VerificationResult] = {}
        try:
            while self.step < self.total_steps:
                epoch, offset = divmod(self.step, self.steps_per_epoch)
                for data in self._loader(epoch, offset * batch):
                    skipped += data.skipped
                    if len(data.labels) == 0:
                        continue
                    last = self.train_step(data)
                    trained_images += len(data.labels)
                    window_images += len(data.labels)
                    bar.update(1)
                    if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                        now = time.perf_counter()
                        speed = window_images / max(now - window_start, 1e-9)
                        window_start, window_images = now, 0
                        lr = self.optimizer.param_groups[0]["lr"]
                        bar.set_postfix(loss=f"{last['loss']:.3f}", img_s=f"{speed:.1f}")
                        tb.scalars("train", {**last, "lr": lr, "images_per_sec": speed}, self.step)
                        self.history.append(
                            {"step": float(self.step), "loss": last["loss"], "lr": lr}
                        )
                    evaluate_now = self.cfg.eval.every and self.step % self.cfg.eval.every == 0
                    if evaluate_now and self.step < self.total_steps:
                        results = self._record_evaluation(tb)
                    if cfg.save_every and self.step % cfg.save_every == 0:
                        self.save("last.pt")
                    if self.step >= self.total_steps:
                        break
        finally:
            bar.close()
        train_seconds = time.perf_counter() - started - self.eval_seconds
        if self.verification_sets:
            results = self._record_evaluation(tb)
        self.save("last.pt")
        tb.close()
        if skipped:
            self.log(f"skipped {skipped} unreadable images (data.skip_corrupt=true)")
        return TrainSummary(
            steps=self.step,
            images_per_second=trained_images / max(train_seconds, 1e-9),
            wall_seconds=time.perf_counter() - started,
            final_loss=last["loss"],
            results=results,
            best_accuracy=self.best_accuracy,
            skipped_images=skipped,
            history=self.history,
        )
