"""Peak memory per rank of the Partial FC head for 1 and 2 processes, printed as a table.

    python bench/partial_fc_memory.py                          # 10k, 100k, 1M classes on CPU
    python bench/partial_fc_memory.py --classes 1000 10000 --ranks 1 2 4
    python bench/partial_fc_memory.py --device cuda            # NCCL, one GPU per rank

Every case starts fresh processes, one per rank (gloo on CPU, NCCL on CUDA), each of which
builds a :class:`~faceforge.models.heads.PartialFC` (ArcFace) and an SGD optimizer with
momentum, and takes two steps on its share of one global batch (``--batch`` embeddings split
across the ranks: the same job on more ranks). The largest figure over the ranks is shown.

"measured" is, per rank, how far memory rose above what was in use just before the head was
built, at its highest during the two steps:

- CUDA: ``torch.cuda.max_memory_allocated`` minus the bytes allocated before; every tensor
  the head and the optimizer create, nothing of the CUDA context or the caching allocator.
- CPU (Linux only): the process's peak resident set (``ru_maxrss``) minus its resident set
  before, after resetting the kernel's peak mark through ``/proc/self/clear_refs``. A tiny
  head first takes one step, so that lazily loaded kernels and the gloo buffers are paid
  before the baseline. glibc's mmap threshold is fixed at 128 kB (``MALLOC_MMAP_THRESHOLD_``,
  unless already set) so that freed tensors leave the resident set, as they leave CUDA's
  allocated bytes; with its default, dynamic threshold, freed tensors under 32 MB can stay
  resident and add up to about a third more, depending on their sizes.

"weight+grad+mom" is the bytes of the weight, its gradient and the momentum buffer read from
the tensors themselves (the part that Partial FC divides by the number of ranks); "logits"
is one (global batch, rows scored) float32 matrix, of which the forward and backward keep a
few (cosines, margin logits, softmax, its gradient). Figures depend on the allocator, so
compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import tempfile
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rich.console import Console
from rich.table import Table

from faceforge.models.heads import ArcFace, PartialFC

MIB = 2**20


def peak_since_reset(device: torch.device) -> int:
    """Bytes in use at the highest point since :func:`reset_peak` (CUDA: allocated tensors;
    CPU: resident set)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def reset_peak(device: torch.device) -> int:
    """Restart the peak measurement and return the bytes in use now."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS (Linux >= 4.0)
    return peak_since_reset(device)


def train_steps(head: PartialFC, batch: int, steps: int) -> torch.optim.Optimizer:
    """``steps`` SGD steps of ``head`` on random embeddings and labels; the gradient of the
    last step is kept."""
    device, size = head.weight.device, head.weight.shape[1]
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        optimizer.zero_grad()
        embeddings = torch.randn(batch, size, device=device, requires_grad=True)
        labels = torch.randint(0, head.num_classes, (batch,), device=device)
        head(embeddings, labels).backward()
        optimizer.step()
    return optimizer


def held_bytes(head: PartialFC, optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the weight, its gradient and its momentum buffer."""
    momentum = optimizer.state[head.weight]["momentum_buffer"]
    return sum(t.numel() * t.element_size() for t in (head.weight, head.weight.grad, momentum))


def rank_worker(rank: int, args: argparse.Namespace, classes: int, world: int, case: Path) -> None:
    """One rank of one case: warm up, build the head, two steps; figures to a JSON file
    beside ``case``."""
    device = torch.device(args.device, rank) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        init_method=f"file://{case}.rendezvous",
        rank=rank,
        world_size=world,
        timeout=timedelta(minutes=10),
    )
    batch = args.batch // world
    margin = ArcFace(64.0, 0.5)
    warmup = PartialFC(margin, args.embedding_size, world, 1.0, rank, world)
    train_steps(warmup.to(device), batch, steps=1)  # lazy initialisation paid before the baseline
    before = reset_peak(device)
    head = PartialFC(margin, args.embedding_size, classes, args.sample_rate, rank, world)
    optimizer = train_steps(head.to(device), batch, steps=2)
    figures = {
        "rows": head.num_local,
        "held": held_bytes(head, optimizer),
        "measured": peak_since_reset(device) - before,
    }
    Path(f"{case}.rank{rank}.json").write_text(json.dumps(figures))
    dist.destroy_process_group()


def measure(args: argparse.Namespace, classes: int, world: int, folder: Path) -> dict[str, int]:
    """Figures of the rank with the highest measured peak, for ``classes`` on ``world`` ranks."""
    case = folder / f"classes{classes}-ranks{world}"
    mp.spawn(rank_worker, args=(args, classes, world, case), nprocs=world)
    ranks = [json.loads(Path(f"{case}.rank{r}.json").read_text()) for r in range(world)]
    return max(ranks, key=lambda figures: figures["measured"])


def logits_bytes(args: argparse.Namespace, rows: int) -> int:
    """One float32 (global batch, scored rows) matrix; with sampling, rows scored when the
    batch's positives fit in the sample."""
    return args.batch * math.ceil(args.sample_rate * rows) * 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=128, help="global batch, split over ranks")
    parser.add_argument("--embedding-size", type=int, default=512)
    parser.add_argument("--sample-rate", type=float, default=1.0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))  # read by the children
    usable = [w for w in args.ranks if args.device == "cpu" or w <= torch.cuda.device_count()]

    table = Table(
        title=f"Partial FC head per rank ({args.device}, {args.embedding_size}-d, global batch "
        f"{args.batch}, sample rate {args.sample_rate})"
    )
    for column in ["classes", "ranks", "rows/rank", "weight+grad+mom", "logits", "measured"]:
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("vs 1 rank", justify="right", no_wrap=True)
    with tempfile.TemporaryDirectory() as folder:
        for classes in args.classes:
            single = None
            for world in usable:
                figures = measure(args, classes, world, Path(folder))
                if world == 1:
                    single = figures["measured"]
                ratio = f"{figures['measured'] / single:.2f}x" if single else "-"
                table.add_row(
                    f"{classes:,}",
                    str(world),
                    f"{figures['rows']:,}",
                    f"{figures['held'] / MIB:,.1f} MiB",
                    f"{logits_bytes(args, figures['rows']) / MIB:,.1f} MiB",
                    f"{figures['measured'] / MIB:,.1f} MiB",
                    ratio,
                )
    Console(width=120).print(table)
    skipped = sorted(set(args.ranks) - set(usable))
    if skipped:
        print(f"skipped {skipped} ranks: only {torch.cuda.device_count()} CUDA device(s)")


if __name__ == "__main__":
    main()
