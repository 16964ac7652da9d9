"""``root/<identity>/<image>`` datasets (CASIA-WebFace / aligned-LFW layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceforge.data.image_io import IMAGE_EXTENSIONS
from faceforge.data.readers.file_list import FileListReader
from faceforge.errors import DataError


class ImageFolderReader(FileListReader):
    """One sub-folder per identity; labels follow the sorted folder names."""

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"image folder {str(root)!r} does not exist")
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        paths: list[Path] = []
        labels: list[int] = []
        for label, name in enumerate(self.classes):
            files = sorted(
                p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
            )
            paths += files
            labels += [label] * len(files)
        if not paths:
            raise DataError(
                f"no images under {str(root)!r}: expected root/<identity>/<image> with "
                f"extensions {', '.join(IMAGE_EXTENSIONS)}"
            )
        super().__init__(paths, np.asarray(labels, dtype=np.int64))
