"""``pack-bin`` is the one ``.bin`` writer: the old ``convert --to-bin`` runs its code and
writes the same file, after one deprecation line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceforge.cli import main
from faceforge.data.image_io import encode_image
from faceforge.evaluation.bin_format import load_bin


@pytest.fixture()
def lfw_folder(tmp_path: Path) -> tuple[Path, Path]:
    """An LFW-style folder (two people, two 64x64 photos each) and its pairs.txt."""
    rng = np.random.default_rng(0)
    for name in ("Ann_A", "Bob_B"):
        (tmp_path / "lfw" / name).mkdir(parents=True)
        for n in (1, 2):
            image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            (tmp_path / "lfw" / name / f"{name}_{n:04d}.png").write_bytes(
                encode_image(image, ".png")
            )
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1 2\nAnn_A 1 2\nAnn_A 1 Bob_B 2\nBob_B 1 Ann_A 2\n")
    return tmp_path / "lfw", pairs


def test_convert_to_bin_is_pack_bin(lfw_folder, tmp_path: Path, capsys) -> None:
    images, pairs = lfw_folder
    new, old = tmp_path / "new.bin", tmp_path / "old.bin"
    common = ["--images", str(images), "--size", "64", "--no-progress"]
    assert main(["pack-bin", str(new), "--pairs", str(pairs), *common]) == 0
    assert capsys.readouterr().err == ""
    assert main(["convert", "--to-bin", str(pairs), str(old), *common]) == 0
    out, err = capsys.readouterr()
    assert err == "faceforge: 'convert --to-bin' is deprecated, use 'pack-bin'\n"
    assert out == f"wrote {old}: 3 pairs (1 same)\n"
    assert old.read_bytes() == new.read_bytes()
    vset = load_bin(new, image_size=(64, 64))
    assert vset.issame.tolist() == [True, False, False]


def test_convert_to_bin_checks_its_output_before_decoding(lfw_folder, tmp_path, capsys) -> None:
    images, pairs = lfw_folder
    assert main(["convert", "--to-bin", str(pairs), "--images", str(images), str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("deprecated, use 'pack-bin'")
    assert err[1] == f"faceforge convert: error: {tmp_path}: is a folder; give a file name"
