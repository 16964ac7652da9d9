"""insightface ``.bin`` verification sets (LFW, CFP-FP, AgeDB-30, ...) read without trusting pickle.

A ``.bin`` is a pickle of ``(bins, issame)``: ``bins`` lists the 2N encoded images (bytes, or
1-d uint8 numpy arrays of the bytes in files written by numpy-based tools) and ``issame`` the N
pair labels (a list of bools or a numpy bool array). Pickle can call any importable function
while loading, so the file is read with an unpickler that only resolves the few numpy names
needed to rebuild uint8/bool arrays; anything else (``os.system``, ``builtins.eval``, ...) is
refused before it can run. Python 2 pickles are read with ``encoding="bytes"`` as insightface
does. Blocking code is not enough: before unpickling, the opcode stream is scanned so that a
crafted file cannot make the unpickler allocate far more than its own size (a memo index of
2**32 in a 9-byte file asks CPython's unpickler for a 32 GB table).
"""

from __future__ import annotations

import io
import pickle
import pickletools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.data.file_kinds import misplaced_hint
from faceforge.data.image_io import MAX_DATASET_PIXELS, encode_image
from faceforge.data.images import load_images
from faceforge.data.verification_set import VerificationSet
from faceforge.errors import FormatError
from faceforge.files import atomic_open

#: the globals a verification ``.bin`` may reference (numpy 1.x and 2.x module names)
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1")
        ("_codecs", "encode"),
    }
)
_ALLOWED_DTYPES = (np.dtype(np.uint8), np.dtype(np.bool_))


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`_ALLOWED_GLOBALS`; numpy dtypes are limited to uint8 and bool and
    ``_codecs.encode`` to latin-1 text."""

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise FormatError(
                f"{self.source}: refusing to load, the file references the Python global "
                f"{module}.{name}, which a verification .bin never needs (a crafted pickle "
                "runs code this way)"
            )
        if name == "dtype":
            return self._dtype
        if name == "encode":
            return self._latin1_bytes
        return super().find_class(module, name)

    def _latin1_bytes(self, text: Any, encoding: Any) -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise FormatError(f"{self.source}: unexpected _codecs.encode call in the pickle")
        return text.encode("latin1")

    def _dtype(self, spec: Any, *args: Any) -> np.dtype:
        dtype = np.dtype(spec, *args)
        if dtype not in _ALLOWED_DTYPES:
            raise FormatError(
                f"{self.source}: refusing to load a numpy array of dtype {dtype}; "
                "a verification .bin holds only uint8 image bytes and bool labels"
            )
        return dtype


def _image_bytes(entry: Any, index: int, source: str) -> bytes:
    if isinstance(entry, (bytes, bytearray)):
        return bytes(entry)
    if isinstance(entry, np.ndarray) and entry.dtype == np.uint8:
        return entry.tobytes()
    raise FormatError(
        f"{source}: image #{index} is a {type(entry).__name__}, expected encoded image bytes"
    )


def _labels(issame: Any, source: str) -> np.ndarray:
    values = issame if isinstance(issame, np.ndarray) else np.array(list(issame))
    if values.ndim != 1 or not (
        values.dtype == np.bool_ or (values.dtype.kind in "iu" and np.isin(values, (0, 1)).all())
    ):
        raise FormatError(f"{source}: the pair labels are not a flat list of booleans")
    return values.astype(bool)


#: opcodes that store into the unpickler's memo table at the index given as their argument
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def check_pickle_bounds(data: bytes, source: str) -> None:
    """Refuse a pickle whose opcodes would allocate beyond what its size justifies.

    Every argument must lie inside the data (``pickletools`` reads lengths without
    allocating them) and memo indices must stay below the number of opcodes, as in any
    pickle a real writer produces. Raises FormatError naming the byte offset.
    """
    count = 0
    try:
        for opcode, argument, offset in pickletools.genops(io.BytesIO(data)):
            count += 1
            if opcode.name in _MEMO_PUTS and not 0 <= int(argument) < count:
                raise FormatError(
                    f"{source}: not a verification .bin: memo index {argument} at byte "
                    f"{offset} is out of range for a {len(data)}-byte pickle"
                )
    except (ValueError, TypeError) as exc:  # pickletools' words for truncated or bad data
        raise FormatError(f"{source}: not a readable pickle ({exc})") from None


def read_bin(path: str | Path) -> tuple[list[bytes], np.ndarray]:
    """The encoded images and bool labels of a ``.bin``, without decoding the images.

    Raises FormatError for a truncated, malformed, unsafe or resource-hungry file.
    """
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
        check_pickle_bounds(data, source)
        payload = _RestrictedUnpickler(io.BytesIO(data), source).load()
    except (FileNotFoundError, IsADirectoryError):
        raise FormatError(f"{source}: no such file") from None
    except FormatError as exc:
        raise FormatError(f"{exc}{misplaced_hint(path, '--bin')}") from None
    except Exception as exc:  # pickle raises many types on damaged data
        raise FormatError(
            f"{source}: not a readable verification .bin (truncated or corrupt pickle: "
            f"{type(exc).__name__}: {exc}){misplaced_hint(path, '--bin')}"
        ) from None
    if not isinstance(payload, (tuple, list)) or len(payload) != 2:
        raise FormatError(f"{source}: expected a pickled (images, issame) pair")
    entries, issame = payload
    if not isinstance(entries, (list, tuple)):
        raise FormatError(f"{source}: the images are a {type(entries).__name__}, expected a list")
    labels = _labels(issame, source)
    if len(entries) != 2 * len(labels):
        raise FormatError(
            f"{source}: {len(entries)} images for {len(labels)} pairs (expected {2 * len(labels)})"
        )
    return [_image_bytes(e, i, source) for i, e in enumerate(entries)], labels


def load_bin(
    path: str | Path,
    *,
    name: str | None = None,
    image_size: tuple[int, int] = (112, 112),
    resize: str | None = None,
    workers: int | None = None,
    max_pixels: int = MAX_DATASET_PIXELS,
) -> VerificationSet:
    """Read and decode a ``.bin`` into a :class:`VerificationSet` named after the file.

    Images of another size than ``image_size`` need a ``resize`` mode (see
    :func:`faceforge.data.images.fit_image`); a corrupt image, or one declaring more than
    ``max_pixels``, raises DataError naming its index.
    """
    path = Path(path)
    entries, issame = read_bin(path)
    names = [f"{path} image #{i}" for i in range(len(entries))]
    images = load_images(entries, names, image_size, resize, workers, max_pixels)
    return VerificationSet(name or path.stem, images, issame)


def write_bin(
    path: str | Path,
    data: VerificationSet | tuple[Sequence[bytes], Sequence[bool]],
    *,
    ext: str = ".jpg",
    quality: int = 95,
) -> None:
    """Write a ``.bin`` readable by insightface and :func:`load_bin` (pickle protocol 4).

    ``data`` is a set of decoded images (encoded here as ``ext``: ``.jpg`` or lossless
    ``.png``) or already encoded ``(bytes, issame)``. The file is replaced atomically.
    """
    if isinstance(data, VerificationSet):
        entries = [encode_image(image, ext, quality) for image in data.images]
        labels = [bool(v) for v in data.issame]
    else:
        entries = [bytes(e) for e in data[0]]
        labels = [bool(v) for v in data[1]]
        if len(entries) != 2 * len(labels):
            raise FormatError(f"{len(entries)} images for {len(labels)} pairs")
    with atomic_open(path) as f:
        pickle.dump((entries, labels), f, protocol=4)
