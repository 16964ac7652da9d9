"""Optimizer groups and learning-rate schedules against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from faceforge.config import OptimConfig
from faceforge.errors import ConfigError
from faceforge.train.optim import build_optimizer, build_scheduler, lr_factor
from faceforge.train.sharding import owned_state


def test_no_decay_group_holds_bn_and_bias() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.PReLU(4))
    opt = build_optimizer(OptimConfig(weight_decay=1e-3), [model])
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 1e-3 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3, 3, 3])]
    assert len(no_decay["params"]) == 4  # conv bias, bn weight, bn bias, prelu
    all_decay = build_optimizer(OptimConfig(no_decay_bn_bias=False), [model])
    assert len(all_decay.param_groups) == 1


def test_extra_groups_keep_their_lr() -> None:
    centers = nn.Parameter(torch.zeros(3, 2))
    opt = build_optimizer(
        OptimConfig(lr=0.1), [nn.Linear(2, 2)], [{"params": [centers], "lr": 0.5}]
    )
    assert opt.param_groups[-1]["lr"] == 0.5
    assert isinstance(
        build_optimizer(OptimConfig(name="adamw"), [nn.Linear(2, 2)]), torch.optim.AdamW
    )
    with pytest.raises(ConfigError, match="optim.name"):
        build_optimizer(OptimConfig(name="lion"), [nn.Linear(2, 2)])


def test_warmup_then_cosine() -> None:
    f = lr_factor(OptimConfig(schedule="cosine", warmup_steps=10), total_steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)
    assert f(35) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert f(110) == pytest.approx(0.0)


def test_step_and_poly_and_constant() -> None:
    step = lr_factor(OptimConfig(schedule="step", milestones=(0.5, 0.75), gamma=0.1), 100)
    assert [step(s) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    poly = lr_factor(OptimConfig(schedule="poly", power=2.0), 100)
    assert poly(50) == pytest.approx(0.25)
    assert lr_factor(OptimConfig(schedule="constant"), 100)(77) == 1.0
    with pytest.raises(ConfigError, match="optim.schedule"):
        lr_factor(OptimConfig(schedule="exp"), 100)


def test_scheduler_drives_every_group() -> None:
    centers = nn.Parameter(torch.zeros(1))
    opt = build_optimizer(
        OptimConfig(lr=0.2, schedule="poly", power=1.0),
        [nn.Linear(1, 1)],
        [{"params": [centers], "lr": 0.5}],
    )
    sched = build_scheduler(OptimConfig(schedule="poly", power=1.0), opt, total_steps=4)
    opt.step()
    sched.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.1, 0.25])


def test_resumed_optimizer_state_is_owned_where_the_optimizer_keeps_it() -> None:
    """A CPU optimizer keeps the tensors it is given, so they are clones of the checkpoint's
    (mapped from its file); on another device it copies momentum itself, so that is passed
    as it is (no CPU copy on the way), while the scalar step it keeps is cloned."""
    momentum, step = torch.ones(3, 2), torch.tensor(4.0)
    state = {"state": {0: {"momentum_buffer": momentum, "step": step}}, "param_groups": []}
    on_cpu = owned_state(state, torch.device("cpu"))["state"][0]
    assert on_cpu["momentum_buffer"] is not momentum and torch.equal(
        on_cpu["momentum_buffer"], momentum
    )
    on_gpu = owned_state(state, torch.device("meta"))["state"][0]
    assert on_gpu["momentum_buffer"] is momentum and on_gpu["step"] is not step
    # what owned_state relies on: load_state_dict copies state to its parameter's device
    param = nn.Parameter(torch.zeros(3, 2, device="meta"))
    optimizer = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    saved = optimizer.state_dict()
    saved["state"] = {0: {"momentum_buffer": momentum}}
    optimizer.load_state_dict(owned_state(saved, param.device))
    assert optimizer.state[param]["momentum_buffer"].device == param.device


def test_adamw_takes_optim_momentum_as_its_beta1() -> None:
    """The documentation said "adamw: beta1"; the betas stayed (0.9, 0.999)."""
    cfg = OptimConfig(name="adamw", momentum=0.5)
    optimizer = build_optimizer(cfg, [torch.nn.Linear(2, 2)])
    assert optimizer.param_groups[0]["betas"] == (0.5, 0.999)
