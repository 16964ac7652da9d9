"""Fit ``faceforge demo`` to the machine it runs on.

CPUs differ by an order of magnitude in what the demo needs: a MobileFaceNet training step
runs about 3x faster on a CPU with native bfloat16 (AVX512-BF16 / AMX) than in fp32 on an
AVX2 one. Rather than one step count that is right for one machine, the demo measures how
fast this machine renders synthetic faces, trains and embeds (a few seconds, on a throwaway
model), then trains for as many steps of the recipe as fit its time budget, never more than
the recipe asks. Where even half the recipe's steps would not fit, the held-out pairs are
halved first (still 10 balanced folds), since evaluating them costs as much as training.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from faceforge.config import Config
from faceforge.core.embedder import Embedder
from faceforge.core.precision import resolve_precision
from faceforge.data.synthetic import SyntheticFaces, render_workers
from faceforge.device import resolve_device
from faceforge.train.build import build_model
from faceforge.train.distributed import Distributed

#: fewest training steps the demo runs, whatever the budget; so few end in the first phase of
#: training, where the embeddings have collapsed to one direction (the evaluation warns)
MIN_STEPS = 20
#: share of the budget planned for: the rest absorbs measurement noise and load changes
PLANNED_SHARE = 0.9
#: seconds for what the speeds do not cover: building the run, checkpoints, the plot
FIXED_SECONDS = 15.0


@dataclass(frozen=True)
class Speeds:
    """Images per second this machine achieves for each part of the demo."""

    render: float
    train: float
    embed: float


@dataclass(frozen=True)
class DemoPlan:
    """How big a demo fits the budget, and how long it should take."""

    steps: int
    val_pairs: int
    seconds: float

    def apply(self, cfg: Config) -> Config:
        """``cfg`` with this plan's training steps and held-out pairs."""
        synthetic = dataclasses.replace(cfg.data.synthetic, val_pairs=self.val_pairs)
        return dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, synthetic=synthetic),
            train=dataclasses.replace(cfg.train, max_steps=self.steps),
        )


def _fixed_seconds(cfg: Config, speeds: Speeds, val_pairs: int) -> float:
    """Everything but training: rendering, the random-init (no flip) and the final
    evaluation of ``val_pairs`` pairs, and the constant overhead."""
    synthetic = cfg.data.synthetic
    val_images = 2 * val_pairs
    train_images = synthetic.num_identities * synthetic.images_per_identity
    views = 1 + (2 if cfg.eval.flip else 1)
    return (
        (val_images + train_images) / speeds.render
        + views * val_images / speeds.embed
        + FIXED_SECONDS
    )


def plan_demo(cfg: Config, speeds: Speeds, budget_seconds: float) -> DemoPlan:
    """The largest demo of ``cfg`` that fits ``budget_seconds`` at ``speeds``: the recipe's
    held-out pairs and up to its ``train.max_steps``; half the pairs when the full set would
    leave less than half the steps (a pair count that keeps 10 balanced folds)."""
    wanted = recipe_steps(cfg)
    step_seconds = _step_seconds(cfg, speeds)
    plan = None
    for val_pairs in _pair_counts(cfg.data.synthetic.val_pairs):
        left = PLANNED_SHARE * budget_seconds - _fixed_seconds(cfg, speeds, val_pairs)
        steps = min(wanted, max(MIN_STEPS, math.floor(left / step_seconds)))
        seconds = _fixed_seconds(cfg, speeds, val_pairs) + steps * step_seconds
        plan = DemoPlan(steps, val_pairs, seconds)
        if steps >= wanted / 2:
            break
    return plan


def minutes_for(cfg: Config, speeds: Speeds, steps: int, val_pairs: int) -> float:
    """The budget (``--minutes``) in which :func:`plan_demo` fits ``steps`` training steps
    with ``val_pairs`` held-out pairs at ``speeds``."""
    seconds = _fixed_seconds(cfg, speeds, val_pairs) + steps * _step_seconds(cfg, speeds)
    return seconds / PLANNED_SHARE / 60


def _step_seconds(cfg: Config, speeds: Speeds) -> float:
    """One training step: ``train.accumulate`` batches."""
    return cfg.train.batch_size * cfg.train.accumulate / speeds.train


def recipe_steps(cfg: Config) -> int:
    """The training steps the recipe asks for (``train.max_steps``, else its epochs)."""
    if cfg.train.max_steps:
        return cfg.train.max_steps
    synthetic = cfg.data.synthetic
    images = synthetic.num_identities * synthetic.images_per_identity
    return cfg.train.epochs * (images // (cfg.train.batch_size * cfg.train.accumulate))


def _pair_counts(val_pairs: int) -> list[int]:
    """The recipe's pair count, then half of it rounded to whole 10-fold blocks of 20."""
    half = val_pairs // 2 // 20 * 20
    return [val_pairs] if half < 20 else [val_pairs, half]


def measure_speeds(cfg: Config, render_samples: int = 24, embed_samples: int = 256) -> Speeds:
    """Time rendering, a training step and embedding on this machine (a few seconds). The
    model is a throwaway copy built from ``cfg``; the global RNG is left as it was."""
    with torch.random.fork_rng():
        return Speeds(
            render=_render_speed(cfg, render_samples) * render_workers(),
            train=_train_speed(cfg),
            embed=_embed_speed(cfg, embed_samples),
        )


def _render_speed(cfg: Config, samples: int) -> float:
    faces = SyntheticFaces(cfg.data.synthetic.seed)
    started = time.perf_counter()
    for k in range(samples):
        faces.render(k, k)
    return samples / (time.perf_counter() - started)


def _throwaway_model(cfg: Config) -> tuple[torch.nn.Module, torch.device]:
    device = resolve_device(cfg.train.device)
    precision = resolve_precision(cfg.train.amp, device)
    classes = cfg.data.synthetic.num_identities
    return build_model(cfg, classes, device, Distributed(), precision), device


def _train_speed(cfg: Config, timed_steps: int = 2) -> float:
    """Images per second of the recipe's training step (after one warm-up step)."""
    model, device = _throwaway_model(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    batch = cfg.train.batch_size
    height, width = cfg.data.input_size
    images = torch.randn(batch, 3, height, width, device=device)
    if cfg.train.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, cfg.data.synthetic.num_identities, (batch,), device=device)
    seconds = []
    for _ in range(1 + timed_steps):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = model(images, labels)
        loss.backward()
        optimizer.step()
        float(loss.detach())  # wait for the device
        seconds.append(time.perf_counter() - started)
    return batch / float(np.median(seconds[1:]))


def _embed_speed(cfg: Config, samples: int) -> float:
    """Images per second of the evaluation path (one view: no flip) on random images."""
    model, device = _throwaway_model(cfg)
    height, width = cfg.data.input_size
    images = np.random.default_rng(0).integers(0, 256, (samples, height, width, 3), np.uint8)
    batch = cfg.eval.batch_size
    embedder = Embedder.from_backbone(model.backbone, device=device, batch_size=batch)
    embedder.embed_raw(images[:batch])  # warm-up
    started = time.perf_counter()
    embedder.embed_raw(images)
    return samples / (time.perf_counter() - started)
