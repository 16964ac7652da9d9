"""Keep freed memory in the process for the next batch (glibc's ``malloc`` only).

glibc hands large freed blocks back to the kernel: blocks over its mmap threshold are
unmapped, and free space at the top of the heap beyond its trim threshold is trimmed. The
next batch of the same shapes then page-faults the same memory back in, zero-filled by the
kernel. For CPU inference that is a large, hidden cost: embedding MobileFaceNet on a 2-core
AVX2 CPU took ~1.1 million minor page faults per 1,280 images and spent ~12 % of its time in
the kernel; with the thresholds raised it took a few thousand and ran 1.14x faster (1.3x
compiled, 1.9x as plain eager fp32). This is what the jemalloc / tcmalloc preloads in
PyTorch's CPU performance guide achieve, without a second library.

The cost is that a process keeps its peak working set (up to :data:`TRIM_THRESHOLD` of free
heap top) instead of returning it between batches. The ``faceforge`` command applies it to
every verb; a user who sets ``glibc.malloc`` tunables in ``GLIBC_TUNABLES`` keeps theirs.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import MutableMapping

#: ``mallopt`` parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: blocks up to this size come from the heap (glibc's largest allowed value on 64-bit)
MMAP_THRESHOLD = 32 << 20
#: free heap top kept for reuse rather than trimmed
TRIM_THRESHOLD = 512 << 20
#: the same settings for child processes (server workers, ``torchrun`` ranks)
TUNABLES = (
    f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"
)


def retain_freed_memory(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Raise glibc's mmap and trim thresholds in this process and, through
    ``GLIBC_TUNABLES`` in ``environ``, in the processes it starts.

    Returns whether the settings were applied: not with another C library (macOS, musl,
    Windows), and not when ``GLIBC_TUNABLES`` already sets a ``glibc.malloc`` tunable.
    """
    current = environ.get("GLIBC_TUNABLES", "")
    if not _is_glibc() or "glibc.malloc." in current:
        return False
    libc = ctypes.CDLL(None)  # the C library this process already runs on
    applied = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(
        M_TRIM_THRESHOLD, TRIM_THRESHOLD
    )
    if applied:
        environ["GLIBC_TUNABLES"] = f"{current}:{TUNABLES}" if current else TUNABLES
    return bool(applied)


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (AttributeError, ValueError, OSError):  # no confstr, or no such name here
        return False
