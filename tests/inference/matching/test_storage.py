"""Gallery files on disk: checksummed, contained in their folder, checked before use.

Each tampered variant is written the way a damaged disk, a bad copy or a hostile editor would
leave it; the deeper checks are exercised with a re-computed checksum, as someone who edits
the data on purpose would leave it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from faceforge.errors import DataError, FormatError
from faceforge.inference.matching import storage
from faceforge.inference.matching.gallery import Gallery
from faceforge.inference.matching.gallery_json import GALLERY_VERSION, METADATA_FILE
from faceforge.inference.matching.index import IndexSettings, build_index
from faceforge.inference.matching.storage import read_gallery

DIM = 16


@pytest.fixture()
def gallery_dir(tmp_path: Path) -> Path:
    """A flat, mean-mode gallery of three people (2, 1 and 3 images)."""
    rng = np.random.default_rng(0)
    gallery = Gallery(DIM, "fp", model="tiny")
    for name, count in (("ann", 2), ("bo", 1), ("cy", 3)):
        gallery.add(name, rng.normal(size=(count, DIM)))
    folder = tmp_path / "gallery"
    gallery.save(folder)
    return folder


def metadata(folder: Path) -> dict[str, Any]:
    return json.loads((folder / METADATA_FILE).read_text())


def write_metadata(folder: Path, meta: dict[str, Any]) -> None:
    (folder / METADATA_FILE).write_text(json.dumps(meta))


def data_path(folder: Path) -> Path:
    return folder / metadata(folder)["data_file"]


def arrays(folder: Path) -> dict[str, np.ndarray]:
    with np.load(data_path(folder)) as data:
        return {key: data[key] for key in data.files}


def rewrite_data(folder: Path, data: bytes) -> None:
    """Replace the data file and store its checksum, as a deliberate edit would."""
    data_path(folder).write_bytes(data)
    meta = metadata(folder)
    meta["data_sha256"] = hashlib.sha256(data).hexdigest()
    write_metadata(folder, meta)


def rewrite_arrays(folder: Path, **changes: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **{**arrays(folder), **changes})
    rewrite_data(folder, buffer.getvalue())


def test_round_trip_stores_a_checksum_of_the_data(gallery_dir: Path) -> None:
    meta = metadata(gallery_dir)
    assert meta["version"] == GALLERY_VERSION == 2
    expected = hashlib.sha256(data_path(gallery_dir).read_bytes()).hexdigest()
    assert meta["data_sha256"] == expected
    data = read_gallery(gallery_dir)
    assert {name: len(rows) for name, rows in data.embeddings.items()} == {
        "ann": 2,
        "bo": 1,
        "cy": 3,
    }
    assert Gallery.load(gallery_dir).names == ["ann", "bo", "cy"]


def test_a_flipped_byte_is_refused(gallery_dir: Path) -> None:
    path = data_path(gallery_dir)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="modified or corrupted.*enroll the people again"):
        Gallery.load(gallery_dir)


def test_a_truncated_file_is_refused(gallery_dir: Path) -> None:
    path = data_path(gallery_dir)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 100])
    with pytest.raises(FormatError, match="modified or corrupted"):
        Gallery.load(gallery_dir)
    rewrite_data(gallery_dir, path.read_bytes())  # truncated, with a matching checksum
    with pytest.raises(FormatError, match="cannot read gallery data"):
        Gallery.load(gallery_dir)
    path.write_bytes(whole[:300])  # less than the 6 x 16 floats gallery.json declares
    with pytest.raises(FormatError, match=r"6 embeddings of size 16 \(384 bytes\).*truncated"):
        Gallery.load(gallery_dir)


def test_declared_sizes_are_checked_before_allocating(gallery_dir: Path) -> None:
    meta = metadata(gallery_dir)
    meta["people"] = {"ann": 10**12, "bo": 1, "cy": 3}
    write_metadata(gallery_dir, meta)
    with pytest.raises(FormatError, match="declares 1000000000004 embeddings.*truncated"):
        Gallery.load(gallery_dir)


def test_an_array_header_larger_than_its_bytes_is_refused(gallery_dir: Path) -> None:
    """A .npy header claiming 10^12 rows must not reach ``np.empty``."""
    members = {}
    with zipfile.ZipFile(data_path(gallery_dir)) as archive:
        for name in archive.namelist():
            members[name] = archive.read(name)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, DIM)}
    )
    members["embeddings.npy"] = b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\0" * 64
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    rewrite_data(gallery_dir, buffer.getvalue())
    with pytest.raises(FormatError, match="'embeddings' declares .* more than the"):
        Gallery.load(gallery_dir)


def test_nan_and_misshapen_embeddings_are_refused(gallery_dir: Path) -> None:
    embeddings = arrays(gallery_dir)["embeddings"]
    rewrite_arrays(gallery_dir, embeddings=np.where(embeddings > 0.3, np.nan, embeddings))
    with pytest.raises(FormatError, match="NaN"):
        Gallery.load(gallery_dir)
    rewrite_arrays(gallery_dir, embeddings=np.zeros((6, DIM + 1), np.float32))
    with pytest.raises(FormatError, match=r"expected float32 \(6, 16\)"):
        Gallery.load(gallery_dir)
    rewrite_arrays(gallery_dir, embeddings=np.zeros((6, DIM), np.float64))
    with pytest.raises(FormatError, match="expected float32"):
        Gallery.load(gallery_dir)


def test_counts_that_disagree_are_refused(gallery_dir: Path) -> None:
    rewrite_arrays(gallery_dir, counts=np.array([2, 2, 2]))
    with pytest.raises(FormatError, match="does not match gallery.json"):
        Gallery.load(gallery_dir)
    meta = metadata(gallery_dir)
    meta["people"]["dee"] = 1
    write_metadata(gallery_dir, meta)
    with pytest.raises(FormatError, match="does not match gallery.json"):
        Gallery.load(gallery_dir)


def test_ids_and_index_must_agree(gallery_dir: Path) -> None:
    rewrite_arrays(gallery_dir, ids=np.array([0, 0, 1]))
    with pytest.raises(FormatError, match="FAISS ids are negative, repeated"):
        Gallery.load(gallery_dir)
    rewrite_arrays(gallery_dir, ids=np.array([0, 1, 2]), next_id=np.array("many"))
    with pytest.raises(FormatError, match="does not match gallery.json"):
        Gallery.load(gallery_dir)


def test_random_damage_never_escapes_as_another_error(gallery_dir: Path) -> None:
    """Bytes changed anywhere in the data file (checksum re-computed, so the checks behind it
    are reached): every load is refused with a FormatError or still gives the same people."""
    rng = np.random.default_rng(0)
    original = data_path(gallery_dir).read_bytes()
    outcomes = set()
    for _ in range(150):
        damaged = bytearray(original)
        for position in rng.integers(0, len(damaged), 3):
            damaged[position] = rng.integers(0, 256)
        rewrite_data(gallery_dir, bytes(damaged))
        try:
            assert Gallery.load(gallery_dir).names == ["ann", "bo", "cy"]
            outcomes.add("loaded")
        except FormatError:
            outcomes.add("refused")
    assert "refused" in outcomes


def test_a_stored_index_of_another_kind_or_other_ids_is_refused(gallery_dir: Path) -> None:
    stored = arrays(gallery_dir)
    vectors = stored["embeddings"][:3]
    hnsw = build_index("hnsw", vectors, stored["ids"], IndexSettings(hnsw_m=4))
    rewrite_arrays(gallery_dir, index=faiss.serialize_index(hnsw))
    with pytest.raises(FormatError, match="not the 16-d flat index"):
        Gallery.load(gallery_dir)
    other_ids = build_index("flat", vectors, stored["ids"] + 7, IndexSettings())
    rewrite_arrays(gallery_dir, index=faiss.serialize_index(other_ids))
    with pytest.raises(FormatError, match="does not hold the enrolled people's ids"):
        Gallery.load(gallery_dir)


def test_a_huge_size_inside_the_index_is_refused_without_allocating(gallery_dir: Path) -> None:
    index = bytearray(arrays(gallery_dir)["index"].tobytes())
    codes = (3 * DIM).to_bytes(8, "little")  # the flat index's vector of 3 x 16 floats
    at = index.index(codes, 40)
    index[at : at + 8] = (1 << 38).to_bytes(8, "little")  # 1 TiB of floats
    rewrite_arrays(gallery_dir, index=np.frombuffer(bytes(index), np.uint8))
    with pytest.raises(FormatError, match="stored index cannot be read"):
        Gallery.load(gallery_dir)
    assert faiss.get_deserialization_vector_byte_limit() == 1 << 40  # restored


def test_pickled_arrays_are_never_loaded(gallery_dir: Path) -> None:
    rewrite_arrays(gallery_dir, names=np.array(["ann", "bo", "cy"], dtype=object))
    with pytest.raises(FormatError, match="'names' declares"):
        Gallery.load(gallery_dir)


@pytest.mark.parametrize("data_file", ["../other/gallery-000001.npz", "/tmp/gallery-000001.npz"])
def test_data_files_outside_the_gallery_are_refused(
    gallery_dir: Path, tmp_path: Path, data_file: str
) -> None:
    outside = Gallery(DIM, "fp")
    outside.add("mallory", np.ones(DIM))
    outside.save(tmp_path / "other")  # a valid gallery the path would reach
    meta = metadata(gallery_dir)
    meta["data_file"] = data_file
    write_metadata(gallery_dir, meta)
    with pytest.raises(FormatError, match="inside the gallery folder"):
        Gallery.load(gallery_dir)


def test_a_symlinked_or_missing_data_file_is_refused(gallery_dir: Path, tmp_path: Path) -> None:
    path = data_path(gallery_dir)
    moved = tmp_path / "elsewhere.npz"
    path.rename(moved)
    with pytest.raises(FormatError, match="data file named by gallery.json is missing"):
        Gallery.load(gallery_dir)
    path.symlink_to(moved)
    with pytest.raises(FormatError, match="not a regular file"):
        Gallery.load(gallery_dir)
    path.unlink()
    path.mkdir()
    with pytest.raises(FormatError, match="not a regular file"):
        Gallery.load(gallery_dir)


def test_a_reader_follows_a_save_made_while_it_reads(
    gallery_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers take no lock: a save between reading gallery.json and opening the data file
    it names (which the save deletes) sends the reader to the new data file."""
    newer = Gallery.load(gallery_dir)
    newer.add("dee", np.ones(DIM))
    read_header = storage.read_header
    headers = []

    def read_then_save(path: Path):
        headers.append(read_header(path))
        if len(headers) == 1:
            newer.save(gallery_dir)
        return headers[-1]

    monkeypatch.setattr(storage, "read_header", read_then_save)
    assert Gallery.load(gallery_dir).names == ["ann", "bo", "cy", "dee"]
    assert [h.data_file for h in headers] == ["gallery-000001.npz", "gallery-000002.npz"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.__setitem__("version", 99), "version 99 is newer"),
        (lambda m: m.__setitem__("version", "2"), "field version must be an integer"),
        (lambda m: m["model"].__setitem__("embedding_size", True), "model.embedding_size"),
        (lambda m: m["model"].__setitem__("embedding_size", 0), r"in \[1, 65536\]"),
        (lambda m: m["model"].__setitem__("fingerprint", None), "model.fingerprint"),
        (lambda m: m.__setitem__("model", []), "model.fingerprint"),
        (lambda m: m["index"].__setitem__("type", "annoy"), "unknown index type 'annoy'"),
        (lambda m: m["index"].__setitem__("hnsw_m", 10**9), "index.hnsw_m"),
        (lambda m: m.__setitem__("mode", "median"), "unknown mode 'median'"),
        (lambda m: m["people"].__setitem__("ann", 0), "not a positive image count"),
        (lambda m: m.__setitem__("people", ["ann"]), "field people must be an object"),
        (lambda m: m.__setitem__("data_sha256", "abc"), "not a SHA-256"),
        (lambda m: m.pop("data_sha256"), "field data_sha256 must be a string"),
        (lambda m: m.__setitem__("data_file", 7), "field data_file must be a string"),
        (lambda m: m.__setitem__("format", "other"), "not a faceforge gallery"),
    ],
)
def test_malformed_metadata_is_a_format_error(gallery_dir: Path, edit, message: str) -> None:
    meta = metadata(gallery_dir)
    edit(meta)
    write_metadata(gallery_dir, meta)
    with pytest.raises(FormatError, match=message):
        Gallery.load(gallery_dir)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\udcff", "[" * 100_000])
def test_unparsable_metadata_is_a_format_error(gallery_dir: Path, text: str) -> None:
    (gallery_dir / METADATA_FILE).write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(FormatError, match="not a faceforge gallery"):
        Gallery.load(gallery_dir)


def test_no_gallery_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="enroll first") as info:
        Gallery.load(tmp_path / "nowhere")
    assert not isinstance(info.value, FormatError)
    assert not (tmp_path / "nowhere").exists()  # reading creates nothing, not even a lock


def test_version_1_galleries_load_with_a_warning_and_are_upgraded(gallery_dir: Path) -> None:
    meta = metadata(gallery_dir)
    del meta["data_sha256"]
    meta["version"] = 1
    write_metadata(gallery_dir, meta)
    with pytest.warns(UserWarning, match="version 1 has no checksum"):
        gallery = Gallery.load(gallery_dir)
    assert gallery.names == ["ann", "bo", "cy"]
    gallery.save(gallery_dir)
    upgraded = metadata(gallery_dir)
    assert upgraded["version"] == 2 and len(upgraded["data_sha256"]) == 64
    assert Gallery.load(gallery_dir).names == ["ann", "bo", "cy"]
