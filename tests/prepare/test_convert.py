"""faceforge convert / inspect: lossless round trips through every format, re-encoding,
shuffling, crash safety (a killed conversion's temporaries go at the next run), corrupt
input and decompression bombs, the .bin packer and the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_bombs import DECLARED, forbid_decoding, jpeg_bomb

from faceforge.cli import main
from faceforge.data.readers import ImageFolderReader, ListFileReader, LmdbReader, RecordIOReader
from faceforge.errors import DataError
from faceforge.evaluation.bin_format import load_bin
from faceforge.evaluation.pairs import read_lfw_pairs
from faceforge.files import aside_path
from faceforge.prepare.convert import ConvertOptions, convert
from faceforge.prepare.formats import dataset_format, dataset_paths, numbered_name, open_source
from faceforge.prepare.inspect import inspect_dataset

QUIET = ConvertOptions(progress=False)


def jpeg(seed: int, size: int = 112) -> bytes:
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 255, (8, 8, 3), np.uint8), (size, size))
    return cv2.imencode(".jpg", image)[1].tobytes()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for c, person in enumerate(("alice", "bob", "carol")):
        (root / person).mkdir(parents=True)
        for k in range(2 + c):
            (root / person / f"{k}.jpg").write_bytes(jpeg(10 * c + k))
    (root / "dave").mkdir()  # an identity without images: its id would be a gap
    (root / "erin").mkdir()
    (root / "erin" / "0.png").write_bytes(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1])
    return root


def by_label(reader) -> list[tuple[int, bytes]]:
    """(label, image bytes) of every sample, in a canonical order."""
    read = reader.encoded if hasattr(reader, "encoded") else lambda i: reader.paths[i].read_bytes()
    return sorted((int(label), read(i)) for i, label in enumerate(reader.labels))


def test_formats_by_path(tmp_path: Path) -> None:
    (tmp_path / "ms1m").mkdir()
    (tmp_path / "ms1m" / "train.rec").write_bytes(b"")
    assert [dataset_format(tmp_path / p) for p in ("a.rec", "ms1m", "b.lmdb", "l.txt", "dir")] == [
        "recordio",
        "recordio",
        "lmdb",
        "list",
        "folder",
    ]


def test_folder_rec_lmdb_folder_is_lossless(folder: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="not contiguous"):  # dave has no images
        first = convert(folder, tmp_path / "rec" / "train.rec", QUIET)
    assert (first.images, first.identities) == (10, 4)
    assert first.bytes == sum(p.stat().st_size for p in folder.rglob("*.*"))
    rec = RecordIOReader(tmp_path / "rec")
    assert rec.has_header and rec.labels.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2, 3]
    convert(tmp_path / "rec", tmp_path / "set.lmdb", QUIET)
    convert(tmp_path / "set.lmdb", tmp_path / "back", QUIET)
    back = ImageFolderReader(tmp_path / "back")
    original = ImageFolderReader(folder)
    remapped = {0: 0, 1: 1, 2: 2, 4: 3}  # dave's empty folder removed
    expected = sorted((remapped[label], data) for label, data in by_label(original))
    assert by_label(back) == by_label(LmdbReader(tmp_path / "set.lmdb")) == expected
    assert back.classes == ["000000", "000001", "000002", "000003"]
    assert sorted(p.suffix for p in (tmp_path / "back").rglob("*.*"))[-1] == ".png"


def test_folder_names_survive_folder_to_list(folder: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        convert(folder, tmp_path / "out" / "train.txt", QUIET)
    lines = (tmp_path / "out" / "train.txt").read_text().splitlines()
    assert lines[0] == "train/alice/00000000.jpg 0" and lines[-1] == "train/erin/00000009.png 3"
    assert by_label(ListFileReader(tmp_path / "out" / "train.txt"))[0][1] == jpeg(0)


def test_reencode_resizes_and_recompresses(tmp_path: Path) -> None:
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / "a" / "0.jpg").write_bytes(jpeg(1, size=200))
    options = ConvertOptions(quality=70, size=96, progress=False)
    convert(tmp_path / "src", tmp_path / "out.lmdb", options)
    reader = LmdbReader(tmp_path / "out.lmdb")
    assert reader.load(0).shape == (96, 96, 3) and reader.encoded(0)[:3] == b"\xff\xd8\xff"
    convert(tmp_path / "src", tmp_path / "r" / "train.rec", options)
    assert (tmp_path / "r" / "property").read_text() == "1,96,96\n"


def test_shuffle_writes_a_plain_rec_in_seeded_random_order(folder: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        convert(folder, tmp_path / "a" / "train.rec", QUIET)
    options = ConvertOptions(shuffle=True, seed=3, progress=False)
    convert(tmp_path / "a", tmp_path / "b" / "train.rec", options)
    source, shuffled = RecordIOReader(tmp_path / "a"), RecordIOReader(tmp_path / "b")
    assert not shuffled.has_header and shuffled.keys.tolist() == list(range(10))
    order = np.random.default_rng(3).permutation(10)
    assert [shuffled.encoded(i) for i in range(10)] == [source.encoded(i) for i in order]
    assert shuffled.labels.tolist() == source.labels[order].tolist()


def test_interrupted_conversion_leaves_nothing(folder: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []

    def interrupt_third(data, where, options):
        calls.append(where)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return data

    monkeypatch.setattr("faceforge.prepare.convert.reencode", interrupt_third)
    for target in ("o.lmdb", "r/train.rec", "f", "l.txt"):
        calls.clear()
        with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning):
            convert(folder, tmp_path / "out" / target, QUIET)
    leftovers = [p.name for p in (tmp_path / "out").rglob("*")]
    assert leftovers == ["r"]  # only the folder made for train.rec


#: ``convert(argv[1], argv[2])`` in a child process
_CONVERT = (
    "import sys\n"
    "from faceforge.prepare.convert import ConvertOptions, convert\n"
    "convert(sys.argv[1], sys.argv[2], ConvertOptions(progress=False))\n"
)


@pytest.mark.parametrize("target", ["r/train.rec", "o.lmdb", "f"])
def test_a_killed_conversions_temporaries_go_at_the_next_run(tmp_path: Path, target) -> None:
    (tmp_path / "a").mkdir()
    for k in range(3):
        (tmp_path / "a" / f"{k}.jpg").write_bytes(jpeg(k))
    os.mkfifo(tmp_path / "last.jpg")  # reading it blocks: the conversion cannot finish
    listing = tmp_path / "src.txt"
    listing.write_text("a/0.jpg 0\na/1.jpg 0\na/2.jpg 0\nlast.jpg 1\n")
    dst = tmp_path / "out" / target
    child = subprocess.Popen([sys.executable, "-c", _CONVERT, str(listing), str(dst)])
    deadline = time.monotonic() + 60
    while not list(dst.parent.glob(".*.tmp")):  # the output being written
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    child.kill()
    assert child.wait() == -9 and list(dst.parent.glob(".*.tmp"))
    (tmp_path / "last.jpg").unlink()
    (tmp_path / "last.jpg").write_bytes(jpeg(3))
    convert(listing, dst, QUIET)
    assert not list(dst.parent.glob(".*")) and len(open_source(dst)) == 4


def test_bombs_are_listed_by_inspect_and_refused_or_skipped_by_convert(
    folder: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    (folder / "bob" / "9.jpg").write_bytes(jpeg_bomb())
    forbid_decoding(monkeypatch, jpeg_bomb())
    message = rf"9.jpg: the image declares {DECLARED} = .* more than the 1,048,576 allowed"
    assert main(["inspect", str(folder)]) == 0
    assert re.search(rf"unreadable: .*{message}", capsys.readouterr().out)
    with pytest.raises(DataError, match=message), pytest.warns(UserWarning):
        convert(folder, tmp_path / "x.lmdb", QUIET)  # byte-for-byte copies are checked too
    logged: list[str] = []
    options = ConvertOptions(skip_corrupt=True, progress=False)
    with pytest.warns(UserWarning):
        summary = convert(folder, tmp_path / "x.lmdb", options, log=logged.append)
    assert summary.skipped == 1 and re.search(message, logged[0])


def test_existing_output_needs_overwrite(folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(DataError, match="exist"):  # before the source is even read
        convert(folder, target, QUIET)
    with pytest.warns(UserWarning):
        convert(folder, target, ConvertOptions(overwrite=True, progress=False))
    assert not (target / "old.txt").exists() and len(ImageFolderReader(target)) == 10


def test_overwriting_a_recordio_folder_replaces_only_its_records(
    folder: Path, tmp_path: Path
) -> None:
    """The folder around train.rec used to be deleted whole, notes and all."""
    target = tmp_path / "out"
    with pytest.warns(UserWarning):
        convert(folder, target / "train.rec", QUIET)
    (target / "README.md").write_text("mine")
    with pytest.warns(UserWarning):
        convert(folder, target, ConvertOptions(overwrite=True, progress=False))
    assert (target / "README.md").read_text() == "mine" and len(RecordIOReader(target)) == 10


def test_an_overwrite_that_fails_keeps_the_old_dataset(
    folder: Path, tmp_path: Path, monkeypatch
) -> None:
    target = tmp_path / "out" / "train.txt"
    with pytest.warns(UserWarning):
        convert(folder, target, QUIET)
    before = by_label(ListFileReader(target))

    def fail(*args) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("faceforge.prepare.formats.atomic_write_bytes", fail)  # the list, last
    with pytest.raises(OSError, match="disk full"), pytest.warns(UserWarning):
        convert(folder, target, ConvertOptions(overwrite=True, progress=False))
    assert by_label(ListFileReader(target)) == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["train", "train.txt"]


def test_an_overwrite_removes_what_a_killed_overwrite_set_aside(
    folder: Path, tmp_path: Path
) -> None:
    """A run killed mid-write leaves the dataset it replaced hidden beside the target; the
    next overwrite that completes removes it (a RecordIO can be hundreds of gigabytes)."""
    target = tmp_path / "out" / "train.txt"
    with pytest.warns(UserWarning):
        convert(folder, target, QUIET)
    stale = [tmp_path / "out" / ".train.txt.0123abcd.old", tmp_path / "out" / ".train.0123abcd.old"]
    stale[0].write_text("a/0.jpg 0\n")
    stale[1].mkdir()
    mine = tmp_path / "out" / ".train.txt.notmine.old"
    mine.write_text("kept")
    with pytest.warns(UserWarning):
        convert(folder, target, ConvertOptions(overwrite=True, progress=False))
    left = sorted(p.name for p in target.parent.iterdir())
    assert left == [mine.name, "train", "train.txt"] and len(ListFileReader(target)) == 10


@pytest.mark.parametrize("name", ["train.rec", "data.lmdb", "train.txt", "faces"])
def test_a_dataset_a_killed_overwrite_hid_is_found_by_the_error(
    folder: Path, tmp_path: Path, name: str
) -> None:
    """Killed after setting the old dataset aside and before writing the new one, an
    overwrite leaves nothing at the target: reading it names each hidden part and where it
    goes back, and doing what the line says restores the dataset."""
    target = tmp_path / "out" / name
    with pytest.warns(UserWarning, match="not contiguous"):  # "dave" has no images
        convert(folder, target, QUIET)
    before = by_label(open_source(target))
    for part in dataset_paths(target):
        if part.exists():
            part.rename(aside_path(part))
    with pytest.raises(DataError, match="interrupted overwrite"):
        inspect_dataset(target)
    with pytest.raises(DataError, match="interrupted overwrite") as caught:
        open_source(target)  # what train and convert read through
    hint = str(caught.value).split("rename ", 1)[1]
    for aside, back in (move.split(" to ") for move in hint.split(", ")):
        Path(aside).rename(Path(aside).with_name(back))
    assert by_label(open_source(target)) == before


def test_names_a_list_file_cannot_hold_are_refused_others_round_trip(tmp_path: Path) -> None:
    for name in ("Ann\u2028Lee", "Zoë"):  # splitlines() split at U+2028
        (tmp_path / "src" / name).mkdir(parents=True)
        (tmp_path / "src" / name / "0.jpg").write_bytes(jpeg(1))
    convert(tmp_path / "src", tmp_path / "a" / "train.txt", QUIET)
    assert len(ListFileReader(tmp_path / "a" / "train.txt")) == 2
    (tmp_path / "src" / "line\nbreak").mkdir()
    (tmp_path / "src" / "line\nbreak" / "0.jpg").write_bytes(jpeg(2))
    with pytest.raises(DataError, match="a list file cannot hold its name"):
        convert(tmp_path / "src", tmp_path / "b" / "train.txt", QUIET)
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_numbered_folders_sort_in_class_order() -> None:
    names = [numbered_name(label, 1_000_001) for label in (99_999, 100_000, 1_000_000)]
    assert names == sorted(names) == ["0099999", "0100000", "1000000"]
    assert numbered_name(7, 10) == "000007"


def test_corrupt_images_stop_or_are_skipped(folder: Path, tmp_path: Path) -> None:
    (folder / "bob" / "9.jpg").write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match=r"9.jpg: not a readable image \(not JPEG"), pytest.warns():
        convert(folder, tmp_path / "x.lmdb", QUIET)
    logged: list[str] = []
    options = ConvertOptions(skip_corrupt=True, progress=False)
    with pytest.warns(UserWarning):
        summary = convert(folder, tmp_path / "x.lmdb", options, log=logged.append)
    assert summary.skipped == 1 and summary.images == 10
    assert len(logged) == 1 and "9.jpg" in logged[0]


def test_an_identity_whose_every_image_is_skipped_is_said(folder: Path, tmp_path: Path) -> None:
    (folder / "erin" / "0.png").write_bytes(b"\0" * 100)  # erin's only image
    logged: list[str] = []
    options = ConvertOptions(skip_corrupt=True, progress=False)
    with pytest.warns(UserWarning):
        summary = convert(folder, tmp_path / "x.lmdb", options, log=logged.append)
    assert summary.identities == 3 and logged[-1].startswith(
        "warning: every image of 1 identities was skipped (class ids 3)"
    )


def test_corrupt_records_are_skipped_with_skip_corrupt(tmp_path: Path) -> None:
    (tmp_path / "src" / "a").mkdir(parents=True)
    for k in range(3):
        (tmp_path / "src" / "a" / f"{k}.jpg").write_bytes(jpeg(k))
    convert(tmp_path / "src", tmp_path / "r" / "train.rec", ConvertOptions(progress=False))
    rec = RecordIOReader(tmp_path / "r")
    with open(tmp_path / "r" / "train.rec", "r+b") as f:  # break record 2's magic
        f.seek(int(rec.offsets[1]))
        f.write(b"\0\0\0\0")
    with pytest.raises(DataError, match="record 2 at byte"):
        convert(tmp_path / "r", tmp_path / "o.lmdb", QUIET)
    options = ConvertOptions(skip_corrupt=True, progress=False)
    with pytest.warns(UserWarning) as caught:
        summary = convert(tmp_path / "r", tmp_path / "o.lmdb", options)
    assert "bad magic" in str(caught[0].message) and "left out 1" in str(caught[-1].message)
    assert (summary.images, summary.skipped) == (2, 1)


def test_pack_bin_from_lfw_pairs(tmp_path: Path) -> None:
    for name in ("Ann", "Bob"):
        (tmp_path / "lfw" / name).mkdir(parents=True)
        for k in (1, 2):
            (tmp_path / "lfw" / name / f"{name}_{k:04d}.png").write_bytes(
                cv2.imencode(".png", np.full((112, 112, 3), 40 * k, np.uint8))[1].tobytes()
            )
    (tmp_path / "pairs.txt").write_text("1 1\nAnn 1 2\nAnn 1 Bob 2\n")
    pairs = read_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "lfw")
    written = pairs.pack("p", tmp_path / "p.bin", ext=".png")
    assert (len(written.issame), int(written.issame.sum())) == (2, 1)
    vset = load_bin(tmp_path / "p.bin")
    assert vset.issame.tolist() == [True, False]
    assert vset.images[1, 0, 0].tolist() == [80, 80, 80] and vset.images[3, 0, 0, 0] == 80


def test_inspect_counts_and_samples(folder: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        convert(folder, tmp_path / "r" / "train.rec", QUIET)
    report = inspect_dataset(tmp_path / "r")
    assert (report.format, report.images, report.classes) == ("recordio", 10, 4)
    assert report.per_class == (1, 2, 4) and report.sampled == 10
    assert report.pixel_sizes == {"112x112": 9, "4x4": 1}
    assert report.disk_bytes > 0 and "classes     4" in "\n".join(report.lines())


def test_inspect_points_an_arcface_paddle_folder_to_its_list(tmp_path: Path) -> None:
    """arcface_paddle keeps ``label.txt`` beside ``images/``: read as an image folder that is
    one identity, so inspect names the list file (and a README beside it is no list)."""
    (tmp_path / "images").mkdir()
    for i in range(3):
        (tmp_path / "images" / f"{i}.jpg").write_bytes(jpeg(i))
    (tmp_path / "README.txt").write_text("# notes\nthe images are aligned\n")
    (tmp_path / "label.txt").write_text("# path label\nimages/0.jpg\t0\nimages/1.jpg\t1\n")
    report = inspect_dataset(tmp_path)
    assert (report.format, report.classes) == ("folder", 1)
    label = tmp_path / "label.txt"
    assert report.lines()[-1] == (
        f"note: {label} is a 'path label' list of this folder's images: faceforge inspect {label}"
    )
    listed = inspect_dataset(label)
    assert (listed.format, listed.images, listed.classes, listed.note) == ("list", 2, 2, "")
    (tmp_path / "images" / "more").mkdir()  # two identities: a real image folder, no note
    (tmp_path / "images" / "more" / "3.jpg").write_bytes(jpeg(3))
    assert inspect_dataset(tmp_path / "images").note == ""


def test_cli(folder: Path, tmp_path: Path, capsys) -> None:
    (folder / "dave").rmdir()  # no gap in the class ids, so no warning
    assert main(["convert", str(folder), str(tmp_path / "c.lmdb"), "--no-progress"]) == 0
    assert "10 images of 4 identities" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "c.lmdb")]) == 0
    assert "lmdb" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "x.rec")]) == 2
    assert "faceforge convert: error:" in capsys.readouterr().err
    assert main(["convert", "--to-bin", "pairs.txt", "out.bin"]) == 2
    assert "needs --images" in capsys.readouterr().err
    assert main(["convert", str(folder), str(tmp_path / "q.lmdb"), "--quality", "0"]) == 2
    assert "--quality: must be an integer in 1..100, got '0'" in capsys.readouterr().err
