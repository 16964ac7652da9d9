"""Readers and the training dataset: labels, corrupt files, skipping, sampler."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceforge.config import DataConfig
from faceforge.data.dataset import EpochSampler, FaceDataset, collate_faces
from faceforge.data.image_io import (
    decode_image,
    encode_image,
    identity_folders,
    list_images,
    read_image,
)
from faceforge.data.readers import ImageFolderReader, ListFileReader, SyntheticReader
from faceforge.data.sources import build_reader
from faceforge.data.synthetic import SyntheticFaces
from faceforge.data.transforms import Compose
from faceforge.errors import DataError


def _write(path: Path, value: int, size: int = 112) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size, 3), value, np.uint8))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for person, value in (("bob", 10), ("alice", 200)):
        for k in range(3):
            _write(tmp_path / person / f"{k}.png", value + k)
    (tmp_path / "alice" / "notes.txt").write_text("not an image")
    return tmp_path


def test_image_folder_labels_follow_sorted_names(folder: Path) -> None:
    reader = ImageFolderReader(folder)
    assert reader.classes == ["alice", "bob"]
    assert reader.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert reader.num_classes == 2
    assert reader.load(0)[0, 0].tolist() == [200, 200, 200]


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderReader(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="no images"):
        ImageFolderReader(tmp_path)


def test_list_images_sorted_by_extension_in_any_case(tmp_path: Path) -> None:
    for name in ("b.PNG", "a.jpg", "c.Jpeg", "notes.txt", "x.jpg/inner.png", "sub/d.webp"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"listing does not decode")
    (tmp_path / "empty.bmp").mkdir()  # a folder with an image's name is not an image
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.Jpeg"]
    nested = list_images(tmp_path, recursive=True)
    assert [p.relative_to(tmp_path).as_posix() for p in nested] == [
        "a.jpg",
        "b.PNG",
        "c.Jpeg",
        "sub/d.webp",
        "x.jpg/inner.png",
    ]
    with pytest.raises(DataError, match="missing: image folder does not exist"):
        list_images(tmp_path / "missing")


def test_list_images_follows_symlinked_folders_without_looping(tmp_path: Path) -> None:
    (tmp_path / "data" / "ann").mkdir(parents=True)
    (tmp_path / "data" / "ann" / "1.jpg").write_bytes(b"")
    (tmp_path / "subset").mkdir()
    (tmp_path / "subset" / "ann").symlink_to(tmp_path / "data" / "ann")  # a subset of links
    (tmp_path / "subset" / "ann" / "loop").symlink_to(tmp_path / "subset")
    found = list_images(tmp_path / "subset", recursive=True)
    assert found == [tmp_path / "subset" / "ann" / "1.jpg"]


def test_identity_folders_keep_empty_identities(folder: Path) -> None:
    (folder / "carol").mkdir()  # no images yet: still a class, so labels stay stable
    (folder / "readme.md").write_text("not an identity")
    people = identity_folders(folder)
    assert [(name, [p.name for p in files]) for name, files in people] == [
        ("alice", ["0.png", "1.png", "2.png"]),
        ("bob", ["0.png", "1.png", "2.png"]),
        ("carol", []),
    ]
    reader = ImageFolderReader(folder)
    assert reader.classes == ["alice", "bob", "carol"] and reader.num_classes == 2
    assert reader.paths == [path for _, files in people for path in files]
    with pytest.raises(DataError, match="does not exist; expected"):
        identity_folders(folder / "nobody")
    (folder / "recipe.yaml").write_text("model: {}\n")  # a file where a folder was expected
    with pytest.raises(DataError, match=r"recipe.yaml: a file, not an image folder .* \.rec"):
        ImageFolderReader(folder / "recipe.yaml")


def test_list_file(folder: Path, tmp_path: Path) -> None:
    lst = tmp_path / "train.txt"
    lst.write_text("# comment\nbob/0.png 0\n\nalice/1.png\t3\n")
    reader = ListFileReader(lst)
    assert reader.labels.tolist() == [0, 3]
    assert reader.num_classes == 4
    assert reader.load(1)[0, 0, 0] == 201
    lst.write_text("bob/0.png zero\n")
    with pytest.raises(DataError, match=r"train.txt:1: expected 'path label'"):
        ListFileReader(lst)


@pytest.mark.parametrize("source", ["folder", "list"])
def test_data_max_pixels_is_the_readers_budget(folder: Path, source: str) -> None:
    path = folder if source == "folder" else folder / "train.txt"
    (folder / "train.txt").write_text("bob/0.png 0\n")
    assert build_reader(DataConfig(source=source, path=str(path))).load(0).shape == (112, 112, 3)
    small = build_reader(DataConfig(source=source, path=str(path), max_pixels=112 * 111))
    with pytest.raises(DataError, match="0.png: the image declares 112x112 = 12,544 pixels"):
        small.load(0)


def test_real_list_fixture(shared_data: Path) -> None:
    root = shared_data / "fixtures" / "insightface_arcface_paddle" / "small_dataset"
    lst = next(root.rglob("label.txt"))
    reader = ListFileReader(lst)
    assert len(reader) > 0
    assert reader.load(0).ndim == 3


def test_corrupt_image_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "p" / "broken.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DataError, match="broken.jpg"):
        read_image(bad)
    with pytest.raises(DataError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")


def test_decode_gray_rgba_and_16_bit() -> None:
    gray = cv2.imencode(".png", np.full((4, 5), 77, np.uint8))[1].tobytes()
    assert decode_image(gray, "g").shape == (4, 5, 3)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 2] = 255  # red in BGRA
    out = decode_image(cv2.imencode(".png", rgba)[1].tobytes(), "r")
    assert out[0, 0].tolist() == [255, 0, 0]
    deep = cv2.imencode(".png", np.full((3, 3, 3), 65535, np.uint16))[1].tobytes()
    assert decode_image(deep, "d").max() == 255


def test_encode_decode_round_trip() -> None:
    img = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    assert np.array_equal(decode_image(encode_image(img, ".png"), "x"), img)


def test_dataset_skips_and_counts_corrupt_images(folder: Path) -> None:
    (folder / "bob" / "1.png").write_bytes(b"garbage")
    reader = ImageFolderReader(folder)
    strict = FaceDataset(reader, Compose(()))
    with pytest.raises(DataError, match=r"1.png: .*; data.skip_corrupt=true skips unreadable"):
        strict[4]
    lenient = FaceDataset(reader, Compose(()), skip_corrupt=True)
    batch = collate_faces([lenient[i] for i in range(6)])
    stand_in = lenient.stand_in(4)  # another image takes the unreadable one's place
    assert batch.skipped == stand_in.replaces and stand_in.replaces[0] == 4
    assert batch.images.shape == (6, 3, 112, 112)
    assert batch.labels.tolist() == [0, 0, 0, 1, stand_in.label, 1]


def test_dataset_resizes_to_image_size(tmp_path: Path) -> None:
    _write(tmp_path / "a" / "0.png", 5, size=150)
    sample = FaceDataset(ImageFolderReader(tmp_path), Compose(()))[0]
    assert sample[0].shape == (3, 112, 112)


def test_synthetic_reader_matches_generator() -> None:
    faces = SyntheticFaces(0)
    reader = SyntheticReader(faces, num_identities=3, per_identity=4)
    assert len(reader) == 12 and reader.num_classes == 3
    assert reader.labels[5] == 1
    assert np.array_equal(reader.load(5), faces.render(1, 1))
    cached = SyntheticReader(faces, num_identities=3, per_identity=4, cache=True)
    assert all(np.array_equal(cached.load(i), reader.load(i)) for i in range(12))


def test_epoch_sampler_permutes_shards_and_resumes() -> None:
    sampler = EpochSampler(10, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(10))
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0, start=4)
    assert list(sampler) == first[4:] and len(sampler) == 6
    shards = [list(EpochSampler(10, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    assert set().union(*shards) == set(range(10))
