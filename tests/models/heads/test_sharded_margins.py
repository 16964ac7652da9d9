"""AdaFace and CurricularFace on two gloo processes: sharded (Partial FC) they equal the full
head on the global batch, EMAs included; replicated (a full head per rank, as under DDP) their
EMAs are the global batch's too, the same on every rank."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from two_ranks import BATCH, CLASSES, EMB, WORLD, join

from faceforge.models.heads import AdaFace, CurricularFace, MarginHead, PartialFC

MARGINS = {"adaface": lambda: AdaFace(64.0, 0.4), "curricularface": lambda: CurricularFace()}


def buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.named_buffers()}


def full(margin: str, weight, x, labels, steps: int = 2):
    """Loss and gradients of the last of ``steps`` full-head steps, and the margin's buffers."""
    head = MarginHead(EMB, CLASSES, MARGINS[margin]()).double()
    head.fc.weight.data.copy_(weight)
    for _ in range(steps):
        head.zero_grad()
        xg = x.clone().requires_grad_()
        loss = F.cross_entropy(head(xg, labels), labels)
        loss.backward()
    return loss.detach(), xg.grad, head.fc.weight.grad, buffers(head.margin)


def _worker(rank: int, folder: Path) -> None:
    x, labels, weight, mine = join(rank, folder)
    results = {}
    for name in MARGINS:
        head = PartialFC(MARGINS[name](), EMB, CLASSES, rank=rank, world_size=WORLD).double()
        head.weight.data.copy_(head.shard(weight))
        for _ in range(2):
            head.zero_grad()
            xg = x[mine].clone().requires_grad_()
            loss = head(xg, labels[mine])
            loss.backward()
        results[name] = (loss.detach(), xg.grad, head.weight.grad, buffers(head.margin))
        replicated = MarginHead(EMB, CLASSES, MARGINS[name]()).double()
        replicated.fc.weight.data.copy_(weight)
        replicated(x[mine], labels[mine])
        results[f"{name} replicated"] = buffers(replicated.margin)
    torch.save(results, folder / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sharded_margins")
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(BATCH, EMB, generator=generator, dtype=torch.float64) * 4
    labels = torch.randint(0, CLASSES, (BATCH,), generator=generator)
    weight = torch.randn(CLASSES, EMB, generator=generator, dtype=torch.float64) * 0.01
    torch.save((x, labels, weight), folder / "inputs.pt")
    mp.spawn(_worker, args=(folder,), nprocs=WORLD)
    return [torch.load(folder / f"rank{r}.pt") for r in range(WORLD)], (x, labels, weight)


@pytest.mark.parametrize("margin", sorted(MARGINS))
def test_partial_fc_equals_the_full_head(two_ranks, margin):
    results, (x, labels, weight) = two_ranks
    loss, x_grad, weight_grad, state = full(margin, weight, x, labels)
    sizes = [6, 5]
    rows = torch.split(weight_grad, sizes)
    for rank, result in enumerate(results):
        rank_loss, rank_x_grad, rank_weight_grad, rank_state = result[margin]
        torch.testing.assert_close(rank_loss, loss)
        torch.testing.assert_close(rank_x_grad, x_grad.chunk(WORLD)[rank])
        torch.testing.assert_close(rank_weight_grad, rows[rank])
        for key, value in state.items():
            torch.testing.assert_close(rank_state[key], value)


@pytest.mark.parametrize("margin", sorted(MARGINS))
def test_replicated_heads_share_the_global_batch_statistics(two_ranks, margin):
    results, (x, labels, weight) = two_ranks
    *_, state = full(margin, weight, x, labels, steps=1)
    for result in results:
        for key, value in state.items():
            torch.testing.assert_close(result[f"{margin} replicated"][key], value)
