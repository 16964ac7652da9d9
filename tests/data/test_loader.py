"""build_loader: the same batches as the plain DataLoader it replaces (any worker count,
persistent workers across epochs), the CUDA prefetcher's pass-through and one-ahead order,
DALI's fallback, and training from RecordIO and LMDB through the config."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from model_helpers import TINY_CLI
from torch.utils.data import DataLoader

from faceforge.config import load_config
from faceforge.data.dataset import Batch, EpochSampler, FaceDataset, collate_faces
from faceforge.data.lmdb.writer import LmdbWriter
from faceforge.data.loader import (
    CudaPrefetcher,
    build_loader,
    one_ahead,
)
from faceforge.data.readers import LmdbReader, RecordIOReader
from faceforge.data.recordio.writer import RecordIOWriter
from faceforge.data.samplers import PKSampler
from faceforge.data.transforms import Compose, Cutout, HorizontalFlip
from faceforge.errors import DataError

CPU = torch.device("cpu")


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 255, (8, 8, 3), np.uint8), (112, 112))
    return cv2.imencode(".jpg", image)[1].tobytes()


def write(writer, classes: int = 4, per_class: int = 4):
    with writer:
        for c in range(classes):
            for k in range(per_class):
                writer.add(c, jpeg(10 * c + k))


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rec")
    write(RecordIOWriter(folder / "train.rec"))
    return folder


@pytest.fixture(scope="module")
def lmdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lmdb") / "train.lmdb"
    write(LmdbWriter(path))
    return path


def dataset(rec: Path) -> FaceDataset:
    augment = Compose((HorizontalFlip(0.5), Cutout(0.5, 32)))
    return FaceDataset(RecordIOReader(rec), augment, seed=7)


def baseline(data: FaceDataset, sampler: EpochSampler, workers: int) -> list[Batch]:
    """What faceforge.train.build made before build_loader."""
    loader = DataLoader(
        data,
        batch_size=3,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_faces,
        drop_last=True,
        prefetch_factor=4 if workers else None,
    )
    return list(loader)


def assert_same(a: list[Batch], b: list[Batch]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)
        assert x.skipped == y.skipped


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_match_the_plain_dataloader(rec: Path, workers: int) -> None:
    data, sampler = dataset(rec), EpochSampler(16, seed=1)
    data.set_epoch(1)
    sampler.set_epoch(1, start=2)  # mid-epoch resume
    expected = baseline(data, sampler, 0)
    assert len(expected) == 4  # 14 samples -> 4 full batches of 3
    assert_same(list(build_loader(data, sampler, 3, workers, CPU)), expected)


def test_persistent_workers_follow_the_epoch(rec: Path) -> None:
    data, sampler = dataset(rec), EpochSampler(16, seed=1)
    loader = build_loader(data, sampler, 3, 2, CPU, persistent_workers=True)
    assert loader.persistent_workers
    for epoch in (0, 1):
        data.set_epoch(epoch)
        sampler.set_epoch(epoch)
        got = list(loader)
        fresh = dataset(rec)
        fresh.set_epoch(epoch)
        assert_same(got, baseline(fresh, sampler, 0))


def test_unreadable_samples_are_reported(tmp_path: Path) -> None:
    with RecordIOWriter(tmp_path / "train.rec", layout="plain") as writer:
        for k in range(4):
            writer.add(k % 2, jpeg(k) if k != 2 else b"\xff\xd8\xff broken")
    data = FaceDataset(RecordIOReader(tmp_path), Compose(()), skip_corrupt=True)
    batches = list(build_loader(data, range(4), 4, 0, CPU))
    stand_in = data.stand_in(2)  # another image of the dataset, drawn by (seed, epoch, index)
    assert batches[0].skipped == stand_in.replaces and stand_in.replaces[0] == 2
    assert batches[0].labels.tolist() == [0, 1, stand_in.label, 1]
    assert torch.equal(batches[0].images[2], stand_in.image)
    assert data.stand_in(2).image.equal(stand_in.image)  # a resumed run draws the same


def test_a_dataset_that_is_mostly_unreadable_stops_training(tmp_path: Path) -> None:
    with RecordIOWriter(tmp_path / "train.rec", layout="plain") as writer:
        for k in range(4):
            writer.add(k % 2, b"\xff\xd8\xff broken")
    data = FaceDataset(RecordIOReader(tmp_path), Compose(()), skip_corrupt=True)
    with pytest.raises(DataError, match="image 1 is unreadable, and so were the 16 images"):
        data[1]


def test_prefetcher_passes_cpu_batches_through(rec: Path) -> None:
    batches = [Batch(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), torch.tensor([k])) for k in (0, 1)]
    prefetcher = CudaPrefetcher(batches, CPU)
    assert len(prefetcher) == 2 and all(a is b for a, b in zip(prefetcher, batches, strict=True))
    with pytest.raises(TypeError, match="no length"):
        len(CudaPrefetcher(iter(batches), CPU))


def test_batches_are_pinnable_by_the_dataloader(rec: Path, monkeypatch) -> None:
    from torch.utils.data._utils.pin_memory import pin_memory

    samples = [dataset(rec)[i] for i in range(3)]
    batch = collate_faces(samples)
    pinned: list[torch.Tensor] = []

    def fake_pin(tensor: torch.Tensor, device=None) -> torch.Tensor:  # no CUDA here
        pinned.append(tensor)
        return tensor.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    out = pin_memory(batch)  # what DataLoader's pin-memory thread does with each batch
    assert isinstance(out, Batch) and len(pinned) == 2
    assert pinned[0] is batch.images and pinned[1] is batch.labels
    assert torch.equal(out.images, batch.images) and out.images is not batch.images


def test_one_ahead_sends_the_next_item_before_handing_out_the_current() -> None:
    events: list[str] = []

    def send(x: int) -> int:
        events.append(f"send {x}")
        return x

    def receive(x: int) -> int:
        events.append(f"receive {x}")
        return x

    out = []
    for x in one_ahead(range(3), send, receive):
        events.append(f"use {x}")
        out.append(x)
    assert out == [0, 1, 2]
    assert events == [
        "send 0",
        "send 1",
        "receive 0",
        "use 0",
        "send 2",
        "receive 1",
        "use 1",
        "receive 2",
        "use 2",
    ]
    assert list(one_ahead([], send, receive)) == []


def test_dali_falls_back_to_the_cpu_loader_with_a_warning(rec: Path) -> None:
    data, sampler = dataset(rec), EpochSampler(16, seed=1)
    with pytest.warns(UserWarning, match="DALI loader unavailable"):
        batches = list(build_loader(data, sampler, 3, 0, CPU, dali=True))
    assert_same(batches, baseline(data, sampler, 0))


@pytest.mark.parametrize("source", ["recordio", "lmdb"])
def test_training_from_the_config(rec: Path, lmdb_path: Path, tmp_path: Path, source) -> None:
    from faceforge.train.main import fit, setup

    path = rec if source == "recordio" else lmdb_path
    cfg = load_config(
        None,
        [
            f"data.source={source}",
            f"data.path={path}",
            "data.num_workers=2",
            *TINY_CLI,
            "train.max_steps=2",
            f"train.output_dir={tmp_path}",
        ],
    )
    run, state = setup(cfg, log=lambda _: None)
    reader = run.dataset.reader
    assert isinstance(reader, RecordIOReader if source == "recordio" else LmdbReader)
    assert reader.num_classes == 4
    summary = fit(run, state)
    assert summary.steps == 2 and np.isfinite(summary.final_loss)


class _RecordingDali:
    """A stand-in for ``nvidia.dali`` (not installed here) that records what the pipeline
    asks of DALI's mxnet reader and iterator."""

    def __init__(self) -> None:
        self.reader: dict = {}
        self.iterator: dict = {}
        self.fn = types.SimpleNamespace(
            readers=types.SimpleNamespace(mxnet=self._mxnet),
            decoders=types.SimpleNamespace(image=lambda x, **kw: x),
            resize=lambda x, **kw: x,
            crop_mirror_normalize=lambda x, **kw: x,
            random=types.SimpleNamespace(coin_flip=lambda **kw: None),
        )

    def _mxnet(self, **kwargs):
        self.reader = kwargs
        return "jpegs", types.SimpleNamespace(gpu=lambda: "labels")

    def modules(self) -> dict:
        def pipeline_def(**options):
            return lambda body: lambda: types.SimpleNamespace(build=body)

        def iterator(pipes, names, **kwargs):
            self.iterator = kwargs
            return []

        dali = types.ModuleType("nvidia.dali")
        dali.fn, dali.pipeline_def = self.fn, pipeline_def
        dali.types = types.SimpleNamespace(RGB="RGB", UINT8="UINT8")
        plugin = types.ModuleType("nvidia.dali.plugin.pytorch")
        plugin.DALIGenericIterator = iterator
        plugin.LastBatchPolicy = types.SimpleNamespace(DROP="DROP")
        return {
            "nvidia": types.ModuleType("nvidia"),
            "nvidia.dali": dali,
            "nvidia.dali.plugin": types.ModuleType("nvidia.dali.plugin"),
            "nvidia.dali.plugin.pytorch": plugin,
        }


def test_dali_pads_every_shard_as_the_cpu_sampler_pads_every_rank(
    tmp_path: Path, monkeypatch
) -> None:
    """Unpadded, shards of 5 and 4 images (9 over 2 ranks) gave one rank fewer batches than
    the other, which then waited in a collective for ever; DALI cannot draw P x K batches."""
    from faceforge.data.recordio.dali import dali_batches

    fake = _RecordingDali()
    for name, module in fake.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    write(RecordIOWriter(tmp_path / "train.rec", layout="plain"), classes=3, per_class=3)
    data = FaceDataset(RecordIOReader(tmp_path), Compose((HorizontalFlip(0.5),)), seed=1)
    gpu = torch.device("cuda", 1)  # never used: the stand-in does the work
    dali_batches(data, EpochSampler(len(data), seed=1, rank=1, world_size=2), 4, gpu)
    assert fake.reader["pad_last_batch"] is True
    assert (fake.reader["shard_id"], fake.reader["num_shards"]) == (1, 2)
    assert fake.iterator["last_batch_policy"] == "DROP"
    with pytest.raises(ValueError, match="DALI shuffles by itself: it cannot draw PKSampler"):
        dali_batches(data, PKSampler(data.reader.labels, 2, 2), 4, gpu)
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    with pytest.raises(ValueError, match=r"DALI is not installed \(.*\); pip install nvidia-dali"):
        dali_batches(data, EpochSampler(len(data)), 4, gpu)
