"""Reading ``.pt`` / ``.pth`` files anyone may have written: checkpoints, insightface
``backbone.pth``, MTCNN weights. Nothing in them is trusted:

* ``torch.load(weights_only=True)``: a crafted pickle cannot run code. A refusal is one line
  naming the file and the Python object the pickle asked for, never torch's advice to retry
  with ``weights_only=False`` (which would run it). Files of other projects may instead have
  such objects built as inert placeholders (:func:`load_with_placeholders`), never imported;
* a zip archive (every ``torch.save`` since PyTorch 1.6) must store its entries uncompressed
  and side by side, as ``torch.save`` writes them, so what is read is no larger than the file
  (a 200 KB deflated entry otherwise inflates to 200 MB);
* the unpickled value must be a tree whose full written-out size is about the file's: pickle's
  memo lets a few bytes refer to one list (or one long string) from many places, or from
  inside itself, and a tensor with a zero stride repeats one element any number of times, so
  walking the value (hashing, validating, copying it) could otherwise take exponential time
  and memory, or never end.

>>> state = load_weights_only("backbone.pth")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from faceforge.errors import CheckpointError, first_line, shorten

#: nesting a file may use (a checkpoint's optimizer state is four levels deep)
MAX_DEPTH = 64
#: what the loaded value may take written out in full (see :class:`_Extent`) beyond twice the
#: file size: real files take about their size (the tensors, plus short key paths)
SPARE_BYTES = 16 << 20
#: the key path segment of a list item (``[123]``), counted at the length of a large index
INDEX_CHARS = 12
#: distinct Python objects :func:`load_with_placeholders` replaces before refusing a file
MAX_PLACEHOLDERS = 32
_ZIP_MAGIC = b"PK\x03\x04"
_CONTAINERS = (dict, list, tuple, set, frozenset)


def load_weights_only(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    what: str = "weights file",
    mapped: bool = False,
) -> Any:
    """``torch.load`` of ``path`` with the safe unpickler, its memory bounded by the file size
    and its value checked to be a bounded tree; any failure is one :class:`CheckpointError`
    line naming the file (``what`` says what it should have been). ``mapped`` maps the
    tensors of a zip-format file from disk instead of reading them (``mmap``): only what is
    touched is read, for callers that want the plain values beside large tensors."""
    return _checked_load(Path(path), map_location, what, placeholders=False, mapped=mapped)[0]


def load_with_placeholders(path: str | Path, what: str = "weights file") -> tuple[Any, list[str]]:
    """:func:`load_weights_only` for files of other projects that keep Python objects beside
    their tensors (hyper-parameters as an ``argparse.Namespace`` or a Lightning
    ``AttributeDict``): numpy scalars, dtypes and arrays are read as data, and each other
    object the pickle names is built as a :class:`Placeholder` instead of the file being
    refused. Returns the value and the names of the objects replaced."""
    return _checked_load(Path(path), "cpu", what, placeholders=True)


class Placeholder:
    """Stands in for a Python object a weights file names: what the pickle builds is an
    empty ``OrderedDict`` instead (a kind torch's safe unpickler lets a pickle fill in, with
    the object's items or attributes), so nothing is imported and no code of it runs."""

    def __new__(cls, *args: Any, **kwargs: Any) -> OrderedDict:  # type: ignore[misc]
        return OrderedDict()


def _checked_load(
    path: Path,
    map_location: str | torch.device,
    what: str,
    placeholders: bool,
    mapped: bool = False,
) -> tuple[Any, list[str]]:
    if not path.is_file():
        raise CheckpointError(f"{what} {str(path)!r} does not exist")
    size = path.stat().st_size
    mapped = _check_archive(path, size) and mapped  # torch maps zip archives only
    named: list[str] = []
    data = _numpy_data_globals() if placeholders else []
    while True:  # one more read per object named, at most MAX_PLACEHOLDERS
        try:
            with torch.serialization.safe_globals([*data, *((Placeholder, n) for n in named)]):
                value = _torch_load(path, map_location, mapped)
            break
        except Exception as exc:  # torch raises many types for damaged or crafted files
            refused = _refused_global(exc) if placeholders else None
            if refused is None or refused in named or len(named) >= MAX_PLACEHOLDERS:
                raise CheckpointError(f"cannot load {str(path)!r} safely: {_reason(exc)}") from None
            named.append(refused)
    problem = _Extent(budget=2 * size + SPARE_BYTES).problem(value)
    if problem:
        raise CheckpointError(f"{str(path)!r} is not a plain weights file: {problem}")
    return value, named


def _torch_load(path: Path, map_location: str | torch.device, mapped: bool) -> Any:
    """``torch.load`` with the safe unpickler, mapping the file when asked and the file
    system allows it (some FUSE mounts cannot map files: those are read)."""
    if mapped:
        with contextlib.suppress(RuntimeError, OSError):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    return torch.load(path, map_location=map_location, weights_only=True)


def _check_archive(path: Path, size: int) -> bool:
    """Refuse zip entries that would expand beyond the file: compressed or overlapping.
    Returns whether ``path`` is a zip archive."""
    with path.open("rb") as f:
        if f.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
            return False  # PyTorch's pre-1.6 format reads each tensor's bytes from the file
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    # NotImplementedError: an entry claims a zip version or feature zipfile does not know
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise CheckpointError(
            f"cannot load {str(path)!r} safely: damaged zip archive ({first_line(exc)})"
        ) from None
    packed = next((e.filename for e in entries if e.compress_type != zipfile.ZIP_STORED), None)
    if packed is not None:
        raise CheckpointError(
            f"{str(path)!r} was altered after torch.save: its entry {shorten(packed)} is "
            "compressed (torch.save stores entries as they are)"
        )
    if sum(e.file_size for e in entries) > size:
        raise CheckpointError(
            f"{str(path)!r} is damaged or crafted: its zip entries add up to more than the "
            f"file's {size:,} bytes"
        )
    return True


def _numpy_data_globals() -> list[tuple[Any, str]]:
    """numpy's scalar, dtype and array rebuilders, under the names numpy 1 and 2 pickle them
    by: they make data from data and run no code (torch's documentation allowlists them the
    same way), and training scripts save their metrics as numpy scalars."""
    import numpy as np

    core = np._core if hasattr(np, "_core") else np.core
    rebuilders = {"scalar": core.multiarray.scalar, "_reconstruct": core.multiarray._reconstruct}
    named = [
        (function, f"numpy.{package}.multiarray.{name}")
        for name, function in rebuilders.items()
        for package in ("core", "_core")
    ]
    dtypes = vars(getattr(np, "dtypes", np)).values()  # numpy.dtypes: numpy >= 1.25
    classes = [np.dtype, np.ndarray]
    classes += [t for t in dtypes if isinstance(t, type) and issubclass(t, np.dtype)]
    return named + [(cls, f"{cls.__module__}.{cls.__qualname__}") for cls in classes]


def _refused_global(exc: Exception) -> str | None:
    """The Python object torch's safe unpickler refused as not allowed, if that was the
    failure (one of a blocked module such as ``os`` is refused for good)."""
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    return refused.group(1) if refused else None


def _reason(exc: Exception) -> str:
    """What went wrong, in one line of our own words where torch's would advise loading
    unsafely: the refused global's name when the pickle asked for one."""
    refused = re.search(r"GLOBAL (\S+)", str(exc))  # not allowed, or from a blocked module
    if refused:
        return (
            f"it asks for the Python object {shorten(refused.group(1))}, which may run code, "
            "so it is never imported (only tensors and plain values are read)"
        )
    # torch re-raises the unpickler's own error inside a message of advice
    cause = (exc.__context__ if isinstance(exc, pickle.UnpicklingError) else None) or exc
    line = first_line(cause)
    if "weights_only" in line:
        return "it holds something other than tensors and plain values"
    kind = type(cause).__name__
    what = line if line == kind else f"{kind}: {line}"
    return f"{what} (truncated or damaged file, or not a PyTorch file?)"


class _Extent:
    """What writing a loaded value out in full would take: every shared reference repeated,
    every tensor as its elements, every value with the key path that leads to it (as
    :func:`~faceforge.core.checkpoint.content_hash` feeds it). Memoised per container, so
    measuring is linear in the distinct containers however much they are shared."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._known: dict[int, tuple[int, int]] = {}  # id -> (bytes, values) of a container
        self._open: set[int] = set()

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not a bounded tree within the budget, or None."""
        try:
            self._measure(value, 0)
        except _Unbounded as exc:
            return str(exc)
        return None

    def _measure(self, value: Any, depth: int) -> tuple[int, int]:
        """``(bytes written out, values)`` of ``value`` and everything below it."""
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size(), 1
        if isinstance(value, (str, bytes)):
            return len(value), 1
        if not isinstance(value, _CONTAINERS):
            return 1, 1
        key = id(value)
        if key in self._known:
            return self._known[key]
        if key in self._open:
            raise _Unbounded("a container holds itself")
        if depth >= MAX_DEPTH:
            raise _Unbounded(f"it nests deeper than {MAX_DEPTH} levels")
        self._open.add(key)
        size, count = 1, 1
        if isinstance(value, dict):
            entries = ((self._measure(k, depth + 1)[0], v) for k, v in value.items())
        else:
            entries = ((INDEX_CHARS, item) for item in value)
        for name_size, item in entries:
            item_size, item_count = self._measure(item, depth + 1)
            size += item_size + name_size * item_count
            count += item_count
            if size > self.budget:
                raise _Unbounded(
                    f"written out in full (shared references repeated) it would take over "
                    f"{self.budget:,} bytes, far more than the file holds"
                )
        self._open.discard(key)
        self._known[key] = size, count
        return size, count


class _Unbounded(Exception):
    """Raised inside :class:`_Extent` to stop the walk at the first problem."""
