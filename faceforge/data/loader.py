"""Batches for training, fast: worker processes, pinned memory, a CUDA prefetcher
("DataLoaderX") and, on request, NVIDIA DALI for RecordIO.

:func:`build_loader` is the one entry point. On the CPU path the batches are exactly those
of ``DataLoader(dataset, batch_size, sampler=sampler, collate_fn=collate_faces,
drop_last=True)``, in the same order, whatever the number of workers, and whether or not the
workers persist: every index travels with its epoch, so a worker that outlives an epoch
still seeds augmentation by ``(seed, epoch, index)``.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import TypeVar

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from faceforge.data.dataset import Batch, FaceDataset, Sample, collate_faces

T = TypeVar("T")
U = TypeVar("U")


class _EpochIndexed(Dataset):
    """``dataset[(epoch, index)]``: sets the epoch in whichever process loads the sample."""

    def __init__(self, dataset: FaceDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Sample:
        epoch, index = item
        if self.dataset.epoch != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


class _EpochTagged(Sampler[tuple[int, int]]):
    """The sampler's indices, each paired with the dataset's epoch when iteration starts."""

    def __init__(self, sampler: Sampler[int], dataset: FaceDataset) -> None:
        self.sampler = sampler
        self.dataset = dataset

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.dataset.epoch
        return ((epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]


def one_ahead(items: Iterable[T], send: Callable[[T], U], receive: Callable[[U], T]) -> Iterator[T]:
    """``receive(send(x))`` of every item in order, with item ``k + 1`` already sent when
    item ``k`` is received and handed out: the copy of the next batch overlaps the work on
    the current one."""
    pending: list[U] = []
    for item in items:
        pending.append(send(item))
        if len(pending) == 2:
            yield receive(pending.pop(0))
    if pending:
        yield receive(pending.pop())


class CudaPrefetcher:
    """Moves each batch to ``device`` on a side CUDA stream while the previous one is being
    used, so the host-to-device copy overlaps compute; batches come out with their tensors
    on the device (the trainer's own ``.to(device)`` is then free). Any other device passes
    the batches through untouched."""

    def __init__(self, batches: Iterable[Batch], device: torch.device) -> None:
        self.batches = batches
        self.device = device

    def __len__(self) -> int:
        if not isinstance(self.batches, Sized):
            raise TypeError("the wrapped batches have no length")
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        if self.device.type != "cuda":
            return iter(self.batches)
        stream = torch.cuda.Stream(self.device)
        return one_ahead(self.batches, functools.partial(self._send, stream), self._receive)

    def _send(self, stream: torch.cuda.Stream, batch: Batch) -> tuple[Batch, torch.cuda.Event]:
        with torch.cuda.stream(stream):
            images = batch.images.to(self.device, non_blocking=True)
            labels = batch.labels.to(self.device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(stream)
        return dataclasses.replace(batch, images=images, labels=labels), copied

    def _receive(self, sent: tuple[Batch, torch.cuda.Event]) -> Batch:
        batch, copied = sent
        current = torch.cuda.current_stream(self.device)
        current.wait_event(copied)
        # memory allocated on the side stream is now used on this one
        batch.images.record_stream(current)
        batch.labels.record_stream(current)
        return batch


def build_loader(
    dataset: FaceDataset,
    sampler: Sampler[int],
    batch_size: int,
    num_workers: int,
    device: torch.device,
    *,
    drop_last: bool = True,
    prefetch_factor: int = 4,
    persistent_workers: bool = False,
    dali: bool = False,
) -> Iterable[Batch]:
    """The batches of ``dataset`` in ``sampler`` order, as :class:`Batch` objects.

    Workers are forked and must not reconfigure OpenCV's thread pool (``cv2.setNumThreads``
    in a forked child waits forever for the parent's pool threads, which did not survive the
    fork); at 112x112 OpenCV runs single-threaded anyway.

    ``num_workers`` processes decode and augment (``prefetch_factor`` batches ahead each);
    on CUDA the batches are pinned and copied ahead by a :class:`CudaPrefetcher`. Build the
    loader once and iterate it once per epoch (after ``dataset.set_epoch`` and
    ``sampler.set_epoch``): with ``persistent_workers`` the workers then survive between
    epochs. ``dali`` asks for NVIDIA's GPU pipeline on a RecordIO dataset (see
    :mod:`faceforge.data.recordio.dali`), falling back to this loader with a warning.
    """
    if dali:
        batches = _dali_or_none(dataset, sampler, batch_size, device)
        if batches is not None:
            return batches
    loader = DataLoader(
        _EpochIndexed(dataset),
        batch_size=batch_size,
        sampler=_EpochTagged(sampler, dataset),
        num_workers=num_workers,
        collate_fn=collate_faces,
        drop_last=drop_last,
        pin_memory=device.type == "cuda",
        prefetch_factor=prefetch_factor if num_workers else None,
        persistent_workers=persistent_workers and num_workers > 0,
        # its own generator for the workers' base seed: drawn from the global one, each new
        # epoch's iterator would move the RNG that dropout and Partial FC sampling follow,
        # between the checkpoint saving it and a resumed run restoring it
        generator=torch.Generator(),
    )
    return CudaPrefetcher(loader, device) if device.type == "cuda" else loader


def _dali_or_none(
    dataset: FaceDataset, sampler: Sampler[int], batch_size: int, device: torch.device
) -> Iterable[Batch] | None:
    """DALI's batches, or None (with a warning saying why) when it cannot be used."""
    from faceforge.data.recordio.dali import dali_batches

    try:
        return dali_batches(dataset, sampler, batch_size, device)
    except Exception as exc:  # missing, unsuitable or failing DALI: the CPU loader works
        warnings.warn(f"DALI loader unavailable ({exc}); using the CPU loader", stacklevel=3)
        return None
