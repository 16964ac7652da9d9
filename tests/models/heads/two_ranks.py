"""Two gloo processes sharing one global batch, for the sharded-head tests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

EMB, CLASSES, BATCH, WORLD = 16, 11, 8, 2  # 11 classes: shards of 6 and 5 rows


def join(rank: int, folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, slice]:
    """Join the 2-process group (file rendezvous in ``folder``) and return the global batch
    ``folder / "inputs.pt"`` holds (embeddings, labels, full weight) and this rank's rows."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{folder}/rendezvous",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=60),
    )
    x, labels, weight = torch.load(folder / "inputs.pt")
    return x, labels, weight, slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
