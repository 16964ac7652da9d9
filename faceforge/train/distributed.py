"""Where this process sits in a (possibly) distributed run, read from ``torchrun``'s environment.

One process with no environment set is a world of size 1 and runs the same code path: no
process group, no DDP wrapper, rank 0. Under ``torchrun`` the process group is created in
:meth:`Distributed.setup` (never at import time): gloo on CPU; on CUDA, NCCL for the tensors
on the GPU and gloo for the decisions every process must share (rank 0's evaluation, the
output folder, when to save or stop), which are small Python objects on the CPU.

Every wait is bounded by ``train.collective_timeout_minutes``. A wait under
:meth:`Distributed.waiting_for` that fails (the limit passed, or another process is gone)
ends with one :class:`~faceforge.errors.TrainingError` naming what it waited for. On CUDA
the decisions go through gloo and end the same way; a stuck NCCL collective (the gradient
all-reduce) is ended by NCCL's watchdog after the same limit.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from faceforge.device import resolve_device
from faceforge.errors import ConfigError, TrainingError, first_line

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

    def setup(self, device: torch.device, timeout_minutes: float) -> None:
        """Join the process group when there is more than one process; every collective
        then gives up after ``timeout_minutes``."""
        if self.enabled and not dist.is_initialized():
            # CPU tensors (the shared decisions) go through gloo even on CUDA: its waits end
            # in an exception on the waiting process, which waiting_for turns into one line
            backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
            store, _, _ = next(dist.rendezvous("env://", self.rank, self.world_size))
            # torchrun's store outlives a restart: keys of the failed attempt (the old
            # peers' addresses) must not be read by the new one
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            store = dist.PrefixStore(f"faceforge/attempt{attempt}", store)
            dist.init_process_group(
                backend,
                store=store,
                rank=self.rank,
                world_size=self.world_size,
                timeout=datetime.timedelta(minutes=timeout_minutes),
            )

    @contextlib.contextmanager
    def process_group_scope(self) -> Iterator[None]:
        """A process group created within the block is destroyed when the block ends, on
        every path; a group that existed before the block is left to its creator.

        A block that ends normally first waits at a barrier, without holding the GIL:
        gloo's worker threads drop the tensors of the last collectives only once they get
        the GIL, and one that gets it while Python is shutting down aborts the process
        ("terminate called without an active exception"), so torchrun would report a
        finished job as failed. Destroying the group does not end those threads while a
        DDP model built on it exists (https://github.com/pytorch/pytorch/pull/179291)."""
        existed = dist.is_initialized()
        try:
            yield
            if not existed and dist.is_initialized():
                with self.waiting_for("every process at the end of the run"):
                    dist.barrier()
        finally:
            if not existed and dist.is_initialized():
                dist.destroy_process_group()

    @contextlib.contextmanager
    def waiting_for(self, what: str) -> Iterator[None]:
        """Within the block, a collective that fails (another process stopped, or the wait
        passed ``train.collective_timeout_minutes``) raises one TrainingError naming
        ``what`` (e.g. ``"rank 0's evaluation at step 2000"``) instead of a backend
        traceback. Other errors pass unchanged."""
        started = time.monotonic()
        try:
            yield
        except RuntimeError as exc:
            if not (self.enabled and _is_communication_error(exc)):
                raise
            waited = _duration(time.monotonic() - started)
            raise TrainingError(
                f"rank {self.rank} gave up after waiting {waited} for {what} "
                f"({_backend_message(exc)}): another process failed or is stuck (see its "
                "output); if it was only slow, raise train.collective_timeout_minutes"
            ) from None

    def from_main(self, compute: Callable[[], T], what: str) -> T:
        """``compute()`` on rank 0, its result shared with every rank (one decision, e.g.
        the output folder, for the whole job); ``what`` names the wait for the others. When
        ``compute`` fails every rank stops: rank 0 with its error, the others with a
        TrainingError quoting it, so none is left waiting for a process that has gone."""
        return self._on_main(compute, what, share=True)

    def on_main(self, compute: Callable[[], T], what: str) -> T | None:
        """``compute()`` on rank 0 alone (its evaluation sets: too large to send); the others
        get ``None``, or stop as in :meth:`from_main` when it fails."""
        return self._on_main(compute, what, share=False)

    def _on_main(self, compute: Callable[[], T], what: str, share: bool) -> T | None:
        value, error = None, None
        if self.is_main:
            try:
                value = compute()
            except Exception as exc:  # every rank must learn of it
                error = exc
        if self.enabled:
            failure = None if error is None else first_line(error) or type(error).__name__
            outcome = [(value if share else None, failure)]
            try:
                with self.waiting_for(what):
                    dist.broadcast_object_list(outcome, src=0)
            except TrainingError:
                if error is None:
                    raise
            value, failure = outcome[0] if not self.is_main else (value, None)
            if failure is not None:
                raise TrainingError(f"stopped with rank 0, which failed: {failure}")
        if error is not None:
            raise error  # rank 0's own error, even when the others are gone
        return value

    def gathered(self, value: T, what: str) -> list[T]:
        """Every process's ``value`` (a small Python object), in rank order."""
        if not self.enabled:
            return [value]
        values: list[Any] = [None] * self.world_size
        with self.waiting_for(what):
            dist.all_gather_object(values, value)
        return values

    def agree(self, values: Sequence[int], what: str) -> list[int]:
        """The element-wise maximum of every process's ``values``: a flag any process
        raises (a stop request) or one that rank 0 alone sets holds for all of them."""
        if not self.enabled:
            return list(values)
        shared = torch.tensor(values, dtype=torch.int64)  # on the CPU: through gloo
        with self.waiting_for(what):
            dist.all_reduce(shared, op=dist.ReduceOp.MAX)
        return shared.tolist()

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

#: the source location gloo puts before its messages ("[.../gloo/transport/tcp/pair.cc:553] ")
_GLOO_LOCATION = re.compile(r"^\[[^\]]*gloo[^\]]*\]\s*")


def _is_communication_error(exc: RuntimeError) -> bool:
    """Whether ``exc`` is a failed collective: NCCL and the stores raise ``DistError``s,
    gloo a plain RuntimeError whose message starts with its source location."""
    return isinstance(exc, dist.DistError) or bool(_GLOO_LOCATION.match(first_line(exc)))


def _backend_message(exc: RuntimeError) -> str:
    """The backend's first line without its source location or advice."""
    message = _GLOO_LOCATION.sub("", first_line(exc))
    return message.split(". ", 1)[0].rstrip(".")


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _sum_hook(state, bucket):  # no annotations: DDP checks them, and ours would be strings
    """DDP communication hook: all-reduce a gradient bucket by sum (DDP's default divides
    by the world size)."""
    work = dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda future: future.value()[0])
