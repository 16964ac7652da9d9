"""Partial FC against the full cosine FC + margin + ``F.cross_entropy``: on one process, and
sharded over two gloo processes on CPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from two_ranks import BATCH, CLASSES, EMB, WORLD, join

from faceforge.errors import ConfigError
from faceforge.models.heads import ArcFace, CombinedMargin, CosFace, MarginHead, PartialFC

MARGINS = {
    "arcface": lambda: ArcFace(64.0, 0.5),
    "cosface": lambda: CosFace(64.0, 0.35),
    "combined": lambda: CombinedMargin(64.0, 0.9, 0.4, 0.15),
}
SCALE = 64.0  # every margin above scales its cosines by 64
SAMPLE_RATE = 0.3


def full_fc(margin: str, weight: torch.Tensor, x: torch.Tensor, labels: torch.Tensor):
    """Loss and gradients (embeddings, weight) of MarginHead + F.cross_entropy on one process."""
    head = MarginHead(EMB, weight.shape[0], MARGINS[margin]()).to(weight.dtype)
    head.fc.weight.data.copy_(weight)
    x = x.clone().requires_grad_()
    loss = F.cross_entropy(head(x, labels), labels)
    loss.backward()
    return loss.detach(), x.grad, head.fc.weight.grad


def make_inputs(dtype: torch.dtype = torch.float32, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, EMB, generator=generator, dtype=dtype) * 3
    labels = torch.randint(0, CLASSES, (BATCH,), generator=generator)
    weight = torch.randn(CLASSES, EMB, generator=generator, dtype=dtype) * 0.01
    return x, labels, weight


def rounding_bound(dtype: torch.dtype) -> float:
    """How far two correct implementations may differ: each cosine is a dot product of EMB
    terms, accurate to EMB * u relative (u the unit roundoff; Higham, *Accuracy and Stability
    of Numerical Algorithms*, 3.1) whatever order a CPU's kernels sum in (AVX2 and AVX-512
    differ), and the margin multiplies it by SCALE; the loss and the gradients are O(1)
    combinations of these logits."""
    return SCALE * EMB * torch.finfo(dtype).eps / 2


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    bound = rounding_bound(expected.dtype)
    torch.testing.assert_close(actual, expected, rtol=bound, atol=bound)


def loss_and_grads(head: PartialFC, x: torch.Tensor, labels: torch.Tensor):
    x = x.clone().requires_grad_()
    loss = head(x, labels)
    loss.backward()
    return loss.detach(), x.grad, head.weight.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("margin", sorted(MARGINS))
def test_one_rank_equals_full_fc(margin, dtype):
    x, labels, weight = make_inputs(dtype)
    head = PartialFC(MARGINS[margin](), EMB, CLASSES).to(dtype)
    head.weight.data.copy_(weight)
    for actual, expected in zip(
        loss_and_grads(head, x, labels), full_fc(margin, weight, x, labels), strict=True
    ):
        assert_close(actual, expected)


def test_eval_mode_scores_every_class():
    x, labels, weight = make_inputs(torch.float64)
    head = PartialFC(ArcFace(), EMB, CLASSES, sample_rate=0.1).double().eval()
    head.weight.data.copy_(weight)
    for actual, expected in zip(
        loss_and_grads(head, x, labels), full_fc("arcface", weight, x, labels), strict=True
    ):
        assert_close(actual, expected)


def test_loss_is_float32_under_autocast():
    x, labels, weight = make_inputs()
    head = PartialFC(ArcFace(), EMB, CLASSES)
    head.weight.data.copy_(weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(x.bfloat16(), labels)
    assert loss.dtype == torch.float32
    assert_close(loss.detach(), head(x.bfloat16().float(), labels).detach())


def sampled_rows(head: PartialFC) -> set[int]:
    """Rows of the weight that got a gradient: the sampled class centres."""
    return set(torch.nonzero(head.weight.grad.abs().sum(dim=1)).flatten().tolist())


@pytest.mark.parametrize("distinct", [8, 16])  # fewer / more positives than the sample size
def test_sampling_keeps_every_positive(distinct):
    torch.manual_seed(0)
    classes, rate = 40, 0.23  # 9.2 centres: rounds up to 10
    head = PartialFC(ArcFace(), EMB, classes, sample_rate=rate).double()
    for _ in range(10):
        labels = torch.randperm(classes)[:distinct].repeat(2)
        x = torch.randn(labels.shape[0], EMB, dtype=torch.float64)
        head.zero_grad()
        loss = head(x, labels)
        loss.backward()
        rows = sampled_rows(head)
        assert set(labels.tolist()) <= rows
        assert len(rows) == max(math.ceil(rate * classes), distinct)
        # the loss is the full-FC cross-entropy over the sampled centres only
        index = torch.tensor(sorted(rows))
        remapped = torch.searchsorted(index, labels)
        expected = full_fc("arcface", head.weight.detach()[index], x, remapped)[0]
        assert_close(loss.detach(), expected)


def test_shards_are_contiguous_and_cover_every_class():
    heads = [PartialFC(ArcFace(), EMB, 10, rank=r, world_size=3) for r in range(3)]
    assert [(h.class_start, h.num_local) for h in heads] == [(0, 4), (4, 3), (7, 3)]
    assert [tuple(h.weight.shape) for h in heads] == [(4, EMB), (3, EMB), (3, EMB)]
    full = torch.arange(10)
    assert torch.equal(torch.cat([h.shard(full) for h in heads]), full)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_rate": 0.0},
        {"sample_rate": 1.5},
        {"rank": 2, "world_size": 2},
        {"rank": -1, "world_size": 2},
        {"rank": 0, "world_size": 12},  # fewer classes than ranks
    ],
)
def test_bad_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        PartialFC(ArcFace(), EMB, CLASSES, **kwargs)


def test_bad_shapes_raise_value_error():
    head = PartialFC(ArcFace(), EMB, CLASSES)
    with pytest.raises(ValueError, match="expected embeddings"):
        head(torch.randn(4, EMB), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="rows"):
        head.shard(torch.zeros(CLASSES + 1, EMB))
    with pytest.raises(ValueError, match="rows"):
        head.gather(torch.zeros(CLASSES - 1, EMB))


def _two_rank_worker(rank: int, folder: Path) -> None:
    """One of two gloo processes: the full-FC cases, sampling and shard/gather round trips on
    this rank's half of the global batch; results go to ``folder / rank{rank}.pt``."""
    x, labels, weight, mine = join(rank, folder)
    results = {}
    for margin in MARGINS:
        head = PartialFC(MARGINS[margin](), EMB, CLASSES, rank=rank, world_size=WORLD)
        head.weight.data.copy_(head.shard(weight))
        results[margin] = loss_and_grads(head, x[mine], labels[mine])
    torch.manual_seed(rank)  # every rank draws its own negatives
    head = PartialFC(ArcFace(), EMB, CLASSES, SAMPLE_RATE, rank=rank, world_size=WORLD)
    loss = head(x[mine], labels[mine])
    loss.backward()
    rows = sorted(head.class_start + row for row in sampled_rows(head))
    results["sampled"] = (loss.detach(), rows, head.class_start, head.num_local)
    uneven = PartialFC(ArcFace(), 3, 7, rank=rank, world_size=WORLD)
    matrix = torch.arange(21.0).view(7, 3)
    owners = torch.full((uneven.num_local,), rank)
    results["gather"] = (uneven.gather(uneven.shard(matrix)), uneven.gather(owners))
    try:
        PartialFC(ArcFace(), EMB, CLASSES, rank=1 - rank, world_size=WORLD)(x[mine], labels[mine])
    except RuntimeError as error:
        results["wrong rank"] = str(error)
    torch.save(results, folder / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[list[dict], tuple]:
    """Results of :func:`_two_rank_worker` from both ranks, and the inputs they shared."""
    folder = tmp_path_factory.mktemp("partial_fc")
    inputs = make_inputs(seed=1)
    torch.save(inputs, folder / "inputs.pt")
    mp.spawn(_two_rank_worker, args=(folder,), nprocs=WORLD)
    return [torch.load(folder / f"rank{r}.pt") for r in range(WORLD)], inputs


@pytest.mark.parametrize("margin", sorted(MARGINS))
def test_two_ranks_equal_full_fc(two_ranks, margin):
    results, (x, labels, weight) = two_ranks
    loss, x_grad, weight_grad = full_fc(margin, weight, x, labels)
    heads = [PartialFC(ArcFace(), EMB, CLASSES, rank=r, world_size=WORLD) for r in range(WORLD)]
    for rank, (head, result) in enumerate(zip(heads, results, strict=True)):
        rank_loss, rank_x_grad, rank_weight_grad = result[margin]
        assert_close(rank_loss, loss)
        assert_close(rank_x_grad, x_grad.chunk(WORLD)[rank])
        assert_close(rank_weight_grad, head.shard(weight_grad))


def test_two_ranks_sample_every_positive_of_the_global_batch(two_ranks):
    results, (_, labels, _) = two_ranks
    losses = [result["sampled"][0] for result in results]
    assert torch.equal(losses[0], losses[1])  # one loss for the whole job
    for result in results:
        _, rows, start, count = result["sampled"]
        positives = {label for label in labels.tolist() if start <= label < start + count}
        assert positives <= set(rows)
        assert len(rows) == max(math.ceil(SAMPLE_RATE * count), len(positives))


def test_gather_of_shard_is_identity_with_uneven_shards(two_ranks):
    results, _ = two_ranks
    for result in results:
        matrix, owners = result["gather"]
        assert torch.equal(matrix, torch.arange(21.0).view(7, 3))
        assert owners.tolist() == [0, 0, 0, 0, 1, 1, 1]


def test_a_head_built_for_another_rank_refuses_to_run(two_ranks):
    results, _ = two_ranks
    for result in results:
        assert "built for rank" in result.get("wrong rank", "")
