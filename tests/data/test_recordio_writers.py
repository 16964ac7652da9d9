"""RecordIO while others write it: a writer's ``.rec`` and ``.idx`` reach readers together
(a lock on their folder), a file replaced after it was opened is refused instead of read
through the old index, and a damaged first record (an MS1M header) can be left out."""

from __future__ import annotations

import fcntl
import os
import pickle
import threading
from pathlib import Path

import pytest
from test_recordio import jpeg, offsets, poke, samples

from faceforge.data.dataset import FaceDataset
from faceforge.data.readers import RecordIOReader
from faceforge.data.recordio.writer import RecordIOWriter
from faceforge.data.transforms import Compose
from faceforge.errors import FileChangedError, FormatError
from faceforge.files import folder_lock


def write(folder: Path, images: list[tuple[int, bytes]], layout: str = "ms1m") -> None:
    with RecordIOWriter(folder / "train.rec", layout=layout) as writer:
        for label, image in images:
            writer.add(label, image)


def test_a_shared_folder_lock_keeps_out_an_exclusive_one_only(tmp_path: Path) -> None:
    with folder_lock(tmp_path, shared=True), folder_lock(tmp_path, shared=True):
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    with folder_lock(tmp_path):  # released: an exclusive lock is free again
        pass


def test_a_writer_replaces_rec_and_idx_only_while_no_reader_is_opening_them(
    tmp_path: Path,
) -> None:
    old, new = samples(2, 2), samples(3, 3)
    write(tmp_path, old)
    writer = RecordIOWriter(tmp_path / "train.rec")
    for label, image in new:
        writer.add(label, image)
    committed = threading.Event()

    def commit() -> None:
        writer.close()
        committed.set()

    with folder_lock(tmp_path, shared=True):  # a reader between its .idx and its .rec
        thread = threading.Thread(target=commit)
        thread.start()
        assert not committed.wait(0.2)
        reader = RecordIOReader(tmp_path, label_cache=False)  # readers share the lock
        assert reader.labels.tolist() == [label for label, _ in old]
        assert reader.encoded(3) == old[3][1]
    thread.join(30)
    assert committed.is_set()
    assert RecordIOReader(tmp_path).labels.tolist() == [label for label, _ in new]


def test_a_dataset_replaced_after_it_was_opened_is_refused_not_read_through_the_old_index(
    tmp_path: Path,
) -> None:
    write(tmp_path, samples(2, 2))
    reader = RecordIOReader(tmp_path)
    worker = pickle.loads(pickle.dumps(reader))  # a DataLoader worker opens the file later
    write(tmp_path, [(c, jpeg(50 + c)) for c in range(6)])
    changed = r"train.rec: changed since it was opened .*; start again to read it as it is now"
    with pytest.raises(FileChangedError, match=changed):
        worker.load(0)
    dataset = FaceDataset(reader, Compose(()), skip_corrupt=True)
    with pytest.raises(FileChangedError, match=changed):  # not an unreadable image to stand in
        dataset[0]


@pytest.mark.parametrize("layout", ["ms1m", "plain"])
def test_a_damaged_first_record_is_left_out_with_skip_corrupt(tmp_path: Path, layout) -> None:
    images = samples(3, 2)
    write(tmp_path, images, layout)
    poke(tmp_path / "train.rec", offsets(tmp_path)[0], b"\0\0\0\0")
    with pytest.raises(FormatError, match=r"record 0 at byte 0: bad magic"):
        RecordIOReader(tmp_path)
    with pytest.warns(UserWarning) as caught:
        reader = RecordIOReader(tmp_path, skip_corrupt=True)
    said = [str(w.message).split(": ", 1)[1] for w in caught]
    assert said[0].startswith("record 0 at byte 0: bad magic")
    assert said[0].endswith("records without an image (the identity records, if it was an MS1M "
                            "header) are left out with it")  # fmt: skip
    assert said[1:] == ["left out 1 corrupt record(s)"]
    kept = images if layout == "ms1m" else images[1:]  # the plain layout's 0 is an image
    assert reader.labels.tolist() == [label for label, _ in kept]  # no identity records
    assert [reader.encoded(i) for i in range(len(reader))] == [image for _, image in kept]
    assert reader.skipped == 1 and reader.has_header  # so never handed to DALI's reader
