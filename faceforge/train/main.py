"""The training ``main``: check, seed, build, resume, then train with periodic evaluation and
checkpoints. Works unchanged in one process or under ``torchrun`` (rank 0 logs and writes).

Nothing is lost and nothing poisoned: ``last.pt`` is written every ``train.save_every``
steps and ``train.save_minutes`` minutes, on Ctrl-C / SIGTERM (at the next step boundary) and
on any error once training has started, but never with non-finite weights.

>>> summary = train(load_recipe("quickstart", ["train.max_steps=10"]))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from faceforge.config import Config
from faceforge.core.checkpoint import Checkpoint
from faceforge.data.verification_set import VerificationSet
from faceforge.errors import ConfigError, TrainingError, TrainingInterrupted
from faceforge.evaluation.verification import VerificationResult
from faceforge.interrupts import StopRequests
from faceforge.train.build import TrainingRun, build_run
from faceforge.train.distributed import Distributed
from faceforge.train.engine import Counts, evaluate, evaluation_sets, train_one_epoch
from faceforge.train.recipe import check_config
from faceforge.train.runs import choose_output_dir, release, resolve_resume
from faceforge.train.sharding import holds_shards
from faceforge.train.state import (
    TrainState,
    check_resumable,
    restore,
    to_checkpoint,
    weights_are_finite,
)


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
    output_dir: str = ""


def setup(
    cfg: Config,
    resume: str | Path | None = None,
    log: Callable[[str], None] = print,
    dist: Distributed | None = None,
    overwrite: bool = False,
) -> tuple[TrainingRun, TrainState]:
    """Check the config and the resume file, claim the output folder (all before anything
    heavy is built), seed the global RNG from ``train.seed``, build the run and restore
    ``resume`` (a checkpoint, or ``"auto"``: the output folder's last.pt if there is one).

    A new run whose ``train.output_dir`` holds a run, or was claimed by a run started at
    the same moment, goes to the next numbered folder unless ``overwrite``; with ``resume``
    (``"auto"`` included) the configured folder is this run's. A resumed run takes the
    settings of ``cfg`` that may change (learning rate, steps, evaluation, output) and
    refuses the others. A run that fails while building gives its new folder back.
    """
    check_config(cfg)
    _check_eval_files(cfg)
    dist = dist or Distributed.from_env()
    dist.setup(dist.device(cfg.train.device), cfg.train.collective_timeout_minutes)
    path = dist.from_main(  # one decision: nodes without a shared folder see no last.pt
        lambda: resolve_resume(cfg, resume), "rank 0 to choose the checkpoint to resume"
    )
    ckpt = Checkpoint.load(path) if path is not None else None
    changes = check_resumable(ckpt.config, cfg, path) if ckpt else []
    cfg = dist.from_main(
        lambda: choose_output_dir(cfg, resume is not None, overwrite, path),
        "rank 0 to claim the output folder",
    )
    torch.manual_seed(cfg.train.seed)
    with _folder_released_on_failure(cfg, dist):
        run = build_run(cfg, dist, log)
        state = restore(run, ckpt, path) if ckpt else TrainState()
    run.report.log(run.describe())
    if ckpt is None:
        if run.dist.is_main and (warning := run.dataset.unaligned_warning()):
            run.report.log(f"warning: {warning}")
        return run, state
    run.report.log(f"resumed from {path} at step {state.step}/{run.total_steps}")
    if changes:
        run.report.log("settings changed for the resumed run: " + "; ".join(changes))
    return run, state


def _check_eval_files(cfg: Config) -> None:
    """Every ``eval.bins`` file exists: said by every process before anything is built, not
    by rank 0 alone once training is ready (recipes name them relative to where runs start)."""
    for path in cfg.eval.bins:
        if not Path(path).is_file():
            raise ConfigError(
                f"eval.bins: {path}: no such file; give its path, or eval.bins=[] to train "
                "without it"
            )


@contextlib.contextmanager
def _folder_released_on_failure(cfg: Config, dist: Distributed) -> Iterator[None]:
    """A run that fails before writing anything leaves no empty folder behind."""
    try:
        yield
    except BaseException:
        if dist.is_main:
            release(Path(cfg.train.output_dir))
        raise


def save(run: TrainingRun, state: TrainState, name: str, alone: bool = False) -> Path:
    """Write ``output_dir/name`` (rank 0 writes); refuses non-finite weights. Every process
    calls it at the same step (a sharded head is gathered from all of them), unless
    ``alone``: a process saving on its way out, which may not wait for the others and writes
    itself (the one that failed, often not rank 0, holds the state the step began with)."""
    what = f"every process to save {name} at step {state.step}"
    broken = not weights_are_finite(run)
    if not alone:  # one verdict for all: a process refusing alone would leave the rest waiting
        broken = bool(run.dist.agree([int(broken)], what)[0])
    if broken:
        raise TrainingError(
            f"the weights became non-finite by step {state.step}; {name} was not written, the "
            "last one saved is kept. Lower optim.lr or raise optim.warmup_steps, then resume."
        )
    with run.dist.waiting_for(what):
        checkpoint = to_checkpoint(run, state, alone=alone)
    return run.report.save(checkpoint, name, any_rank=alone)


def record_evaluation(
    run: TrainingRun, state: TrainState, sets: Sequence[VerificationSet]
) -> dict[str, VerificationResult]:
    """Evaluate on rank 0 (its ``sets``; the others wait), log, and keep ``best.pt`` by the
    first set. Every process takes rank 0's results, so all keep the same state and save
    ``best.pt`` together."""
    results = run.dist.from_main(
        lambda: evaluate(run, sets), f"rank 0's evaluation at step {state.step}"
    )
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
        for warning in result.warnings:
            run.report.log(f"warning: {name}: {warning}")
    if results:
        state.history.append(row)
        first = next(iter(results.values())).accuracy
        if state.best_accuracy is None or first > state.best_accuracy:
            state.best_accuracy = first
            save(run, state, "best.pt")
    return results


class _Clock:
    """Wall time of the run: training speed windows, which leave out the time spent evaluating
    and saving (so the logged images/s is the training speed), and the last save."""

    def __init__(self) -> None:
        self.started = self.window = self.saved = time.perf_counter()
        self.window_images = 0
        self.paused_seconds = 0.0

    def speed(self, images: int) -> float:
        """Training images per second since the last call."""
        now = time.perf_counter()
        speed = (images - self.window_images) / max(now - self.window, 1e-9)
        self.window, self.window_images = now, images
        return speed

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent in this block is not training time: it leaves the speed window."""
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.paused_seconds += elapsed
            self.window += elapsed

    def minutes_since_save(self) -> float:
        return (time.perf_counter() - self.saved) / 60


def _log_step(run: TrainingRun, state: TrainState, parts: dict[str, Tensor], speed: float) -> None:
    values = {name: float(value) for name, value in parts.items()}  # the only host sync
    lr = state.lr
    run.report.advance(loss=f"{values['loss']:.3f}", img_s=f"{speed:.1f}")
    extra = {"lr": lr, "images_per_sec": speed, "skipped_steps": state.skipped_steps}
    run.report.scalars("train", {**values, **extra}, state.step)
    state.history.append({"step": float(state.step), "loss": values["loss"], "lr": lr})


def _after_step(
    run: TrainingRun,
    state: TrainState,
    sets: Sequence[VerificationSet],
    clock: _Clock,
    stop: StopRequests,
) -> None:
    """Evaluate and save when their cadence says so, and stop (after saving) when a process
    was asked to. Every process takes the same decisions, so all reach each save together."""
    every, save_every = run.cfg.eval.every, run.cfg.train.save_every
    if every and state.step % every == 0 and state.step < run.total_steps:
        with clock.paused():
            record_evaluation(run, state, sets)
    signum, save_due = _shared_decisions(run, state, clock, stop)
    if signum:
        path = save(run, state, "last.pt")
        raise TrainingInterrupted(
            f"stopped by {signal.Signals(signum).name} at step {state.step}/"
            f"{run.total_steps}; saved {path}: continue with --resume {path}",
            signum,
        )
    if save_due or (save_every and state.step % save_every == 0):
        with clock.paused():
            save(run, state, "last.pt")
        clock.saved = time.perf_counter()


def _shared_decisions(
    run: TrainingRun, state: TrainState, clock: _Clock, stop: StopRequests
) -> tuple[int, bool]:
    """The signal to stop on (0: none) and whether ``train.save_minutes`` have passed, the
    same for every process: a signal that reached any process stops all of them at this
    step, and rank 0's clock times the saves (one small all-reduce per step)."""
    minutes = run.cfg.train.save_minutes
    due = run.dist.is_main and minutes > 0 and clock.minutes_since_save() >= minutes
    what = f"every process to finish step {state.step}"
    signum, save_due = run.dist.agree([stop.signum or 0, int(due)], what)
    return signum, bool(save_due)


def _train_to_the_end(
    run: TrainingRun,
    state: TrainState,
    sets: Sequence[VerificationSet],
    counts: Counts,
    clock: _Clock,
    stop: StopRequests,
) -> float:
    """The loop over epochs and steps; returns the last loss."""
    last_loss = torch.tensor(float("nan"))
    while state.step < run.total_steps:
        for parts in train_one_epoch(run, state, state.step // run.steps_per_epoch, counts):
            last_loss = parts.get("loss", last_loss)  # empty: an fp16 step skipped
            logging = state.step % run.cfg.train.log_every == 0 or state.step == run.total_steps
            if parts and logging:
                _log_step(run, state, parts, clock.speed(counts.images))
            else:
                run.report.advance()
            _after_step(run, state, sets, clock, stop)
    return float(last_loss)


def _save_on_the_way_out(run: TrainingRun, state: TrainState) -> None:
    """After an unexpected stop: keep the progress if the weights are sound (and if this
    process can save alone: a sharded head needs every process, which may be gone)."""
    if holds_shards(run):
        run.report.log("the sharded head needs every process to save: last.pt is kept")
        return
    try:
        path = save(run, state, "last.pt", alone=True)
    except Exception as exc:  # the original error matters more than this one
        run.report.log(f"could not save the progress: {exc}", any_rank=True)
    else:
        message = f"saved {path} at step {state.step}: continue with --resume {path}"
        run.report.log(message, any_rank=True)


def fit(run: TrainingRun, state: TrainState, sets: Sequence[VerificationSet] = ()) -> TrainSummary:
    """Train to ``run.total_steps``, evaluating every ``eval.every`` steps and at the end;
    writes ``last.pt`` (periodically, when stopped, at the end) and ``best.pt``."""
    run.report.start(state.step, run.total_steps)
    run.model.train()
    clock, counts = _Clock(), Counts()
    try:
        with StopRequests() as stop:
            try:
                final_loss = _train_to_the_end(run, state, sets, counts, clock, stop)
            except TrainingError:
                raise  # non-finite (never saved), saved on a signal, or another process failed
            except BaseException:
                _save_on_the_way_out(run, state)
                raise
        run.report.end_progress()
        train_seconds = time.perf_counter() - clock.started - clock.paused_seconds
        results = record_evaluation(run, state, sets)
        save(run, state, "last.pt")
        every_rank = run.dist.gathered(counts.skipped, "every process's skipped images")
        skipped = set().union(*every_rank)  # each process met its own share of the data
    finally:
        run.report.close()
    if skipped:
        images = "image" if len(skipped) == 1 else "images"
        run.report.log(f"skipped {len(skipped)} unreadable {images} (data.skip_corrupt=true)")
    if state.skipped_steps:
        run.report.log(f"skipped {state.skipped_steps} fp16 steps with a non-finite loss")
    return TrainSummary(
        steps=state.step,
        images_per_second=counts.images / max(train_seconds, 1e-9),
        wall_seconds=time.perf_counter() - clock.started,
        final_loss=final_loss,
        results=results,
        best_accuracy=state.best_accuracy,
        skipped_images=len(skipped),
        history=state.history,
        output_dir=run.cfg.train.output_dir,
    )


def train(
    cfg: Config,
    sets: Sequence[VerificationSet] | None = None,
    resume: str | Path | None = None,
    log: Callable[[str], None] = print,
    overwrite: bool = False,
) -> TrainSummary:
    """Train ``cfg`` from scratch (or from ``resume``), evaluating on ``sets``; ``None``:
    the sets the config names, loaded by rank 0 once the resume file and the output folder
    are checked and the training data is open (so a bad resume file fails at once). Under
    torchrun the process group lives as long as this call."""
    dist = Distributed.from_env()
    with dist.process_group_scope():
        run, state = setup(cfg, resume, log, dist, overwrite)
        if sets is None:
            with _folder_released_on_failure(run.cfg, run.dist):
                load = "rank 0 to load the evaluation sets"
                sets = run.dist.on_main(lambda: evaluation_sets(run.cfg), load) or ()
        return fit(run, state, sets)
