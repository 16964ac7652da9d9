"""Optimizers (``optim.name``) and learning-rate schedules (``optim.schedule``) by name.

Every schedule is a multiplier of the base learning rate after a linear warmup; one
:class:`~torch.optim.lr_scheduler.LambdaLR` steps it once per training step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from faceforge.config import OptimConfig
from faceforge.registry import Registry


def decay_groups(modules: list[nn.Module], cfg: OptimConfig) -> list[dict]:
    """Parameter groups with weight decay, and, when ``no_decay_bn_bias``, a decay-free group
    for 1-d parameters (BatchNorm/PReLU weights, biases) as in most face-recognition recipes."""
    decay, no_decay = [], []
    for module in modules:
        for param in module.parameters():
            if not param.requires_grad:
                continue
            (no_decay if cfg.no_decay_bn_bias and param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _sgd(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def _adamw(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))


#: ``optim.name`` -> optimizer over parameter groups
OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry.of(
    "optimizer", {"sgd": _sgd, "adamw": _adamw}
)


def build_optimizer(
    cfg: OptimConfig, modules: list[nn.Module], extra_groups: list[dict] = ()
) -> torch.optim.Optimizer:
    """``cfg.name`` over ``modules``; ``extra_groups`` keep their own settings (for example
    the center-loss centers with their own learning rate)."""
    groups = decay_groups(modules, cfg) + list(extra_groups)
    return OPTIMIZERS.get(cfg.name, "optim.name")(groups, cfg)


# Each schedule maps (config, step, total steps, progress in [0, 1] after warmup) to a factor.
Schedule = Callable[[OptimConfig, int, int, float], float]


def _cosine(cfg: OptimConfig, step: int, total: int, progress: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * progress))


def _poly(cfg: OptimConfig, step: int, total: int, progress: float) -> float:
    return (1 - progress) ** cfg.power


def _step(cfg: OptimConfig, step: int, total: int, progress: float) -> float:
    passed = sum(step >= m * total for m in cfg.milestones)
    return cfg.gamma**passed


def _constant(cfg: OptimConfig, step: int, total: int, progress: float) -> float:
    return 1.0


#: ``optim.schedule`` -> learning-rate multiplier after warmup
SCHEDULES: Registry[float] = Registry.of(
    "schedule", {"cosine": _cosine, "step": _step, "poly": _poly, "constant": _constant}
)


def lr_factor(cfg: OptimConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at a step: linear warmup, then the schedule."""
    schedule = SCHEDULES.get(cfg.schedule, "optim.schedule")
    warmup = cfg.warmup_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return schedule(cfg, step, total_steps, progress)

    return factor


def build_scheduler(
    cfg: OptimConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler; every group (center loss included) follows the same curve."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, total_steps))
