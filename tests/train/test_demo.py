"""``faceforge demo`` fits its budget on any machine: the plan from measured speeds, and a
tiny demo run end to end with the plan applied."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from faceforge.cli import main
from faceforge.core.checkpoint import Checkpoint
from faceforge.train import demo
from faceforge.train.demo_budget import (
    FIXED_SECONDS,
    MIN_STEPS,
    PLANNED_SHARE,
    Speeds,
    measure_speeds,
    plan_demo,
)
from faceforge.train.recipe import load_recipe

QUICKSTART = load_recipe("quickstart")
#: speeds measured on the two CPU kinds the demo was tried on (MobileFaceNet, batch 64)
AVX512_BF16 = Speeds(render=600.0, train=48.0, embed=444.0)
AVX2 = Speeds(render=565.0, train=17.7, embed=125.0)


def expected_seconds(speeds: Speeds, steps: int, val_pairs: int) -> float:
    """The demo's wall time, recomputed from its parts: render the held-out (2 per pair) and
    the 6000 training images, embed the pairs once untrained and twice (flip) trained."""
    render = (2 * val_pairs + 200 * 30) / speeds.render
    embed = 3 * 2 * val_pairs / speeds.embed
    return render + embed + FIXED_SECONDS + steps * 64 / speeds.train


def test_a_fast_cpu_runs_the_whole_recipe():
    plan = plan_demo(QUICKSTART, AVX512_BF16, budget_seconds=600)
    assert (plan.steps, plan.val_pairs) == (280, 6000)
    assert plan.seconds == pytest.approx(expected_seconds(AVX512_BF16, 280, 6000))
    assert plan.seconds < PLANNED_SHARE * 600


def test_an_avx2_cpu_trains_what_fits_in_ten_minutes():
    plan = plan_demo(QUICKSTART, AVX2, budget_seconds=600)
    # all 6000 pairs would leave fewer than half the steps: half the pairs, more steps
    assert plan.val_pairs == 3000
    assert MIN_STEPS < plan.steps < 280
    assert plan.seconds == pytest.approx(expected_seconds(AVX2, plan.steps, 3000))
    assert plan.seconds <= PLANNED_SHARE * 600
    # one more step would not fit
    assert expected_seconds(AVX2, plan.steps + 1, 3000) > PLANNED_SHARE * 600


def test_a_step_of_accumulated_batches_takes_as_long_as_its_batches():
    """The plan counted one batch per step: with accumulate=4 it claimed 248 s for 717."""
    four = load_recipe("quickstart", ["train.accumulate=4", "train.batch_size=16"])
    plan = plan_demo(four, AVX2, budget_seconds=600)
    assert plan.seconds == pytest.approx(expected_seconds(AVX2, plan.steps, plan.val_pairs))


def test_a_hopelessly_slow_machine_still_trains_the_minimum():
    plan = plan_demo(QUICKSTART, Speeds(render=10.0, train=1.0, embed=5.0), budget_seconds=600)
    assert (plan.steps, plan.val_pairs) == (MIN_STEPS, 3000)


def test_a_budget_that_ends_inside_the_warmup_is_said_up_front(monkeypatch):
    monkeypatch.setattr(demo, "measure_speeds", lambda cfg: AVX2)
    lines: list[str] = []
    plan = demo.fit_to_budget(QUICKSTART, 3, lines.append)
    assert plan.steps == MIN_STEPS <= QUICKSTART.optim.warmup_steps == 30
    warning = lines[-1]
    assert warning.startswith("warning: 20 steps end inside the recipe's 30-step warmup")
    minutes = int(warning.split("--minutes ")[1].split()[0])
    assert warning.endswith(f"--minutes {minutes} fits 60 steps")
    assert plan_demo(QUICKSTART, AVX2, 60 * minutes).steps >= 60
    assert plan_demo(QUICKSTART, AVX2, 60 * (minutes - 1)).steps < 60
    lines.clear()
    demo.fit_to_budget(QUICKSTART, minutes, lines.append)
    assert not any(line.startswith("warning") for line in lines)


def test_a_recipe_in_epochs_is_capped_at_its_epochs():
    cfg = load_recipe("quickstart", ["train.max_steps=0", "train.epochs=2"])
    plan = plan_demo(cfg, AVX512_BF16, budget_seconds=3600)
    assert plan.steps == 2 * (200 * 30 // 64)


TINY = [
    "data.synthetic.num_identities=4",
    "data.synthetic.images_per_identity=4",
    "data.synthetic.val_identities=10",
    "data.synthetic.val_pairs=40",
    "model.embedding_size=32",
    "train.batch_size=4",
    "train.max_steps=40",
    "optim.warmup_steps=2",
    "eval.batch_size=16",
    "train.progress=false",
    "train.tensorboard=false",
]


def test_the_demo_trains_the_planned_steps(tmp_path: Path, monkeypatch):
    # 1 image/s: a 4-image step takes 4 s; the budget leaves room for 27.5 of them
    speeds = Speeds(render=1e9, train=1.0, embed=1e9)
    monkeypatch.setattr(demo, "measure_speeds", lambda cfg: speeds)
    cfg = load_recipe(None, [*TINY, f"train.output_dir={tmp_path}"])
    lines: list[str] = []
    minutes = (FIXED_SECONDS + 110) / PLANNED_SHARE / 60
    report = demo.run_demo(cfg, minutes, log=lines.append)
    assert report.plan.steps == report.summary.steps == 27
    assert report.plan.val_pairs == report.trained.num_pairs == 40
    assert Checkpoint.load(report.checkpoint).config.train.max_steps == 27
    assert any("27 of the recipe's 40 steps" in line for line in lines)
    console = Console(record=True, width=200)
    demo.print_report(report, cfg, console)
    assert "27 (of 40: sized to the time budget)" in console.export_text()


def test_speeds_are_measured_without_touching_the_global_rng():
    import torch

    cfg = load_recipe(None, [*TINY, "train.batch_size=2"])
    before = torch.get_rng_state()
    speeds = measure_speeds(cfg, render_samples=2, embed_samples=4)
    assert torch.equal(torch.get_rng_state(), before)
    assert min(speeds.render, speeds.train, speeds.embed) > 0


def test_a_negative_budget_is_one_line(capsys):
    assert main(["demo", "--minutes", "-1"]) == 2
    assert "argument --minutes: must be a finite number >= 0, got '-1'" in capsys.readouterr().err
