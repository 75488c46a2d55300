"""Rebuild a damaged library from what can still be read of it.

``clipsearch-tui library repair`` calls :func:`repair_library`. The damaged file is never
changed: every row that can be read is copied into a new database made with the current schema,
then the damaged file (with its ``-wal`` and ``-shm``) is moved aside as
``library.sqlite.damaged-YYYYmmdd-HHMMSS`` and the new one takes its name.

What survives:

- each table (``meta``, ``roots``, ``photos``, ``embeddings``, ``skipped``) is read by ranges of
  its rowid, which walks the table's own pages and never an index; a range that hits a damaged
  page is split in halves down to single rows, so only rows on damaged pages are lost;
- an embedding is kept only when its photo row was read, says ``indexed``, and the vector has the
  library's embedding size; every other photo that said ``indexed`` becomes ``pending`` and is
  encoded again by the next ``index``; a photo row that was lost is found again by the next scan,
  as a new photo;
- a file that is empty, or not a database at all, is moved aside and a new, empty library made.

The repair holds the library's writer lock, so no indexing runs meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import health
from core.errors import LibraryError

TABLES = ("meta", "roots", "photos", "embeddings", "skipped")
"""The tables copied, in this order (embeddings after the photos they belong to)."""
CHUNK = 4096
"""Rows read per range; a range that fails is split down to single rows."""
_EMPTY_RUN = 16
_COUNTERS = ("revision", "vectors_removed", "vector_generation", "library_id", health.WRITER_KEY)
"""``meta`` keys not copied: the new database starts its own counters and draws its own
``library_id``. The counters start again from zero, so they cannot tell the repaired vectors from
the old ones; a new name makes the vector file, the approximate index and every cached copy of the
old vectors foreign to it, and they are made again from the repaired vectors."""


@dataclass
class RepairReport:
    """What a repair kept.

    Attributes
    ----------
    photos
        Photo rows copied.
    vectors
        Embeddings copied (their photos stay indexed).
    pending
        Photos that said ``indexed`` but lost their embedding: they are encoded again.
    unreadable
        Row ids that could not be read (on a damaged page; not every one held a row). Photos
        among them are found again by the next scan.
    moved_aside
        Where the damaged file now is; None when there was no file.
    """

    photos: int = 0
    vectors: int = 0
    pending: int = 0
    unreadable: int = 0
    moved_aside: Path | None = None


def repair_library(path: Path) -> RepairReport:
    """Rebuild the library at ``path`` from its readable rows; see the module docstring.

    Raises
    ------
    LibraryError
        There is no library at ``path``, another process is indexing this library, or the new
        file cannot be written.
    """
    from core.database import LibraryBusyError, _WriterLock
    from core.library import Library

    path = Path(path).expanduser().absolute()
    if not path.exists() and not path.is_symlink():
        raise LibraryError(f"there is no library at {path}: nothing to repair")
    report = RepairReport()
    lock = _WriterLock(path.with_name(path.name + ".lock"))
    lock.acquire("the repair")
    fresh = path.with_name(f"{path.name}.repair-{os.getpid()}")
    try:
        for leftover in _family(fresh):
            leftover.unlink(missing_ok=True)
        Library.open(fresh, thumbnail_dir=path.parent / ".unused").close()
        rows = _salvage(path, report) if _looks_like_sqlite(path) else {}
        _write(fresh, rows, report)
        if path.exists():
            stamp = time.strftime("%Y%m%d-%H%M%S")
            aside = path.with_name(f"{path.name}.damaged-{stamp}")
            for member, target in zip(_family(path), _family(aside), strict=True):
                if member.exists():
                    os.replace(member, target)
            report.moved_aside = aside
        os.replace(fresh, path)
        vectors = path.with_name(path.name + ".vectors")
        vectors.unlink(missing_ok=True)  # rebuilt from the database when next needed
    except LibraryBusyError:
        raise
    except OSError as error:
        raise LibraryError(f"cannot repair the library {path}: {error.strerror or error}") from None
    finally:
        lock.release()
        # the new file's own lock; and the new file, if it was not put in place while the
        # library still is (a new file that is all there is, is kept)
        leftovers = [fresh.with_name(fresh.name + ".lock")]
        if path.exists():
            leftovers += _family(fresh)
        for leftover in leftovers:
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
    return report


def _family(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _looks_like_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(health.SQLITE_HEADER)) == health.SQLITE_HEADER
    except OSError:
        return False


def _salvage(
    path: Path, report: RepairReport
) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Every readable row of every table: ``{table: (columns, rows)}``."""
    found: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        return found
    with contextlib.closing(db):
        for table in TABLES:
            try:
                columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            except sqlite3.DatabaseError:
                continue
            if not columns:
                continue
            rows = list(_rows(db, table, columns, report))
            found[table] = (columns, rows)
    return found


def _rows(
    db: sqlite3.Connection, table: str, columns: list[str], report: RepairReport
) -> Iterator[tuple[Any, ...]]:
    """The readable rows of ``table`` by rowid ranges, splitting a range that fails.

    The ranges run up to ``max(rowid)``; when that cannot be read (its page is damaged), on
    until :data:`_EMPTY_RUN` ranges in a row were read and empty past the largest id known.
    """
    names = ", ".join(f'"{c}"' for c in columns)
    sql = f"SELECT {names} FROM {table} WHERE rowid BETWEEN ? AND ? ORDER BY rowid"
    try:
        top = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
        known = True
    except sqlite3.DatabaseError:
        top, known = _largest_sequence(db), False
    if known and top is None:
        return
    low, empty, top = 0, 0, top or 0
    while low <= top:
        rows, _ = _read_range(db, sql, low, low + CHUNK - 1, report)
        yield from rows
        low += CHUNK
    while not known and empty < _EMPTY_RUN:  # past the largest id known: whole ranges only
        try:
            rows = db.execute(sql, (low, low + CHUNK - 1)).fetchall()
        except sqlite3.DatabaseError:
            rows = []
        yield from rows
        empty = 0 if rows else empty + 1
        low += CHUNK


def _read_range(
    db: sqlite3.Connection, sql: str, low: int, high: int, report: RepairReport
) -> tuple[list[tuple[Any, ...]], bool]:
    """The readable rows with rowids in ``[low, high]``, and whether the range read whole."""
    try:
        return db.execute(sql, (low, high)).fetchall(), True
    except sqlite3.DatabaseError:
        pass
    if low == high:
        report.unreadable += 1
        return [], False
    middle = (low + high) // 2
    first, _ = _read_range(db, sql, low, middle, report)
    second, _ = _read_range(db, sql, middle + 1, high, report)
    return first + second, False


def _largest_sequence(db: sqlite3.Connection) -> int:
    """The largest id any AUTOINCREMENT table handed out (photo ids bound embedding ids)."""
    try:
        row = db.execute("SELECT max(seq) FROM sqlite_sequence").fetchone()
        return int(row[0] or 0)
    except sqlite3.DatabaseError:
        return 0


def _write(
    fresh: Path, rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]], report: RepairReport
) -> None:
    """Copy the salvaged rows into the new database at ``fresh``, keeping only sound vectors."""
    db = sqlite3.connect(fresh, isolation_level=None)
    with contextlib.closing(db):
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("BEGIN IMMEDIATE")
        meta = {}
        for table in TABLES:
            if table not in rows:
                continue
            columns, values = rows[table]
            have = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            keep = [i for i, column in enumerate(columns) if column in have]
            names = ", ".join(f'"{columns[i]}"' for i in keep)
            marks = ", ".join("?" for _ in keep)
            if table == "meta":
                meta = {str(r[0]): r[1] for r in values if len(r) > 1}
                values = [r for r in values if r[0] not in _COUNTERS]
                sql = f"INSERT OR REPLACE INTO meta ({names}) VALUES ({marks})"
            else:
                sql = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})"
            for row in values:
                try:
                    db.execute(sql, [row[i] for i in keep])
                except sqlite3.Error:
                    report.unreadable += 1
        _keep_sound_vectors(db, meta, report)
        # The copied revisions were counted by the damaged file, and the new database counts
        # again from zero: every kept vector predates the new database's first revision, or
        # the vector file would take the kept vectors for new ones and add them a second time.
        db.execute("UPDATE photos SET vector_revision = 0")
        db.execute("COMMIT")


def _keep_sound_vectors(db: sqlite3.Connection, meta: dict[str, Any], report: RepairReport) -> None:
    """Drop embeddings that do not fit; make every indexed photo without one pending again."""
    try:
        dim = int(meta.get("dim") or meta.get("embed_dim") or 0)
    except (TypeError, ValueError):
        dim = 0
    if dim:
        db.execute("DELETE FROM embeddings WHERE length(vector) != ?", (4 * dim,))
    db.execute(
        "DELETE FROM embeddings"
        " WHERE photo_id NOT IN (SELECT id FROM photos WHERE status = 'indexed')"
    )
    report.pending = db.execute(
        "UPDATE photos SET status = 'pending', model = NULL"
        " WHERE status = 'indexed' AND id NOT IN (SELECT photo_id FROM embeddings)"
    ).rowcount
    report.photos = db.execute("SELECT count(*) FROM photos").fetchone()[0]
    report.vectors = db.execute("SELECT count(*) FROM embeddings").fetchone()[0]
