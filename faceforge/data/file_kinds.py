"""What a file given to the wrong option is, told from its first bytes: the hint that turns
"not a readable pickle" into "this is a pairs file: give it to --pairs"."""

from __future__ import annotations

import re
from pathlib import Path

from faceforge.data.image_header import FORMATS

#: the start of PyTorch's pre-1.6 format: a pickle of its magic number
_LEGACY_TORCH = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")
#: each kind: what it is, and the option that takes it
_KINDS = {
    "torch": ("a PyTorch checkpoint or weights file", "--checkpoint"),
    "bin": ("an insightface verification .bin", "--bin"),
    "text": ("a text file such as a pairs list", "--pairs or --pair-list"),
    "image": ("an image", "the photo arguments"),
}


def file_kind(path: str | Path) -> str | None:
    """``torch``, ``bin``, ``text``, ``image`` or ``None`` (unknown or unreadable)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if path.suffix.lower() == ".onnx":
        return None
    if head.startswith((b"PK\x03\x04", _LEGACY_TORCH)):
        return "torch"
    if head[:1] == b"\x80" and path.suffix.lower() == ".bin":
        return "bin"
    if any(image.matches(head) for image in FORMATS):
        return "image"
    if head and not _CONTROL.search(head):
        return "text"
    return None


def misplaced_hint(path: str | Path, option: str) -> str:
    """``; it looks like X, which goes to OTHER`` when ``path`` is a kind of file that
    another option than ``option`` takes; else ''."""
    kind = file_kind(path)
    if kind is None or _KINDS[kind][1] == option:
        return ""
    what, where = _KINDS[kind]
    return f"; it looks like {what}, which goes to {where}"
