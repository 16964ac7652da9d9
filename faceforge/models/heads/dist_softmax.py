"""Collectives for model-parallel classification (Partial FC): rows gathered from every rank,
and softmax cross-entropy over classes sharded across ranks without gathering the logits.

Each function runs on the default process group and on the tensors' own devices, so the same
code serves gloo on CPU and NCCL on CUDA. Every rank must call them in the same order.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.autograd import Function


def gather_rows(local: Tensor, counts: list[int]) -> Tensor:
    """Concatenation, in rank order, of every rank's ``local`` rows (``counts[r]`` rows on rank
    ``r``; counts may differ). No gradient flows back."""
    padded = local.new_zeros((max(counts), *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:count] for part, count in zip(parts, counts, strict=True)])


class _GatherWithGrad(Function):
    """All-gather whose backward hands each rank the summed gradient of its own rows.

    Written over ``dist.all_gather`` / ``dist.all_reduce`` because
    ``torch.distributed.nn.functional.all_gather`` is deprecated (a FutureWarning on every
    call in recent torch) in favour of private functional collectives.
    """

    @staticmethod
    def forward(ctx: Any, local: Tensor) -> Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), local.shape[0]
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        # a copy: all_reduce works in place, and autograd may share its gradient buffers
        summed = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(summed, dist.ReduceOp.SUM)
        return summed[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(local: Tensor) -> Tensor:
    """Every rank's ``local`` (same shape on all ranks) concatenated in rank order; the
    gradient of each rank's rows, summed over ranks, flows back to that rank's ``local``."""
    return _GatherWithGrad.apply(local)


def _all_reduce(tensor: Tensor, op: dist.ReduceOp, distributed: bool) -> Tensor:
    if distributed:
        dist.all_reduce(tensor, op)
    return tensor


class _ShardedCrossEntropy(Function):
    """Mean softmax cross-entropy of logits whose classes are split across ranks.

    Each rank holds the columns of its shard, and ``labels`` index into them (-1: the target
    is on another rank). Per row, the max and the sum of exponentials are reduced over ranks
    and the target logit comes from its one holder, so the loss is exactly the full
    log-softmax, the same on every rank. Backward gives ``(softmax - one_hot) / N`` for this
    rank's columns, like insightface's DistCrossEntropy.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, labels: Tensor, distributed: bool) -> Tensor:
        maxima = _all_reduce(logits.detach().amax(dim=1), dist.ReduceOp.MAX, distributed)
        probs = (logits.detach() - maxima.unsqueeze(1)).exp_()
        sums = _all_reduce(probs.sum(dim=1), dist.ReduceOp.SUM, distributed)
        probs.div_(sums.unsqueeze(1))
        held = labels != -1
        index = labels.clamp(min=0).unsqueeze(1)
        target = torch.where(held, logits.detach().gather(1, index).squeeze(1), 0.0)
        target = _all_reduce(target, dist.ReduceOp.SUM, distributed)
        ctx.save_for_backward(probs, index, held)
        return (sums.log() + maxima - target).mean()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        probs, index, held = ctx.saved_tensors
        scale = grad / probs.shape[0]
        one_hot = (held.to(probs.dtype) * scale).unsqueeze(1)
        return (probs * scale).scatter_add_(1, index, -one_hot), None, None


def sharded_cross_entropy(logits: Tensor, labels: Tensor, distributed: bool) -> Tensor:
    """Mean over the N rows of ``-log softmax`` at the target, the softmax taken over every
    rank's columns of ``logits`` (N, C_local) without gathering them.

    ``labels`` (N,) are column indices into this rank's ``logits``, -1 where the target lies on
    another rank; every row's target must lie on exactly one rank. With ``distributed=False``
    this is ``F.cross_entropy(logits, labels)``.
    """
    return _ShardedCrossEntropy.apply(logits, labels, distributed)
