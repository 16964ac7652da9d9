"""``root/<identity>/<image>`` datasets (CASIA-WebFace / aligned-LFW layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.data.image_io import IMAGE_EXTENSIONS, MAX_DATASET_PIXELS, identity_folders
from faceforge.data.readers.file_list import FileListReader
from faceforge.errors import DataError


class ImageFolderReader(FileListReader):
    """One sub-folder per identity; labels follow the sorted folder names."""

    def __init__(self, root: str | Path, max_pixels: int = MAX_DATASET_PIXELS) -> None:
        people = identity_folders(root)
        self.classes = [name for name, _ in people]
        paths = [path for _, files in people for path in files]
        labels = [label for label, (_, files) in enumerate(people) for _ in files]
        if not paths:
            raise DataError(
                f"no images under {str(root)!r}: expected root/<identity>/<image> with "
                f"extensions {', '.join(IMAGE_EXTENSIONS)}"
            )
        super().__init__(paths, np.asarray(labels, dtype=np.int64), max_pixels)
