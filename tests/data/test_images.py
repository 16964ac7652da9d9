"""Fitting images of other sizes to the model input, parallel decoding, and the pixel budget
that refuses decompression bombs before decoding, at every entry point, in bounded memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_bombs import DECLARED, forbid_decoding, jpeg_bomb, png_bomb

from faceforge.config import DataConfig
from faceforge.data.image_io import (
    MAX_DATASET_PIXELS,
    MAX_PHOTO_PIXELS,
    decode_image,
    encode_image,
    read_image,
)
from faceforge.data.images import RESIZE_MODES, fit_image, load_images
from faceforge.data.lmdb.writer import LmdbWriter
from faceforge.data.recordio.writer import RecordIOWriter
from faceforge.errors import DataError, UnknownChoiceError
from faceforge.evaluation.bin_format import write_bin


def _wide() -> np.ndarray:
    return np.full((50, 100, 3), 200, np.uint8)  # 100 wide, 50 high


def test_letterbox_keeps_aspect_and_pads():
    out = fit_image(_wide(), (112, 112), "letterbox", "w")
    assert out.shape == (112, 112, 3)
    assert (out[:28] == 0).all() and (out[-28:] == 0).all()  # 112 * 50 / 100 = 56 rows of image
    assert (out[28:84] == 200).all()


def test_stretch_and_center_crop():
    image = np.zeros((50, 100, 3), np.uint8)
    image[:, :20] = 255  # left fifth white
    stretched = fit_image(image, (112, 112), "stretch", "w")
    assert stretched.shape == (112, 112, 3) and stretched[:, :18].min() == 255
    cropped = fit_image(image, (112, 112), "center-crop", "w")
    # scaled to 224x112 the white part ends near x=45; the central 112 columns start at x=56
    assert cropped.shape == (112, 112, 3) and cropped.max() == 0


def test_exact_size_passes_and_others_need_a_mode():
    image = np.zeros((112, 112, 3), np.uint8)
    assert fit_image(image, (112, 112), None, "x") is image
    message = r"x: image is 100x50 .* resize mode \(center-crop, letterbox, stretch\)"
    with pytest.raises(DataError, match=message):
        fit_image(_wide(), (112, 112), None, "x")


def test_resize_modes_are_a_registry():
    assert RESIZE_MODES.names() == ["center-crop", "letterbox", "stretch"]
    for name in RESIZE_MODES.names():
        fitted = fit_image(_wide(), (40, 60), name, "w")
        assert fitted.shape == (40, 60, 3) and fitted.dtype == np.uint8
        np.testing.assert_array_equal(fitted, RESIZE_MODES.get(name)(_wide(), 40, 60))
    message = "unknown resize mode 'zoom'; valid choices: center-crop, letterbox, stretch"
    with pytest.raises(UnknownChoiceError, match=message):
        fit_image(_wide(), (112, 112), "zoom", "x")
    with pytest.raises(UnknownChoiceError, match="zoom"):  # even when no resizing is needed
        fit_image(np.zeros((112, 112, 3), np.uint8), (112, 112), "zoom", "x")
    with pytest.raises(UnknownChoiceError, match="zoom"):  # before anything is decoded
        load_images([b"not decoded"], ["a"], resize="zoom")


def test_load_images_in_threads_matches_serial():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (80, 112, 112, 3), np.uint8)
    encoded = [cv2.imencode(".png", im[:, :, ::-1])[1].tobytes() for im in images]
    names = [f"#{i}" for i in range(80)]
    np.testing.assert_array_equal(load_images(encoded, names, workers=2), images)
    np.testing.assert_array_equal(load_images(encoded, names, workers=1), images)
    encoded[70] = b"broken"
    with pytest.raises(DataError, match="#70"):
        load_images(encoded, names, workers=2)


# --- the pixel budget ---------------------------------------------------------------------


@pytest.mark.parametrize("bomb", [jpeg_bomb, png_bomb])
def test_a_bomb_is_refused_in_one_line_before_decoding(tmp_path: Path, bomb, monkeypatch) -> None:
    forbid_decoding(monkeypatch, bomb())
    path = tmp_path / "photo.img"
    path.write_bytes(bomb())
    with pytest.raises(DataError) as error:
        read_image(path)
    assert str(error.value) == (
        f"{path}: the image declares {DECLARED} = 900,000,000 pixels, more than the "
        "67,108,864 allowed; refused before decoding (raise --max-pixels or data.max_pixels "
        "if it is genuine)"
    )
    with pytest.raises(DataError, match=f"^record 7: the image declares {DECLARED} = .* 1,048"):
        decode_image(bomb(), "record 7", MAX_DATASET_PIXELS)


def test_the_budget_counts_pixels_and_is_inclusive() -> None:
    data = encode_image(np.zeros((8, 16, 3), np.uint8), ".png")
    assert decode_image(data, "x", max_pixels=128).shape == (8, 16, 3)
    with pytest.raises(DataError, match="declares 16x8 = 128 pixels, more than the 127 allowed"):
        decode_image(data, "x", max_pixels=127)


def test_default_budgets() -> None:
    assert MAX_PHOTO_PIXELS == 8192 * 8192  # a 64-megapixel phone photo (9248x6936) fits
    assert MAX_DATASET_PIXELS == 1024 * 1024
    assert DataConfig().max_pixels == MAX_DATASET_PIXELS


def _bomb_datasets(root: Path) -> None:
    """Every kind of input with a bomb at index 1 (JPEG and PNG alternating)."""
    good = encode_image(np.zeros((112, 112, 3), np.uint8))
    (root / "photo.png").write_bytes(png_bomb())
    for label, data in enumerate((good, jpeg_bomb())):
        (root / "folder" / f"id{label}").mkdir(parents=True)
        (root / "folder" / f"id{label}" / "0.jpg").write_bytes(data)
    (root / "list.txt").write_text("folder/id0/0.jpg 0\nphoto.png 1\n")
    with RecordIOWriter(root / "rec" / "train.rec", layout="plain") as rec:
        rec.add(0, good)
        rec.add(1, jpeg_bomb())
    with LmdbWriter(root / "set.lmdb") as lmdb:
        lmdb.add(0, good)
        lmdb.add(1, png_bomb())
    write_bin(root / "pairs.bin", ([good, png_bomb()], [True]))


#: runs in a child whose address space is capped 512 MB above what it holds after imports, so
#: a decoder that believed a header fails to allocate instead of taking the machine
_ENTRY_POINTS = textwrap.dedent(
    """
    import re, resource, sys
    from pathlib import Path
    from faceforge.data.image_io import read_image
    from faceforge.data.readers import ImageFolderReader, ListFileReader, LmdbReader
    from faceforge.data.readers import RecordIOReader
    from faceforge.errors import DataError
    from faceforge.evaluation.bin_format import load_bin

    root = Path(sys.argv[1])
    readers = [ImageFolderReader(root / "folder"), ListFileReader(root / "list.txt"),
               RecordIOReader(root / "rec"), LmdbReader(root / "set.lmdb")]
    calls = [lambda: read_image(root / "photo.png"), lambda: load_bin(root / "pairs.bin")]
    calls += [lambda reader=reader: reader.load(1) for reader in readers]
    held = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read())[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (held + (512 << 20), resource.RLIM_INFINITY))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for call in calls:
        try:
            call()
            print("decoded")
        except DataError as error:
            print(error)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """
)


def test_every_entry_point_refuses_bombs_in_bounded_memory(tmp_path: Path) -> None:
    _bomb_datasets(tmp_path)
    child = subprocess.run(
        [sys.executable, "-c", _ENTRY_POINTS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    *errors, grown_mb = child.stdout.splitlines()
    photo, dataset = "67,108,864", "1,048,576"
    expected = [
        (f"{tmp_path / 'photo.png'}: ", photo),
        (f"{tmp_path / 'pairs.bin'} image #1: ", dataset),
        (f"{tmp_path / 'folder' / 'id1' / '0.jpg'}: ", dataset),
        (f"{tmp_path / 'photo.png'}: ", dataset),  # the list's second image
        (f"{tmp_path / 'rec' / 'train.rec'}: record 1 at byte ", dataset),
        (f"{tmp_path / 'set.lmdb'}: image 1 (key 0000000001): ", dataset),
    ]
    assert len(errors) == len(expected)
    for line, (where, budget) in zip(errors, expected, strict=True):
        assert line.startswith(where) and f"declares {DECLARED} = 900,000,000 pixels" in line
        assert f"more than the {budget} allowed" in line
    assert int(grown_mb) < 64  # decoding one bomb would take 2,700 MB
