"""Storage readers: each yields decoded uint8 RGB images and integer labels by index."""

from faceforge.data.readers.base import Reader
from faceforge.data.readers.folder import ImageFolderReader
from faceforge.data.readers.list_file import LIST_SUFFIXES, ListFileReader, list_files_in
from faceforge.data.readers.lmdb_reader import LmdbReader
from faceforge.data.readers.recordio import RecordIOReader
from faceforge.data.readers.synthetic import SyntheticReader

__all__ = [
    "LIST_SUFFIXES",
    "ImageFolderReader",
    "ListFileReader",
    "LmdbReader",
    "Reader",
    "RecordIOReader",
    "SyntheticReader",
    "list_files_in",
]
