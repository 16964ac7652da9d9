"""What a run has done so far, and its round trip through a :class:`Checkpoint`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from faceforge.config import Config, config_to_dict
from faceforge.core.checkpoint import Checkpoint
from faceforge.core.foreign_weights import load_exactly
from faceforge.errors import CheckpointError, first_line
from faceforge.train.build import TrainingRun
from faceforge.train.sharding import full_head_state, load_head_state

#: settings the stored weights and optimizer state depend on: a resumed run cannot change
#: them (SGD's momentum is no AdamW state; fine-tune with model.init_from instead)
FIXED_ON_RESUME = (
    "model.backbone",
    "model.embedding_size",
    "head.type",
    "head.partial_fc",
    "optim.name",
)


@dataclass
class TrainState:
    """Progress of a run: the step, the best accuracy so far and what was logged."""

    step: int = 0
    best_accuracy: float | None = None
    #: the last evaluation per set, as stored in checkpoints (thresholds for deployment)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    #: fp16 steps skipped for a non-finite loss: in all, and in a row up to now
    skipped_steps: int = 0
    skipped_in_a_row: int = 0
    #: the learning rate the last step took (the schedule has moved on when it is logged)
    lr: float = 0.0


def weights_are_finite(run: TrainingRun) -> bool:
    """Whether every parameter and floating buffer (BatchNorm statistics) is finite: a
    checkpoint is never written otherwise. One device synchronisation."""
    tensors = [t for t in run.model_without_ddp.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack([t.isfinite().all() for t in tensors]).all())


def to_checkpoint(run: TrainingRun, state: TrainState, alone: bool = False) -> Checkpoint:
    """Everything needed to continue exactly, and to rebuild the backbone alone. Every
    process calls it (the random states and a sharded head are gathered), unless ``alone``."""
    model = run.model_without_ddp
    rng = _random_states(run, alone)
    head, optimizer = full_head_state(run)
    return Checkpoint(
        config=run.cfg,
        backbone=model.backbone.state_dict(),
        preprocess=run.preprocess,
        metrics=state.metrics,
        head=head,
        loss=model.loss.state_dict(),
        optimizer=optimizer,
        scheduler=run.scheduler.state_dict(),
        scaler=run.scaler.state_dict(),
        step=state.step,
        rng=rng,
        best_accuracy=state.best_accuracy,
        history=state.history,
    )


def _random_states(run: TrainingRun, alone: bool) -> dict[str, Tensor]:
    """The random number generators' states, one row per process: each draws its own
    dropout masks and Partial FC negatives, on its own GPU. A process saving ``alone``
    stores its own."""
    local = {"torch": torch.get_rng_state()}
    if run.device.type == "cuda":
        local["cuda"] = torch.cuda.get_rng_state(run.device)
    states = [local] if alone else run.dist.gathered(local, "every process's random state")
    return {key: torch.stack([state[key] for state in states]) for key in local}


def _restore_random_states(run: TrainingRun, rng: dict[str, Any]) -> None:
    """This process's row of :func:`_random_states` (the last row where the run had fewer
    processes). Checkpoints of faceforge 0.2 hold rank 0's CPU state and a list of every
    GPU's state: this process takes its own GPU's, where that GPU was saved."""
    # each state is cloned: torch 2.13 crashes setting a view with a storage offset (a row)
    rank, saved = run.dist.rank, rng["torch"]
    torch.set_rng_state((saved[min(rank, len(saved) - 1)] if saved.ndim == 2 else saved).clone())
    saved = rng.get("cuda")
    if saved is None or run.device.type != "cuda":
        return
    if isinstance(saved, Tensor):
        state = saved[min(rank, len(saved) - 1)]
    elif (run.device.index or 0) < len(saved):
        state = saved[run.device.index or 0]
    else:
        return
    torch.cuda.set_rng_state(state.cpu().clone(), run.device)


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resumable(saved: Config, wanted: Config, path: str | Path) -> list[str]:
    """The settings ``wanted`` changes from the checkpoint's, as ``key: old -> new`` lines;
    raises CheckpointError when one of them is fixed (:data:`FIXED_ON_RESUME`)."""
    old, new = _flat(config_to_dict(saved)), _flat(config_to_dict(wanted))
    changed = [key for key in new if old.get(key) != new[key]]
    for key in changed:
        if key in FIXED_ON_RESUME:
            raise CheckpointError(
                f"{path}: trained with {key}={old.get(key)!r}, the config says {new[key]!r}; "
                "that cannot change when resuming (start a new run instead)"
            )
    return [f"{key}: {old.get(key)!r} -> {new[key]!r}" for key in changed]


def restore(run: TrainingRun, ckpt: Checkpoint, path: str | Path) -> TrainState:
    """Load ``ckpt`` into ``run``: weights, optimizer state, step and RNG continue exactly,
    while the run's own config supplies the hyperparameters (learning rates, momentum, weight
    decay, schedule length), so settings changed for the resumed run take effect."""
    model = run.model_without_ddp
    hyper = [{k: v for k, v in g.items() if k != "params"} for g in run.optimizer.param_groups]
    load_exactly(model.backbone, ckpt.backbone, f"{path}: its backbone")
    try:
        model.loss.load_state_dict(ckpt.loss)
        load_head_state(run, ckpt.head, ckpt.optimizer)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: does not fit this run (another number of classes or losses?): "
            f"{first_line(exc)}"
        ) from None
    for group, fresh in zip(run.optimizer.param_groups, hyper, strict=True):
        group.update(fresh)
    _resume_schedule(run.scheduler, ckpt.scheduler)
    if ckpt.scaler:  # a run without fp16 saved none: a GradScaler then starts afresh
        run.scaler.load_state_dict(ckpt.scaler)
    _restore_random_states(run, ckpt.rng)
    return TrainState(ckpt.step, ckpt.best_accuracy, dict(ckpt.metrics), list(ckpt.history))


def _resume_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR, saved: dict) -> None:
    """Continue the saved schedule position with this run's base rates and schedule."""
    scheduler.load_state_dict(saved)
    groups = scheduler.optimizer.param_groups
    scheduler.base_lrs = [group["initial_lr"] for group in groups]
    for group, base, factor in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in groups]
