"""Checkpoints of a sharded (Partial FC) head: every process holds other class centers, and
their optimizer momentum. Checkpoints store the whole matrices, gathered from every process,
so a run can resume on another number of processes (each takes its own rows again)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from faceforge.models.heads import PartialFC
from faceforge.train.build import TrainingRun


def _sharded_head(run: TrainingRun) -> PartialFC | None:
    head = run.model.head
    return head if isinstance(head, PartialFC) else None


def _weight_index(run: TrainingRun, head: PartialFC) -> int:
    """Index of the head's weight in the optimizer's state dict (its parameter order)."""
    params = [p for group in run.optimizer.param_groups for p in group["params"]]
    return next(i for i, p in enumerate(params) if p is head.weight)


def _map_weight_state(optimizer_state: dict[str, Any], index: int, fn: Any) -> dict[str, Any]:
    """A copy of ``optimizer_state`` with ``fn`` applied to the head weight's row tensors."""
    state = dict(optimizer_state["state"])
    if index in state:
        state[index] = {
            key: fn(value) if isinstance(value, Tensor) and value.ndim == 2 else value
            for key, value in state[index].items()
        }
    return {**optimizer_state, "state": state}


def full_head_state(run: TrainingRun) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The head's state dict and the optimizer's, sharded rows gathered (a collective:
    every process must call it)."""
    head = _sharded_head(run)
    optimizer = run.optimizer.state_dict()
    if head is None:
        return run.model.head.state_dict(), optimizer
    state = {**head.state_dict(), "weight": head.gather(head.weight.detach())}
    return state, _map_weight_state(optimizer, _weight_index(run, head), head.gather)


def load_head_state(run: TrainingRun, head_state: dict, optimizer_state: dict) -> None:
    """Load a checkpoint's head and optimizer state, taking this process's rows. The
    checkpoint's tensors are mapped from its file
    (:meth:`~faceforge.core.checkpoint.Checkpoint.load`), and a process of a sharded head
    reads only its own rows of them."""
    head = _sharded_head(run)
    if head is not None:
        head_state = {**head_state, "weight": head.shard(head_state["weight"])}
        optimizer_state = _map_weight_state(optimizer_state, _weight_index(run, head), head.shard)
    run.model.head.load_state_dict(head_state)
    run.optimizer.load_state_dict(owned_state(optimizer_state, run.device))


def owned_state(value: Any, device: torch.device) -> Any:
    """``value`` with the tensors an optimizer on ``device`` would keep as they are cloned.

    ``Optimizer.load_state_dict`` keeps a tensor that is already where its parameter lives
    (a CPU run's momentum, or any run's scalar ``step``), and copies the others to the
    parameter's device. Those it keeps are cloned here so the optimizer never holds a
    tensor mapped from a checkpoint file; those it copies are left alone, so a GPU run's
    momentum goes from the file to the GPU without a copy in CPU memory on the way."""
    if isinstance(value, Tensor):
        kept = device.type == "cpu" or value.ndim == 0
        return value.clone() if kept else value
    if isinstance(value, dict):
        return {key: owned_state(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(owned_state(item, device) for item in value)
    return value


def holds_shards(run: TrainingRun) -> bool:
    """Whether saving needs every process (a sharded head in a multi-process run)."""
    return _sharded_head(run) is not None and run.dist.enabled


def clip_gradients(run: TrainingRun, max_norm: float) -> None:
    """Clip ``run.clipped`` to a global L2 norm of ``max_norm``. With a sharded head the
    norm covers every process's centers (their squared norms are summed across processes),
    so all processes scale by the same factor, as one process holding every center would."""
    head = _sharded_head(run)
    if head is None or not run.dist.enabled:
        torch.nn.utils.clip_grad_norm_(run.clipped, max_norm)
        return
    replicated = [p.grad for p in run.clipped if p is not head.weight and p.grad is not None]
    shard = (
        head.weight.grad.norm() ** 2 if head.weight.grad is not None else head.weight.new_zeros(())
    )
    dist.all_reduce(shard)
    total = (torch.nn.utils.get_total_norm(replicated) ** 2 + shard).sqrt()
    torch.nn.utils.clip_grads_with_norm_(run.clipped, max_norm, total)


def share_overflow(run: TrainingRun) -> None:
    """Under fp16 loss scaling with a sharded head, an overflow in one process's centers
    becomes every process's (a collective: every process must call it).

    The GradScaler skips a step whose gradients hold inf or NaN, and lowers its scale. The
    backbone's gradients are all-reduced, so every process sees the same ones, but each
    process's centers have gradients of their own: an overflow there alone would skip the
    step in that process only, and the backbones and loss scales of the processes would part.
    The flag is shared (one all-reduce), and a process whose own gradients are finite marks
    one of them, so every scaler skips the step and lowers its scale alike."""
    head = _sharded_head(run)
    if head is None or not run.dist.enabled or not run.scaler.is_enabled():
        return
    grad = head.weight.grad
    mine = grad is not None and not bool(
        torch.isfinite(torch.linalg.vector_norm(grad, ord=float("inf")))
    )
    if run.dist.agree([int(mine)], "every process's fp16 overflow check")[0] and not mine:
        marked = next(p.grad for p in run.clipped if p.grad is not None)
        marked[(0,) * marked.ndim] = float("inf")
