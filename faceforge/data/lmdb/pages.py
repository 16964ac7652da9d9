"""Key lookups in an LMDB data file, reading its pages with ``pread`` and checking each one.

LMDB's own reader maps the file into memory and trusts the sizes and page numbers it finds
there: a damaged value size sends a read past the end of the file, and the process dies of
SIGBUS with no message (and no chance to save), while a page number beyond the file is a raw
``lmdb.PageNotFoundError``. This reader walks the same B+tree, but reads every page with
``pread`` and checks each header, offset, size and page number against the page and the file
before using it: damage becomes a FormatError naming the file and the key, and no read
reaches beyond the file or allocates more than it holds.

The on-disk format (LMDB 0.9, 64-bit, as py-lmdb writes it; all little-endian):

* page ``n`` is the ``psize`` bytes at ``n * psize``; its 16-byte header is
  ``pgno u64 | pad u16 | flags u16 | lower u16 | upper u16`` (an overflow page has a u32
  page count where ``lower`` and ``upper`` are);
* pages 0 and 1 are meta pages: ``magic u32 (0xBEEFC0DE) | version u32 (1) | address u64 |
  mapsize u64 | free db | main db | last_pgno u64 | txnid u64``, each db ``pad u32 (psize in
  the free db) | flags u16 | depth u16 | branch, leaf, overflow pages, entries, root u64``;
  the meta with the larger txnid is current;
* branch and leaf pages hold ``(lower - 16) / 2`` u16 node offsets after the header, in key
  order; a node is ``lo u16 | hi u16 | flags u16 | key size u16 | key | data``. In a branch
  node ``lo | hi << 16 | flags << 32`` is the child page, and the first key is empty (it
  stands for everything below the second); in a leaf node ``lo | hi << 16`` is the data
  size, and with flag 0x01 (F_BIGDATA) the data is a u64 page number of overflow pages
  whose contents start after their header.

Keys compare as bytes (LMDB's default ``memcmp`` order); sub-databases and duplicate keys
(which faceforge's layout never uses) are refused.
"""

from __future__ import annotations

import bisect
import struct
from pathlib import Path

from faceforge.errors import FormatError
from faceforge.files import ProcessFile

PAGE_HEADER = struct.Struct("<QHHHH")
META = struct.Struct("<IIQQ" + "IHHQQQQQ" * 2 + "QQ")
NODE = struct.Struct("<HHHH")
_OFFSET = struct.Struct("<H")
_PAGE_COUNT = struct.Struct("<I")
_PGNO = struct.Struct("<Q")
MAGIC = 0xBEEFC0DE
VERSION = 1
P_BRANCH, P_LEAF, P_OVERFLOW, P_META = 0x01, 0x02, 0x04, 0x08
F_BIGDATA = 0x01
#: LMDB's cursor stack: no tree is deeper
MAX_DEPTH = 32
#: branch pages kept parsed per process (about 4 MB; the upper levels of any dataset fit)
MAX_CACHED_BRANCHES = 256
_EMPTY = (1 << 64) - 1


def _meta_fields(page: bytes, source: Path, number: int) -> dict[str, int]:
    if len(page) < PAGE_HEADER.size + META.size:
        raise FormatError(f"{source}: not a readable LMDB database (too short for meta page)")
    flags = PAGE_HEADER.unpack_from(page)[2]
    values = META.unpack_from(page, PAGE_HEADER.size)
    if not flags & P_META or values[0] != MAGIC:
        raise FormatError(f"{source}: not a readable LMDB database (bad meta page {number})")
    if values[1] != VERSION:
        raise FormatError(f"{source}: not a readable LMDB database (format {values[1]})")
    psize, main = values[4], values[12:20]
    return {
        "psize": psize,
        "flags": main[1],
        "depth": main[2],
        "entries": main[6],
        "root": main[7],
        "last_pgno": values[20],
        "txnid": values[21],
    }


class LmdbFile:
    """The main database of an LMDB data file, read-only: :meth:`get` looks a key up.

    Opening reads both meta pages and checks that the file is as long as the last page
    says (a truncated copy is refused here, not at the first read of a missing page).
    """

    def __init__(self, path: Path, source: Path | None = None) -> None:
        self.source = source or path
        self._file = ProcessFile(path)
        head = self._file.read(PAGE_HEADER.size + META.size, 0)
        psize = _meta_fields(head, self.source, 0)["psize"]
        if psize < 512 or psize > 1 << 16 or psize & (psize - 1):
            raise FormatError(f"{self.source}: not a readable LMDB database (page size {psize})")
        self.psize = psize
        metas = [_meta_fields(self._file.read(psize, n * psize), self.source, n) for n in (0, 1)]
        meta = max(metas, key=lambda m: m["txnid"])
        self.last_pgno, self.entries = meta["last_pgno"], meta["entries"]
        self.root, self.depth = meta["root"], meta["depth"]
        #: page number -> (keys, children) of the branch pages read so far
        self._branches: dict[int, tuple[list[bytes], list[int]]] = {}
        self._check_layout(meta["flags"], path.stat().st_size)

    def _check_layout(self, flags: int, size: int) -> None:
        needed = (self.last_pgno + 1) * self.psize
        if size < needed:
            raise FormatError(
                f"{self.source}: truncated: the database needs {needed} bytes, has {size}"
            )
        if flags:
            raise FormatError(
                f"{self.source}: the main database has flags 0x{flags:x} (sorted duplicates "
                "or integer keys): not a faceforge LMDB"
            )
        empty = self.root == _EMPTY and self.depth == 0
        if not empty and not (1 <= self.depth <= MAX_DEPTH and 2 <= self.root <= self.last_pgno):
            raise FormatError(
                f"{self.source}: damaged meta page: root page {self.root} at depth {self.depth} "
                f"(pages 2..{self.last_pgno})"
            )

    def get(self, key: bytes, limit: int, where: str | None = None) -> bytes | None:
        """The value stored under ``key`` (None when there is none); FormatError naming
        ``where`` (default: the file and key) when the path to it is damaged or the value is
        over ``limit`` bytes."""
        if self.root == _EMPTY:
            return None
        where = where or f"{self.source}: key {key!r}"
        number = self.root
        for _ in range(self.depth - 1):
            keys, children = self._branch(number, where)
            number = children[bisect.bisect_right(keys, key)]
        return self._leaf_value(number, key, limit, where)

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_branches": {}}

    def _page(self, number: int, kind: int, where: str) -> tuple[bytes, int, int]:
        """Page ``number``, checked to be a ``kind`` page, with its node count and the start
        of its node area (``upper``)."""
        if not 2 <= number <= self.last_pgno:
            raise FormatError(f"{where}: page {number} is outside the file (2..{self.last_pgno})")
        page = self._file.read(self.psize, number * self.psize)
        if len(page) < self.psize:
            raise FormatError(f"{where}: the file ends inside page {number} (it was truncated)")
        stored, _, flags, lower, upper = PAGE_HEADER.unpack_from(page)
        if stored != number or flags & (P_BRANCH | P_LEAF | P_OVERFLOW) != kind:
            raise FormatError(
                f"{where}: page {number} is not the expected {_KINDS[kind]} page "
                f"(header says page {stored}, flags 0x{flags:x})"
            )
        if kind != P_OVERFLOW and not PAGE_HEADER.size < lower <= upper <= self.psize:
            raise FormatError(f"{where}: page {number} has a damaged header")
        return page, (lower - PAGE_HEADER.size) // 2, upper

    def _node(self, page: bytes, upper: int, index: int, where: str) -> tuple[int, int, bytes, int]:
        """``(lo | hi << 16, flags, key, offset of the data)`` of node ``index``."""
        (offset,) = _OFFSET.unpack_from(page, PAGE_HEADER.size + 2 * index)
        if not upper <= offset <= self.psize - NODE.size:
            raise FormatError(f"{where}: a node offset points outside its page")
        lo, hi, flags, size = NODE.unpack_from(page, offset)
        start = offset + NODE.size
        if start + size > self.psize:
            raise FormatError(f"{where}: a key runs past the end of its page")
        return lo | hi << 16, flags, page[start : start + size], start + size

    def _branch(self, number: int, where: str) -> tuple[list[bytes], list[int]]:
        """The keys (all but the first, which stands for everything below the second) and
        child pages of branch page ``number``, parsed once per process."""
        cached = self._branches.get(number)
        if cached is None:
            page, count, upper = self._page(number, P_BRANCH, where)
            nodes = [self._node(page, upper, i, where) for i in range(count)]
            cached = [key for _, _, key, _ in nodes[1:]], [v | f << 32 for v, f, _, _ in nodes]
            if len(self._branches) >= MAX_CACHED_BRANCHES:
                self._branches.clear()
            self._branches[number] = cached
        return cached

    def _leaf_value(self, number: int, key: bytes, limit: int, where: str) -> bytes | None:
        page, count, upper = self._page(number, P_LEAF, where)
        low, high = 0, count
        while low < high:  # the first node whose key is >= key
            middle = (low + high) // 2
            if self._node(page, upper, middle, where)[2] < key:
                low = middle + 1
            else:
                high = middle
        if low == count:
            return None
        size, flags, found, start = self._node(page, upper, low, where)
        if found != key:
            return None
        if flags & ~F_BIGDATA:
            raise FormatError(f"{where}: a sub-database or duplicate keys: not a faceforge LMDB")
        if size > limit:
            raise FormatError(f"{where}: the value declares {size} bytes, more than {limit}")
        if flags & F_BIGDATA:
            if start + _PGNO.size > self.psize:
                raise FormatError(f"{where}: an overflow page number runs past page {number}")
            return self._overflow(_PGNO.unpack_from(page, start)[0], size, where)
        if start + size > self.psize:
            raise FormatError(f"{where}: the value runs {size} bytes past page {number}")
        return page[start : start + size]

    def _overflow(self, number: int, size: int, where: str) -> bytes:
        """The ``size`` bytes held by the overflow pages starting at page ``number``."""
        page, _, _ = self._page(number, P_OVERFLOW, where)
        (count,) = _PAGE_COUNT.unpack_from(page, 12)
        if number + count - 1 > self.last_pgno or size > count * self.psize - PAGE_HEADER.size:
            raise FormatError(
                f"{where}: the value's {size} bytes do not fit its {count} overflow pages from "
                f"page {number} (the file ends at page {self.last_pgno})"
            )
        return self._file.read(size, number * self.psize + PAGE_HEADER.size)


_KINDS = {P_BRANCH: "branch", P_LEAF: "leaf", P_OVERFLOW: "overflow"}
