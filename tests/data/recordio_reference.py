"""An independent MXNet RecordIO implementation for the tests, written from the format's
description (dmlc-core's RecordIOWriter/Reader, ``mx.recordio.pack``/``unpack``,
``MXIndexedRecordIO`` and insightface's ``MXFaceDataset``); it shares no code with
``faceforge.data.recordio``, so the two check each other.
"""

from __future__ import annotations

import struct
from pathlib import Path

MAGIC = 0xCED7230A
MAGIC_WORD = struct.pack("<I", MAGIC)
IR_FORMAT = "IfQQ"  # as mx.recordio declares it (native order and alignment: 24 bytes)
IR_SIZE = struct.calcsize(IR_FORMAT)


def lrec(cflag: int, length: int) -> bytes:
    return struct.pack("<I", (cflag << 29) | length)


def write_record(f, payload: bytes) -> None:
    """dmlc's WriteRecord: split wherever the magic word sits at an aligned position."""
    length = len(payload)
    lower_align = (length >> 2) << 2
    dptr = 0
    for i in range(0, lower_align, 4):
        if payload[i : i + 4] == MAGIC_WORD:
            f.write(MAGIC_WORD + lrec(1 if dptr == 0 else 2, i - dptr) + payload[dptr:i])
            dptr = i + 4
    f.write(MAGIC_WORD + lrec(3 if dptr != 0 else 0, length - dptr) + payload[dptr:])
    upper_align = ((length + 3) >> 2) << 2
    f.write(b"\x00" * (upper_align - length))


def pack(flag: int, label, key: int, data: bytes) -> bytes:
    """mx.recordio.pack: a list of labels is stored after the header, flag = its length."""
    if isinstance(label, (int, float)):
        return struct.pack(IR_FORMAT, 0, float(label), key, 0) + data
    extra = struct.pack(f"<{len(label)}f", *label)
    return struct.pack(IR_FORMAT, len(label), 0.0, key, 0) + extra + data


def write_indexed(folder: Path, records: list[tuple[int, bytes]], classes: int) -> None:
    """MXIndexedRecordIO.write_idx for each (key, payload), then insightface's property."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.rec", "wb") as rec, open(folder / "train.idx", "w") as idx:
        for key, payload in records:
            idx.write(f"{key}\t{rec.tell()}\n")
            write_record(rec, payload)
    (folder / "property").write_text(f"{classes},112,112")


def write_ms1m(folder: Path, samples: list[tuple[int, bytes]]) -> None:
    """im2rec's MS1M layout: header record 0, images at keys 1.., one record per identity
    with its [start, end) keys. ``samples`` must be grouped by label, labels 0..n-1."""
    n = len(samples)
    classes = max(label for label, _ in samples) + 1
    records = [(0, pack(0, [float(n + 1), float(n + 1 + classes)], 0, b""))]
    records += [(k + 1, pack(0, label, k + 1, img)) for k, (label, img) in enumerate(samples)]
    for c in range(classes):
        keys = [k + 1 for k, (label, _) in enumerate(samples) if label == c]
        key = n + 1 + c
        records.append((key, pack(0, [float(keys[0]), float(keys[-1] + 1)], key, b"")))
    write_indexed(folder, records, classes)


def write_plain(folder: Path, samples: list[tuple[object, bytes]], classes: int) -> None:
    """insightface's newer writer: images from key 0, no header; labels may be lists."""
    records = [(k, pack(0, label, k, img)) for k, (label, img) in enumerate(samples)]
    write_indexed(folder, records, classes)


def read_idx(path: Path) -> dict[int, int]:
    index = {}
    for line in path.read_text().splitlines():
        key, pos = line.strip().split("\t")
        index[int(key)] = int(pos)
    return index


def read_at(f, pos: int) -> bytes:
    """dmlc's NextRecord from ``pos``: join the parts, putting the magic back between them."""
    f.seek(pos)
    out = b""
    while True:
        magic, word = struct.unpack("<II", f.read(8))
        assert magic == MAGIC, "Invalid RecordIO File"
        cflag, length = (word >> 29) & 7, word & ((1 << 29) - 1)
        upper_align = ((length + 3) >> 2) << 2
        out += f.read(upper_align)[:length]
        if cflag in (0, 3):
            return out
        out += MAGIC_WORD


def unpack(payload: bytes) -> tuple[int, object, int, bytes]:
    """mx.recordio.unpack -> (flag, label or label list, id, data)."""
    flag, label, key, _ = struct.unpack(IR_FORMAT, payload[:IR_SIZE])
    rest = payload[IR_SIZE:]
    if flag > 0:
        label = list(struct.unpack(f"<{flag}f", rest[: 4 * flag]))
        rest = rest[4 * flag :]
    return flag, label, key, rest


def insightface_samples(folder: Path, rec_name: str = "train") -> list[tuple[int, bytes]]:
    """(label, image bytes) in the order insightface's MXFaceDataset indexes them."""
    index = read_idx(folder / f"{rec_name}.idx")
    with open(folder / f"{rec_name}.rec", "rb") as f:
        flag, label, _, _ = unpack(read_at(f, index[0])) if 0 in index else (0, 0, 0, b"")
        keys = range(1, int(label[0])) if flag > 0 else sorted(index)
        out = []
        for key in keys:
            _, label, _, image = unpack(read_at(f, index[key]))
            out.append((int(label if isinstance(label, float) else label[0]), image))
    return out


def identity_ranges(folder: Path) -> list[tuple[int, int]]:
    """The [start, end) image keys of every identity record of an MS1M-style file."""
    index = read_idx(folder / "train.idx")
    with open(folder / "train.rec", "rb") as f:
        _, header, _, _ = unpack(read_at(f, index[0]))
        ranges = []
        for key in range(int(header[0]), int(header[1])):
            _, label, _, _ = unpack(read_at(f, index[key]))
            ranges.append((int(label[0]), int(label[1])))
    return ranges
