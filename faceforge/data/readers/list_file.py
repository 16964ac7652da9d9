"""List-file datasets: one ``relative/path.jpg label`` line per image (insightface/paddle)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from faceforge.data.image_io import MAX_DATASET_PIXELS
from faceforge.data.readers.file_list import FileListReader
from faceforge.errors import DataError
from faceforge.files import set_aside_note

#: file endings of list files (``faceforge convert`` writes ``.txt``)
LIST_SUFFIXES = (".txt", ".lst")


class ListFileReader(FileListReader):
    """Paths are resolved against ``root`` (default: the list file's folder); separators may
    be spaces or tabs; blank lines and ``#`` comments are ignored."""

    def __init__(
        self,
        list_file: str | Path,
        root: str | Path | None = None,
        max_pixels: int = MAX_DATASET_PIXELS,
    ) -> None:
        list_file = Path(list_file)
        if not list_file.is_file():
            missing = f"list file {str(list_file)!r} does not exist"
            # a list faceforge wrote keeps its images in the folder of the same stem
            raise DataError(missing + set_aside_note(list_file, list_file.with_suffix("")))
        base = Path(root) if root else list_file.parent
        paths: list[Path] = []
        labels: list[int] = []
        for number, line in enumerate(_lines(list_file), start=1):
            text = _entry_text(line)
            if not text:
                continue
            parts = text.rsplit(maxsplit=1)
            if not _is_entry(parts):
                raise DataError(f"{list_file}:{number}: expected 'path label', got {text!r}")
            label = int(parts[1])
            if label < 0:
                raise DataError(f"{list_file}:{number}: label must be >= 0, got {label}")
            paths.append(base / parts[0])
            labels.append(label)
        if not paths:
            raise DataError(f"list file {str(list_file)!r} has no samples")
        super().__init__(paths, np.asarray(labels, dtype=np.int64), max_pixels)


def _lines(list_file: Path) -> list[str]:
    """The file's lines, UTF-8 whatever the locale (convert writes UTF-8), split at line
    feeds only: a name may hold any other character that ``splitlines`` would split at."""
    try:
        return list_file.read_bytes().decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"{list_file}: not UTF-8 text (byte {exc.start})") from None


def _entry_text(line: str) -> str:
    """A list line without the spaces around it; empty for blank lines and ``#`` comments."""
    text = line.strip()
    return "" if text.startswith("#") else text


def _is_entry(parts: list[str]) -> bool:
    return len(parts) == 2 and re.fullmatch(r"-?[0-9]+", parts[1]) is not None


def list_files_in(folder: str | Path) -> list[Path]:
    """The list files at the top of ``folder``: ``*.txt`` / ``*.lst`` whose first entry reads
    as ``path label`` (insightface's arcface_paddle keeps ``label.txt`` beside ``images/``,
    which read as an image folder is one identity)."""
    found = []
    for path in sorted(Path(folder).glob("*")):
        if path.suffix.lower() not in LIST_SUFFIXES or not path.is_file():
            continue
        with path.open("rb") as file:
            head = file.read(4096).decode("utf-8", "replace").splitlines()
        entries = [text for text in map(_entry_text, head) if text]
        if entries and _is_entry(entries[0].rsplit(maxsplit=1)):
            found.append(path)
    return found
