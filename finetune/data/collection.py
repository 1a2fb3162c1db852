"""A passage collection that stays on disk: pid -> passage as numpy arrays of ids and byte offsets.

MS MARCO's ``collection.tsv`` has 8,841,823 passages of ~340 UTF-8 bytes. As a ``dict[str, str]`` each
passage costs its text plus ~200 bytes of Python objects (two ``str`` headers, the dict slot), about 5 GB in
all. :class:`Collection` keeps, per passage, the pid's bytes twice (in file order and sorted, 7 + 7 bytes for
MS MARCO's pids), its rank in sorted order (int32), the text's byte offset in the file (int64) and its byte
length (uint32): 30 bytes, 265 MB for the full collection (reading 1 M and 3 M synthetic passages grew the
process's RSS by 60 bytes a passage, allocator overhead included). Texts are read from the file when asked for
(``os.pread``, so they sit in the kernel's page cache, not in the process), one at a time for ``corpus[pid]``
and a block of passages per read when iterating ``values()`` or ``items()``.

It is a read-only :class:`~collections.abc.Mapping`: ``len``, ``in``, ``[]``, ``get``, iteration in file
order and ``==`` behave as they do on the dict it replaces. The file must stay as it was read: every read
checks its size and modification time and raises :class:`~finetune.data.types.DataFormatError` if either
changed (re-read the collection then; its fingerprint has changed too).
"""

from __future__ import annotations

import os
from collections.abc import ItemsView, Iterator, Mapping, ValuesView
from pathlib import Path

import numpy as np

from finetune.data.types import DataFormatError

# Passages read per pread when iterating: 10,000 MS MARCO passages are ~3.4 MB.
BLOCK_PASSAGES = 10_000


class Collection(Mapping[str, str]):
    """pid -> passage text for passages stored as UTF-8 byte ranges of one file.

    Built by :func:`finetune.data.msmarco.read_collection`; the arrays are not copied.

    Args:
        path: The file the byte ranges refer to.
        ids: Each passage's pid as ASCII/UTF-8 bytes (numpy ``S`` dtype), in file order; no pid may contain NUL
            bytes or occur twice.
        starts: Byte offset of each passage's text in the file (int64).
        lengths: Byte length of each passage's text (uint32).
    """

    def __init__(self, path: str | Path, ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
        if not (len(ids) == len(starts) == len(lengths)):
            raise ValueError(f"ids, starts and lengths differ in length: {len(ids)}, {len(starts)}, {len(lengths)}")
        self.path = Path(path)
        self.ids = ids
        self.starts = starts.astype(np.int64, copy=False)
        self.lengths = lengths.astype(np.uint32, copy=False)
        # A sorted copy of the ids is searched directly (~1.4 µs a lookup on 3 M ids); searching through an
        # argsort "sorter" instead would save its 7 bytes a passage but costs 6 µs, and an int32 sorter is
        # converted to int64 on every call.
        order = np.argsort(ids, kind="stable")
        self._sorted = ids[order]
        self._rank = order.astype(np.int32 if len(ids) < 2**31 else np.int64)
        del order
        self._fd: int | None = None
        stat = os.stat(self.path)
        self._stamp = (stat.st_size, stat.st_mtime_ns)

    # --------------------------------------------------------------------------------------------- Mapping

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[str]:
        for lo in range(0, len(self.ids), BLOCK_PASSAGES):
            yield from (pid.decode("utf-8") for pid in self.ids[lo:lo + BLOCK_PASSAGES].tolist())

    def __contains__(self, pid: object) -> bool:
        return self.position(pid) >= 0

    def __getitem__(self, pid: str) -> str:
        i = self.position(pid)
        if i < 0:
            raise KeyError(pid)
        return self.text_at(i)

    def values(self) -> ValuesView[str]:
        return _Values(self)

    def items(self) -> ItemsView[str, str]:
        return _Items(self)

    def __repr__(self) -> str:
        return f"Collection({str(self.path)!r}, {len(self):,} passages)"

    # --------------------------------------------------------------------------------------------- helpers

    def position(self, pid: object) -> int:
        """The passage's index in file order, or -1 when ``pid`` is not in the collection."""
        if not isinstance(pid, str):
            return -1
        key = pid.encode("utf-8", errors="surrogatepass")
        # A longer key would make numpy widen (copy) the whole array before comparing; it cannot match anyway.
        if len(key) > self._sorted.dtype.itemsize or b"\0" in key:
            return -1
        j = int(self._sorted.searchsorted(key))
        if j < len(self._sorted) and self._sorted[j] == key:
            return int(self._rank[j])
        return -1

    def text_at(self, i: int) -> str:
        """The text of passage ``i`` (in file order)."""
        return self._read(int(self.starts[i]), int(self.lengths[i])).decode("utf-8")

    def texts(self, lo: int = 0, hi: int | None = None) -> Iterator[str]:
        """The passages ``lo:hi`` in file order, read a block of :data:`BLOCK_PASSAGES` at a time."""
        hi = len(self) if hi is None else min(hi, len(self))
        for block in range(lo, hi, BLOCK_PASSAGES):
            end = min(block + BLOCK_PASSAGES, hi)
            starts, lengths = self.starts[block:end], self.lengths[block:end]
            first = int(starts.min())
            data = self._read(first, int((starts + lengths).max()) - first)
            rel = (starts - first).tolist()
            yield from (data[s:s + n].decode("utf-8") for s, n in zip(rel, lengths.tolist(), strict=True))

    def sorted_positions(self) -> np.ndarray:
        """Passage indices ordered by pid as Python sorts the pid strings (bytewise; pids here are ASCII)."""
        return self._rank

    def _read(self, offset: int, size: int) -> bytes:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        stat = os.fstat(self._fd)
        if (stat.st_size, stat.st_mtime_ns) != self._stamp:
            raise DataFormatError(f"{self.path}: changed since it was read (size or modification time differ); "
                                  "read the collection again")
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise DataFormatError(f"{self.path}: ends before byte {offset + size}, changed since it was read")
        return data

    def close(self) -> None:
        """Close the file descriptor (reopened on the next read)."""
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}


class _Values(ValuesView):
    def __iter__(self) -> Iterator[str]:
        return self._mapping.texts()


class _Items(ItemsView):
    def __iter__(self) -> Iterator[tuple[str, str]]:
        return zip(iter(self._mapping), self._mapping.texts(), strict=True)
