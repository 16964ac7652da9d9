"""One training step, one epoch and evaluation (the torchvision-references split).

These functions do the work and nothing else: logging, checkpoint writing and the schedule of
evaluations belong to :mod:`faceforge.train.main`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from faceforge.data.dataset import Batch
from faceforge.data.verification_set import VerificationSet
from faceforge.errors import FaceforgeError, TrainingError
from faceforge.evaluation.run import evaluate_model
from faceforge.evaluation.verification import VerificationResult
from faceforge.train.build import TrainingRun
from faceforge.train.state import TrainState


@dataclass
class Counts:
    """Images trained on, and the dataset indices of unreadable images skipped
    (``data.skip_corrupt``; a bad file counts once however many epochs meet it)."""

    images: int = 0
    skipped: set[int] = field(default_factory=set)


def train_step(run: TrainingRun, state: TrainState, batch: Batch) -> dict[str, Tensor]:
    """Forward, refuse a non-finite loss, backward, clip, step. Returns the loss and its
    parts as detached tensors (read them only when logging: reading syncs the device)."""
    images, labels = run.inputs(batch)
    loss, parts = run.model(images, labels)
    if not torch.isfinite(loss):  # checked before the update, so weights are never poisoned
        last = run.report.output_dir / "last.pt"
        kept = f"the last good checkpoint {last} is intact" if last.exists() else (
            "no checkpoint was written yet"
        )
        raise TrainingError(
            f"loss became {loss.item()} at step {state.step}; {kept}. Lower optim.lr, "
            "raise optim.warmup_steps or keep optim.grad_clip > 0, then resume."
        )
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.cfg.optim.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.clipped, run.cfg.optim.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    state.step += 1
    return {"loss": loss.detach(), **parts}


def train_one_epoch(
    run: TrainingRun, state: TrainState, epoch: int, counts: Counts
) -> Iterator[dict[str, Tensor]]:
    """Train through ``epoch`` from where ``state.step`` stands, yielding each step's losses;
    stops early at ``run.total_steps``."""
    offset = state.step - epoch * run.steps_per_epoch
    for batch in _worker_errors_unwrapped(run.loader(epoch, offset * run.cfg.train.batch_size)):
        counts.skipped.update(batch.skipped)
        if len(batch.labels) == 0:
            continue
        parts = train_step(run, state, batch)
        counts.images += len(batch.labels)
        yield parts
        if state.step >= run.total_steps:
            return


def _worker_errors_unwrapped(batches: Iterable[Batch]) -> Iterator[Batch]:
    """Batches as they come; a faceforge error raised in a loader worker process (which
    PyTorch re-raises with the worker's whole traceback as its message) is re-raised with
    the original one-line message."""
    try:
        yield from batches
    except FaceforgeError as exc:
        message = str(exc)
        if not message.startswith("Caught "):
            raise
        last = message.rstrip().splitlines()[-1]
        raise type(exc)(last.split(": ", 1)[-1]) from None


def evaluate(
    run: TrainingRun, sets: Sequence[VerificationSet], flip: bool | None = None
) -> dict[str, VerificationResult]:
    """Verification accuracy of the current backbone on every set (``flip`` overrides
    ``eval.flip``); the backbone's train/eval mode is left as it was."""
    flip = run.cfg.eval.flip if flip is None else flip
    return {
        vset.name: evaluate_model(
            run.backbone,
            vset,
            preprocess=run.preprocess,
            batch_size=run.cfg.eval.batch_size,
            flip=flip,
            device=run.device,
        )
        for vset in sets
    }
