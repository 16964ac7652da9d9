"""RecordIO: files from an independent implementation of the format read back exactly, the
writer's files are what that implementation (and so insightface) reads, the label cache,
worker safety, every kind of damage raises an error naming file, record and byte, and
crafted records (many parts, shared offsets, bombs) cost bounded, linear work."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import recordio_reference as ref
import torch
from image_bombs import DECLARED, forbid_decoding, jpeg_bomb
from torch.utils.data import DataLoader

from faceforge.data.dataset import FaceDataset, Sample
from faceforge.data.image_io import decode_image
from faceforge.data.readers import RecordIOReader
from faceforge.data.recordio import catalog, format
from faceforge.data.recordio.format import MAGIC_BYTES, MAX_PARTS, frame
from faceforge.data.recordio.writer import RecordIOWriter
from faceforge.data.transforms import Compose, HorizontalFlip
from faceforge.errors import DataError, FormatError

#: a JPEG comment holding the magic word at 4-byte aligned payload positions: such records
#: are split into parts by the writer and must be joined again by the reader
SPLITTING_COMMENT = b"\0\0" + ref.MAGIC_WORD * 2 + b"ab"


def jpeg(seed: int, comment: bytes = b"") -> bytes:
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 255, (8, 8, 3), np.uint8), (112, 112))
    data = cv2.imencode(".jpg", image)[1].tobytes()
    if comment:  # a COM segment right after SOI: decoders skip it
        data = data[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[2:]
    return data


def samples(classes: int = 3, per_class: int = 3) -> list[tuple[int, bytes]]:
    out = [(c, jpeg(10 * c + k)) for c in range(classes) for k in range(per_class)]
    out[1] = (out[1][0], jpeg(99, SPLITTING_COMMENT))
    return out


def assert_reads(reader: RecordIOReader, expected: list[tuple[int, bytes]]) -> None:
    assert reader.labels.tolist() == [label for label, _ in expected]
    for i, (_, data) in enumerate(expected):
        assert reader.encoded(i) == data
        np.testing.assert_array_equal(reader.load(i), decode_image(data, "expected"))


def test_splitting_comment_really_splits_records() -> None:
    payload = ref.pack(0, 1.0, 1, jpeg(99, SPLITTING_COMMENT))
    assert frame(payload).count(MAGIC_BYTES) == 3  # three parts


def test_reads_the_reference_ms1m_layout(tmp_path: Path) -> None:
    expected = samples()
    ref.write_ms1m(tmp_path, expected)
    reader = RecordIOReader(tmp_path)
    assert reader.has_header and reader.keys.tolist() == list(range(1, 10))
    assert reader.num_classes == 3 and len(reader) == 9
    assert_reads(reader, expected)


def test_reads_the_reference_plain_layout_with_label_arrays(tmp_path: Path) -> None:
    images = samples()
    # newer files may carry several labels per image: the class is the first
    expected = [(label, data) for label, data in images]
    ref.write_plain(tmp_path, [([float(lb), 7.0], data) for lb, data in images], 3)
    reader = RecordIOReader(tmp_path / "train.rec")
    assert not reader.has_header and reader.keys.tolist() == list(range(9))
    assert_reads(reader, expected)
    header, labels, _ = reader.record(4)
    assert header.flag == 2 and labels.tolist() == [1.0, 7.0]


@pytest.mark.parametrize("layout", ["ms1m", "plain"])
def test_writer_output_is_what_the_reference_writes_and_reads(tmp_path: Path, layout) -> None:
    expected = samples()
    with RecordIOWriter(tmp_path / "ours" / "train.rec", layout=layout) as writer:
        for label, data in expected:
            writer.add(label, data)
    if layout == "ms1m":
        ref.write_ms1m(tmp_path / "ref", expected)
        assert ref.identity_ranges(tmp_path / "ours") == [(1, 4), (4, 7), (7, 10)]
    else:
        ref.write_plain(tmp_path / "ref", expected, 3)
    for name in ("train.rec", "train.idx"):
        assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    assert (tmp_path / "ours" / "property").read_text().strip() == "3,112,112"
    assert ref.insightface_samples(tmp_path / "ours") == expected
    assert_reads(RecordIOReader(tmp_path / "ours"), expected)


def test_ms1m_layout_needs_grouped_identities(tmp_path: Path) -> None:
    with (
        pytest.raises(DataError, match="class 0 comes back"),
        RecordIOWriter(tmp_path / "train.rec") as writer,
    ):
        for label in (0, 1, 0):
            writer.add(label, jpeg(label))
    assert not list(tmp_path.iterdir())  # nothing half-written is left


def test_label_cache_is_used_and_invalidated(tmp_path: Path, monkeypatch) -> None:
    ref.write_ms1m(tmp_path, samples())
    first = RecordIOReader(tmp_path)
    assert (tmp_path / "train.labels.npz").is_file()

    def no_scan(*args, **kwargs):
        raise AssertionError("scanned again")

    monkeypatch.setattr("faceforge.data.recordio.cache.build_catalog", no_scan)
    again = RecordIOReader(tmp_path)
    assert again.labels.tolist() == first.labels.tolist()
    assert again.offsets.tolist() == first.offsets.tolist()
    monkeypatch.undo()
    # a rewritten index (new mtime) or a damaged cache means a fresh scan
    ref.write_plain(tmp_path, [(1, jpeg(1)), (0, jpeg(2))], 2)
    assert RecordIOReader(tmp_path).labels.tolist() == [1, 0]
    (tmp_path / "train.labels.npz").write_bytes(b"PK\x03\x04 not a zip")
    assert RecordIOReader(tmp_path).labels.tolist() == [1, 0]


def test_unwritable_cache_warns_and_still_opens(tmp_path: Path, monkeypatch) -> None:
    ref.write_ms1m(tmp_path, samples())

    def read_only(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("faceforge.data.recordio.cache.atomic_open", read_only)
    with pytest.warns(UserWarning, match="cannot write the label cache"):
        assert len(RecordIOReader(tmp_path)) == 9
    assert not (tmp_path / "train.labels.npz").exists()


def test_gaps_in_class_ids_are_remapped_with_a_warning(tmp_path: Path) -> None:
    ref.write_plain(tmp_path, [(5, jpeg(0)), (0, jpeg(1)), (2, jpeg(2)), (5, jpeg(3))], 6)
    with pytest.warns(UserWarning) as caught:
        reader = RecordIOReader(tmp_path)
    messages = " ".join(str(w.message) for w in caught)
    assert "not contiguous" in messages and "6 classes declared" in messages
    assert reader.labels.tolist() == [2, 0, 1, 2]
    assert reader.class_ids.tolist() == [0, 2, 5] and reader.num_classes == 3


def test_workers_and_pickling_give_the_same_samples(tmp_path: Path) -> None:
    ref.write_ms1m(tmp_path, samples())
    dataset = FaceDataset(RecordIOReader(tmp_path), Compose((HorizontalFlip(0.5),)), seed=3)
    clone = pickle.loads(pickle.dumps(dataset.reader))  # spawn-started workers
    np.testing.assert_array_equal(clone.load(4), dataset.reader.load(4))
    dataset.reader.load(0)  # the parent opened its handle before the workers fork

    def collect(workers: int) -> list[Sample]:
        loader = DataLoader(dataset, batch_size=None, num_workers=workers)
        return list(loader)

    serial, parallel = collect(0), collect(2)
    assert [sample.label for sample in parallel] == [sample.label for sample in serial]
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a.image, b.image)


# --- damage ---------------------------------------------------------------------------------


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    ref.write_plain(tmp_path, samples(), 3)
    return tmp_path


def offsets(folder: Path) -> dict[int, int]:
    return ref.read_idx(folder / "train.idx")


def poke(path: Path, at: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(data)


def test_truncated_rec(plain: Path) -> None:
    last = offsets(plain)[8]
    with open(plain / "train.rec", "r+b") as f:
        f.truncate(last + 100)
    with pytest.raises(FormatError, match=rf"train.rec: record 8 at byte {last}: truncated"):
        RecordIOReader(plain, label_cache=False)


def test_bad_magic(plain: Path) -> None:
    at = offsets(plain)[5]
    poke(plain / "train.rec", at, b"\0\0\0\0")
    with pytest.raises(FormatError, match=rf"record 5 at byte {at}: bad magic 0x00000000"):
        RecordIOReader(plain)
    with pytest.warns(UserWarning) as caught:
        reader = RecordIOReader(plain, skip_corrupt=True)
    assert [str(w.message).split(": ")[-1] for w in caught][-1] == "left out 1 corrupt record(s)"
    assert "record 5 at byte" in str(caught[0].message)
    assert reader.keys.tolist() == [0, 1, 2, 3, 4, 6, 7, 8]
    assert not (plain / "train.labels.npz").exists()  # a damaged file is looked at again


def test_bad_length(plain: Path) -> None:
    at = offsets(plain)[3]
    poke(plain / "train.rec", at + 4, struct.pack("<I", (1 << 29) - 1))
    with pytest.raises(FormatError, match=rf"record 3 at byte {at}: .*run past the end"):
        RecordIOReader(plain)


def test_idx_pointing_past_the_end(plain: Path) -> None:
    size = (plain / "train.rec").stat().st_size
    with open(plain / "train.idx", "a") as f:
        f.write(f"9\t{size + 64}\n")
    with pytest.raises(FormatError, match=rf"train.idx:10: record 9 at byte {size + 64}"):
        RecordIOReader(plain)


def test_malformed_idx_line(plain: Path) -> None:
    text = (plain / "train.idx").read_text().replace("4\t", "4 x\t", 1)
    (plain / "train.idx").write_text(text)
    with pytest.raises(FormatError, match=r"train.idx:5: expected 'key<TAB>offset'"):
        RecordIOReader(plain)


def test_corrupt_image_bytes(plain: Path) -> None:
    at = offsets(plain)[2]
    poke(plain / "train.rec", at + 8 + 24, b"\0" * 64)  # the JPEG's first bytes
    reader = RecordIOReader(plain)
    with pytest.raises(DataError, match=rf"train.rec: record 2 at byte {at}: not a readable"):
        reader.load(2)
    dataset = FaceDataset(reader, Compose(()), skip_corrupt=True)
    stand_in = dataset[2]
    assert stand_in.replaces[0] == 2 and 2 not in stand_in.replaces[1:]


@pytest.mark.parametrize("label", [1.5, -1.0, float("nan"), 2.0**31])
def test_labels_that_are_not_class_ids(tmp_path: Path, label: float) -> None:
    ref.write_plain(tmp_path, [(0, jpeg(0)), ([label], jpeg(1))], 1)
    at = offsets(tmp_path)[1]
    with pytest.raises(FormatError, match=rf"record 1 at byte {at}: label .* is not a class id"):
        RecordIOReader(tmp_path)


def test_header_naming_missing_images(tmp_path: Path) -> None:
    ref.write_ms1m(tmp_path, samples())
    lines = (tmp_path / "train.idx").read_text().splitlines()
    (tmp_path / "train.idx").write_text("\n".join(lines[:3] + lines[4:]) + "\n")
    with pytest.raises(FormatError, match="key 3 is not in the index"):
        RecordIOReader(tmp_path)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="train.rec: no such file"):
        RecordIOReader(tmp_path)


def test_where_names_file_record_and_byte(plain: Path) -> None:
    reader = RecordIOReader(plain)
    assert reader.where(3) == catalog.describe_record(plain / "train.rec", 3, offsets(plain)[3])


# --- crafted records ----------------------------------------------------------------------


def split_record(folder: Path, parts: int, image: bytes) -> bytes:
    """A one-record dataset whose record is split into ``parts`` parts: the IRHeader, empty
    middle parts (a writer never makes them, a crafted file can), then the image. Returns the
    payload the parts join into (a magic word where each split was)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = ref.pack(0, 0.0, 0, b"")
    framed = [ref.MAGIC_WORD + ref.lrec(1, len(header)) + header]
    framed += [ref.MAGIC_WORD + ref.lrec(2, 0)] * (parts - 2)
    framed.append(ref.MAGIC_WORD + ref.lrec(3, len(image)) + image + b"\0" * (-len(image) % 4))
    (folder / "train.rec").write_bytes(b"".join(framed))
    (folder / "train.idx").write_text("0\t0\n")
    return header + ref.MAGIC_WORD * (parts - 1) + image


def test_a_record_of_many_parts_is_read_in_a_few_reads(tmp_path: Path, monkeypatch) -> None:
    parts = 20_000
    payload = split_record(tmp_path, parts, jpeg(0))
    size = (tmp_path / "train.rec").stat().st_size  # 160 KB
    monkeypatch.setattr(format, "FIRST_READ", 64)  # as if the record were larger than 4 MB
    reads: list[int] = []
    real_pread = os.pread

    def counted(fd: int, n: int, offset: int) -> bytes:
        reads.append(n)
        return real_pread(fd, n, offset)

    monkeypatch.setattr(os, "pread", counted)
    reader = RecordIOReader(tmp_path, label_cache=False)  # the label scan reads it twice
    assert reader.labels.tolist() == [0] and len(reads) <= 2 * 14
    reads.clear()
    assert bytes(reader.record(0)[2]) == payload[24:]
    # each read at least doubles what is held: log2(size / 64) + 2 reads, within twice the
    # record's bytes (one read per part, 20,000 of them, would make the work quadratic)
    assert len(reads) <= 14 and sum(reads) <= 2 * size


def test_records_of_too_many_parts_are_refused(tmp_path: Path) -> None:
    split_record(tmp_path, MAX_PARTS + 1, jpeg(0))
    last = 32 + 8 * (MAX_PARTS - 1)  # IRHeader part, then 8-byte empty ones
    message = rf"record 0 at byte 0: record split into more than {MAX_PARTS} parts \(part at"
    with pytest.raises(FormatError, match=rf"{message} byte {last}\) \(damaged continuation"):
        RecordIOReader(tmp_path)
    split_record(tmp_path, MAX_PARTS, jpeg(0))
    assert len(RecordIOReader(tmp_path)) == 1


def test_records_longer_than_any_image_are_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(format, "MAX_RECORD_BYTES", 1000)
    ref.write_plain(tmp_path, [(0, b"\xff" * 900), (0, b"\xff" * 1200)], 1)
    reader = RecordIOReader(tmp_path)  # the label scan reads only the headers
    assert len(reader.encoded(0)) == 900
    with pytest.raises(FormatError, match=r"record 1 at byte \d+: record longer than 1000 bytes"):
        reader.encoded(1)


def test_index_lines_sharing_an_offset_are_refused(plain: Path) -> None:
    lines = (plain / "train.idx").read_text().splitlines()
    at = offsets(plain)[4]
    (plain / "train.idx").write_text("\n".join([*lines, f"9\t{at}", f"10\t{at}"]) + "\n")
    message = (
        rf"train.idx:10: record 9 starts at byte {at}, as record 4 does \(line 5\); 2 index "
        r"line\(s\) repeat an offset: the index is damaged, rebuild it"
    )
    with pytest.raises(FormatError, match=message):
        RecordIOReader(plain)


def test_a_bomb_record_is_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    ref.write_plain(tmp_path, [(0, jpeg(0)), (1, jpeg_bomb())], 2)
    forbid_decoding(monkeypatch, jpeg_bomb())
    reader = RecordIOReader(tmp_path)
    with pytest.raises(DataError, match=rf"record 1 at byte \d+: the image declares {DECLARED}"):
        reader.load(1)
    assert RecordIOReader(tmp_path, max_pixels=112 * 112).max_pixels == 112 * 112


@pytest.mark.parametrize("count", ["\u00b2", "\u0663", "\uff11"])
def test_a_property_file_with_non_ascii_digits_is_a_format_error(tmp_path: Path, count: str):
    """str.isdigit() accepts superscript, Arabic-Indic and full-width digits that int()
    refuses (found by bench/fuzz.py): the class count must be plain ASCII digits."""
    from faceforge.data.recordio.index import read_property

    (tmp_path / "property").write_text(f"{count},112,112\n")
    with pytest.raises(FormatError, match="expected 'num_classes,height,width'"):
        read_property(tmp_path / "property")
