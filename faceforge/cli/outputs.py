"""Output paths checked before the work starts, so a typo costs nothing (every command)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from faceforge.errors import ConfigError, DataError


def check_output(path: str | None, flag: str, suffixes: tuple[str, ...] = ()) -> None:
    """Fail before the work, not after it, when an output file cannot be written there."""
    if path is None:
        return
    target = Path(path)
    if suffixes and target.suffix.lower() not in suffixes:
        raise ConfigError(f"{flag} {path}: expected a file name ending in {', '.join(suffixes)}")
    if target.is_dir():
        raise DataError(f"{flag} {path}: is a folder; give a file name")
    _check_writable(target.parent, f"{flag} {path}")


def check_output_folder(path: str | None, flag: str) -> None:
    """Create the output folder ``path`` (or make sure it can be) and check it is writable."""
    if path is None:
        return
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise DataError(f"{flag} {path}: is a file; give a folder")
    _check_writable(target, f"{flag} {path}")


def _check_writable(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DataError(f"{what}: cannot write there ({exc.strerror or exc})") from None
