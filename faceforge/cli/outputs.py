"""Output paths checked while the command line is parsed, before any model or data is loaded,
so a typo costs nothing. Options declare their outputs with the argparse types
:func:`output_file`, :func:`output_folder` and :func:`plot_file`; a path that cannot be
written is one line::

    faceforge eval: error: argument --json: runs/: is a folder; give a file name

Checking leaves nothing behind: missing folders are created only by the work itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faceforge.errors import DataError
from faceforge.files import atomic_write_bytes


def file_problem(path: str, suffixes: tuple[str, ...] = ()) -> str | None:
    """Why the file ``path`` cannot be written, or ``None``."""
    target = Path(path)
    if target.is_dir():
        return f"{path}: is a folder; give a file name"
    if suffixes and target.suffix.lower() not in suffixes:
        return f"{path}: expected a file name ending in {', '.join(suffixes)}"
    return _unwritable(target.parent, path)


def folder_problem(path: str) -> str | None:
    """Why ``path`` cannot be (created and) written as an output folder, or ``None``."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        return f"{path}: is a file; give a folder"
    return _unwritable(target, path)


def _unwritable(folder: Path, path: str) -> str | None:
    """Why files cannot be made in ``folder`` (or in the folders that would be created for it
    under its nearest existing ancestor), or ``None``."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{path}: cannot write there ({existing} is a file)"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"{path}: cannot write there ({exc.strerror or exc})"
    return None


def _argument_type(problem: Callable[[str], str | None]) -> Callable[[str], str]:
    def check(text: str) -> str:
        found = problem(text)
        if found:
            raise argparse.ArgumentTypeError(found)
        return text

    return check


def output_file(*suffixes: str) -> Callable[[str], str]:
    """An argparse ``type``: a file this command will write (ending in one of ``suffixes``)."""
    return _argument_type(lambda text: file_problem(text, suffixes))


def output_folder(text: str) -> str:
    """An argparse ``type``: a folder this command will write into (created if missing)."""
    return _argument_type(folder_problem)(text)


def plot_file(text: str) -> str:
    """An argparse ``type``: a plot this command will write, in a format matplotlib saves."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    formats = FigureCanvasAgg.get_supported_filetypes()
    return output_file(*(f".{name}" for name in sorted(formats)))(text)


def add_json_option(
    parser: argparse.ArgumentParser,
    help: str = "write the results as JSON",
    suffixes: tuple[str, ...] = (),
) -> None:
    """``--json FILE``: the results as JSON (the path checked before the work)."""
    parser.add_argument("--json", type=output_file(*suffixes), metavar="FILE", help=help)


def check_output_folder(path: str, what: str) -> None:
    """:func:`folder_problem` for a folder not given as one option (a trailing positional)."""
    found = folder_problem(path)
    if found:
        raise DataError(f"{what} {found}")


def write_json(path: str | None, values: dict[str, Any], *, say_on_stderr: bool = False) -> None:
    """Write ``values`` to ``path`` (atomically; nothing when ``None``) and say so (on stderr
    for commands whose stdout is data, such as CSV)."""
    if path is not None:
        atomic_write_bytes(path, (json.dumps(values, indent=2) + "\n").encode())
        print(f"wrote {path}", file=sys.stderr if say_on_stderr else sys.stdout)
