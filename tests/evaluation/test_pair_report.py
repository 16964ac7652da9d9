"""``faceforge inspect`` on verification files: a ``.bin`` and an LFW ``pairs.txt`` described
(pairs, classes, folds), a training list left to the dataset report."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from faceforge.cli import main
from faceforge.evaluation.bin_format import write_bin
from faceforge.evaluation.pair_report import describe_verification_file


def _encoded(count: int) -> list[bytes]:
    image = np.full((112, 96, 3), 128, np.uint8)
    return [cv2.imencode(".png", image)[1].tobytes()] * count


def test_a_bin_says_its_pairs_images_and_folds(tmp_path: Path) -> None:
    balanced = np.arange(20) % 2 == 0  # same / different alternating: every fold has both
    write_bin(tmp_path / "lfw.bin", (_encoded(40), balanced.tolist()))
    lines = describe_verification_file(tmp_path / "lfw.bin")
    assert lines[0].endswith(
        "insightface verification .bin, 20 pairs (10 same, 10 different), 40 PNG images of "
        "112x96 (the first)"
    )
    assert lines[1] == "folds: 10 (insightface's), each holding both classes"
    write_bin(tmp_path / "sorted.bin", (_encoded(40), sorted(balanced.tolist())))
    assert (
        "; 10 hold only one class (sorted by label?)"
        in describe_verification_file(tmp_path / "sorted.bin")[1]
    )
    write_bin(tmp_path / "same.bin", (_encoded(4), [True, True]))
    assert "every pair is of one class" in describe_verification_file(tmp_path / "same.bin")[1]


def test_a_pairs_file_says_its_people_and_the_folds_of_its_header(tmp_path: Path) -> None:
    rows = ["2 1", "Ann 1 2", "Bob 1 Cy 1", "Bob 1 3", "Ann 1 Cy 2"]
    (tmp_path / "pairs.txt").write_text("\n".join(rows) + "\n")
    lines = describe_verification_file(tmp_path / "pairs.txt")
    assert lines[0].endswith(
        "LFW pairs file, 4 pairs (2 same, 2 different) over 6 images of 3 people"
    )
    assert lines[1] == "folds: 2 (from its header '2 N'), each holding both classes"
    (tmp_path / "train.txt").write_text("Ann/1.jpg 0\nBob/1.jpg 1\n")  # a training list
    assert describe_verification_file(tmp_path / "train.txt") is None


def test_a_pair_list_says_how_many_of_its_files_are_found(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"")
    rows = ["path_a\tpath_b\tsame", "a.jpg\tb.jpg\t1", "a.jpg\tc.jpg\t0"]
    (tmp_path / "pairs.tsv").write_text("\n".join(rows) + "\n")
    lines = describe_verification_file(tmp_path / "pairs.tsv")
    assert lines[0].endswith(
        f"pair list, 2 pairs (1 same, 1 different) over 3 files (1 of them found from "
        f"{tmp_path}: relative paths start there unless --root says otherwise)"
    )
    assert (
        lines[1] == "folds: 10 (--folds); too few pairs for them: evaluate with --folds 2 or fewer"
    )


def test_inspect_describes_a_bin(tmp_path: Path, capsys) -> None:
    write_bin(tmp_path / "lfw.bin", (_encoded(4), [True, False]))
    assert main(["inspect", str(tmp_path / "lfw.bin")]) == 0
    out = capsys.readouterr().out
    assert "2 pairs (1 same, 1 different)" in out and f"eval --bin {tmp_path / 'lfw.bin'}" in out
    assert "folds: 10 (insightface's); too few pairs for them: evaluate with --folds 2" in out
