"""Seeds, readers and structure-aware damage for the dataset, model and config formats the
fuzzer covers besides those of :mod:`fuzz_targets`: RecordIO ``.rec``/``.idx``/``property``,
LMDB, ONNX (with external data), foreign ``backbone.pth`` checkpoints, YAML configs and
``key=value`` overrides, IJB meta files and the declared size of PNG/JPEG images.

Each ``craft`` function turns a valid file into a hostile one the way a crafted file would:
huge declared sizes or counts, duplicated offsets, escaping paths, alias bombs; the generic
:func:`fuzz_targets.mutate` then damages it further.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from faceforge.config import load_config
from faceforge.core.foreign_weights import read_state_dict
from faceforge.core.onnx_model import OnnxRuntimeBackend, read_onnx
from faceforge.core.torch_backend import RuntimeOptions
from faceforge.data.image_io import encode_image, read_image
from faceforge.data.lmdb.writer import LmdbWriter
from faceforge.data.readers.lmdb_reader import LmdbReader
from faceforge.data.readers.recordio import RecordIOReader
from faceforge.data.recordio.writer import RecordIOWriter
from faceforge.evaluation.ijb_layout import read_ijb

#: the pixel budget the image-content targets decode against (a 2000x2000 photo)
FUZZ_PIXELS = 4_000_000
_HUGE = (0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 0x10000, 1 << 24, 0)


def _face(value: int, size: int = 24) -> np.ndarray:
    rng = np.random.default_rng(value)
    return rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)


def huge_word(data: bytes, rng: np.random.Generator) -> bytes:
    """A random aligned 4-byte word (or 8-byte) set to a huge or zero size/count/offset."""
    out = bytearray(data)
    if len(out) < 8:
        return bytes(out)
    at = int(rng.integers(0, len(out) - 8)) & ~3
    value = _HUGE[int(rng.integers(len(_HUGE)))]
    fmt = "<Q" if rng.random() < 0.25 else ("<I" if rng.random() < 0.8 else ">I")
    value = (1 << 62) - 1 if fmt == "<Q" and value == 0x7FFFFFFF else value
    out[at : at + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(out)


def huge_number(data: bytes, rng: np.random.Generator) -> bytes:
    """A random decimal number in a text file replaced by a huge, negative, non-ASCII or
    non-finite one, or a random line repeated (duplicated keys, offsets, pairs)."""
    text = data.decode("utf-8", "replace")
    numbers = list(re.finditer(r"\d+", text))
    if rng.random() < 0.3 or not numbers:
        lines = text.splitlines(keepends=True)
        if lines:
            line = lines[int(rng.integers(len(lines)))]
            text += line * int(rng.integers(1, 50))
        return text.encode()
    match = numbers[int(rng.integers(len(numbers)))]
    choices = ("99999999999999999999", "2147483648", "-1", "1e308", "nan", "\u00b2", "\u0663")
    new = choices[int(rng.integers(len(choices)))]
    return (text[: match.start()] + new + text[match.end() :]).encode()


def _png_size(data: bytes, rng: np.random.Generator) -> bytes:
    """The PNG's IHDR width/height set to huge values, with a valid CRC."""
    width, height = (int(v) for v in rng.choice([1, 30000, 65535, 1 << 31, 0], size=2))
    out = bytearray(data)
    out[16:24] = struct.pack(">II", width & 0xFFFFFFFF, height & 0xFFFFFFFF)
    out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    return bytes(out)


def _jpeg_size(data: bytes, rng: np.random.Generator) -> bytes:
    """The JPEG's SOF0 frame height/width set to huge (or zero) values."""
    at = data.find(b"\xff\xc0")
    if at < 0:
        return data
    out = bytearray(data)
    out[at + 5 : at + 9] = struct.pack(">HH", *(int(v) for v in rng.choice([0, 1, 65535], 2)))
    return bytes(out)


def _seed_recordio(folder: Path) -> None:
    with RecordIOWriter(folder / "train.rec") as writer:
        for label in range(3):
            for number in range(2):
                writer.add(label, encode_image(_face(2 * label + number), ".jpg", quality=70))


def _read_recordio(path: Path) -> object:
    reader = RecordIOReader(path.parent, label_cache=False, max_pixels=FUZZ_PIXELS)
    return [reader.load(i) for i in range(min(len(reader), 16))]


def _recordio_file(name: str):
    def seed(folder: Path) -> bytes:
        if not (folder / "train.rec").is_file():
            _seed_recordio(folder)
        return (folder / name).read_bytes()

    return seed


def _seed_lmdb(folder: Path) -> bytes:
    with LmdbWriter(folder / "seed.lmdb") as writer:
        for label in range(3):
            writer.add(label, encode_image(_face(label), ".png"))
    return (folder / "seed.lmdb").read_bytes()


def _read_lmdb(path: Path) -> object:
    reader = LmdbReader(path, max_pixels=FUZZ_PIXELS)
    return [reader.load(i) for i in range(min(len(reader), 16))]


def seed_onnx(folder: Path) -> bytes:
    """A tiny embedding graph (mean-pool, one 3x8 MatMul) whose weight is external data."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder = folder / "model"
    folder.mkdir(exist_ok=True)

    weight = numpy_helper.from_array(np.ones((3, 8), np.float32), "w")
    onnx.external_data_helper.set_external_data(weight, "weights.bin")
    (folder / "weights.bin").write_bytes(np.ones((3, 8), np.float32).tobytes())
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    (folder.parent / "secret.txt").write_bytes(b"not model data" * 8)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["x"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("MatMul", ["f", "w"], ["y"]),
        ],
        "fuzz",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 112, 112])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _onnx_location(data: bytes, rng: np.random.Generator) -> bytes:
    """The weight's external-data entry rewritten: its location pointed outside the model
    folder or at another file, or a huge (or negative) offset or length."""
    import onnx

    model = onnx.load_from_string(data)
    entries = model.graph.initializer[0].external_data
    choices = (
        "../secret.txt",
        "/etc/passwd",
        "../../../../../../etc/hostname",
        "secret.txt",
        "model.onnx",
        "sub/../../secret.txt",
        "",
        ".",
    )
    for entry in entries:
        if entry.key == "location" and rng.random() < 0.6:
            entry.value = choices[int(rng.integers(len(choices)))]
    if rng.random() < 0.5:
        key = ("offset", "length")[int(rng.integers(2))]
        value = int(rng.choice([-1, 1 << 40, 1 << 62, 7, 95, 97]))
        entries.add(key=key, value=str(value))
    return model.SerializeToString()


def set_external_data(path: Path, **entries: str) -> None:
    """Rewrite the external-data entries (``location``, ``offset``, ``length``) of the
    weight of the model at ``path``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    tensor = model.graph.initializer[0]
    kept = [(e.key, e.value) for e in tensor.external_data if e.key not in entries]
    del tensor.external_data[:]
    for key, value in [*kept, *entries.items()]:
        tensor.external_data.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())


def _read_onnx(path: Path) -> object:
    model = read_onnx(path)
    backend = OnnxRuntimeBackend(model, RuntimeOptions(threads=1))
    return backend.run(torch.zeros(1, 3, 112, 112))


def _seed_backbone(folder: Path) -> bytes:
    torch.manual_seed(0)
    state = {"conv.weight": torch.randn(4, 3, 3, 3), "fc.bias": torch.zeros(8)}
    torch.save({"state_dict": state, "epoch": 3}, folder / "seed.pth")
    return (folder / "seed.pth").read_bytes()


_CONFIG = b"""# fuzz seed
model:
  backbone: mobilefacenet
  embedding_size: 128
head:
  type: arcface
  margin: 0.5
  scale: 64.0
optim:
  lr: 0.1
  weight_decay: 0.0005
train:
  max_steps: 100
  batch_size: 64
data:
  max_pixels: 250000
"""


def _alias_bomb(data: bytes, rng: np.random.Generator) -> bytes:
    """A billion-laughs alias chain appended to the config (or override value)."""
    depth = int(rng.integers(3, 12))
    lines = ["b0: &b0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"b{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * 9) + "]" for i in range(1, depth)]
    return data + ("\n".join(lines) + "\n").encode()


def _override_bomb(data: bytes, rng: np.random.Generator) -> bytes:
    """One ``key=value`` override whose value is a billion-laughs alias chain."""
    depth = int(rng.integers(3, 12))
    items = ["&b0 [x, x, x, x, x, x, x, x, x]"]
    items += [f"&b{i} [" + ", ".join([f"*b{i - 1}"] * 9) + "]" for i in range(1, depth)]
    return data + ("head.margin=[" + ", ".join(items) + "]\n").encode()


def _read_overrides(path: Path) -> object:
    args = path.read_bytes().decode("utf-8", "surrogateescape").split("\n")
    return load_config(None, [a for a in args if a])


def _read_ijb(path: Path) -> object:
    (path.parent / "IJB" / "meta" / "ijbc_template_pair_label.txt").write_bytes(path.read_bytes())
    return read_ijb(path.parent / "IJB", "IJBC")


def _read_ijb_tid(path: Path) -> object:
    (path.parent / "IJB" / "meta" / "ijbc_face_tid_mid.txt").write_bytes(path.read_bytes())
    return read_ijb(path.parent / "IJB", "IJBC")


def _seed_ijb(folder: Path) -> None:
    meta = folder / "IJB" / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    rows = [(f"{i}.jpg", 100 + i // 2, 1000 + i) for i in range(6)]
    (meta / "ijbc_face_tid_mid.txt").write_text("".join(f"{n} {t} {m}\n" for n, t, m in rows))
    points = " ".join(f"{v:.1f}" for v in range(10))
    (meta / "ijbc_name_5pts_score.txt").write_text(
        "".join(f"{n} {points} 0.9{i}\n" for i, (n, _, _) in enumerate(rows))
    )
    pairs = "100 101 0\n100 102 0\n101 102 0\n100 100 1\n"
    (meta / "ijbc_template_pair_label.txt").write_text(pairs)


def _ijb_file(name: str):
    def seed(folder: Path) -> bytes:
        _seed_ijb(folder)
        return (folder / "IJB" / "meta" / name).read_bytes()

    return seed


def _read_declared(path: Path) -> object:
    return read_image(path, FUZZ_PIXELS)


def format_targets(target: type) -> tuple:
    """The :class:`fuzz_targets.Target` of every format this module covers."""
    return (
        target(".rec", "train.rec", _recordio_file("train.rec"), _read_recordio, huge_word),
        target(".idx", "train.idx", _recordio_file("train.idx"), _read_recordio, huge_number),
        target("property", "property", _recordio_file("property"), _read_recordio, huge_number),
        target("lmdb", "data.lmdb", _seed_lmdb, _read_lmdb, huge_word),
        target("onnx", "model/model.onnx", seed_onnx, _read_onnx, _onnx_location),
        target("backbone.pth", "backbone.pth", _seed_backbone, read_state_dict, huge_word),
        target("yaml config", "config.yaml", lambda f: _CONFIG, load_config, _alias_bomb),
        target("overrides", "overrides.txt", lambda f: _OVERRIDES, _read_overrides, _override_bomb),
        target(
            "ijb pairs",
            "pairs.txt",
            _ijb_file("ijbc_template_pair_label.txt"),
            _read_ijb,
            huge_number,
        ),
        target(
            "ijb tid_mid", "tid.txt", _ijb_file("ijbc_face_tid_mid.txt"), _read_ijb_tid, huge_number
        ),
        target(
            "png size",
            "big.png",
            lambda f: encode_image(_face(3, 32), ".png"),
            _read_declared,
            _png_size,
        ),
        target(
            "jpeg size",
            "big.jpg",
            lambda f: encode_image(_face(4, 40), ".jpg"),
            _read_declared,
            _jpeg_size,
        ),
    )


_OVERRIDES = b"optim.lr=0.05\nmodel.embedding_size=64\nhead.margin=0.4\ndata.max_pixels=90000\n"
