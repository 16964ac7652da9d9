"""LMDB: the documented layout (checked with the raw lmdb API both ways), round trips,
worker safety, growth past the initial map, and damage raising errors that name the file."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from faceforge.data.dataset import FaceDataset
from faceforge.data.image_io import decode_image
from faceforge.data.lmdb.writer import LmdbWriter
from faceforge.data.readers import LmdbReader
from faceforge.data.transforms import Compose, HorizontalFlip
from faceforge.errors import DataError, FormatError


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return cv2.imencode(".jpg", rng.integers(0, 255, (112, 112, 3), np.uint8))[1].tobytes()


SAMPLES = [(c, jpeg(10 * c + k)) for c in range(3) for k in range(2)]


def write(path: Path, samples=SAMPLES, **kwargs) -> Path:
    with LmdbWriter(path, **kwargs) as writer:
        for label, data in samples:
            writer.add(label, data)
    return path


def handmade(path: Path, meta: dict, labels: bytes, images: dict[bytes, bytes]) -> Path:
    """A database written with the raw lmdb API, following the documented layout."""
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"__meta__", json.dumps(meta).encode())
        txn.put(b"__labels__", labels)
        for key, value in images.items():
            txn.put(key, value)
    env.close()
    return path


def test_writer_follows_the_documented_layout(tmp_path: Path) -> None:
    path = write(tmp_path / "set.lmdb")
    assert path.is_file() and not list(tmp_path.glob(".*"))  # no temporary left
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        meta = json.loads(txn.get(b"__meta__"))
        assert meta == {"format": "faceforge-lmdb", "version": 1, "images": 6, "classes": 3}
        labels = np.frombuffer(txn.get(b"__labels__"), "<i8")
        assert labels.tolist() == [0, 0, 1, 1, 2, 2]
        assert txn.get(b"0000000003") == SAMPLES[3][1]
        assert [key for key, _ in txn.cursor()][:2] == [b"0000000000", b"0000000001"]
    env.close()


def test_reads_a_database_written_from_the_layout(tmp_path: Path) -> None:
    images = {b"%010d" % i: data for i, (_, data) in enumerate(SAMPLES)}
    labels = np.array([c for c, _ in SAMPLES], "<i8").tobytes()
    meta = {"format": "faceforge-lmdb", "version": 1, "images": 6, "classes": 3}
    reader = LmdbReader(handmade(tmp_path / "hand.lmdb", meta, labels, images))
    assert len(reader) == 6 and reader.num_classes == 3
    assert reader.labels.tolist() == [0, 0, 1, 1, 2, 2]
    for i, (_, data) in enumerate(SAMPLES):
        assert reader.encoded(i) == data
        np.testing.assert_array_equal(reader.load(i), decode_image(data, "expected"))


def test_a_folder_holding_data_mdb_reads_too(tmp_path: Path) -> None:
    write(tmp_path / "set.lmdb")
    (tmp_path / "dir.lmdb").mkdir()
    (tmp_path / "set.lmdb").rename(tmp_path / "dir.lmdb" / "data.mdb")
    assert LmdbReader(tmp_path / "dir.lmdb").encoded(5) == SAMPLES[5][1]


def test_map_grows_past_its_initial_size(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("faceforge.data.lmdb.writer.BATCH", 4)
    many = [(i % 5, jpeg(i)) for i in range(40)]  # ~37 KB each, far over a 256 KB map
    reader = LmdbReader(write(tmp_path / "big.lmdb", many, map_size=1 << 18))
    assert len(reader) == 40 and reader.encoded(39) == many[39][1]


def test_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), LmdbWriter(tmp_path / "x.lmdb") as writer:
        writer.add(0, jpeg(0))
        raise RuntimeError("interrupted")
    assert not list(tmp_path.iterdir())


def test_workers_and_pickling_give_the_same_samples(tmp_path: Path) -> None:
    reader = LmdbReader(write(tmp_path / "set.lmdb"))
    reader.load(0)  # the parent's environment must not be used by forked workers
    clone = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(clone.load(2), reader.load(2))
    dataset = FaceDataset(reader, Compose((HorizontalFlip(0.5),)), seed=1)
    serial = list(DataLoader(dataset, batch_size=None, num_workers=0))
    parallel = list(DataLoader(dataset, batch_size=None, num_workers=2))
    for (a, la), (b, lb) in zip(serial, parallel, strict=True):
        assert torch.equal(a, b) and la == lb


def test_gaps_in_class_ids_are_remapped(tmp_path: Path) -> None:
    with pytest.warns(UserWarning) as caught:
        reader = LmdbReader(write(tmp_path / "g.lmdb", [(4, jpeg(0)), (1, jpeg(1))]))
    messages = " ".join(str(w.message) for w in caught)
    assert "not contiguous" in messages and "5 classes declared" in messages
    assert reader.labels.tolist() == [1, 0] and reader.class_ids.tolist() == [1, 4]


# --- damage ---------------------------------------------------------------------------------


def test_truncated_file(tmp_path: Path) -> None:
    path = write(tmp_path / "t.lmdb", [(i, jpeg(i)) for i in range(20)])
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    with pytest.raises(FormatError, match=r"t.lmdb: truncated: the database needs \d+ bytes"):
        LmdbReader(path)


def test_not_an_lmdb_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.lmdb"
    path.write_bytes(b"\xde\xad\xbe\xef" * 4096)  # bad magic
    with pytest.raises(FormatError, match=r"bad.lmdb: not a readable LMDB database"):
        LmdbReader(path)
    with pytest.raises(DataError, match="no such LMDB database"):
        LmdbReader(tmp_path / "missing.lmdb")


def test_bad_labels_length(tmp_path: Path) -> None:
    meta = {"format": "faceforge-lmdb", "version": 1, "images": 2, "classes": 1}
    path = handmade(tmp_path / "l.lmdb", meta, b"\0" * 12, {b"0000000000": b"", b"0000000001": b""})
    with pytest.raises(FormatError, match=r"12 bytes of __labels__ for 2 images \(expected 16"):
        LmdbReader(path)


def test_meta_counting_past_the_stored_images(tmp_path: Path) -> None:
    meta = {"format": "faceforge-lmdb", "version": 1, "images": 3, "classes": 1}
    path = handmade(tmp_path / "m.lmdb", meta, b"\0" * 24, {b"0000000000": jpeg(0)})
    with pytest.raises(FormatError, match="says 3 images, but the database holds 1"):
        LmdbReader(path)


def test_missing_or_foreign_meta(tmp_path: Path) -> None:
    env = lmdb.open(str(tmp_path / "other.lmdb"), subdir=False)
    with env.begin(write=True) as txn:
        txn.put(b"some-key", b"value")
    env.close()
    with pytest.raises(FormatError, match="no __meta__ key: not a faceforge LMDB"):
        LmdbReader(tmp_path / "other.lmdb")
    meta = {"format": "caffe", "version": 1, "images": 0, "classes": 0}
    with pytest.raises(FormatError, match="unreadable __meta__"):
        LmdbReader(handmade(tmp_path / "caffe.lmdb", meta, b"", {}))


def test_corrupt_image_bytes_and_missing_keys(tmp_path: Path) -> None:
    meta = {"format": "faceforge-lmdb", "version": 1, "images": 2, "classes": 1}
    images = {b"0000000000": jpeg(0)[:50], b"0000000002": jpeg(1)}
    reader = LmdbReader(handmade(tmp_path / "c.lmdb", meta, b"\0" * 16, images))
    with pytest.raises(DataError, match=r"c.lmdb: image 0 \(key 0000000000\): not a readable"):
        reader.load(0)
    with pytest.raises(DataError, match=r"image 1 \(key 0000000001\): missing"):
        reader.load(1)
