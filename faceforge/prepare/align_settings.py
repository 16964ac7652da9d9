"""What an aligned folder was made with (``align_settings.json`` beside its crops), so that a
resumed ``align`` never mixes crops of two sizes, templates, detectors or policies.

A folder of faceforge 0.3 has no such file: the size of one of its crops is checked instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from faceforge.data.image_io import read_image
from faceforge.errors import DataError
from faceforge.files import atomic_write_bytes

SETTINGS_FILE = "align_settings.json"


def settings_of(options: Any) -> dict[str, Any]:
    """The :class:`~faceforge.prepare.align_folder.AlignOptions` that shape the crops (not the
    device or the pixel limit, which change nothing in them)."""
    return {
        "size": list(options.size),
        "template": options.template,
        "detector": options.detector,
        "multiple": options.multiple,
        "no_face": options.no_face,
        "min_face_size": options.min_face_size,
    }


def check_resumable(dst: Path, options: Any, kept: Sequence[Path]) -> None:
    """DataError when the crops ``kept`` in ``dst`` were made with other settings."""
    wanted = settings_of(options)
    path = dst / SETTINGS_FILE
    if path.exists():
        stored = _read(path)
        differ = [
            f"{key} {_shown(stored.get(key))} (asked now: {_shown(value)})"
            for key, value in wanted.items()
            if stored.get(key) != value
        ]
    elif kept:
        height, width = read_image(kept[0]).shape[:2]
        differ = [] if [height, width] == wanted["size"] else [f"size {height}x{width}"]
    else:
        differ = []
    if differ:
        raise DataError(
            f"{dst}: its crops were made with {', '.join(differ)}; align with the same options, "
            "into another folder, or pass --overwrite to redo every crop"
        )


def record_settings(dst: Path, options: Any) -> None:
    """Write ``dst/align_settings.json`` (atomically) for the next run to check."""
    text = json.dumps(settings_of(options), indent=2) + "\n"
    atomic_write_bytes(dst / SETTINGS_FILE, text.encode())


def _read(path: Path) -> dict[str, Any]:
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); delete it or pass --overwrite") from None
    if not isinstance(stored, dict):
        raise DataError(f"{path}: not a settings object; delete it or pass --overwrite")
    return stored


def _shown(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    return repr(value)
