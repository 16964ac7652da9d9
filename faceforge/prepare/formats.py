"""Dataset formats by path, for ``faceforge convert`` and ``faceforge inspect``: what kind of
dataset a path names, a source that yields encoded images, a sink that writes them.

=========== ============================================ ==================================
format      path                                         layout
=========== ============================================ ==================================
recordio    ``*.rec``, or a folder holding ``train.rec``  ``.rec`` + ``.idx`` + ``property``
lmdb        ``*.lmdb``                                   :mod:`faceforge.data.lmdb.layout`
list        ``*.txt`` / ``*.lst``                        ``path label`` lines; written with
                                                         the images in a folder named after
                                                         the list (``train.txt`` -> ``train/``)
folder      any other folder                             ``<identity>/<image>``
=========== ============================================ ==================================
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from faceforge.data.image_header import image_format
from faceforge.data.lmdb.writer import LmdbWriter
from faceforge.data.readers import (
    LIST_SUFFIXES,
    ImageFolderReader,
    ListFileReader,
    LmdbReader,
    RecordIOReader,
)
from faceforge.data.recordio.writer import RecordIOWriter
from faceforge.errors import DataError
from faceforge.files import (
    Temporary,
    aside_path,
    atomic_write_bytes,
    copies_set_aside,
    remove_path,
)
from faceforge.registry import Registry


def dataset_format(path: str | Path) -> str:
    """The format a path names (see the module docs)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".rec" or (path / "train.rec").is_file():
        return "recordio"
    if suffix == ".lmdb":
        return "lmdb"
    return "list" if suffix in LIST_SUFFIXES else "folder"


def image_extension(data: bytes, where: str) -> str:
    """The file extension of encoded image bytes in a format faceforge decodes (see
    :data:`faceforge.data.image_header.FORMATS`); DataError naming ``where`` otherwise."""
    return image_format(data, where).extension


class Source(Protocol):
    """A dataset read as encoded images."""

    labels: np.ndarray

    def __len__(self) -> int: ...

    def encoded(self, index: int) -> bytes: ...

    def where(self, index: int) -> str: ...


class FileSource:
    """Folder and list datasets as a :class:`Source`: the image files' bytes."""

    def __init__(self, reader: ImageFolderReader | ListFileReader) -> None:
        self.paths = reader.paths
        self.labels = reader.labels
        self.classes: list[str] | None = getattr(reader, "classes", None)

    def __len__(self) -> int:
        return len(self.paths)

    def where(self, index: int) -> str:
        return str(self.paths[index])

    def encoded(self, index: int) -> bytes:
        try:
            return self.paths[index].read_bytes()
        except OSError as exc:
            raise DataError(f"{self.paths[index]}: cannot read ({exc.strerror or exc})") from None


#: format -> source opened on a path (``skip_corrupt`` leaves out unreadable RecordIO records)
SOURCES: Registry[Source] = Registry.of(
    "dataset format",
    {
        "recordio": lambda path, skip_corrupt: RecordIOReader(path, skip_corrupt=skip_corrupt),
        "lmdb": lambda path, skip_corrupt: LmdbReader(path),
        "list": lambda path, skip_corrupt: FileSource(ListFileReader(path)),
        "folder": lambda path, skip_corrupt: FileSource(ImageFolderReader(path)),
    },
)


def open_source(path: str | Path, skip_corrupt: bool = False) -> Source:
    """The dataset at ``path`` as a :class:`Source`."""
    return SOURCES.get(dataset_format(path))(Path(path), skip_corrupt)


class Sink(Protocol):
    """Where converted images go: ``add`` each, then ``close`` (or ``abort``)."""

    def add(self, label: int, image: bytes) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class FolderSink:
    """``root/<identity>/<n><ext>``, written in a temporary folder (a
    :class:`~faceforge.files.Temporary`) renamed on ``close``; class ``c`` is the folder
    ``names[c]`` (the source's folders, or :func:`numbered_name`)."""

    def __init__(self, root: Path, names: list[str]) -> None:
        self.root = root
        self.names = names
        self._temporary = Temporary(root, folder=True)
        self.tmp = self._temporary.path
        self.written: list[tuple[str, int]] = []

    def add(self, label: int, image: bytes) -> None:
        name = self.names[label]
        relative = f"{name}/{len(self.written):08d}{image_extension(image, name)}"
        (self.tmp / name).mkdir(exist_ok=True)
        (self.tmp / relative).write_bytes(image)
        self.written.append((relative, label))

    def close(self) -> None:
        self._temporary.commit()

    def abort(self) -> None:
        self._temporary.discard()


def numbered_name(label: int, num_classes: int) -> str:
    """The folder name of class ``label``: zero-padded to at least 6 digits, and to as many
    as the largest class needs, so folders sort in class order (``%06d`` put 1000000
    between 100000 and 100001, permuting the class ids of a converted WebFace42M)."""
    return f"{label:0{max(6, len(str(num_classes - 1)))}d}"


class ListSink(FolderSink):
    """A ``path label`` list file with its images in the folder named after it."""

    def __init__(self, list_file: Path, names: list[str]) -> None:
        for name in names:  # refused before anything is written
            if "\n" in name or "\r" in name:
                raise DataError(f"identity {name!r}: a list file cannot hold its name")
            try:
                name.encode()
            except UnicodeEncodeError:
                raise DataError(f"identity {name!r}: its name is not UTF-8") from None
        super().__init__(list_file.with_suffix(""), names)
        self.list_file = list_file

    def close(self) -> None:
        lines = [f"{self.root.name}/{relative} {label}\n" for relative, label in self.written]
        text = "".join(lines).encode()
        super().close()
        atomic_write_bytes(self.list_file, text)


#: format -> sink opened on a path; ``shuffled`` output gets RecordIO's plain layout, ``side``
#: (the image size when known) goes into RecordIO's ``property`` file
SINKS: Registry[Sink] = Registry.of(
    "dataset format",
    {
        "recordio": lambda path, names, shuffled, side: RecordIOWriter(
            path, layout="plain" if shuffled else "ms1m", image_size=(side, side)
        ),
        "lmdb": lambda path, names, shuffled, side: LmdbWriter(path),
        "list": lambda path, names, shuffled, side: ListSink(path, names),
        "folder": lambda path, names, shuffled, side: FolderSink(path, names),
    },
)


def dataset_paths(path: Path) -> list[Path]:
    """Every path the dataset at ``path`` occupies: for RecordIO its ``.rec``, ``.idx`` and
    label cache, never the folder around them (``property`` is shared by a folder's ``.rec``
    files and left alone, and the folder may hold anything else)."""
    kind = dataset_format(path)
    if kind == "recordio":
        rec = path if path.suffix.lower() == ".rec" else path / "train.rec"
        return [rec, rec.with_suffix(".idx"), rec.with_suffix(".labels.npz")]
    return [path, path.with_suffix("")] if kind == "list" else [path]


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[None]:
    """Set the dataset at ``path`` aside while the block writes a new one there: deleted
    when the block succeeds, with any copy an ``--overwrite`` killed mid-write left beside
    it, and put back (the new one's parts removed) when the block fails, so an
    ``--overwrite`` never leaves neither."""
    targets, moved = dataset_paths(path), []
    for target in targets:
        if target.exists():
            aside = aside_path(target)
            target.rename(aside)
            moved.append((target, aside))
    try:
        yield
    except BaseException:
        for target in targets:
            remove_path(target)
        for target, aside in moved:
            aside.rename(target)
        raise
    for target in targets:
        for aside in copies_set_aside(target):
            remove_path(aside)
