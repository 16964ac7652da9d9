"""``faceforge pairs``: LFW-format files from folder, list, RecordIO and LMDB datasets, read
back by ``eval --pairs`` against the dataset itself or an exported LFW folder."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceforge.cli import main
from faceforge.errors import DataError
from faceforge.evaluation.pairs import parse_lfw_pairs, read_lfw_pairs
from faceforge.prepare.convert import ConvertOptions, convert
from faceforge.prepare.pairs_file import PairsOptions, make_pairs, read_pairs_on

COUNTS = [1, 2, 3, 4, 5, 6] * 4  # 24 identities, 84 images


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 255, (4, 4, 3), np.uint8), (112, 112))
    return cv2.imencode(".png", image)[1].tobytes()


def write_folder(root: Path, lfw_names: bool) -> Path:
    for person, count in enumerate(COUNTS):
        name = f"person{person:02d}"
        (root / name).mkdir(parents=True)
        for k in range(count):
            file = f"{name}_{2 * k + 1:04d}.png" if lfw_names else f"IMG_{k}.png"
            (root / name / file).write_bytes(png(100 * person + k))
    return root


@pytest.fixture
def lfw_folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "lfw", lfw_names=True)


def labels_of(plist) -> list[str]:
    """The identity of every image of a pair list, from its file or record name."""
    return [Path(str(p)).parent.name for p in plist.paths]


def test_lfw_named_folder_is_referenced_in_place(lfw_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs.txt"
    report = make_pairs(lfw_folder, out, PairsOptions(folds=3, per_fold=4, seed=2))
    assert report.images_for_eval == lfw_folder and report.export is None
    lines = out.read_text().splitlines()
    assert lines[0] == "3\t4" and len(lines) == 1 + 3 * 8
    pairs, issame, folds = parse_lfw_pairs(out)
    assert folds == 3  # from the header, which counts the pairs
    assert issame.tolist() == ([True] * 4 + [False] * 4) * 3  # LFW's order in each fold
    assert all(image.number % 2 == 1 for pair in pairs for image in pair)  # the file numbers
    plist = read_lfw_pairs(out, lfw_folder)  # what eval and pack-bin read, unchanged
    assert plist.folds == 3
    names = labels_of(plist)
    assert [a == b for a, b in zip(names[0::2], names[1::2], strict=True)] == issame.tolist()
    folds = [set(names[16 * k : 16 * (k + 1)]) for k in range(3)]
    assert not (folds[0] & folds[1] or folds[0] & folds[2] or folds[1] & folds[2])


def test_other_file_names_need_an_export(tmp_path: Path) -> None:
    src = write_folder(tmp_path / "photos", lfw_names=False)
    with pytest.raises(DataError, match="not named <identity>_NNNN.*add --export DIR"):
        make_pairs(src, tmp_path / "pairs.txt", PairsOptions(folds=2, per_fold=3))
    assert not (tmp_path / "pairs.txt").exists()
    report = make_pairs(src, tmp_path / "pairs.txt", PairsOptions(2, 3), export=tmp_path / "ex")
    assert report.images_for_eval == tmp_path / "ex"
    plist = read_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "ex")
    for exported in plist.paths:  # byte copies of the source images, numbered from 1
        name, number = exported.stem.rsplit("_", 1)
        assert exported.read_bytes() == (src / name / f"IMG_{int(number) - 1}.png").read_bytes()
    with pytest.raises(DataError, match="already exists"):
        make_pairs(src, tmp_path / "p2.txt", PairsOptions(2, 3), export=tmp_path / "ex")


@pytest.mark.parametrize("target", ["train.rec", "train.lmdb", "train.txt"])
def test_dataset_files_read_the_same_images_as_their_export(
    lfw_folder: Path, tmp_path: Path, target: str
) -> None:
    dataset = tmp_path / target
    convert(lfw_folder, dataset, ConvertOptions(progress=False))
    out = tmp_path / "pairs.txt"
    report = make_pairs(dataset, out, PairsOptions(folds=2, per_fold=5), export=tmp_path / "ex")
    assert report.images_for_eval == dataset
    in_place = read_pairs_on(out, dataset).load("in-place")
    exported = read_pairs_on(out, tmp_path / "ex").load("exported")
    np.testing.assert_array_equal(in_place.images, exported.images)
    np.testing.assert_array_equal(in_place.issame, exported.issame)


def test_missing_dataset_images_are_listed_by_name(lfw_folder: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "train.rec"
    convert(lfw_folder, dataset, ConvertOptions(progress=False))
    (tmp_path / "bad.txt").write_text("1\t1\n5\t1\t9\n77\t1\t5\t1\n")
    with pytest.raises(DataError, match=r"2 image\(s\) not in the dataset.*: 5 9, 77 1"):
        read_pairs_on(tmp_path / "bad.txt", dataset)


def test_identity_names_with_spaces_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "src"
    for person in ("Ann Lee", "Bob", "Cy", "Di"):
        (root / person).mkdir(parents=True)
        for k in range(3):
            (root / person / f"{person}_{k + 1:04d}.png").write_bytes(png(k + len(person)))
    with pytest.raises(DataError, match="identity 'Ann Lee' cannot be written"):
        make_pairs(root, tmp_path / "p.txt", PairsOptions(folds=2, per_fold=1))


def test_eval_reads_the_pairs_of_a_recordio_set(
    lfw_folder: Path, tmp_path: Path, tiny_checkpoint: Path, capsys
) -> None:
    """The acceptance test: folds identity-disjoint and balanced, and eval reads them."""
    dataset = tmp_path / "train.rec"
    convert(lfw_folder, dataset, ConvertOptions(progress=False))
    out, summary, result = tmp_path / "pairs.txt", tmp_path / "s.json", tmp_path / "r.json"
    argv = ["pairs", str(dataset), str(out), "--folds", "4", "--per-fold", "3", "--seed", "1"]
    assert main([*argv, "--json", str(summary), "--no-progress"]) == 0
    assert json.loads(summary.read_text())["fold_identities"] == [6, 6, 6, 6]
    assert f"--pairs {out} --images {dataset}" in capsys.readouterr().out
    argv = ["eval", "--checkpoint", str(tiny_checkpoint), "--pairs", str(out)]
    argv += ["--images", str(dataset), "--folds", "4", "--no-progress", "--json", str(result)]
    assert main(argv) == 0
    measured = json.loads(result.read_text())["sets"]["pairs"]
    assert measured["num_pairs"] == 24 and len(measured["fold_accuracies"]) == 4
    assert measured["warnings"] == []  # every evaluation fold holds both kinds of pair


def test_pack_bin_reads_pairs_over_a_dataset(lfw_folder: Path, tmp_path: Path) -> None:
    from faceforge.evaluation.bin_format import load_bin

    dataset = tmp_path / "train.lmdb"
    convert(lfw_folder, dataset, ConvertOptions(progress=False))
    out = tmp_path / "pairs.txt"
    make_pairs(dataset, out, PairsOptions(folds=2, per_fold=2))
    argv = ["pack-bin", str(tmp_path / "p.bin"), "--pairs", str(out), "--images", str(dataset)]
    assert main([*argv, "--ext", ".png", "--no-progress"]) == 0
    packed = load_bin(tmp_path / "p.bin")
    expected = read_pairs_on(out, dataset).load("p")
    np.testing.assert_array_equal(packed.images, expected.images)
    np.testing.assert_array_equal(packed.issame, expected.issame)
