"""What a run has done so far, and its round trip through a :class:`Checkpoint`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from faceforge.core.checkpoint import Checkpoint
from faceforge.errors import CheckpointError
from faceforge.train.build import TrainingRun

#: settings a checkpoint's weights depend on: resuming with other values cannot work
ARCHITECTURE_KEYS = (("model", "backbone"), ("model", "embedding_size"))


@dataclass
class TrainState:
    """Progress of a run: the step, the best accuracy so far and what was logged."""

    step: int = 0
    best_accuracy: float | None = None
    #: the last evaluation per set, as stored in checkpoints (thresholds for deployment)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


def to_checkpoint(run: TrainingRun, state: TrainState) -> Checkpoint:
    """Everything needed to continue exactly, and to rebuild the backbone alone."""
    model = run.model_without_ddp
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return Checkpoint(
        config=run.cfg,
        backbone=model.backbone.state_dict(),
        preprocess=run.preprocess,
        metrics=state.metrics,
        head=model.head.state_dict(),
        loss=model.loss.state_dict(),
        optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(),
        scaler=run.scaler.state_dict(),
        step=state.step,
        rng=rng,
        best_accuracy=state.best_accuracy,
        history=state.history,
    )


def restore(run: TrainingRun, path: str | Path) -> TrainState:
    """Load ``path`` into ``run``; training then continues bit-exactly. Refuses a checkpoint
    of another architecture, naming the setting that differs."""
    ckpt = Checkpoint.load(path, map_location=run.device)
    for section, key in ARCHITECTURE_KEYS:
        saved = getattr(getattr(ckpt.config, section), key)
        wanted = getattr(getattr(run.cfg, section), key)
        if saved != wanted:
            raise CheckpointError(
                f"{path}: trained with {section}.{key}={saved!r}, the config says {wanted!r}"
            )
    model = run.model_without_ddp
    try:
        model.backbone.load_state_dict(ckpt.backbone)
        model.head.load_state_dict(ckpt.head)
        model.loss.load_state_dict(ckpt.loss)
        run.optimizer.load_state_dict(ckpt.optimizer)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: does not fit this run ({exc})") from None
    run.scheduler.load_state_dict(ckpt.scheduler)
    run.scaler.load_state_dict(ckpt.scaler)
    torch.set_rng_state(ckpt.rng["torch"].cpu())
    if "cuda" in ckpt.rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt.rng["cuda"])
    return TrainState(ckpt.step, ckpt.best_accuracy, dict(ckpt.metrics), list(ckpt.history))
