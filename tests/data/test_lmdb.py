"""LMDB: the documented layout (checked with the raw lmdb API both ways), round trips,
worker safety, growth past the initial map, the page reader against py-lmdb on a deep tree,
and damage raising errors that name the file and key (never a SIGBUS) in the reader,
``faceforge inspect`` and training."""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest
import torch
from image_bombs import DECLARED, forbid_decoding, png_bomb
from model_helpers import TINY_CLI
from torch.utils.data import DataLoader

from faceforge.cli import main
from faceforge.config import Config, load_config
from faceforge.core.checkpoint import Checkpoint
from faceforge.data.dataset import EpochSampler, FaceDataset
from faceforge.data.image_io import decode_image
from faceforge.data.lmdb.pages import LmdbFile
from faceforge.data.lmdb.writer import LmdbWriter
from faceforge.data.readers import LmdbReader
from faceforge.data.transforms import Compose, HorizontalFlip
from faceforge.errors import DataError, FormatError
from faceforge.train.main import fit, setup


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
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a.image, b.image) and a.label == b.label


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


def test_page_reader_agrees_with_lmdb_on_a_deep_tree(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    env = lmdb.open(str(tmp_path / "deep.lmdb"), subdir=False, map_size=1 << 26)
    stored = {}
    with env.begin(write=True) as txn:  # long keys, values inline and on overflow pages
        for _ in range(3000):
            key = rng.bytes(int(rng.integers(1, 120)))
            value = rng.bytes(int(rng.choice([0, 9, 300, 5000])))
            txn.put(key, value)
            stored[key] = value
    depth = env.stat()["depth"]
    env.close()
    database = LmdbFile(tmp_path / "deep.lmdb")
    assert database.depth == depth >= 3 and database.entries == len(stored)
    assert all(database.get(key, 5000) == value for key, value in stored.items())
    absent = [key for key in (rng.bytes(int(rng.integers(1, 120))) for _ in range(500))]
    assert all(database.get(key, 5000) is None for key in absent if key not in stored)
    long = next(key for key, value in stored.items() if len(value) == 5000)
    with pytest.raises(FormatError) as error:
        database.get(long, 4999)
    assert str(error.value) == (
        f"{tmp_path / 'deep.lmdb'}: key {long!r}: the value declares 5000 bytes, more than 4999"
    )


# --- damage that LMDB's own reader turns into a crash ---------------------------------------

PAGE = 4096


def leaf_node(path: Path, key: bytes) -> int:
    """File offset of the leaf node holding ``key``, found from LMDB's page layout: a 16-byte
    page header (flags at byte 10, 2 = leaf; ``lower`` at 12), u16 node offsets after it, and
    nodes of ``lo u16 | hi u16 | flags u16 | key size u16 | key | data``."""
    data = path.read_bytes()
    for base in range(2 * PAGE, len(data), PAGE):
        flags, lower = struct.unpack_from("<HH", data, base + 10)
        if flags != 2:
            continue
        for i in range((lower - 16) // 2):
            node = base + struct.unpack_from("<H", data, base + 16 + 2 * i)[0]
            size = struct.unpack_from("<H", data, node + 6)[0]
            if data[node + 8 : node + 8 + size] == key:
                return node
    raise AssertionError(f"no leaf node for {key!r}")


def small_jpeg(value: int) -> bytes:
    """A plain-colour face-sized JPEG (under 1 KB: stored inside its leaf page)."""
    return cv2.imencode(".jpg", np.full((112, 112, 3), value, np.uint8))[1].tobytes()


def damaged(path: Path, key: bytes, offset: int, field: bytes) -> Path:
    """``path`` with ``field`` written ``offset`` bytes into the leaf node of ``key``."""
    data = bytearray(path.read_bytes())
    at = leaf_node(path, key) + offset
    data[at : at + len(field)] = field
    out = path.with_name(f"damaged-{path.name}")
    out.write_bytes(data)
    return out


#: reads image 1 in a child process: LmdbReader's answer, or how the process died
_READ_IMAGE_1 = (
    "import sys\n"
    "from faceforge.data.readers import LmdbReader\n"
    "from faceforge.errors import DataError\n"
    "reader = LmdbReader(sys.argv[1])\n"
    "for read in (reader.encoded, reader.load):\n"
    "    try:\n"
    "        read(1)\n"
    "    except DataError as error:\n"
    "        print(error)\n"
)


def read_image_1(path: Path) -> list[str]:
    child = subprocess.run(
        [sys.executable, "-c", _READ_IMAGE_1, str(path)], capture_output=True, text=True
    )
    assert child.returncode == 0, f"exit {child.returncode}: {child.stderr[-2000:]}"
    return child.stdout.splitlines()


@pytest.mark.parametrize("kind", ["inline", "overflow pages"])
def test_a_value_size_past_the_file_is_one_line_naming_file_and_key(tmp_path, kind) -> None:
    image = small_jpeg if kind == "inline" else jpeg
    path = write(tmp_path / "set.lmdb", [(v, image(v)) for v in (0, 1, 2)])
    bad = damaged(path, b"0000000001", 0, struct.pack("<HH", 0xFFFF, 0x7FFF))  # 2**31 - 1
    expected = f"{bad}: image 1 (key 0000000001): the value declares 2147483647 bytes, more than"
    assert read_image_1(bad) == [f"{expected} 67108864"] * 2
    fits_no_page = damaged(path, b"0000000001", 0, struct.pack("<HH", 60000, 0))
    message = "runs 60000 bytes past page" if kind == "inline" else "60000 bytes do not fit its"
    assert all(message in line for line in read_image_1(fits_no_page))


def test_an_overflow_page_outside_the_file_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "set.lmdb")
    bad = damaged(path, b"0000000001", 8 + 10, struct.pack("<Q", 999_999))  # after the key
    pages = bad.stat().st_size // PAGE - 1
    expected = f"{bad}: image 1 (key 0000000001): page 999999 is outside the file (2..{pages})"
    assert read_image_1(bad) == [expected] * 2


def test_inspect_and_training_report_damage_and_training_keeps_its_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images = [(label, jpeg(10 * label + k)) for label in range(4) for k in range(4)]
    path = write(tmp_path / "set.lmdb", images)
    # the image the third batch of the first epoch reads: training fails at step 3
    met = int(EpochSampler(16, seed=Config().train.seed).indices()[9])
    key = (b"%010d" % met).decode()
    bad = damaged(path, key.encode(), 8 + 10, struct.pack("<Q", 999_999))
    pages = bad.stat().st_size // PAGE - 1
    expected = f"{bad}: image {met} (key {key}): page 999999 is outside the file (2..{pages})"
    assert main(["inspect", str(bad)]) == 0
    assert f"unreadable: {expected}" in capsys.readouterr().out
    cfg = load_config(
        None,
        [*TINY_CLI, "data.source=lmdb", f"data.path={bad}", "train.max_steps=4",
         f"train.output_dir={tmp_path / 'run'}"],
    )  # fmt: skip
    with pytest.raises(DataError) as error:
        fit(*setup(cfg, log=lambda _: None))
    assert str(error.value) == f"{expected}; data.skip_corrupt=true skips unreadable images"
    assert Checkpoint.load(tmp_path / "run" / "last.pt").step == 2


def test_a_bomb_image_is_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    reader = LmdbReader(write(tmp_path / "set.lmdb", [(0, jpeg(0)), (1, png_bomb())]))
    forbid_decoding(monkeypatch, png_bomb())
    declared = rf"image 1 \(key 0000000001\): the image declares {DECLARED}"
    with pytest.raises(DataError, match=declared):
        reader.load(1)
