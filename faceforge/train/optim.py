"""Optimizers and learning-rate schedules (warmup + cosine / step / poly / constant)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from faceforge.config import OptimConfig
from faceforge.errors import ConfigError


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


def build_optimizer(
    cfg: OptimConfig, modules: list[nn.Module], extra_groups: list[dict] = ()
) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over ``modules``; ``extra_groups`` keep their own settings
    (for example the center-loss centers with their own learning rate)."""
    groups = decay_groups(modules, cfg) + list(extra_groups)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ConfigError(f"unknown optim.name {cfg.name!r}; use sgd or adamw")


def lr_factor(cfg: OptimConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at a step: linear warmup, then the schedule."""
    warmup = cfg.warmup_steps
    if cfg.schedule not in ("cosine", "step", "poly", "constant"):
        raise ConfigError(
            f"unknown optim.schedule {cfg.schedule!r}; use cosine, step, poly or constant"
        )

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        span = max(1, total_steps - warmup)
        progress = min(1.0, (step - warmup) / span)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if cfg.schedule == "poly":
            return (1 - progress) ** cfg.power
        if cfg.schedule == "step":
            passed = sum(step >= m * total_steps for m in cfg.milestones)
            return cfg.gamma**passed
        return 1.0

    return factor


def build_scheduler(
    cfg: OptimConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler; every group (center loss included) follows the same curve."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, total_steps))
