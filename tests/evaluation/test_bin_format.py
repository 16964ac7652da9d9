"""insightface .bin reading: real file, round trips, and refusal of unsafe or damaged files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_bombs import DECLARED, forbid_decoding, png_bomb

from faceforge.data.verification_set import VerificationSet
from faceforge.errors import DataError, FormatError
from faceforge.evaluation.bin_format import load_bin, read_bin, write_bin


def _faces(n_pairs: int, size: int = 112, seed: int = 0) -> VerificationSet:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(2 * n_pairs, size, size, 3), dtype=np.uint8)
    return VerificationSet("toy", images, np.arange(n_pairs) % 2 == 0)


def test_real_insightface_bin(shared_data):
    path = shared_data / "fixtures" / "insightface_arcface_paddle" / "small_lfw.bin"
    entries, issame = read_bin(path)
    assert len(entries) == 20 and issame.tolist() == [True] * 10
    assert all(e[:2] == b"\xff\xd8" for e in entries)  # JPEG start-of-image marker
    vset = load_bin(path)
    assert vset.name == "small_lfw" and vset.images.shape == (20, 112, 112, 3)
    for i in (0, 7, 19):
        bgr = cv2.imdecode(np.frombuffer(entries[i], np.uint8), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(vset.images[i], bgr[:, :, ::-1])


def test_png_round_trip_is_exact(tmp_path):
    vset = _faces(3)
    write_bin(tmp_path / "toy.bin", vset, ext=".png")
    back = load_bin(tmp_path / "toy.bin")
    np.testing.assert_array_equal(back.images, vset.images)
    np.testing.assert_array_equal(back.issame, vset.issame)


def test_jpeg_round_trip_is_close(tmp_path):
    smooth = np.repeat(np.linspace(0, 255, 112, dtype=np.uint8)[None, :, None], 112, 0)
    images = np.stack([np.repeat(smooth, 3, 2)] * 4)
    vset = VerificationSet("smooth", images, np.array([True, False]))
    write_bin(tmp_path / "s.bin", vset, quality=95)
    back = load_bin(tmp_path / "s.bin")
    assert np.abs(back.images.astype(int) - images).mean() < 2


def test_reads_numpy_byte_arrays_and_bool_array_labels(tmp_path):
    # layout of bins written by numpy-based tools (as in insightface's paddle fixture)
    vset = _faces(2)
    encoded = [
        np.frombuffer(cv2.imencode(".png", im[:, :, ::-1])[1], np.uint8)[:, None]
        for im in vset.images
    ]
    (tmp_path / "np.bin").write_bytes(pickle.dumps((encoded, np.array([True, False])), 3))
    back = load_bin(tmp_path / "np.bin")
    np.testing.assert_array_equal(back.images, vset.images)
    assert back.issame.tolist() == [True, False]


def test_reads_protocol_2_bytes(tmp_path):
    vset = _faces(1)
    encoded = [cv2.imencode(".png", im[:, :, ::-1])[1].tobytes() for im in vset.images]
    (tmp_path / "p2.bin").write_bytes(pickle.dumps((encoded, [True]), protocol=2))
    np.testing.assert_array_equal(load_bin(tmp_path / "p2.bin").images, vset.images)


def test_a_bomb_image_is_refused_before_decoding(tmp_path, monkeypatch):
    good = cv2.imencode(".png", np.zeros((112, 112, 3), np.uint8))[1].tobytes()
    write_bin(tmp_path / "b.bin", ([good, png_bomb()], [True]))
    forbid_decoding(monkeypatch, png_bomb())
    message = rf"b.bin image #1: the image declares {DECLARED} = .* than the 1,048,576 allowed"
    with pytest.raises(DataError, match=message):
        load_bin(tmp_path / "b.bin")
    with pytest.raises(DataError, match=r"image #0: the image declares 112x112 = 12,544 pixels"):
        load_bin(tmp_path / "b.bin", max_pixels=112 * 112 - 1)


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evaluates:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_pickled_callable_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_RunsShell(marker), b"x"], [True]), protocol=4))
    with pytest.raises(FormatError, match=r"(posix|os)\.system"):
        read_bin(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps(([b"x", _Evaluates()], [True]), protocol=2))
    with pytest.raises(FormatError, match=r"__builtin__\.eval"):
        load_bin(path)


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "obj.bin"
    path.write_bytes(pickle.dumps(([b"a", b"b"], np.array([True], dtype=object))))
    with pytest.raises(FormatError, match="dtype object"):
        read_bin(path)


def test_truncated_and_garbage_files(tmp_path):
    write_bin(tmp_path / "ok.bin", _faces(2), ext=".png")
    data = (tmp_path / "ok.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="truncated"):
        read_bin(tmp_path / "cut.bin")
    (tmp_path / "junk.bin").write_bytes(b"this is not a pickle")
    with pytest.raises(FormatError):
        read_bin(tmp_path / "junk.bin")
    (tmp_path / "dict.bin").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(FormatError, match="pair"):
        read_bin(tmp_path / "dict.bin")
    (tmp_path / "odd.bin").write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True])))
    with pytest.raises(FormatError, match="3 images for 1 pairs"):
        read_bin(tmp_path / "odd.bin")
    with pytest.raises(FormatError, match="no such file"):
        read_bin(tmp_path / "missing.bin")


def test_corrupt_image_names_its_index(tmp_path):
    good = cv2.imencode(".png", np.zeros((112, 112, 3), np.uint8))[1].tobytes()
    write_bin(tmp_path / "bad.bin", ([good, good, good, b"\xff\xd8garbage"], [True, False]))
    with pytest.raises(DataError, match="image #3"):
        load_bin(tmp_path / "bad.bin")


def test_other_sizes_need_a_resize_mode(tmp_path):
    write_bin(tmp_path / "big.bin", _faces(1, size=120), ext=".png")
    expected = r"120x120 but the model expects 112x112; align the faces first \(faceforge align\)"
    with pytest.raises(DataError, match=expected):
        load_bin(tmp_path / "big.bin")
    assert load_bin(tmp_path / "big.bin", resize="stretch").images.shape == (2, 112, 112, 3)


def test_a_crafted_memo_index_is_refused_without_allocating(tmp_path: Path) -> None:
    """9 bytes asking CPython's unpickler for a 2**32-entry memo table (~32 GB)."""
    import resource
    import time

    evil = tmp_path / "memo.bin"
    evil.write_bytes(b"\x80\x02N" + b"r\xff\xff\xff\xff" + b".")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(FormatError, match="memo index 4294967295 at byte 3"):
        read_bin(evil)
    assert time.perf_counter() - started < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KB
    huge = tmp_path / "len.bin"
    huge.write_bytes(b"\x80\x02B\xff\xff\xff\x7f")  # a 2 GB bytes object announced, 0 given
    with pytest.raises(FormatError, match="not a readable pickle"):
        read_bin(huge)
