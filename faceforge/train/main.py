"""The training ``main``: check, seed, build, resume, then train with periodic evaluation and
checkpoints. Works unchanged in one process or under ``torchrun`` (rank 0 logs and writes).

>>> summary = train(load_recipe("quickstart", ["train.max_steps=10"]))  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from faceforge.config import Config
from faceforge.data.verification_set import VerificationSet
from faceforge.evaluation.verification import VerificationResult
from faceforge.train.build import TrainingRun, build_run
from faceforge.train.distributed import Distributed
from faceforge.train.engine import Counts, evaluate, train_one_epoch
from faceforge.train.recipe import check_config
from faceforge.train.state import TrainState, restore, to_checkpoint


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


def setup(
    cfg: Config,
    resume: str | Path | None = None,
    log: Callable[[str], None] = print,
    dist: Distributed | None = None,
) -> tuple[TrainingRun, TrainState]:
    """Check the config, seed the global RNG from ``train.seed``, build the run and, with
    ``resume``, restore a checkpoint into it."""
    check_config(cfg)
    torch.manual_seed(cfg.train.seed)
    run = build_run(cfg, dist or Distributed.from_env(), log)
    if resume is None:
        return run, TrainState()
    state = restore(run, resume)
    run.report.log(f"resumed from {resume} at step {state.step}/{run.total_steps}")
    return run, state


def save(run: TrainingRun, state: TrainState, name: str) -> Path:
    """Write ``output_dir/name`` (rank 0 only)."""
    return run.report.save(to_checkpoint(run, state), name)


def record_evaluation(
    run: TrainingRun, state: TrainState, sets: Sequence[VerificationSet]
) -> dict[str, VerificationResult]:
    """Evaluate on rank 0 (the others wait), log, and keep ``best.pt`` by the first set."""
    results = evaluate(run, sets) if run.report.enabled else {}
    run.dist.barrier()
    row: dict[str, float] = {"step": float(state.step)}
    for name, result in results.items():
        state.metrics[name] = result.to_dict(include_roc=False)
        row[f"{name}/accuracy"] = result.accuracy
        scalars = {"accuracy": result.accuracy, "auc": result.auc}
        run.report.scalars(f"val/{name}", scalars, state.step)
        run.report.log(
            f"step {state.step}: {name} accuracy {100 * result.accuracy:.2f} "
            f"+- {100 * result.accuracy_std:.2f} @ threshold {result.best_threshold:.2f}"
        )
    if results:
        state.history.append(row)
        first = next(iter(results.values())).accuracy
        if state.best_accuracy is None or first > state.best_accuracy:
            state.best_accuracy = first
            save(run, state, "best.pt")
    return results


class _Speed:
    """Images per second since the last reading."""

    def __init__(self) -> None:
        self.start, self.images = time.perf_counter(), 0

    def read(self, images: int) -> float:
        now = time.perf_counter()
        speed = (images - self.images) / max(now - self.start, 1e-9)
        self.start, self.images = now, images
        return speed


def _log_step(run: TrainingRun, state: TrainState, parts: dict[str, Tensor], speed: float) -> None:
    values = {name: float(value) for name, value in parts.items()}  # the only host sync
    lr = run.optimizer.param_groups[0]["lr"]
    run.report.advance(loss=f"{values['loss']:.3f}", img_s=f"{speed:.1f}")
    run.report.scalars("train", {**values, "lr": lr, "images_per_sec": speed}, state.step)
    state.history.append({"step": float(state.step), "loss": values["loss"], "lr": lr})


def fit(
    run: TrainingRun, state: TrainState, sets: Sequence[VerificationSet] = ()
) -> TrainSummary:
    """Train to ``run.total_steps``, evaluating every ``eval.every`` steps and at the end;
    writes ``last.pt`` (every ``train.save_every`` steps and at the end) and ``best.pt``."""
    cfg = run.cfg
    run.report.start(state.step, run.total_steps)
    run.model.train()
    started, speed, counts = time.perf_counter(), _Speed(), Counts()
    eval_seconds, last_loss, results = 0.0, torch.tensor(float("nan")), {}
    while state.step < run.total_steps:
        epoch = state.step // run.steps_per_epoch
        for parts in train_one_epoch(run, state, epoch, counts):
            last_loss = parts["loss"]
            if state.step % cfg.train.log_every == 0 or state.step == run.total_steps:
                _log_step(run, state, parts, speed.read(counts.images))
            else:
                run.report.advance()
            if cfg.eval.every and state.step % cfg.eval.every == 0 and state.step < run.total_steps:
                eval_started = time.perf_counter()
                record_evaluation(run, state, sets)
                eval_seconds += time.perf_counter() - eval_started
            if cfg.train.save_every and state.step % cfg.train.save_every == 0:
                save(run, state, "last.pt")
    run.report.end_progress()
    train_seconds = time.perf_counter() - started - eval_seconds
    if sets:
        results = record_evaluation(run, state, sets)
    save(run, state, "last.pt")
    run.report.close()
    if counts.skipped:
        run.report.log(f"skipped {counts.skipped} unreadable images (data.skip_corrupt=true)")
    return TrainSummary(
        steps=state.step,
        images_per_second=counts.images / max(train_seconds, 1e-9),
        wall_seconds=time.perf_counter() - started,
        final_loss=float(last_loss),
        results=results,
        best_accuracy=state.best_accuracy,
        skipped_images=counts.skipped,
        history=state.history,
    )


def train(
    cfg: Config,
    sets: Sequence[VerificationSet] = (),
    resume: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> TrainSummary:
    """Train ``cfg`` from scratch (or from ``resume``), evaluating on ``sets``."""
    run, state = setup(cfg, resume, log)
    return fit(run, state, sets)
