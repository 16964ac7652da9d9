"""NVIDIA DALI for RecordIO training data: read, decode on the GPU (nvJPEG) and flip there.

:func:`faceforge.data.loader.build_loader` calls :func:`dali_batches` when asked
(``data.dali=true``) and falls back to the CPU loader, with a warning, whenever it raises:
DALI missing, no CUDA, or a dataset it cannot serve. DALI shuffles with its own RNG and does
only the horizontal flip, so its batches are not the CPU loader's; it needs a ``plain``
RecordIO (DALI would try to decode the MS1M header record as an image: write a shuffled,
plain copy with ``faceforge convert SRC DST/train.rec --shuffle``, as insightface's
``shuffle_rec.py`` does), contiguous class ids and no augmentation beyond the flip.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from faceforge.data.dataset import Batch, EpochSampler, FaceDataset
from faceforge.data.readers.recordio import RecordIOReader
from faceforge.data.transforms import HorizontalFlip


class DaliBatches:
    """DALI's output as :class:`Batch` objects (uint8 images, int64 labels, on the GPU)."""

    def __init__(self, iterator: Any) -> None:
        self.iterator = iterator

    def __len__(self) -> int:
        return len(self.iterator)

    def __iter__(self) -> Iterator[Batch]:
        for (out,) in self.iterator:
            yield Batch(out["images"], out["labels"].view(-1).long())


def _flip_probability(dataset: FaceDataset) -> float:
    steps = list(dataset.transform.transforms)
    if any(not isinstance(step, HorizontalFlip) for step in steps):
        raise ValueError("DALI does only the horizontal flip; other augmentations are on")
    return steps[0].p if steps else 0.0


def _check(dataset: FaceDataset, sampler: Sampler[int], device: torch.device) -> RecordIOReader:
    reader = dataset.reader
    if device.type != "cuda":
        raise ValueError("DALI decodes on a CUDA device")
    if type(sampler) is not EpochSampler:
        raise ValueError(
            f"DALI shuffles by itself: it cannot draw {type(sampler).__name__} batches"
        )
    if not isinstance(reader, RecordIOReader):
        raise ValueError("DALI reads only data.source=recordio")
    if reader.has_header:
        raise ValueError(
            f"{reader.files.rec} has an MS1M header record; write a plain copy with "
            "'faceforge convert SRC DST/train.rec --shuffle'"
        )
    if not np.array_equal(reader.class_ids, np.arange(reader.num_classes)):
        raise ValueError(f"{reader.files.rec}: class ids are remapped, DALI reads them raw")
    if sampler.start:
        raise ValueError(
            "DALI cannot start in the middle of an epoch (a resumed run); the CPU loader "
            "serves this run to its end"
        )
    return reader


def _import_dali() -> tuple[Any, Any, Any, Any, Any]:
    """DALI's ``fn``, ``pipeline_def``, ``types``, iterator and last-batch policy."""
    try:
        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
    except ImportError as exc:
        raise ValueError(
            f"DALI is not installed ({exc}); pip install nvidia-dali-cuda120 (or -cuda130, "
            "as your CUDA)"
        ) from None
    return fn, pipeline_def, types, DALIGenericIterator, LastBatchPolicy


def dali_batches(
    dataset: FaceDataset, sampler: Sampler[int], batch_size: int, device: torch.device
) -> DaliBatches:
    """One epoch of DALI batches of this process's shard (``sampler.rank`` of
    ``sampler.world_size``); raises when DALI cannot serve this dataset here.

    Every shard is padded to ``ceil(n / world_size)`` samples, as the CPU sampler pads every
    rank's share: shards of different sizes would give the ranks different numbers of
    batches, and a rank that ran out first would leave the others waiting in a collective."""
    reader = _check(dataset, sampler, device)
    flip = _flip_probability(dataset)
    fn, pipeline_def, types, DALIGenericIterator, LastBatchPolicy = _import_dali()

    height, width = dataset.input_size

    @pipeline_def(
        batch_size=batch_size,
        num_threads=4,
        device_id=device.index or 0,
        seed=dataset.seed + dataset.epoch,
    )
    def pipeline() -> Any:
        jpegs, labels = fn.readers.mxnet(
            path=[str(reader.files.rec)],
            index_path=[str(reader.files.idx)],
            random_shuffle=True,
            shard_id=sampler.rank,
            num_shards=sampler.world_size,
            pad_last_batch=True,
            name="reader",
        )
        images = fn.decoders.image(jpegs, device="mixed", output_type=types.RGB)
        # the CPU loader's center-crop fit: scale to cover, keep the aspect, cut the centre
        images = fn.resize(images, resize_x=width, resize_y=height, mode="not_smaller")
        images = fn.crop_mirror_normalize(
            images,
            dtype=types.UINT8,
            output_layout="CHW",
            crop=(height, width),
            mirror=fn.random.coin_flip(probability=flip),
        )
        return images, labels.gpu()

    pipe = pipeline()
    pipe.build()
    iterator = DALIGenericIterator(
        [pipe],
        ["images", "labels"],
        reader_name="reader",
        last_batch_policy=LastBatchPolicy.DROP,
        auto_reset=True,
    )
    return DaliBatches(iterator)
