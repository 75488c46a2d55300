"""The vector file: the library's compact int8 vectors, memory-mapped beside the database.

A search ranks the int8 copy of every embedding (:mod:`core.compact`). Made from the float32
vectors in SQLite, that copy costs a read of the whole database at the first search of every
process (about 8 s and 2.6 KB a photo at a million photos). The vector file keeps it on disk
instead: a search maps it and reads only the pages it scores, and the float32 vectors in the
database stay the truth that the best candidates are re-scored with.

Layout (little-endian)
----------------------
``HEADER_BYTES`` of header, then one record per row::

    id     int64     photo id
    scale  float32   s, so that the vector is about s * codes
    codes  int8[D]   rint(v / s)
    (padding to a multiple of 8 bytes: 528 bytes a row for D = 512)

The header holds :data:`MAGIC`, :data:`FORMAT_VERSION`, ``D``, the row count, how many
embeddings of the database the rows cover (damaged, non-finite ones are left out), the
library's ``library_id``, the ``generation``, ``revision`` and ``removed`` count of
:attr:`core.library.Library.vector_version` the rows were made at, the CRC-32 of the ids and of the
scales in row order, and the CRC-32 of all that.

Trust
-----
The database draws a new ``generation`` in the same transaction as any change to its embeddings
(a trigger), so the file is used as it is only when its header names the library's
``library_id`` and current ``generation``, its size holds every row, both CRCs match, and a
sample of rows equals the quantised float32 vectors of the database. Otherwise it is stale (a
crash between a commit and the file's update, a file copied from another library or another
moment), truncated or garbage, and it is never trusted:

- when only rows were added since the file was made (same ``removed`` count, and the rows it
  covers are still all there), the missing rows are read from the database and appended;
- otherwise it is made again from the database, block by block (a new file, renamed over the
  old one, so a reader that still maps the old one goes on safely).

Only the holder of the library's writer lock writes the file (:meth:`core.library.Library.
refresh_vector_file`, after each committed batch and each sync). A writer appends the new rows
first and rewrites the header last, so a crash in between leaves a file whose header still
describes the rows before it: stale, never wrong. A search that finds the file stale and cannot
take the lock (an indexing run is committing) appends the missing rows in memory.

int8, not float16
-----------------
``bench/search.py --formats`` measured both (``bench/RESULTS.md``, section *Search*): the int8
codes take half the room and one scoring pass over them is about five times faster (numpy's
float16 to float32 conversion is slow), and with either the exact top 20 was always among the
candidates that a search re-scores with the float32 vectors.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.compact import CompactVectors, quantise

if TYPE_CHECKING:
    from core.database import VectorVersion
    from core.library import Library

__all__ = ["FORMAT_VERSION", "MAGIC", "Header", "load", "read_header", "refresh"]

MAGIC = b"CLIPVECS"
FORMAT_VERSION = 1
HEADER_BYTES = 4096  # rows start on a page boundary
BUILD_ROWS = 16_384  # float32 rows read from the database at a time when the file is made
SAMPLE_ROWS = 16  # rows compared with the database before a file is trusted

_HEADER = struct.Struct("<8sIIQQ16sqqqII")
_HEADER_CRC = struct.Struct("<I")

log = logging.getLogger(__name__)

_write_lock = threading.Lock()  # threads of one process that share a Library object


@dataclass(frozen=True, slots=True)
class Header:
    """What a vector file says of itself."""

    dim: int
    count: int
    covered: int
    library_id: str
    generation: int
    revision: int
    removed: int
    ids_crc: int
    scales_crc: int

    def pack(self) -> bytes:
        body = _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            self.dim,
            self.count,
            self.covered,
            bytes.fromhex(self.library_id),
            self.generation,
            self.revision,
            self.removed,
            self.ids_crc,
            self.scales_crc,
        )
        return (body + _HEADER_CRC.pack(zlib.crc32(body))).ljust(HEADER_BYTES, b"\0")

    def names(self, version: VectorVersion) -> bool:
        """Whether the header was made at exactly this state of the library."""
        return (self.library_id, self.generation) == (version.library_id, version.generation)


def row_dtype(dim: int) -> np.dtype:
    """The record of one row: ``id`` int64, ``scale`` float32, ``codes`` ``[D]`` int8."""
    return np.dtype(
        {
            "names": ["id", "scale", "codes"],
            "formats": ["<i8", "<f4", ("i1", (dim,))],
            "offsets": [0, 8, 12],
            "itemsize": (12 + dim + 7) // 8 * 8,
        }
    )


def _parse_header(data: bytes, size: int) -> Header | None:
    """The header at the start of ``data``, for a file of ``size`` bytes; None when not intact."""
    if len(data) < _HEADER.size + _HEADER_CRC.size:
        return None
    body, (crc,) = data[: _HEADER.size], _HEADER_CRC.unpack(data[_HEADER.size : _HEADER.size + 4])
    if zlib.crc32(body) != crc:
        return None
    magic, version, dim, count, covered, name, *rest = _HEADER.unpack(body)
    if magic != MAGIC or version != FORMAT_VERSION or dim == 0:
        return None
    if size < HEADER_BYTES + count * row_dtype(dim).itemsize:
        return None  # truncated
    return Header(dim, count, covered, name.hex(), *rest)


def read_header(path: Path) -> Header | None:
    """The header of the file at ``path``; None when it is missing, short or not intact."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_HEADER.size + _HEADER_CRC.size)
            return _parse_header(data, os.fstat(handle.fileno()).st_size)
    except OSError:
        return None


def _open(path: Path) -> tuple[Header, np.ndarray] | None:
    """The header and the rows it counts, read from one open file (a read-only shared map)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_HEADER.size + _HEADER_CRC.size)
            header = _parse_header(data, os.fstat(handle.fileno()).st_size)
            if header is None:
                return None
            dtype = row_dtype(header.dim)
            if header.count == 0:
                return header, np.zeros(0, dtype)
            length = HEADER_BYTES + header.count * dtype.itemsize
            mapped = mmap.mmap(handle.fileno(), length, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    return header, np.frombuffer(mapped, dtype, header.count, HEADER_BYTES)


def _crcs(ids: np.ndarray, scales: np.ndarray, start: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    return (
        zlib.crc32(np.ascontiguousarray(ids, "<i8").tobytes(), start[0]),
        zlib.crc32(np.ascontiguousarray(scales, "<f4").tobytes(), start[1]),
    )


def _trusted(
    library: Library, model_name: str, header: Header, rows: np.ndarray, ids: np.ndarray,
    scales: np.ndarray,
) -> bool:  # fmt: skip
    """Whether the mapped rows pass their CRCs and a sample equals the database's vectors."""
    if _crcs(ids, scales) != (header.ids_crc, header.scales_crc):
        return False
    if not len(rows):
        return True
    picks = np.unique(np.linspace(0, len(rows) - 1, SAMPLE_ROWS).astype(np.int64))
    stored = library.vectors_for(ids[picks], model_name)
    if len(stored) != len(picks):
        return False
    matrix = np.stack([stored[int(i)] for i in ids[picks]])
    kept, codes, sample_scales = quantise(matrix)
    return (
        len(kept) == len(picks)
        and np.array_equal(codes, rows["codes"][picks])
        and np.array_equal(sample_scales, scales[picks])
    )


def _records(ids: np.ndarray, matrix: np.ndarray, dim: int) -> tuple[np.ndarray, int]:
    """Quantised records of ``ids``/``matrix`` and how many rows they cover (with bad ones)."""
    kept, codes, scales = quantise(matrix)
    records = np.zeros(len(kept), row_dtype(dim))
    records["id"], records["scale"], records["codes"] = ids[kept], scales, codes
    return records, len(ids)


def _append(
    path: Path, header: Header, version: VectorVersion, added: tuple[np.ndarray, np.ndarray]
) -> Header:
    """Write the rows ``added`` after the file's rows, then the header that counts them."""
    records, covered = _records(added[0], added[1], header.dim)
    start = (header.ids_crc, header.scales_crc)
    ids_crc, scales_crc = _crcs(records["id"], records["scale"], start)
    new = Header(
        header.dim,
        header.count + len(records),
        header.covered + covered,
        version.library_id,
        version.generation,
        version.revision,
        version.removed,
        ids_crc,
        scales_crc,
    )
    fd = os.open(path, os.O_RDWR)
    try:
        if len(records):
            offset = HEADER_BYTES + header.count * records.dtype.itemsize
            os.pwrite(fd, records.tobytes(), offset)
        os.pwrite(fd, new.pack(), 0)  # last: until now the file said what it said before
    finally:
        os.close(fd)
    return new


def _build(library: Library, model_name: str, path: Path, version: VectorVersion) -> Header:
    """Make the file again from every embedding of the database (inside a snapshot)."""
    dim = int(library.embed_dim or 0)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    count = covered = 0
    crcs = (0, 0)
    try:
        with open(partial, "wb") as handle:
            handle.write(b"\0" * HEADER_BYTES)
            after = 0
            while True:
                ids, matrix = library.vectors_after_id(model_name, after, BUILD_ROWS)
                if not len(ids):
                    break
                records, seen = _records(ids, matrix, dim)
                handle.write(records.tobytes())
                crcs = _crcs(records["id"], records["scale"], crcs)
                count, covered, after = count + len(records), covered + seen, int(ids[-1])
                del ids, matrix, records
            header = Header(dim, count, covered, version.library_id, version.generation,
                            version.revision, version.removed, *crcs)  # fmt: skip
            handle.seek(0)
            handle.write(header.pack())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return header


def _catch_up(
    library: Library, model_name: str, header: Header | None, version: VectorVersion
) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows added since the file was made, when adding them makes it current; else None.

    That holds when the file belongs to this library, no embedding was removed since, and every
    embedding the file covers is still in the database (not so after a power cut lost
    transactions whose rows the file holds).
    """
    if header is None or header.library_id != version.library_id:
        return None
    if header.removed != version.removed or header.revision > version.revision:
        return None
    if header.dim != (library.embed_dim or 0):
        return None
    ids, matrix = library.vectors_added(model_name, header.revision)
    if library.indexed_count() - len(ids) != header.covered:
        return None
    return ids, matrix


def refresh(library: Library, model_name: str, previous_generation: int | None = None) -> None:
    """Bring the file up to date with the database; the caller holds the writer lock.

    Parameters
    ----------
    library
        The library; its :attr:`~core.library.Library.vector_file_path` is written.
    model_name
        The library's model.
    previous_generation
        The generation before the transaction just committed, when known: a file made then
        only needs the rows that transaction added (no check of the whole library).

    Never raises for the file: when it cannot be written a warning is logged and it is left
    as it was (stale, so nobody trusts it).
    """
    path = library.vector_file_path
    if path is None:
        return
    with library.snapshot(), _write_lock:
        version = library.vector_version
        header = read_header(path)
        if header is not None and header.names(version):
            return
        try:
            if (
                header is not None
                and previous_generation is not None
                and header.generation == previous_generation
                and header.library_id == version.library_id
                and header.removed == version.removed
            ):
                _append(path, header, version, library.vectors_added(model_name, header.revision))
                return
            added = _catch_up(library, model_name, header, version)
            if header is not None and added is not None:
                _append(path, header, version, added)
            else:
                _build(library, model_name, path, version)
        except OSError as error:
            log.warning("cannot write the vector file %s: %s", path, error)


def load(library: Library, model_name: str) -> CompactVectors | None:
    """The library's compact vectors from its file, made current; None when there is no file.

    Called inside :meth:`~core.library.Library.snapshot`. A file that names the current state and
    passes its checks is mapped as it is. A stale or damaged one is brought up to date: on disk
    when the writer lock is free (:func:`refresh`), else in memory from the rows added since,
    when that is enough. Returns None when no usable file can be had now: the caller then
    quantises the database's vectors in memory.
    """
    path = library.vector_file_path
    if path is None:
        return None
    version = library.vector_version
    for attempt in range(2):
        opened = _open(path)
        if attempt == 0 and (opened is None or not opened[0].names(version)):
            if _refresh_if_free(library, model_name, force=False):
                continue
        if opened is None or opened[0].dim != (library.embed_dim or 0):
            return None
        header, rows = opened
        current = header.names(version)
        added = None if current else _catch_up(library, model_name, header, version)
        ids, scales = np.ascontiguousarray(rows["id"]), np.ascontiguousarray(rows["scale"])
        if (current or added is not None) and _trusted(
            library, model_name, header, rows, ids, scales
        ):
            compact = CompactVectors.from_codes(ids, rows["codes"], scales)
            return compact if added is None else compact.extended(*added)
        del rows
        if attempt == 0 and _refresh_if_free(library, model_name, force=True):
            continue
        return None
    return None


def _refresh_if_free(library: Library, model_name: str, *, force: bool) -> bool:
    """Refresh (or with ``force`` make again) the file if the writer lock is free right now."""
    from core.database import LibraryBusyError

    path = library.vector_file_path
    try:
        with library.indexing_lock():
            if force and path is not None:
                with _write_lock, contextlib.suppress(OSError):
                    path.unlink()
            refresh(library, model_name)
    except LibraryBusyError:
        return False
    return True
