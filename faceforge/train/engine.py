"""One training step, one epoch and evaluation (the torchvision-references split).

These functions do the work and nothing else: logging, checkpoint writing and the schedule of
evaluations belong to :mod:`faceforge.train.main`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from faceforge.config import Config
from faceforge.data.dataset import Batch
from faceforge.data.images import fit_image
from faceforge.data.synthetic import synthetic_verification_set
from faceforge.data.verification_set import VerificationSet
from faceforge.errors import FaceforgeError, TrainingError
from faceforge.evaluation.bin_format import load_bin
from faceforge.evaluation.run import evaluate_model
from faceforge.evaluation.verification import VerificationResult
from faceforge.train.build import TrainingRun
from faceforge.train.sharding import clip_gradients, share_overflow
from faceforge.train.state import TrainState


@dataclass
class Counts:
    """Images trained on, and the dataset indices of unreadable images skipped
    (``data.skip_corrupt``; a bad file counts once however many epochs meet it)."""

    images: int = 0
    skipped: set[int] = field(default_factory=set)


def _non_finite(run: TrainingRun, state: TrainState, loss: Tensor) -> TrainingError:
    last = run.report.output_dir / "last.pt"
    kept = (
        f"the last good checkpoint {last} is intact"
        if last.exists()
        else ("no checkpoint was written yet")
    )
    became = (
        "another process's loss became non-finite"
        if torch.isfinite(loss)
        else f"loss became {loss.item()}"
    )
    return TrainingError(
        f"{became} at step {state.step}; {kept}. Lower optim.lr, "
        "raise optim.warmup_steps or keep optim.grad_clip > 0, then resume."
    )


def _loss_is_usable(run: TrainingRun, state: TrainState, loss: Tensor) -> bool:
    """True for a finite loss (one scalar device sync, the guard that keeps non-finite
    values out of the weights). Under fp16 a non-finite loss skips the step, as loss
    scaling expects now and then; too many in a row, or any in fp32/bf16, stop training.
    Every process takes the same decision (one flag all-reduced): a process that skipped
    or stopped alone would leave the others waiting in the gradient all-reduce."""
    broken = int(not torch.isfinite(loss))
    what = f"every process's loss check at training step {state.step + 1}"
    if not run.dist.agree([broken], what)[0]:
        state.skipped_in_a_row = 0
        return True
    if not run.scaler.is_enabled():
        raise _non_finite(run, state, loss)
    state.skipped_steps += 1
    state.skipped_in_a_row += 1
    if state.skipped_in_a_row > run.cfg.train.max_skipped_steps:
        raise TrainingError(
            f"the fp16 loss was non-finite for {state.skipped_in_a_row} steps in a row (step "
            f"{state.step}); train with train.amp=bf16 or a lower optim.lr, then resume"
        )
    return False


def _backward(
    run: TrainingRun, state: TrainState, batches: Sequence[Batch]
) -> dict[str, Tensor] | None:
    """Gradients summed over ``batches`` (processes synchronised on the last one only) and
    the mean loss parts; ``None`` when an fp16 loss was non-finite (the step is skipped)."""
    totals: dict[str, Tensor] = {}
    for i, batch in enumerate(batches):
        images, labels = run.inputs(batch)
        last = i == len(batches) - 1
        with contextlib.nullcontext() if last else run.model.no_sync():
            loss, parts = run.model(images, labels)
            if not _loss_is_usable(run, state, loss):
                return None
            run.scaler.scale(loss / len(batches)).backward()
        for name, value in {"loss": loss.detach(), **parts}.items():
            totals[name] = totals.get(name, 0) + value / len(batches)
    return totals


def train_step(run: TrainingRun, state: TrainState, *batches: Batch) -> dict[str, Tensor]:
    """One optimizer step over ``batches`` (``train.accumulate`` of them): forward, refuse
    a non-finite loss, backward, clip, step. Returns the mean loss and its parts as detached
    tensors (read them only when logging: reading syncs the device); empty when an fp16
    step was skipped."""
    run.optimizer.zero_grad(set_to_none=True)
    totals = _backward(run, state, batches)
    if totals is None:
        run.optimizer.zero_grad(set_to_none=True)
    else:
        share_overflow(run)
        if run.cfg.optim.grad_clip > 0:
            run.scaler.unscale_(run.optimizer)
            clip_gradients(run, run.cfg.optim.grad_clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
    state.lr = run.optimizer.param_groups[0]["lr"]
    _advance_schedule(run)
    state.step += 1
    return totals or {}


#: what PyTorch warns when a schedule steps before its optimizer ever has
_SCHEDULE_FIRST = r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`"


def _advance_schedule(run: TrainingRun) -> None:
    """One schedule step per training step, skipped fp16 steps included: the schedule
    follows the step counter, so it ends at the last step and a resume continues it exactly.
    When the first fp16 steps are skipped (their loss, or the GradScaler finding inf
    gradients at its initial scale), PyTorch warns that the schedule stepped before the
    optimizer: expected here, so that one warning is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _SCHEDULE_FIRST, UserWarning)
        run.scheduler.step()


def train_one_epoch(
    run: TrainingRun, state: TrainState, epoch: int, counts: Counts
) -> Iterator[dict[str, Tensor]]:
    """Train through ``epoch`` from where ``state.step`` stands, yielding each step's losses;
    stops early at ``run.total_steps``."""
    accumulate = run.cfg.train.accumulate
    offset = (state.step - epoch * run.steps_per_epoch) * run.cfg.train.batch_size * accumulate
    pending: list[Batch] = []
    for batch in _worker_errors_unwrapped(run.loader(epoch, offset)):
        counts.skipped.update(batch.skipped)
        pending.append(batch)
        if len(pending) < accumulate:
            continue
        with run.dist.waiting_for(f"every process at training step {state.step + 1}"):
            parts = train_step(run, state, *pending)
        counts.images += sum(len(b.labels) for b in pending)
        pending = []
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


def evaluation_sets(cfg: Config) -> list[VerificationSet]:
    """The verification sets ``cfg`` names: the synthetic held-out pairs (synthetic data with
    ``eval.synthetic_pairs``; first, so they choose ``best.pt``) and every ``eval.bins`` file."""
    sets = [load_bin(path) for path in cfg.eval.bins]
    if cfg.data.source == "synthetic" and cfg.eval.synthetic_pairs:
        sets.insert(0, synthetic_verification_set(cfg.data.synthetic))
    return sets


def _fitted(vset: VerificationSet, size: tuple[int, int]) -> VerificationSet:
    """``vset`` at the model's input size, centre-cropped as the training images are (the
    112x112 synthetic pairs for a 112x96 model)."""
    if tuple(vset.images.shape[1:3]) == tuple(size):
        return vset
    images = np.stack([fit_image(image, size, "center-crop", vset.name) for image in vset.images])
    return VerificationSet(vset.name, images, vset.issame)


def evaluate(
    run: TrainingRun, sets: Sequence[VerificationSet], flip: bool | None = None
) -> dict[str, VerificationResult]:
    """Verification accuracy of the current backbone on every set (``flip`` overrides
    ``eval.flip``); the backbone's train/eval mode is left as it was."""
    flip = run.cfg.eval.flip if flip is None else flip
    return {
        vset.name: evaluate_model(
            run.backbone,
            _fitted(vset, run.preprocess.input_size),
            preprocess=run.preprocess,
            batch_size=run.cfg.eval.batch_size,
            flip=flip,
            device=run.device,
        )
        for vset in sets
    }
