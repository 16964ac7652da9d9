"""Where this process sits in a (possibly) distributed run, read from ``torchrun``'s environment.

One process with no environment set is a world of size 1 and runs the same code path: no
process group, no DDP wrapper, rank 0. Under ``torchrun`` the process group is NCCL on CUDA
and gloo on CPU, created in :meth:`Distributed.setup` (never at import time).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from faceforge.device import resolve_device
from faceforge.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    """Rank, world size and local rank of this process (``torchrun`` sets all three)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (absent: a single process)."""
        try:
            values = {k: int(os.environ.get(k, d)) for k, d in _ENV_DEFAULTS.items()}
        except ValueError as exc:
            raise ConfigError(f"malformed torchrun environment: {exc}") from None
        return cls(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, evaluates and writes files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def device(self, requested: str) -> torch.device:
        """The configured device; under torchrun each process takes its local CUDA device."""
        device = resolve_device(requested)
        if device.type == "cuda" and self.enabled:
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def setup(self, device: torch.device) -> None:
        """Join the process group (NCCL on CUDA, gloo on CPU) when there is more than one."""
        if self.enabled and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            store, _, _ = next(dist.rendezvous("env://", self.rank, self.world_size))
            # torchrun's store outlives a restart: keys of the failed attempt (the old
            # peers' addresses) must not be read by the new one
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            store = dist.PrefixStore(f"faceforge/attempt{attempt}", store)
            dist.init_process_group(
                backend, store=store, rank=self.rank, world_size=self.world_size
            )

    def from_main(self, compute: Callable[[], T]) -> T:
        """``compute()`` on rank 0, its result shared with every rank (one decision, e.g.
        the output folder, for the whole job)."""
        value = [compute() if self.is_main else None]
        if self.enabled:
            dist.broadcast_object_list(value, src=0)
        return value[0]

    def barrier(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.barrier()

    def wrap(
        self, module: nn.Module, device: torch.device, sum_gradients: bool = False
    ) -> nn.Module:
        """``DistributedDataParallel(module)`` when distributed, else ``module`` itself (the
        unwrapped module stays with the caller as ``model_without_ddp``). DDP averages the
        gradients over processes; ``sum_gradients`` sums them instead, for a loss that is
        already the mean over the global batch (Partial FC)."""
        if not self.enabled:
            return module
        ids = [device.index] if device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(module, device_ids=ids)
        if sum_gradients:
            wrapped.register_comm_hook(None, _sum_hook)
        return wrapped


_ENV_DEFAULTS = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}


def _sum_hook(state, bucket):  # no annotations: DDP checks them, and ours would be strings
    """DDP communication hook: all-reduce a gradient bucket by sum (DDP's default divides
    by the world size)."""
    work = dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda future: future.value()[0])
