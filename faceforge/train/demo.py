"""``faceforge demo``: train the quickstart model on synthetic faces and report like the seeds.

It measures the randomly initialised backbone first, so the table shows what training
gained on identities the model never saw. With a time budget the demo is first sized to the
machine (:mod:`faceforge.train.demo_budget`), so it finishes in time on any CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from faceforge.config import Config
from faceforge.data.synthetic import synthetic_verification_set
from faceforge.evaluation.verification import VerificationResult
from faceforge.models import count_macs, count_parameters
from faceforge.train.curves import plot_training_curves
from faceforge.train.demo_budget import (
    DemoPlan,
    Speeds,
    measure_speeds,
    minutes_for,
    plan_demo,
    recipe_steps,
)
from faceforge.train.engine import evaluate
from faceforge.train.main import TrainSummary, fit, setup


@dataclass
class DemoReport:
    random_init: VerificationResult
    trained: VerificationResult
    summary: TrainSummary
    parameters: int
    gmacs: float
    checkpoint: Path
    curves: Path
    wall_seconds: float
    same_pairs: int
    plan: DemoPlan | None = None


def fit_to_budget(cfg: Config, minutes: float, log: Callable[[str], None]) -> DemoPlan:
    """Measure this machine and size the demo to finish within ``minutes``."""
    log("measuring this machine to fit the demo into its time budget")
    speeds = measure_speeds(cfg)
    plan = plan_demo(cfg, speeds, 60 * minutes)
    log(
        f"{speeds.train:.1f} training images/s, {speeds.embed:.0f} embedded images/s "
        f"(amp {cfg.train.amp}): {plan.steps} of the recipe's {recipe_steps(cfg)} steps and "
        f"{plan.val_pairs} held-out pairs fit {minutes:g} min (about "
        f"{plan.seconds / 60:.1f} min planned)"
    )
    _warn_if_inside_warmup(cfg, speeds, plan, log)
    return plan


def _warn_if_inside_warmup(
    cfg: Config, speeds: Speeds, plan: DemoPlan, log: Callable[[str], None]
) -> None:
    """Say up front when the budget ends training inside the learning-rate warmup: margin
    losses first pull every embedding one way, and so short a run is evaluated before they
    spread out again (measured: 23 quickstart steps scored 50-56 %, below the random 63 %)."""
    warmup = cfg.optim.warmup_steps
    if not plan.steps <= warmup < recipe_steps(cfg):
        return
    enough = math.ceil(minutes_for(cfg, speeds, 2 * warmup, plan.val_pairs))
    log(
        f"warning: {plan.steps} steps end inside the recipe's {warmup}-step warmup, before the "
        "embeddings spread out of their first collapse: expect the trained accuracy near or "
        f"below the random one; --minutes {enough} fits {2 * warmup} steps"
    )


def run_demo(
    cfg: Config, minutes: float | None = None, log: Callable[[str], None] = print
) -> DemoReport:
    """Build the held-out pairs, evaluate the untrained model, train, evaluate again; with
    ``minutes``, first fit the steps and pairs to that budget on this machine."""
    started = time.perf_counter()
    plan = fit_to_budget(cfg, minutes, log) if minutes else None
    cfg = plan.apply(cfg) if plan else cfg
    log(
        f"rendering {cfg.data.synthetic.val_pairs} held-out synthetic pairs "
        f"({cfg.data.synthetic.val_identities} identities never used for training)"
    )
    vset = synthetic_verification_set(cfg.data.synthetic)
    run, state = setup(cfg, log=log)
    # a random network scores near chance with or without flip TTA: skip it to save time
    random_init = evaluate(run, [vset], flip=False)[vset.name]
    log(f"random init: {100 * random_init.accuracy:.2f}% on the held-out pairs")
    state.history.append({"step": 0.0, f"{vset.name}/accuracy": random_init.accuracy})
    summary = fit(run, state, [vset])
    output_dir = Path(summary.output_dir)
    curves = plot_training_curves(summary.history, output_dir / "curves.png")
    return DemoReport(
        random_init=random_init,
        trained=summary.results[vset.name],
        summary=summary,
        parameters=count_parameters(run.backbone),
        gmacs=count_macs(run.backbone) / 1e9,
        checkpoint=output_dir / "last.pt",
        curves=curves,
        wall_seconds=time.perf_counter() - started,
        same_pairs=int(vset.issame.sum()),
        plan=plan,
    )


def _accuracy(result: VerificationResult) -> str:
    return f"{100 * result.accuracy:.2f} +- {100 * result.accuracy_std:.2f}"


def _steps(report: DemoReport, cfg: Config) -> str:
    steps = str(report.summary.steps)
    wanted = recipe_steps(cfg)
    if report.plan is None or report.plan.steps == wanted:
        return steps
    return f"{steps} (of {wanted}: sized to the time budget)"


def print_report(report: DemoReport, cfg: Config, console: Console | None = None) -> None:
    """The seeds' style summary table."""
    console = console or Console()
    table = Table(title=f"faceforge demo: {cfg.model.backbone} + {cfg.head.type}, synthetic faces")
    table.add_column("metric")
    table.add_column("value", justify="right")
    trained = report.trained
    rows = [
        ("held-out pairs", f"{trained.num_pairs} ({report.same_pairs} same, 10 folds)"),
        ("random-init accuracy (%, no flip)", _accuracy(report.random_init)),
        (f"trained accuracy (%{', flip TTA' if cfg.eval.flip else ''})", _accuracy(trained)),
        ("best threshold (squared L2)", f"{trained.best_threshold:.2f}"),
        ("VR @ FAR=1e-3 (%)", f"{100 * trained.val:.2f}"),
        ("AUC", f"{trained.auc:.4f}"),
        ("XNorm", f"{trained.xnorm:.2f}" if trained.xnorm is not None else "-"),
        (
            "parameters",
            f"{report.parameters / 1e6:.2f} M ({4 * report.parameters / 2**20:.1f} MB fp32)",
        ),
        ("GMACs at 112x112", f"{report.gmacs:.3f}"),
        ("training steps", _steps(report, cfg)),
        ("training images/s", f"{report.summary.images_per_second:.1f}"),
        ("torch threads", str(torch.get_num_threads())),
        ("wall time", f"{report.wall_seconds / 60:.1f} min"),
        ("checkpoint", str(report.checkpoint)),
        ("curves", str(report.curves)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
