"""The compact copy of a library's vectors that a search ranks: int8 codes, one scale per row.

Each row ``v`` (``[D] float32``, unit length) is kept as ``[D] int8`` codes ``c`` and one
``float32`` scale ``s = max|v| / 127``, so that ``v ~= s * c``: about ``D + 12`` bytes a photo
with its id, a quarter of float32. A score ``q . v`` is then ``s * (q . c)``, within about
``2e-3`` of the exact one for ``D = 512``; a search re-scores its best candidates with the stored
float32 vectors, so the scores it returns, and their order, are exact.

Public surface: :func:`quantise` and :class:`CompactVectors`.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["CompactVectors", "quantise"]

QUANTISE_ROWS = 1024  # rows quantised at a time: 2 MiB of float32 work space for D = 512
SCORE_WORKERS = max(1, min(4, os.cpu_count() or 1))

_score_executor: ThreadPoolExecutor | None = None
_score_lock = threading.Lock()


def _score_pool() -> ThreadPoolExecutor:
    """Threads that share a large scoring pass (numpy releases the GIL while it works)."""
    global _score_executor
    with _score_lock:
        if _score_executor is None:
            _score_executor = ThreadPoolExecutor(SCORE_WORKERS, thread_name_prefix="clip-score")
        return _score_executor


def quantise(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8 codes and scales of the finite rows of ``matrix``.

    Parameters
    ----------
    matrix
        ``[N, D] float32``.

    Returns
    -------
    kept : numpy.ndarray
        Positions of the rows that are finite, ``[K] int64`` (the others are left out).
    codes : numpy.ndarray
        ``[K, D] int8``: ``rint(v / s)``.
    scales : numpy.ndarray
        ``[K] float32``: ``s = max|v| / 127`` (1 for a zero row).
    """
    finite = np.isfinite(matrix).all(axis=1)
    kept = np.flatnonzero(finite)
    if len(kept) < len(matrix):
        matrix = matrix[kept]
    codes = np.empty(matrix.shape, np.int8)
    scales = np.empty(len(matrix), np.float32)
    work = np.empty((min(QUANTISE_ROWS, len(matrix)), matrix.shape[1]), np.float32)
    for start in range(0, len(matrix), QUANTISE_ROWS):
        block = matrix[start : start + QUANTISE_ROWS]
        scaled = work[: len(block)]
        peak = np.abs(block, out=scaled).max(axis=1)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        np.divide(block, scale[:, None], out=scaled)
        codes[start : start + QUANTISE_ROWS] = np.rint(scaled, out=scaled)
        scales[start : start + QUANTISE_ROWS] = scale
    return kept, codes, scales


class CompactVectors:
    """A library's vectors as int8 codes: a base block, and rows appended after it.

    The base block may be any ``[B, D] int8`` array, a view of a memory-mapped file included
    (:mod:`core.vectorfile`); rows appended by :meth:`extended` go to a growing block in memory,
    so the base is never copied. An object never changes once made: :meth:`extended` returns a
    new one, which may share the arrays (rows are written to spare room at their end that no
    older object reads), so a search that still holds an older object goes on safely.

    Attributes
    ----------
    ids
        Photo ids, ``[N] int64``, in row order (not necessarily ascending).
    scales
        ``[N] float32``.
    base_rows
        Rows in the base block; the rest were appended.
    """

    CHUNK = 256  # rows converted to float32 at a time: 512 KiB for D = 512, inside L2
    PARALLEL_ROWS = 16_384  # fewest rows per thread worth splitting a scoring pass for
    GROWTH = 4  # room made when appending: a quarter more than needed

    def __init__(
        self,
        base: np.ndarray,
        ids: np.ndarray,
        scales: np.ndarray,
        tail: np.ndarray,
        count: int,
        owner: list[int],
        order: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self._base = base
        self._ids, self._scales, self._tail = ids, scales, tail
        self.base_rows = len(base)
        self.ids: np.ndarray = ids[:count]
        self.scales: np.ndarray = scales[:count]
        self._owner = owner  # [rows used in the shared arrays]: only that object may append
        self._order = order
        self._order_lock = threading.Lock()

    @classmethod
    def build(cls, ids: np.ndarray, matrix: np.ndarray) -> CompactVectors:
        """Quantise ``matrix`` ``[N, D] float32`` whose rows belong to ``ids`` ``[N]``."""
        kept, codes, scales = quantise(np.asarray(matrix, dtype=np.float32))
        return cls.from_codes(np.asarray(ids, dtype=np.int64)[kept], codes, scales)

    @classmethod
    def from_codes(cls, ids: np.ndarray, codes: np.ndarray, scales: np.ndarray) -> CompactVectors:
        """Wrap quantised rows: ``ids`` ``[N]``, ``codes`` ``[N, D] int8`` (kept as it is, e.g.
        a view of a mapped file), ``scales`` ``[N]``; ids and scales are copied."""
        count = len(ids)
        all_ids = np.array(ids, dtype=np.int64)
        all_scales = np.array(scales, dtype=np.float32)
        tail = np.empty((0, codes.shape[1]), np.int8)
        return cls(codes, all_ids, all_scales, tail, count, [count])

    def extended(self, ids: np.ndarray, matrix: np.ndarray) -> CompactVectors:
        """This copy with more rows: ``ids`` ``[K]``, ``matrix`` ``[K, D] float32``."""
        kept, new_codes, new_scales = quantise(np.asarray(matrix, dtype=np.float32))
        new_ids = np.asarray(ids, dtype=np.int64)[kept]
        count, added = len(self.ids), len(new_ids)
        if not added:
            return self
        total = count + added
        used = count - self.base_rows  # rows of the tail block in use
        if self._owner[0] == count and total <= len(self._ids) and used + added <= len(self._tail):
            all_ids, scales, tail, owner = self._ids, self._scales, self._tail, self._owner
        else:  # no room left, or another object appended already: new arrays (not the base)
            room = total + total // self.GROWTH
            all_ids = np.empty(room, np.int64)
            scales = np.empty(room, np.float32)
            all_ids[:count], scales[:count] = self.ids, self.scales
            tail_room = used + added + (used + added) // self.GROWTH + 64
            tail = np.empty((tail_room, self.dim), np.int8)
            tail[:used] = self._tail[:used]
            owner = [count]
        all_ids[count:total] = new_ids
        scales[count:total] = new_scales
        tail[used : used + added] = new_codes
        owner[0] = total
        order = None
        if self._order is not None:  # merge the new ids into the sorted ones: O(N), no sort
            sorted_ids, positions = self._order
            new_order = np.argsort(new_ids, kind="stable")
            at = np.searchsorted(sorted_ids, new_ids[new_order])
            order = (
                np.insert(sorted_ids, at, new_ids[new_order]),
                np.insert(positions, at, count + new_order),
            )
        return CompactVectors(self._base, all_ids, scales, tail, total, owner, order)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self._base.shape[1])

    @property
    def appended_rows(self) -> int:
        """Rows held in memory after the base block."""
        return len(self.ids) - self.base_rows

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """The ids in ascending order and the row of each (made on first use)."""
        with self._order_lock:
            if self._order is None:
                positions = np.argsort(self.ids, kind="stable")
                self._order = (self.ids[positions], positions)
            return self._order

    def rows_of(self, wanted: np.ndarray) -> np.ndarray:
        """Positions of the rows whose id is in ``wanted`` (``[M] int64``), ascending.

        ``O(M log N)`` once the ids are sorted (the first call sorts them, ``O(N log N)``).
        """
        wanted = np.asarray(wanted, dtype=np.int64)
        sorted_ids, positions = self._sorted()
        if not len(sorted_ids) or not len(wanted):
            return np.empty(0, np.int64)
        at = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
        return np.sort(positions[at[sorted_ids[at] == wanted]])

    def scores(self, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Approximate cosine of the rows with ``query``.

        Parameters
        ----------
        query
            ``[D] float32``.
        rows
            Positions of the rows to score, ``[M]`` ascending (as :meth:`rows_of` gives them);
            all rows when None.

        Returns
        -------
        numpy.ndarray
            ``[M] float32`` (``[N]`` for all rows).
        """
        query = np.ascontiguousarray(query, dtype=np.float32)
        count = len(self.ids) if rows is None else len(rows)
        out = np.empty(count, np.float32)
        parts = min(SCORE_WORKERS, count // self.PARALLEL_ROWS)
        if parts > 1:
            bounds = np.linspace(0, count, parts + 1).astype(int)
            pool = _score_pool()
            jobs = [
                pool.submit(self._score_span, query, rows, int(begin), int(end), out)
                for begin, end in zip(bounds[:-1], bounds[1:], strict=True)
            ]
            for job in jobs:
                job.result()
        else:
            self._score_span(query, rows, 0, count, out)
        out *= self.scales if rows is None else self.scales[rows]
        return out

    def _block(
        self, start: int, stop: int, rows: np.ndarray | None, picked: np.ndarray
    ) -> np.ndarray:
        """Codes of positions ``start:stop`` (of ``rows[start:stop]`` when given)."""
        base = self.base_rows
        if rows is None:
            if stop <= base:
                return self._base[start:stop]
            if start >= base:
                return self._tail[start - base : stop - base]
            out = picked[: stop - start]
            out[: base - start] = self._base[start:]
            out[base - start :] = self._tail[: stop - base]
            return out
        wanted = rows[start:stop]
        split = int(np.searchsorted(wanted, base))
        out = picked[: stop - start]
        # fancy indexing, not np.take: take is very slow on the strided rows of a mapped file
        if split:
            out[:split] = self._base[wanted[:split]]
        if split < len(wanted):
            out[split:] = self._tail[wanted[split:] - base]
        return out

    def _score_span(
        self, query: np.ndarray, rows: np.ndarray | None, begin: int, end: int, out: np.ndarray
    ) -> None:
        """``out[begin:end]``: unscaled scores of those positions (of ``rows`` when given)."""
        block = min(self.CHUNK, end - begin)
        picked = np.empty((block, self.dim), np.int8)
        buffer = np.empty((block, self.dim), np.float32)
        for start in range(begin, end, self.CHUNK):
            stop = min(start + self.CHUNK, end)
            floats = buffer[: stop - start]
            np.copyto(floats, self._block(start, stop, rows, picked), casting="unsafe")
            np.dot(floats, query, out=out[start:stop])
