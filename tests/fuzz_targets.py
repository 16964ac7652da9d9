"""What the fuzz tests and ``bench/fuzz.py`` throw at faceforge's file readers.

A :class:`Target` writes a valid seed file (plus the fixtures its reader needs) into a
folder; :func:`mutate` damages the seed bytes the ways real files get damaged or crafted
(bit flips, overwritten bytes, truncation, inserted and repeated chunks, text encodings);
:func:`outcome` reads one mutated file and classifies what happened. The contract: every
outcome is ``ok`` or a documented faceforge error, within time and memory bounds.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fuzz_formats import format_targets

from faceforge.config import Config, ModelConfig
from faceforge.core.checkpoint import DEPLOY_PARTS, Checkpoint
from faceforge.data.image_io import encode_image, read_image
from faceforge.data.verification_set import VerificationSet
from faceforge.errors import FaceforgeError
from faceforge.evaluation.bin_format import load_bin, write_bin
from faceforge.evaluation.pairs import read_lfw_pairs, read_pair_list
from faceforge.inference.matching.gallery import METADATA_FILE, Gallery, edit_gallery

Craft = Callable[[bytes, np.random.Generator], bytes]

#: seconds one read may take before it counts as "over time"
TIME_LIMIT = 5.0
OUTCOMES = ("ok", "faceforge error", "other exception", "over time", "over memory")


@dataclass(frozen=True)
class Target:
    """One kind of input: ``seed(folder)`` writes fixtures and returns the valid file's bytes;
    ``read(path)`` parses the (mutated) file written at ``folder / filename``."""

    name: str
    filename: str
    seed: Callable[[Path], bytes]
    read: Callable[[Path], object]
    #: structure-aware damage (huge declared sizes, duplicated offsets, ...) or None
    craft: Craft | None = None


def _face(value: int) -> np.ndarray:
    rng = np.random.default_rng(value)
    return rng.integers(0, 255, size=(112, 112, 3), dtype=np.uint8)


def _image_folder(folder: Path) -> None:
    for name in ("Ann_Lee", "Bo_Chen"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for number in (1, 2):
            data = encode_image(_face(number), ".jpg", quality=70)
            (folder / name / f"{name}_{number:04d}.jpg").write_bytes(data)


def _seed_bin(folder: Path) -> bytes:
    images = np.stack([_face(i) for i in range(4)])
    write_bin(folder / "seed.bin", VerificationSet("s", images, np.array([True, False])))
    return (folder / "seed.bin").read_bytes()


def _seed_lfw_pairs(folder: Path) -> bytes:
    _image_folder(folder / "images")
    return b"2\nAnn_Lee 1 2\nAnn_Lee 1 Bo_Chen 2\n"


def _seed_pair_list(folder: Path) -> bytes:
    _image_folder(folder / "images")
    return (
        b"image_a,image_b,same\n"
        b"images/Ann_Lee/Ann_Lee_0001.jpg,images/Ann_Lee/Ann_Lee_0002.jpg,1\n"
        b"images/Ann_Lee/Ann_Lee_0001.jpg,images/Bo_Chen/Bo_Chen_0001.jpg,0\n"
    )


def _seed_checkpoint(folder: Path) -> bytes:
    """A small but complete checkpoint (the backbone is a stand-in: Checkpoint.load checks
    format, version, hash and config, which is what damage reaches first)."""
    torch.manual_seed(0)
    ckpt = Checkpoint(
        config=Config(model=ModelConfig(embedding_size=8)),
        backbone={"w": torch.randn(8, 8), "b": torch.zeros(8)},
        metrics={"synthetic": {"accuracy": 0.9, "best_threshold": 1.1}},
        optimizer={"state": {0: {"momentum_buffer": torch.ones(8)}}, "param_groups": []},
        step=3,
        history=[{"step": 1.0, "loss": 2.0}],
    )
    ckpt.save(folder / "seed.pt")
    return (folder / "seed.pt").read_bytes()


def _gallery(folder: Path) -> Path:
    """A small gallery (3 people, mean embeddings) in ``folder / "gallery"``."""
    directory = folder / "gallery"
    rng = np.random.default_rng(0)
    with edit_gallery(directory, 16, "0123456789abcdef", model="fuzz") as gallery:
        for name in ("ann", "bo", "cy"):
            gallery.add(name, rng.normal(size=(2, 16)).astype(np.float32))
    return directory


def _seed_gallery_json(folder: Path) -> bytes:
    return (_gallery(folder) / METADATA_FILE).read_bytes()


def _seed_gallery_data(folder: Path) -> bytes:
    directory = _gallery(folder)
    data = next(directory.glob("gallery-*.npz"))
    (folder / "data_name").write_text(data.name)
    return data.read_bytes()


def _gallery_with(path: Path) -> Path:
    """The seeded gallery folder with ``path`` (the mutated file) in place of one of its
    files: gallery.json, or the data file the metadata names."""
    directory = path.parent / "gallery"
    name = METADATA_FILE if path.name == METADATA_FILE else (path.parent / "data_name").read_text()
    (directory / name).write_bytes(path.read_bytes())
    return directory


def _read_gallery(path: Path) -> object:
    return Gallery.load(_gallery_with(path))


def _seed_jpeg(folder: Path) -> bytes:
    return encode_image(_face(0)[:48, :40], ".jpg", quality=80)


def _seed_png(folder: Path) -> bytes:
    return encode_image(_face(1)[:32, :32], ".png")


def _load_deploy_parts(path: Path) -> object:
    """What embedding reads: the file mapped, the deploy fields read and checked."""
    return Checkpoint.load(path, parts=DEPLOY_PARTS)


def _read_lfw_pairs(path: Path) -> object:
    return read_lfw_pairs(path, path.parent / "images")


FORMATS = format_targets(Target)

TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target("bin", "lfw.bin", _seed_bin, load_bin),
        Target("pairs.txt", "pairs.txt", _seed_lfw_pairs, _read_lfw_pairs),
        Target("pair list", "pairs.csv", _seed_pair_list, read_pair_list),
        Target("checkpoint", "model.pt", _seed_checkpoint, Checkpoint.load),
        Target("checkpoint parts", "model.pt", _seed_checkpoint, _load_deploy_parts),
        Target("jpeg", "face.jpg", _seed_jpeg, read_image),
        Target("png", "face.png", _seed_png, read_image),
        Target("gallery.json", METADATA_FILE, _seed_gallery_json, _read_gallery),
        Target("gallery data", "data.npz", _seed_gallery_data, _read_gallery),
        *FORMATS,
    )
}

_SPECIAL_BYTES = (0x00, 0xFF, 0x7F, 0x80, 0x0A, 0x2C, 0x09, 0xE9, 0xEF)


def mutate(data: bytes, rng: np.random.Generator, craft: Craft | None = None) -> bytes:
    """1-4 random damages of ``data``: flipped bits, special bytes, truncation, inserted
    random or repeated chunks, a UTF-8 BOM or Latin-1 text in front; with ``craft`` half of
    the cases are crafted first (and a quarter only crafted)."""
    if craft is not None and rng.random() < 0.5:
        data = craft(data, rng)
        if rng.random() < 0.5:
            return data
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(0, 7))
        at = int(rng.integers(0, len(out) + 1))
        if kind == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1 and out:
            out[min(at, len(out) - 1)] = _SPECIAL_BYTES[int(rng.integers(len(_SPECIAL_BYTES)))]
        elif kind == 2:
            del out[at:]
        elif kind == 3:
            out[at:at] = rng.bytes(int(rng.integers(1, 16)))
        elif kind == 4 and out:
            start = int(rng.integers(0, len(out)))
            out[at:at] = out[start : start + int(rng.integers(1, 64))] * int(rng.integers(1, 4))
        elif kind == 5:
            out[0:0] = b"\xef\xbb\xbf"
        else:
            out[at:at] = "Zoë Müller".encode("latin-1")
    return bytes(out)


class _OverTime(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _OverTime


def outcome(target: Target, path: Path) -> tuple[str, str]:
    """``(one of OUTCOMES, detail)`` of reading ``path`` with ``target``'s reader."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    started = time.perf_counter()
    try:
        target.read(path)
    except FaceforgeError as exc:
        return "faceforge error", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    except _OverTime:
        return "over time", f"over {TIME_LIMIT:.0f} s"
    except MemoryError:
        return "over memory", "MemoryError"
    except Exception as exc:
        return "other exception", f"{type(exc).__name__}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if time.perf_counter() - started > TIME_LIMIT:
        return "over time", "slow"
    return "ok", ""
