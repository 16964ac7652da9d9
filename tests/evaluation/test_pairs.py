"""LFW pairs.txt and CSV/TSV pair lists (labelled or not): parsing, missing-file reports,
loading, .bin export."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceforge.errors import DataError
from faceforge.evaluation import pairs as pairs_module
from faceforge.evaluation.bin_format import load_bin, write_bin
from faceforge.evaluation.pairs import (
    Pair,
    PairList,
    parse_lfw_pairs,
    read_lfw_pairs,
    read_pair_list,
    read_pairs,
)


def _write_image(path: Path, value: int, size: int = 112) -> np.ndarray:
    rgb = np.zeros((size, size, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = value, 255 - value, (value * 7) % 256
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    return rgb


@pytest.fixture
def lfw_dir(tmp_path):
    images = tmp_path / "images"
    _write_image(images / "Ann_Lee" / "Ann_Lee_0001.png", 10)
    _write_image(images / "Ann_Lee" / "Ann_Lee_0002.png", 20)
    _write_image(images / "Bob" / "Bob_0003.bmp", 30)
    return images


@pytest.mark.parametrize("header", ["10 300\n", "300\n", ""])
def test_lfw_pairs_parsing(tmp_path, lfw_dir, header):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{header}Ann_Lee\t1\t2\nAnn_Lee\t2\tBob\t3\n")
    plist = read_lfw_pairs(pairs, lfw_dir)
    assert plist.issame.tolist() == [True, False]
    assert [p.name for p in plist.paths] == [
        "Ann_Lee_0001.png",
        "Ann_Lee_0002.png",
        "Ann_Lee_0002.png",
        "Bob_0003.bmp",
    ]
    vset = plist.load("mini")
    assert vset.images.shape == (4, 112, 112, 3)
    assert vset.images[3, 0, 0].tolist() == [30, 225, 210]


@pytest.mark.parametrize(
    "text",
    [
        "3 1\n{pairs}\n",  # a trailing blank line
        "\n3 1\n\n{pairs}",  # blank lines before and after the header
        "3 1\r\n{crlf}\r\n\r\n",  # CRLF endings and a blank line
    ],
)
def test_blank_lines_keep_the_fold_header(tmp_path: Path, text: str) -> None:
    lines = ["A 1 2", "A 1 B 1"] * 3
    pairs = tmp_path / "pairs.txt"
    pairs.write_bytes(text.format(pairs="\n".join(lines), crlf="\r\n".join(lines)).encode())
    parsed = parse_lfw_pairs(pairs)
    assert parsed.folds == 3 and parsed.issame.tolist() == [True, False] * 3


def test_a_number_after_the_first_pair_is_no_header(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("A 1 2\n3 1\n")
    with pytest.raises(DataError, match=r"pairs.txt:2"):
        parse_lfw_pairs(pairs)


def test_missing_files_are_all_named_before_decoding(tmp_path, lfw_dir):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("Ann_Lee 1 7\nCarl 1 Ann_Lee 2\n")
    with pytest.raises(DataError, match="2 image file") as info:
        read_lfw_pairs(pairs, lfw_dir)
    assert "Ann_Lee_0007" in str(info.value) and "Carl_0001" in str(info.value)


def test_missing_file_listing_is_capped(tmp_path, lfw_dir):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("".join(f"Nobody {2 * i + 1} {2 * i + 2}\n" for i in range(15)))
    with pytest.raises(DataError, match=r"(?s)30 image file.*and 10 more") as info:
        read_lfw_pairs(pairs, lfw_dir)
    assert str(info.value).count("Nobody_") == 20


def test_malformed_line_names_its_number(tmp_path, lfw_dir):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("300\nAnn_Lee 1 2\nAnn_Lee one 2\n")
    with pytest.raises(DataError, match=r"pairs.txt:3"):
        read_lfw_pairs(pairs, lfw_dir)


def test_csv_with_header_and_tsv_without(tmp_path, lfw_dir):
    (tmp_path / "list.csv").write_text(
        "path_a,path_b,same\nAnn_Lee/Ann_Lee_0001.png,Ann_Lee/Ann_Lee_0002.png,1\n"
        f"Ann_Lee/Ann_Lee_0001.png,{lfw_dir / 'Bob' / 'Bob_0003.bmp'},false\n"
    )
    plist = read_pair_list(tmp_path / "list.csv", root=lfw_dir)
    assert plist.issame.tolist() == [True, False]
    assert plist.paths[3] == lfw_dir / "Bob" / "Bob_0003.bmp"
    (lfw_dir / "list.tsv").write_text("Ann_Lee/Ann_Lee_0002.png\tBob/Bob_0003.bmp\t0\textra\n")
    plist = read_pair_list(lfw_dir / "list.tsv")  # relative to the list's own folder
    assert plist.issame.tolist() == [False] and plist.paths[0].is_file()


def test_csv_errors(tmp_path, lfw_dir):
    (tmp_path / "bad.csv").write_text("a.png,b.png,1\na.png,b.png,maybe\n")
    with pytest.raises(DataError, match=r"bad.csv:2"):
        read_pair_list(tmp_path / "bad.csv")
    (tmp_path / "missing.csv").write_text("a.png,b.png,1\n")
    with pytest.raises(DataError, match=r"(?s)2 image file.*a\.png"):
        read_pair_list(tmp_path / "missing.csv")
    with pytest.raises(DataError) as error:
        read_pair_list(tmp_path / "missing.csv", root=tmp_path / "photos")
    assert str(error.value).startswith(
        f"{tmp_path / 'missing.csv'}: 2 image file(s) not found (relative paths start from "
        f"{tmp_path / 'photos'}: --root DIR):\n  {tmp_path / 'photos' / 'a.png'}\n"
    )


def test_shuffled_pairs_keep_their_images_and_labels_together() -> None:
    paths = [Path(f"{side}{i}.png") for i in range(200) for side in "ab"]
    sorted_list = PairList(paths, np.arange(200) < 100)  # all 'same' pairs first
    shuffled = sorted_list.shuffled()
    pairs = {
        (a, b, same) for a, b, same in zip(paths[::2], paths[1::2], sorted_list.issame, strict=True)
    }
    moved = list(zip(shuffled.paths[::2], shuffled.paths[1::2], shuffled.issame, strict=True))
    assert set(moved) == pairs and len(moved) == 200
    assert shuffled.paths != paths  # reordered ...
    assert shuffled.paths == sorted_list.shuffled().paths  # ... the same way every time
    folds = np.array_split(shuffled.issame, 10)
    assert all(0 < fold.sum() < len(fold) for fold in folds)  # both classes in every fold


def test_pairs_to_bin_round_trip(tmp_path, lfw_dir):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("Ann_Lee 1 2\nAnn_Lee 1 Bob 3\n")
    vset = read_lfw_pairs(pairs, lfw_dir).load("mini")
    write_bin(tmp_path / "mini.bin", vset, ext=".png")
    back = load_bin(tmp_path / "mini.bin")
    np.testing.assert_array_equal(back.images, vset.images)
    np.testing.assert_array_equal(back.issame, vset.issame)


def test_real_lfw_view1_pairs(shared_data):
    root = shared_data / "lfw-view1"
    plist = read_lfw_pairs(root / "pairsDevTest.txt", root / "images")
    assert len(plist) == 1000 and plist.issame.sum() == 500
    assert plist.issame[:500].all() and not plist.issame[500:].any()
    assert plist.paths[0] == root / "images" / "Abdullah_Gul" / "Abdullah_Gul_0013.jpg"
    few = PairList(plist.paths[:4] + plist.paths[-2:], plist.issame[[0, 1, -1]])
    vset = few.load("lfw-few", resize="letterbox")
    assert vset.images.shape == (6, 112, 112, 3)
    bgr = cv2.imread(str(plist.paths[-1]))
    expected = cv2.resize(bgr, (112, 112), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    np.testing.assert_array_equal(vset.images[-1], expected)


def test_real_celeba_pair_list(shared_data):
    plist = read_pair_list(shared_data / "celeba-wild-pairs.tsv", shared_data / "celeba-wild")
    assert len(plist) == 2000 and plist.issame.sum() == 1000


@pytest.mark.parametrize("delimiter", [",", "\t", ";", "|"])
def test_one_parser_for_labelled_and_unlabelled_lists(tmp_path, lfw_dir, delimiter):
    rows = [
        ["path_a", "path_b", "same"],
        ["Ann_Lee/Ann_Lee_0001.png", "Ann_Lee/Ann_Lee_0002.png", "yes"],
        ["", "", ""],
        ["Ann_Lee/Ann_Lee_0002.png", "Bob/Bob_0003.bmp", "False", "note"],
    ]
    listing = lfw_dir / "list.txt"
    listing.write_text("\n".join(delimiter.join(row) for row in rows) + "\n")
    first, second = (lfw_dir / "Ann_Lee" / f"Ann_Lee_000{n}.png" for n in (1, 2))
    bob = lfw_dir / "Bob" / "Bob_0003.bmp"
    assert read_pairs(listing) == [Pair(first, second, True), Pair(second, bob, False)]
    # unlabelled: the third column is ignored; the header is the row naming no existing file
    assert read_pairs(listing, labelled=False) == [Pair(first, second), Pair(second, bob)]
    assert read_pairs(listing, root=tmp_path, labelled=False)[0].a == tmp_path / rows[1][0]


def test_unlabelled_lists(tmp_path, lfw_dir):
    existing = lfw_dir / "Bob" / "Bob_0003.bmp"
    listing = tmp_path / "pairs.tsv"
    listing.write_text(f"{existing}\tmissing_a.jpg\nmissing_b.jpg\tmissing_c.jpg\n")
    pairs = read_pairs(listing, labelled=False)  # one existing file: not a header
    assert pairs == [
        Pair(existing, tmp_path / "missing_a.jpg"),
        Pair(tmp_path / "missing_b.jpg", tmp_path / "missing_c.jpg"),  # reported when used
    ]
    listing.write_text("image_a,image_b\nonly_one_column.jpg\n")
    with pytest.raises(DataError, match=r"pairs.tsv:2: expected 'path_a,path_b', got \["):
        read_pairs(listing, labelled=False)
    listing.write_text("image_a,image_b\n\n")
    with pytest.raises(DataError, match="no pairs found"):
        read_pairs(listing, labelled=False)
    with pytest.raises(DataError, match="cannot read pair list"):
        read_pairs(tmp_path / "none.csv", labelled=False)


def test_labelled_lists_need_the_label(tmp_path):
    listing = tmp_path / "pairs.csv"
    listing.write_text("a.png,b.png,1\nc.png,d.png\n")
    message = r"pairs.csv:2: expected 'path_a,path_b,same' with same in 1/0/true/false/yes/no"
    with pytest.raises(DataError, match=message):
        read_pairs(listing)
    # unlabelled, a first row naming no existing file reads as a header
    assert read_pairs(listing, labelled=False) == [Pair(tmp_path / "c.png", tmp_path / "d.png")]


ENCODINGS = {
    "utf-8": lambda text: text.encode("utf-8"),
    "utf-8 with BOM": lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"),
    "latin-1": lambda text: text.encode("latin-1"),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_latin1_and_bom_files_parse_like_utf8(tmp_path, encoding):
    """LFW has names like José_Martí; editors save them in any of these encodings."""
    images = tmp_path / "images"
    for name, number in (("José_Martí", 1), ("José_Martí", 2), ("Zoë_Ball", 1)):
        _write_image(images / name / f"{name}_{number:04d}.png", number)
    lfw = tmp_path / "pairs.txt"
    lfw.write_bytes(ENCODINGS[encoding]("José_Martí\t1\t2\nJosé_Martí\t1\tZoë_Ball\t1\n"))
    plist = read_lfw_pairs(lfw, images)
    assert [p.relative_to(images).as_posix() for p in plist.paths] == [
        "José_Martí/José_Martí_0001.png",
        "José_Martí/José_Martí_0002.png",
        "José_Martí/José_Martí_0001.png",
        "Zoë_Ball/Zoë_Ball_0001.png",
    ]
    assert plist.issame.tolist() == [True, False]
    listing = tmp_path / "pairs.csv"  # no header: a BOM left in would corrupt the first path
    rows = "José_Martí/José_Martí_0001.png,Zoë_Ball/Zoë_Ball_0001.png,0\n"
    listing.write_bytes(ENCODINGS[encoding](rows))
    pair = read_pair_list(listing, images)
    assert pair.paths == [plist.paths[0], plist.paths[3]] and pair.issame.tolist() == [False]


def test_binary_garbage_is_a_data_error(tmp_path):
    garbage = tmp_path / "pairs.txt"
    garbage.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    with pytest.raises(DataError, match="not a text pairs file .binary data"):
        read_lfw_pairs(garbage, tmp_path)
    with pytest.raises(DataError, match="not a text pair list"):
        read_pairs(garbage)
    (tmp_path / "utf16.csv").write_bytes("a.png,b.png,1\n".encode("utf-16"))
    with pytest.raises(DataError, match="UTF-8 or Latin-1"):
        read_pairs(tmp_path / "utf16.csv")


def test_loading_in_chunks_with_a_progress_bar_gives_the_same_images(
    tmp_path, lfw_dir, capsys, monkeypatch
):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("Ann_Lee 1 2\nAnn_Lee 1 Bob 3\n")
    plist = read_lfw_pairs(pairs, lfw_dir)
    quiet = plist.load("mini")
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(pairs_module, "LOAD_CHUNK", 3)  # 4 images: chunks of 3 and 1
    shown = plist.load("mini", progress=True)
    assert "mini: 100%|██████████| 4/4" in capsys.readouterr().err
    np.testing.assert_array_equal(quiet.images, shown.images)
