"""The library: what is known about every photo of the album, and its embedding, on disk.

One SQLite database, ``library.sqlite`` in :func:`core.paths.data_dir` by default (never inside
the album), in WAL mode: any number of processes read it while one writes, and readers never
wait. Writing (a sync, an indexing run) takes the *indexing lock* first, an exclusive
``flock`` on ``library.sqlite.lock`` beside the database; a second writer gets
:class:`LibraryBusyError` at once instead of waiting.

Tables
------
``roots``
    The album folders.
``photos``
    One row per photo: path, size, modification time, content hash, capture time, displayed
    size, status (``pending``, ``indexed`` or ``failed``), error text, thumbnail file name, the
    model its embedding came from, and the revision that wrote its embedding
    (``vector_revision``).
``embeddings``
    One ``[D] float32`` BLOB per indexed photo, keyed by the photo's id.
``skipped``
    Files the scan did not index (unsupported format, empty file, unreadable folder), with why.
``meta``
    The model the embeddings belong to, its embedding size, a revision counter, how many
    embeddings were ever deleted or overwritten (``vectors_removed``, counted by triggers), the
    library's random name (``library_id``) and the random ``vector_generation`` that triggers
    draw again whenever an embedding changes.

Embeddings are written in the same transaction as the status that says the photo is indexed, so
after a crash every photo is either indexed with its vector or still pending; there is never a
vector without an ``indexed`` status, nor the reverse.

Paths
-----
A path is stored as text that gives back exactly the path that went in, whatever bytes its name
holds. A name that is not valid UTF-8 (``b'caf\\xe9.jpg'`` on Linux) reaches Python as a
string with lone surrogates (``'caf\\udce9.jpg'``), which SQLite cannot store; each such code
point, and the escape character itself, is written as U+FDD0 (a Unicode noncharacter, reserved
for internal use, never part of a real name) followed by its code point in four hex digits.
Every other name, that is nearly all of them, is stored as it is. The escape is one code word
per character and no code word but ``/`` itself starts with ``/``, so ``a`` is a folder
prefix of ``b`` exactly when the stored text of ``a`` is a prefix of that of ``b``: a folder
filter stays one range over the unique index on ``path``.

Storage choice
--------------
Vectors are float32 BLOBs inside the database, the one truth for exact scores.
:meth:`Library.vectors` streams them in id order, scanning the embeddings table (never sorting
the BLOBs), and copies each block of rows into one preallocated matrix, so it holds little more
than the matrix it returns. A search ranks an int8 copy of them kept in the *vector file* beside
the database (:mod:`core.vectorfile`), which the writer brings up to date after every committed
batch and sync (:meth:`Library.refresh_vector_file`). A file outside the database cannot be
committed together with the status, so it is never trusted on its own: triggers draw a new
``vector_generation`` in the same transaction as any change to the embeddings, and the file is
used only while it names the current one (see *Trust* in :mod:`core.vectorfile`). Pages are
16 KiB, so that the 2 KiB BLOBs of D = 512 pack with little waste (2.6 KB per photo on disk).

float32, not float16: float16 would halve the file but moves scores by up to 5e-5, which with
random unit vectors (N = 10,000, D = 512, 1,000 random queries) changed the order of the top 10
for 3.0 % of queries (the set of the top 10 for 0.5 %, the first result never). Stored float32
vectors give exactly the encoder's rankings.

One model per library
---------------------
The library remembers the model its embeddings came from (:attr:`Library.model_name`); mixing
embeddings of two models in one search would be meaningless. Indexing with another model raises
:class:`ModelMismatchError` until :meth:`Library.use_model` is called with ``replace=True``, which
drops every embedding and makes every indexed photo pending again.

Content hash
------------
:func:`content_hash` is the SHA-1 of the file size, the first 64 KiB and the last 64 KiB (the
whole file when it is at most 128 KiB): two reads, however big the photo. It recognises a
photo that was moved or renamed, or copied, so that its embedding is reused without
decoding it again. Two different files with the same size whose first and last 64 KiB are equal
would be taken for one; edited JPEG, HEIC and PNG files change size or their last bytes, but an
uncompressed TIFF or BMP edited only in the middle would not, if it was also moved.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, repeat
from pathlib import Path
from typing import Any, NamedTuple, Self

import numpy as np

from core import album
from core.errors import ClipsearchError
from core.paths import cache_dir, data_dir

__all__ = [
    "DATABASE_NAME",
    "SCHEMA_VERSION",
    "STATUSES",
    "Library",
    "LibraryBusyError",
    "LibraryError",
    "ModelMismatchError",
    "PendingPhoto",
    "PhotoRecord",
    "SyncReport",
    "VectorVersion",
    "content_hash",
    "default_database_path",
]

DATABASE_NAME = "library.sqlite"
"""File name of the library database inside :func:`core.paths.data_dir`."""

VECTOR_FILE_SUFFIX = ".vectors"
"""Added to the database file's name to name its vector file (:mod:`core.vectorfile`)."""

THUMBNAIL_FOLDER = "thumbnails"
"""Sub-folder of :func:`core.paths.cache_dir` that holds the thumbnails."""

STATUSES = ("pending", "indexed", "failed")
"""Values of a photo's ``status``: waiting to be encoded, encoded, could not be read."""

HASH_CHUNK = 64 * 1024
"""Bytes read from each end of a file for :func:`content_hash`."""

PAGE_SIZE = 16384
BUSY_TIMEOUT_S = 10.0
SYNC_CHUNK = 256  # photos hashed and read per transaction during a sync
SYNC_WORKERS = 4
_SQL_CHUNK = 500  # ids per ``IN (...)`` list
_VECTOR_CHUNK = 256  # rows fetched at a time while reading vectors: 512 KiB for D = 512
_WALL_FORMAT = "microseconds"


class LibraryError(ClipsearchError):
    """The library database cannot be opened, read or written."""


class LibraryBusyError(LibraryError):
    """Another process holds the indexing lock of this library."""


class ModelMismatchError(LibraryError):
    """The library holds embeddings of another model than the one asked for."""


@dataclass(frozen=True, slots=True)
class PhotoRecord:
    """What the library knows about one photo.

    Attributes
    ----------
    id
        Row id; stable while the photo stays in the library, also across a move or rename.
    path
        Absolute path, as the scan reached it.
    size, mtime_ns
        Size in bytes and modification time in nanoseconds when it was last looked at.
    taken_at
        Capture time (see :func:`core.album.read_capture_time`): aware when the photo recorded
        its UTC offset, naive otherwise. Compare through :func:`core.album.wall_time`.
    time_source
        Where ``taken_at`` came from: an EXIF tag name or ``mtime``.
    width, height
        Displayed size in pixels, None when unknown.
    status
        ``pending``, ``indexed`` or ``failed``.
    error
        Why the photo could not be indexed, for ``failed``.
    thumbnail
        The thumbnail file (at most 256 pixels on its long side, right way up), or None when
        none was made yet or it was removed from the cache.
    """

    id: int
    path: Path
    size: int
    mtime_ns: int
    taken_at: datetime | None
    time_source: str | None
    width: int | None
    height: int | None
    status: str
    error: str | None
    thumbnail: Path | None


class VectorVersion(NamedTuple):
    """Where the embeddings of a library stand (:attr:`Library.vector_version`).

    Attributes
    ----------
    revision
        :attr:`Library.revision`.
    removed
        How many embeddings were ever deleted or overwritten. While it stays the same, the
        embeddings of a later version are those of an earlier one plus the ones
        :meth:`Library.vectors_added` returns.
    generation
        A random number drawn again, in the same transaction, whenever any embedding is
        written or removed: equal generations mean equal embeddings.
    library_id
        The library's random name (32 hex digits), given once when it is created.
    """

    revision: int
    removed: int
    generation: int = 0
    library_id: str = ""


class PendingPhoto(NamedTuple):
    """A photo waiting to be encoded: its id, path and content hash."""

    id: int
    path: Path
    content_hash: str


@dataclass(slots=True)
class SyncReport:
    """What :meth:`Library.sync` changed.

    Attributes
    ----------
    new
        Photos added, pending encoding.
    changed
        Photos whose size or modification time changed; pending again.
    moved
        Photos found under a new path with the content of a vanished one: the row, embedding
        and thumbnail were kept, only the path changed.
    copied
        New photos with the content of an indexed one: the embedding was copied.
    deleted
        Photos that are gone from the album, removed from the library.
    unchanged
        Photos with the size and modification time stored; not read at all.
    kept
        Photos missing from the scan but kept, because the scan was cancelled or their folder
        could not be read.
    skipped
        Files that are not indexed, with the reason (from the scan, plus photos that vanished
        before they could be read).
    cancelled
        True when the sync (or the scan it was given) was stopped early.
    """

    new: int = 0
    changed: int = 0
    moved: int = 0
    copied: int = 0
    deleted: int = 0
    unchanged: int = 0
    kept: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    cancelled: bool = False


def default_database_path() -> Path:
    """``library.sqlite`` in the data folder (``$CLIPSEARCH_HOME/data`` when that is set)."""
    return data_dir() / DATABASE_NAME


def content_hash(path: str | os.PathLike[str], size: int | None = None) -> str:
    """Fingerprint of a file's content from two reads, however big it is.

    Parameters
    ----------
    path
        The file; only read.
    size
        Its size in bytes, when already known (saves a ``stat``).

    Returns
    -------
    str
        Hex SHA-1 of the size (decimal, then a NUL byte), the first :data:`HASH_CHUNK` bytes and
        the last :data:`HASH_CHUNK` bytes; of the size and the whole file when it is at most
        twice that long.

    Raises
    ------
    OSError
        The file cannot be read.
    """
    digest = hashlib.sha1(usedforsecurity=False)
    with open(path, "rb") as handle:
        if size is None:
            size = os.fstat(handle.fileno()).st_size
        digest.update(b"%d\0" % size)
        if size <= 2 * HASH_CHUNK:
            digest.update(handle.read())
        else:
            digest.update(handle.read(HASH_CHUNK))
            handle.seek(-HASH_CHUNK, os.SEEK_END)
            digest.update(handle.read(HASH_CHUNK))
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Schema


def _execute_script(db: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements inside the open transaction.

    ``Connection.executescript`` would commit the transaction first, so a migration that fails
    half-way could leave the schema half-changed.
    """
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _migrate_1_tables(db: sqlite3.Connection) -> None:
    """The tables of the first release."""
    _execute_script(
        db,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE roots (path TEXT PRIMARY KEY, added_at TEXT NOT NULL);
        CREATE TABLE photos (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            taken_at TEXT,
            wall TEXT,
            time_source TEXT,
            width INTEGER,
            height INTEGER,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'indexed', 'failed')),
            error TEXT,
            thumbnail TEXT,
            model TEXT
        );
        CREATE TABLE embeddings (
            photo_id INTEGER PRIMARY KEY REFERENCES photos (id) ON DELETE CASCADE,
            vector BLOB NOT NULL
        );
        CREATE TABLE skipped (path TEXT PRIMARY KEY, reason TEXT NOT NULL);
        """,
    )


def _migrate_2_indexes(db: sqlite3.Connection) -> None:
    """Indexes for date-range searches, pending photos and move detection."""
    _execute_script(
        db,
        """
        CREATE INDEX photos_wall ON photos (wall);
        CREATE INDEX photos_status ON photos (status, wall);
        CREATE INDEX photos_hash ON photos (content_hash);
        """,
    )


def _migrate_3_exact_paths(db: sqlite3.Connection) -> None:
    """Paths as reversible text (see *Paths* above): escape the escape character where it is."""
    for table in ("photos", "roots", "skipped"):
        db.execute(
            f"UPDATE {table} SET path = replace(path, ?, ?) WHERE instr(path, ?) > 0",
            (_PATH_ESCAPE, _escape_code_point(_PATH_ESCAPE), _PATH_ESCAPE),
        )


def _migrate_4_vector_changes(db: sqlite3.Connection) -> None:
    """Let a reader tell embeddings that were only added from ones that were removed.

    ``photos.vector_revision`` is the revision whose transaction wrote the photo's embedding (0
    for those written before this migration); triggers count every embedding deleted or
    overwritten in ``meta.vectors_removed``, whoever deletes it (a cascade from ``photos``
    included).
    """
    bump = "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'vectors_removed'"
    for statement in (
        "ALTER TABLE photos ADD COLUMN vector_revision INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX photos_vector_revision ON photos (vector_revision)",
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('vectors_removed', '0')",
        f"CREATE TRIGGER embeddings_deleted AFTER DELETE ON embeddings BEGIN {bump}; END",
        f"CREATE TRIGGER embeddings_updated AFTER UPDATE ON embeddings BEGIN {bump}; END",
    ):
        db.execute(statement)


def _migrate_5_vector_generation(db: sqlite3.Connection) -> None:
    """Name the library and the state of its embeddings, for the vector file beside it.

    ``meta.library_id`` is a random 128-bit name given once. ``meta.vector_generation`` is a
    random number that triggers draw again whenever an embedding is inserted, deleted or
    overwritten, in the same transaction, whoever writes it: the vector file
    (:mod:`core.vectorfile`) records the pair it was made from, and is used only while both
    match.
    """
    draw = "UPDATE meta SET value = CAST(random() AS TEXT) WHERE key = 'vector_generation'"
    for statement in (
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('library_id', lower(hex(randomblob(16))))",
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('vector_generation', random())",
    ):
        db.execute(statement)
    for event in ("INSERT", "DELETE", "UPDATE"):
        db.execute(
            f"CREATE TRIGGER embeddings_generation_{event.lower()} AFTER {event} ON embeddings"
            f" BEGIN {draw}; END"
        )


Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: tuple[Migration, ...] = (
    _migrate_1_tables,
    _migrate_2_indexes,
    _migrate_3_exact_paths,
    _migrate_4_vector_changes,
    _migrate_5_vector_generation,
)
"""Schema changes in order; ``PRAGMA user_version`` counts how many a database has had."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The ``user_version`` of a database this version writes."""


def _wall_text(moment: datetime) -> str:
    """Naive wall-clock time as fixed-width ISO text, so that text order is time order."""
    return album.wall_time(moment).isoformat(timespec=_WALL_FORMAT)


_PATH_ESCAPE = "\ufdd0"
_UNSTORABLE = re.compile("[\ud800-\udfff\ufdd0]")
_ESCAPED = re.compile("\ufdd0([0-9a-f]{4})")


def _escape_code_point(char: str) -> str:
    return f"{_PATH_ESCAPE}{ord(char):04x}"


def _path_text(path: str | os.PathLike[str]) -> str:
    """The text that stands for ``path`` in the database (see *Paths* above).

    Lone surrogates (bytes of a name that is not valid UTF-8, under Python's
    ``surrogateescape``) and U+FDD0 become U+FDD0 and four hex digits; the rest is unchanged.
    """
    text = os.fspath(path)
    if text.isascii():
        return text
    return _UNSTORABLE.sub(lambda match: _escape_code_point(match.group()), text)


def _path_from_text(text: str) -> str:
    """The path that :func:`_path_text` turned into ``text``."""
    if _PATH_ESCAPE not in text:
        return text
    return _ESCAPED.sub(lambda match: chr(int(match.group(1), 16)), text)


def _under(path: str, folders: Sequence[str]) -> bool:
    """Whether ``path`` is one of ``folders`` or inside one of them."""
    return any(
        path == f or path.startswith(f if f.endswith(os.sep) else f + os.sep) for f in folders
    )


def _prefix_range(folder: Path) -> tuple[str, str]:
    """``(low, high)``: the stored text of a path is in ``[low, high)`` iff it is in ``folder``."""
    text = _path_text(folder)
    base = text if text.endswith(os.sep) else text + os.sep
    return base, base[:-1] + chr(ord(os.sep) + 1)


def _absolute(path: Path | str) -> Path:
    return Path(path).expanduser().absolute()


class _WriterLock:
    """An exclusive, non-blocking, re-entrant lock on a file, held across processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._depth = 0
        self._guard = threading.Lock()

    @property
    def held(self) -> bool:
        return self._depth > 0

    def acquire(self, what: str) -> None:
        with self._guard:
            if self._depth:
                self._depth += 1
                return
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _lock_file(fd)
            except OSError:
                os.close(fd)
                raise LibraryBusyError(
                    f"another clipsearch-tui process is indexing this library ({what}); "
                    "wait for it to finish, or stop it"
                ) from None
            self._fd, self._depth = fd, 1

    def release(self) -> None:
        with self._guard:
            if not self._depth:
                return
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                _unlock_file(self._fd)
                os.close(self._fd)
                self._fd = None


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_file(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock_file(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class _Found(NamedTuple):
    """A photo row as :meth:`Library.sync` compares it with the scan."""

    id: int
    size: int
    mtime_ns: int
    content_hash: str
    status: str
    time_source: str | None


class _Probe(NamedTuple):
    """A new or changed file, read: its hash and capture time (None when not read)."""

    entry: album.FileEntry
    content_hash: str | None
    capture: album.CaptureTime | None
    error: str | None


_PHOTO_COLUMNS = (
    "id, path, size, mtime_ns, taken_at, time_source, width, height, status, error, thumbnail"
)


class Library:
    """The photo library on disk: photos, their capture times, status and embeddings.

    Open it with :meth:`Library.open`. One object may be shared by threads: every call holds an
    internal lock around the database connection. Other processes may open the same library at
    the same time; only one of them can sync or index at once (:meth:`indexing_lock`).

    Attributes
    ----------
    path
        The database file.
    thumbnail_dir
        Folder the thumbnails are written to (``thumbnails`` in the cache folder by default).
    vector_file_path
        The compact vector file beside the database (:mod:`core.vectorfile`): the database
        file's name with ``.vectors`` added.
    """

    def __init__(self, path: Path, thumbnail_dir: Path) -> None:
        self.path = path
        self.thumbnail_dir = thumbnail_dir
        self.vector_file_path: Path | None = path.with_name(path.name + VECTOR_FILE_SUFFIX)
        self._mutex = threading.RLock()
        self._writer = _WriterLock(path.with_name(path.name + ".lock"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as error:
            raise LibraryError(f"cannot open the library {path}: {error}") from error
        try:
            self._configure()
            self._migrate()
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise LibraryError(f"cannot open the library {path}: {error}") from error
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open(cls, db_path: Path | None = None, *, thumbnail_dir: Path | None = None) -> Library:
        """Open (creating it if needed) a library database and bring its schema up to date.

        Parameters
        ----------
        db_path
            The database file; :func:`default_database_path` when None.
        thumbnail_dir
            Where thumbnails go; ``thumbnails`` in :func:`core.paths.cache_dir` when None.

        Raises
        ------
        LibraryError
            The file is not a library database, was written by a newer version, or cannot be
            created.
        """
        path = _absolute(db_path) if db_path is not None else default_database_path()
        thumbs = _absolute(thumbnail_dir) if thumbnail_dir else cache_dir() / THUMBNAIL_FOLDER
        return cls(path, thumbs)

    def _configure(self) -> None:
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if db.execute("PRAGMA user_version").fetchone()[0] == 0:
            db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only takes effect on a new file
        db.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL keeps every committed transaction through a crash of the process and
        # the database consistent through a power cut (which may lose the last transactions).
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LibraryError(
                f"the library {self.path} was written by a newer version of clipsearch-tui "
                f"(schema {version}; this version knows up to {SCHEMA_VERSION}); upgrade it"
            )
        while version < SCHEMA_VERSION:
            with self._transaction():
                # another process may have migrated while this one waited for the write lock
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version >= SCHEMA_VERSION:
                    break
                MIGRATIONS[version](self._db)
                version += 1
                self._db.execute(f"PRAGMA user_version = {version}")

    def close(self) -> None:
        """Close the database (and release the indexing lock if this object holds it)."""
        with self._mutex:
            while self._writer.held:
                self._writer.release()
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error."""
        with self._mutex:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                raise LibraryError(f"cannot write the library {self.path}: {error}") from error
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                self._db.execute("ROLLBACK")
                raise LibraryError(f"cannot write the library {self.path}: {error}") from error

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._reading(sql, params) as cursor:
            return cursor.fetchall()

    @contextlib.contextmanager
    def _reading(self, sql: str, params: Sequence[Any] = ()) -> Iterator[sqlite3.Cursor]:
        """A cursor over the rows of ``sql``, to be read inside the block (which holds the lock)."""
        with self._mutex:
            try:
                cursor = self._db.execute(sql, params)
            except sqlite3.OperationalError as error:
                raise LibraryError(f"cannot read the library {self.path}: {error}") from error
            try:
                yield cursor
            except sqlite3.OperationalError as error:
                raise LibraryError(f"cannot read the library {self.path}: {error}") from error
            finally:
                cursor.close()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Within the block, every read through this object sees one state of the library.

        A read transaction: the block sees the library as it was at its first read, however
        many transactions other connections commit meanwhile (in WAL mode they are not held
        up). Other threads that use this object wait for the block to end. Nested blocks join
        the outer one. Nothing may be written through this object inside the block.
        """
        with self._mutex:
            if self._db.in_transaction:
                yield
                return
            try:
                self._db.execute("BEGIN")
            except sqlite3.OperationalError as error:
                raise LibraryError(f"cannot read the library {self.path}: {error}") from error
            try:
                yield
            finally:
                self._db.execute("COMMIT")  # ends the read; nothing was written

    def _meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    @staticmethod
    def _set_meta(db: sqlite3.Connection, key: str, value: str | None) -> None:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @staticmethod
    def _bump(db: sqlite3.Connection) -> int:
        """Increase the revision inside the open write transaction; return the new one."""
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('revision', '1') ON CONFLICT (key) "
            "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )
        return int(db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])

    @contextlib.contextmanager
    def indexing_lock(self) -> Iterator[None]:
        """Hold the library's writer lock for the duration of the block (re-entrant).

        Raises
        ------
        LibraryBusyError
            Another process (or another :class:`Library` object) holds it.
        """
        self._writer.acquire(str(self.path))
        try:
            yield
        finally:
            self._writer.release()

    def _require_lock(self) -> None:
        if not self._writer.held:
            raise RuntimeError("hold Library.indexing_lock() while writing photos or embeddings")

    @property
    def revision(self) -> int:
        """A number that grows whenever photos, statuses or embeddings change.

        A search may keep the matrix of :meth:`vectors` while this stays the same.
        """
        value = self._meta("revision")
        return int(value) if value else 0

    @property
    def vector_version(self) -> VectorVersion:
        """The revision and how many embeddings were ever removed, read together.

        A reader that holds the embeddings of one version can bring them up to a later version
        with the same ``removed`` count by adding :meth:`vectors_added` after its revision; when
        ``removed`` grew, it has to read them again.
        """
        values = dict(
            self._query(
                "SELECT key, value FROM meta WHERE key IN"
                " ('revision', 'vectors_removed', 'vector_generation', 'library_id')"
            )
        )
        return VectorVersion(
            int(values.get("revision") or 0),
            int(values.get("vectors_removed") or 0),
            int(values.get("vector_generation") or 0),
            values.get("library_id") or "",
        )

    # -- roots -------------------------------------------------------------------------------

    def add_roots(self, paths: Iterable[Path | str]) -> list[Path]:
        """Add album folders (``~`` expanded, made absolute, not resolved); returns them.

        Raises
        ------
        core.album.AlbumNotFoundError
            A path is not an existing folder; nothing is added then.
        """
        folders = [_absolute(p) for p in paths]
        for folder in folders:
            if not folder.is_dir():
                raise album.AlbumNotFoundError(f"photo folder not found: {folder}")
        now = datetime.now().isoformat(timespec="seconds")
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO roots (path, added_at) VALUES (?, ?)",
                [(_path_text(f), now) for f in folders],
            )
        return folders

    def remove_roots(self, paths: Iterable[Path | str]) -> int:
        """Forget album folders and the photos that no other root holds; returns how many photos.

        Needs the writer lock; takes it for the call.
        """
        removed = [str(_absolute(p)) for p in paths]
        with self.indexing_lock(), self._transaction() as db:
            db.executemany("DELETE FROM roots WHERE path = ?", [(_path_text(r),) for r in removed])
            remaining = [_path_from_text(r) for (r,) in db.execute("SELECT path FROM roots")]
            gone = [
                (photo_id,)
                for photo_id, text in db.execute("SELECT id, path FROM photos")
                if _under(path := _path_from_text(text), removed) and not _under(path, remaining)
            ]
            db.executemany("DELETE FROM photos WHERE id = ?", gone)
            skipped = [
                (text,)
                for (text,) in db.execute("SELECT path FROM skipped")
                if _under(path := _path_from_text(text), removed) and not _under(path, remaining)
            ]
            db.executemany("DELETE FROM skipped WHERE path = ?", skipped)
            if gone:
                self._bump(db)
        return len(gone)

    def roots(self) -> list[Path]:
        """The album folders, sorted."""
        rows = self._query("SELECT path FROM roots")
        return [Path(path) for path in sorted(_path_from_text(text) for (text,) in rows)]

    # -- model -------------------------------------------------------------------------------

    @property
    def model_name(self) -> str | None:
        """The model the stored embeddings belong to; None for a library never indexed."""
        return self._meta("model")

    @property
    def embed_dim(self) -> int | None:
        """Length of the stored embeddings; None for a library never indexed."""
        value = self._meta("embed_dim")
        return int(value) if value else None

    def _mismatch(self, stored: str, wanted: str) -> ModelMismatchError:
        return ModelMismatchError(
            f"this library was indexed with model {stored!r}; use --model {stored}, or re-index "
            f"it with {wanted!r} (clipsearch-tui index --model {wanted} --reindex), which "
            "encodes every photo again"
        )

    def use_model(self, name: str, embed_dim: int, *, replace: bool = False) -> None:
        """Make ``name`` the model of this library.

        Parameters
        ----------
        name
            The model's name.
        embed_dim
            Its embedding length D.
        replace
            When the library holds another model's embeddings: drop them all and make every
            indexed photo pending again (thumbnails and capture times are kept).

        Raises
        ------
        ModelMismatchError
            The library holds another model's embeddings and ``replace`` is False.
        LibraryBusyError
            ``replace`` is needed and another process is indexing.
        """
        stored = self.model_name
        if stored == name and self.embed_dim == embed_dim:
            return
        if stored is not None and stored != name and not replace:
            raise self._mismatch(stored, name)
        with self.indexing_lock(), self._transaction() as db:
            db.execute("DELETE FROM embeddings")
            db.execute(
                "UPDATE photos SET status = 'pending', model = NULL WHERE status = 'indexed'"
            )
            self._set_meta(db, "model", name)
            self._set_meta(db, "embed_dim", str(int(embed_dim)))
            self._bump(db)

    # -- sync --------------------------------------------------------------------------------

    def sync(
        self,
        scan_result: album.ScanResult,
        *,
        roots: Sequence[Path | str] | None = None,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> SyncReport:
        """Bring the photo table in line with a scan of the album.

        - A path not in the library is *new*: its content hash and capture time are read and it
          becomes pending. When its content hash is that of a photo that vanished from the scan,
          it is that photo *moved*: the row keeps its id, status, embedding and thumbnail and only
          its path changes. When the hash is that of an indexed photo still present, it is a
          *copy*: the embedding is copied.
        - A path whose size or modification time differs is *changed*: read again, its
          embedding dropped, pending.
        - A path with the same size and modification time is *unchanged* and not opened at all.
        - A stored photo under ``roots`` that the scan did not list is *deleted*, unless the scan
          was cancelled or the photo lies under a folder or file in ``scan_result.errors``.

        Work is committed every :data:`SYNC_CHUNK` photos, so a crash or a cancel keeps what was
        read. Takes the writer lock for the call.

        Parameters
        ----------
        scan_result
            What :func:`core.album.scan` found.
        roots
            The folders that were scanned (default: :meth:`roots`); photos outside them are left
            alone.
        cancel
            When set, stops after the current chunk; nothing is deleted then.
        progress
            Called with ``(done, total)`` new and changed photos read so far.

        Raises
        ------
        LibraryBusyError
            Another process is indexing.
        """
        folders = [str(_absolute(r)) for r in roots] if roots is not None else None
        with self.indexing_lock():
            if folders is None:
                folders = [str(r) for r in self.roots()]
            return self._sync(scan_result, folders, cancel, progress)

    def _sync(
        self,
        scan_result: album.ScanResult,
        folders: list[str],
        cancel: threading.Event | None,
        progress: Callable[[int, int], None] | None,
    ) -> SyncReport:
        report = SyncReport(cancelled=scan_result.cancelled)
        stored = {
            _path_from_text(row[1]): _Found(row[0], *row[2:])
            for row in self._query(
                "SELECT id, path, size, mtime_ns, content_hash, status, time_source FROM photos"
            )
        }
        new: list[album.FileEntry] = []
        changed: list[album.FileEntry] = []
        listed: set[str] = set()
        for entry in scan_result.files:
            key = str(entry.path)
            listed.add(key)
            found = stored.get(key)
            if found is None:
                new.append(entry)
            elif (found.size, found.mtime_ns) != (entry.size, entry.mtime_ns):
                changed.append(entry)
            else:
                report.unchanged += 1

        protected = [str(item.path) for item in scan_result.errors]
        missing = {
            path: found
            for path, found in stored.items()
            if path not in listed and _under(path, folders)
        }
        vanished_by_hash: dict[str, list[str]] = {}
        for path, found in missing.items():
            vanished_by_hash.setdefault(found.content_hash, []).append(path)
        indexed_by_hash = {
            found.content_hash: found.id
            for path, found in stored.items()
            if found.status == "indexed" and path not in missing
        }

        work = [(entry, False) for entry in new] + [(entry, True) for entry in changed]
        total, done = len(work), 0
        if progress is not None:
            progress(0, total)
        with ThreadPoolExecutor(SYNC_WORKERS, thread_name_prefix="clipsearch-sync") as pool:
            for start in range(0, total, SYNC_CHUNK):
                if cancel is not None and cancel.is_set():
                    report.cancelled = True
                    break
                chunk = work[start : start + SYNC_CHUNK]
                moving = {digest for digest, paths in vanished_by_hash.items() if paths}
                probes = list(pool.map(functools.partial(_probe, moving=moving), chunk))
                with self._transaction() as db:
                    revision = self._bump(db)
                    for (entry, is_change), probe in zip(chunk, probes, strict=True):
                        if probe.error is not None or probe.content_hash is None:
                            report.skipped.append((entry.path, probe.error or "unreadable"))
                            continue
                        if is_change:
                            self._update_changed(db, stored[str(entry.path)].id, probe)
                            report.changed += 1
                            continue
                        candidates = vanished_by_hash.get(probe.content_hash)
                        if candidates:
                            old_path = candidates.pop()
                            old = missing.pop(old_path)
                            self._move(db, old, probe)
                            report.moved += 1
                            if old.status == "indexed":
                                indexed_by_hash.setdefault(probe.content_hash, old.id)
                            continue
                        source = indexed_by_hash.get(probe.content_hash)
                        self._insert(db, probe, source, revision)
                        if source is not None:
                            report.copied += 1
                        else:
                            report.new += 1
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            if cancel is not None and cancel.is_set():
                report.cancelled = True

        report.skipped.extend((s.path, s.reason) for s in scan_result.skipped)
        report.skipped.extend((s.path, s.reason) for s in scan_result.errors)
        report.skipped.sort(key=lambda item: str(item[0]))
        gone: list[tuple[str, _Found]] = []
        for path, found in missing.items():
            if report.cancelled or _under(path, protected):
                report.kept += 1
            else:
                gone.append((path, found))
        with self._transaction() as db:
            if not report.cancelled:
                db.executemany(
                    "DELETE FROM skipped WHERE path = ?",
                    [
                        (text,)
                        for (text,) in db.execute("SELECT path FROM skipped")
                        if _under(_path_from_text(text), folders)
                    ],
                )
            db.executemany(
                "INSERT OR REPLACE INTO skipped (path, reason) VALUES (?, ?)",
                [(_path_text(path), reason) for path, reason in report.skipped],
            )
            db.executemany("DELETE FROM photos WHERE id = ?", [(f.id,) for _, f in gone])
            if gone:
                self._bump(db)
        report.deleted = len(gone)
        self._drop_orphan_thumbnails({found.content_hash for _, found in gone})
        self.refresh_vector_file()
        return report

    @staticmethod
    def _capture_columns(probe: _Probe) -> tuple[Any, ...]:
        entry = probe.entry
        capture = probe.capture or album.read_capture_time(entry.path, entry.mtime_ns)
        return (
            capture.taken_at.isoformat(),
            _wall_text(capture.taken_at),
            capture.source,
            capture.width,
            capture.height,
        )

    def _insert(
        self, db: sqlite3.Connection, probe: _Probe, copy_from: int | None, revision: int
    ) -> int:
        """Add a new photo; with ``copy_from``, as indexed with that photo's embedding."""
        entry = probe.entry
        status, thumbnail, model = "pending", None, None
        if copy_from is not None:
            status = "indexed"
            thumbnail, model = db.execute(
                "SELECT thumbnail, model FROM photos WHERE id = ?", (copy_from,)
            ).fetchone()
        cursor = db.execute(
            "INSERT INTO photos (path, size, mtime_ns, content_hash, taken_at, wall, time_source,"
            " width, height, status, thumbnail, model, vector_revision)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _path_text(entry.path),
                entry.size,
                entry.mtime_ns,
                probe.content_hash,
                *self._capture_columns(probe),
                status,
                thumbnail,
                model,
                revision if copy_from is not None else 0,
            ),
        )
        photo_id = int(cursor.lastrowid or 0)
        if copy_from is not None:
            db.execute(
                "INSERT INTO embeddings (photo_id, vector) "
                "SELECT ?, vector FROM embeddings WHERE photo_id = ?",
                (photo_id, copy_from),
            )
        return photo_id

    def _update_changed(self, db: sqlite3.Connection, photo_id: int, probe: _Probe) -> None:
        entry = probe.entry
        db.execute("DELETE FROM embeddings WHERE photo_id = ?", (photo_id,))
        db.execute(
            "UPDATE photos SET size = ?, mtime_ns = ?, content_hash = ?, taken_at = ?, wall = ?,"
            " time_source = ?, width = ?, height = ?, status = 'pending', error = NULL,"
            " thumbnail = NULL, model = NULL WHERE id = ?",
            (
                entry.size,
                entry.mtime_ns,
                probe.content_hash,
                *self._capture_columns(probe),
                photo_id,
            ),
        )

    def _move(self, db: sqlite3.Connection, old: _Found, probe: _Probe) -> None:
        entry = probe.entry
        db.execute(
            "UPDATE photos SET path = ?, size = ?, mtime_ns = ? WHERE id = ?",
            (_path_text(entry.path), entry.size, entry.mtime_ns, old.id),
        )
        if old.time_source == "mtime" and old.mtime_ns != entry.mtime_ns:
            # the capture time was the file's modification time, which the move changed
            db.execute(
                "UPDATE photos SET taken_at = ?, wall = ?, time_source = ?, width = ?, height = ?"
                " WHERE id = ?",
                (*self._capture_columns(probe), old.id),
            )

    def _drop_orphan_thumbnails(self, hashes: set[str]) -> None:
        """Delete the thumbnails of content no photo in the library has any more."""
        for digest in hashes:
            if self._query("SELECT 1 FROM photos WHERE content_hash = ? LIMIT 1", (digest,)):
                continue
            for thumb in self.thumbnail_dir.glob(f"{digest}.*"):
                with contextlib.suppress(OSError):
                    thumb.unlink()

    # -- writing results ---------------------------------------------------------------------

    def pending(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        roots: Sequence[Path | str] | None = None,
    ) -> list[PendingPhoto]:
        """Photos waiting to be encoded, newest first.

        Parameters
        ----------
        since, until
            Keep photos whose wall-clock capture time is in ``[since, until)``.
        roots
            Keep photos inside these folders (default: all).
        """
        sql, params = self._filters("pending", since, until, None)
        rows = self._query(
            f"SELECT id, path, content_hash FROM photos WHERE {sql} ORDER BY wall DESC, id",
            params,
        )
        folders = [str(_absolute(r)) for r in roots] if roots is not None else None
        found = [(photo_id, _path_from_text(text), digest) for photo_id, text, digest in rows]
        return [
            PendingPhoto(photo_id, Path(path), digest)
            for photo_id, path, digest in found
            if folders is None or _under(path, folders)
        ]

    def save_batch(
        self,
        model_name: str,
        ids: Sequence[int],
        vectors: np.ndarray,
        thumbnails: Sequence[str | None],
        failed: Sequence[tuple[int, str]] = (),
    ) -> None:
        """Commit one batch of results in one transaction: embeddings and statuses together.

        Parameters
        ----------
        model_name
            The model that made ``vectors``; must be :attr:`model_name`.
        ids
            Photos encoded, ``[B]``.
        vectors
            Their embeddings, ``[B, D] float32``, L2-normalised.
        thumbnails
            Thumbnail file names inside :attr:`thumbnail_dir` (None where none was made), ``[B]``.
        failed
            ``(photo id, error text)`` of photos that could not be read.

        Raises
        ------
        RuntimeError
            The writer lock is not held.
        ModelMismatchError
            ``model_name`` is not the library's model.
        """
        self._require_lock()
        stored = self.model_name
        if stored != model_name:
            raise self._mismatch(stored or "none", model_name)
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or len(matrix) != len(ids) or len(thumbnails) != len(ids):
            raise ValueError(f"expected {len(ids)} vectors and thumbnails, got {matrix.shape}")
        with self._transaction() as db:
            before = self._generation(db)
            revision = self._bump(db)
            # an embedding that is overwritten is deleted first, so that the trigger counts it
            db.executemany(
                "DELETE FROM embeddings WHERE photo_id = ?",
                [(int(i),) for i in chain(ids, (i for i, _ in failed))],
            )
            db.executemany(
                "INSERT INTO embeddings (photo_id, vector) VALUES (?, ?)",
                [(int(i), row.tobytes()) for i, row in zip(ids, matrix, strict=True)],
            )
            db.executemany(
                "UPDATE photos SET status = 'indexed', error = NULL, thumbnail = ?, model = ?,"
                " vector_revision = ? WHERE id = ?",
                [(t, model_name, revision, int(i)) for i, t in zip(ids, thumbnails, strict=True)],
            )
            db.executemany(
                "UPDATE photos SET status = 'failed', error = ?, model = NULL WHERE id = ?",
                [(error, int(i)) for i, error in failed],
            )
        self.refresh_vector_file(before)

    @staticmethod
    def _generation(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = 'vector_generation'").fetchone()
        return int(row[0]) if row and row[0] else 0

    def refresh_vector_file(self, previous_generation: int | None = None) -> None:
        """Bring the vector file up to date with the committed embeddings (writer lock held).

        Parameters
        ----------
        previous_generation
            The :attr:`VectorVersion.generation` before the last transaction, when the caller
            knows it: a file made at that generation then only needs the rows added since.

        A file that cannot be written is left stale and a warning is logged: searches then
        rebuild it, or work from memory (see :mod:`core.vectorfile`).
        """
        from core import vectorfile

        self._require_lock()
        model_name = self.model_name
        if model_name is not None:
            vectorfile.refresh(self, model_name, previous_generation)

    # -- reading -----------------------------------------------------------------------------

    @staticmethod
    def _filters(
        status: str | None,
        since: datetime | None,
        until: datetime | None,
        folder: Path | None,
    ) -> tuple[str, list[Any]]:
        """A WHERE clause on ``photos`` for a status (any when None), dates and a folder.

        With a folder, the other terms carry SQLite's unary ``+``, which keeps them out of
        index selection: the range on ``path`` is then searched in its unique index, instead
        of every photo of that status through ``photos_status``.
        """
        plus = "+" if folder is not None else ""
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None:
            clauses.append(f"{plus}status = ?")
            params.append(status)
        if since is not None:
            clauses.append(f"{plus}wall >= ?")
            params.append(_wall_text(since))
        if until is not None:
            clauses.append(f"{plus}wall < ?")
            params.append(_wall_text(until))
        if folder is not None:
            low, high = _prefix_range(_absolute(folder))
            clauses.append("path >= ? AND path < ?")
            params.extend((low, high))
        return " AND ".join(clauses) or "1", params

    def _check_model(self, model_name: str | None) -> None:
        stored = self.model_name
        if model_name is not None and stored is not None and stored != model_name:
            raise self._mismatch(stored, model_name)

    def photo_ids(
        self,
        model_name: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        folder: Path | None = None,
        indexed_only: bool = True,
    ) -> np.ndarray:
        """The ids of the photos that pass the filters, without reading any embedding.

        Parameters
        ----------
        model_name
            When given, the model the caller will compare embeddings of; checked like
            :meth:`vectors` checks it.
        since, until
            Keep photos whose wall-clock capture time is in ``[since, until)``; either may be
            None.
        folder
            Keep photos inside this folder (at any depth).
        indexed_only
            Keep only indexed photos (those :meth:`vectors` returns); with False, pending and
            failed photos too.

        Returns
        -------
        numpy.ndarray
            Photo ids, ``[N] int64``, ascending.

        Raises
        ------
        ModelMismatchError
            ``model_name`` is given and the library holds another model's embeddings.
        """
        self._check_model(model_name)
        where, params = self._filters("indexed" if indexed_only else None, since, until, folder)
        return self._ids(f"SELECT id FROM photos WHERE {where}", params)

    def _ids(self, sql: str, params: Sequence[Any]) -> np.ndarray:
        """The ids ``sql`` selects, ``[N] int64``, ascending."""
        with self._reading(sql, params) as cursor:
            ids = np.fromiter(chain.from_iterable(cursor), dtype=np.int64)
        ids.sort()  # cheaper than ORDER BY, which would sort rows read through an index
        return ids

    def vectors(
        self,
        model_name: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        folder: Path | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The embeddings of the indexed photos, as one matrix.

        Parameters
        ----------
        model_name
            The model the caller will compare them with.
        since, until
            Keep photos whose wall-clock capture time (:func:`core.album.wall_time`) is in
            ``[since, until)``; either may be None.
        folder
            Keep photos inside this folder (at any depth).

        Returns
        -------
        ids : numpy.ndarray
            Photo ids, ``[N] int64``, ascending.
        matrix : numpy.ndarray
            Their embeddings, ``[N, D] float32``, C-contiguous and writable, rows L2-normalised;
            a stored vector of the wrong length (a damaged row) comes back as NaN. ``N`` may be 0
            (``D`` is then the stored length, or 0 for a library never indexed).

        Raises
        ------
        ModelMismatchError
            The library holds another model's embeddings.
        """
        self._check_model(model_name)
        with self.snapshot():
            if since is None and until is None and folder is None:
                count = self._query("SELECT count(*) FROM photos WHERE status = 'indexed'")[0][0]
                # embeddings first: rows come in id order from a scan, never sorted
                return self._read_vectors(
                    count,
                    [
                        (
                            "SELECT e.photo_id, e.vector FROM embeddings AS e CROSS JOIN photos"
                            " AS p ON p.id = e.photo_id WHERE p.status = 'indexed'"
                            " ORDER BY e.photo_id",
                            (),
                        )
                    ],
                )
            return self._vectors_of(self.photo_ids(since=since, until=until, folder=folder))

    def vectors_added(self, model_name: str, after: int) -> tuple[np.ndarray, np.ndarray]:
        """The embeddings written by transactions after revision ``after``.

        Read inside :meth:`snapshot` together with :attr:`vector_version`, and with ``after``
        the revision of an earlier version whose ``removed`` count is the same, these are
        exactly the rows :meth:`vectors` gained between the two versions.

        Returns
        -------
        ids : numpy.ndarray
            Photo ids, ``[K] int64``, ascending.
        matrix : numpy.ndarray
            Their embeddings, ``[K, D] float32``, as :meth:`vectors` returns them.

        Raises
        ------
        ModelMismatchError
            The library holds another model's embeddings.
        """
        self._check_model(model_name)
        with self.snapshot():
            ids = self._ids(
                "SELECT id FROM photos INDEXED BY photos_vector_revision"
                " WHERE vector_revision > ? AND status = 'indexed'",
                (int(after),),
            )
            return self._vectors_of(ids)

    def vectors_after_id(
        self, model_name: str, after: int, limit: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The next ``limit`` embeddings of indexed photos with an id above ``after``.

        Call it inside :meth:`snapshot`, from ``after = 0`` on with the last id returned, to
        read every embedding in blocks of bounded size, in ascending id order.

        Returns
        -------
        ids : numpy.ndarray
            ``[K] int64``, ascending; ``K < limit`` only at the end.
        matrix : numpy.ndarray
            ``[K, D] float32``, as :meth:`vectors` returns them.
        """
        self._check_model(model_name)
        return self._read_vectors(
            int(limit),
            [
                (
                    "SELECT e.photo_id, e.vector FROM embeddings AS e CROSS JOIN photos AS p"
                    " ON p.id = e.photo_id WHERE e.photo_id > ? AND p.status = 'indexed'"
                    " ORDER BY e.photo_id LIMIT ?",
                    (int(after), int(limit)),
                )
            ],
        )

    def indexed_count(self) -> int:
        """How many photos are indexed (have an embedding), counted on an index."""
        return int(self._query("SELECT count(*) FROM photos WHERE status = 'indexed'")[0][0])

    def _vectors_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The embeddings of ``ids`` (``[N] int64``, ascending), looked up by id."""
        wanted = ids.tolist()
        chunks = (wanted[i : i + _SQL_CHUNK] for i in range(0, len(wanted), _SQL_CHUNK))
        return self._read_vectors(
            len(wanted),
            (
                (
                    "SELECT photo_id, vector FROM embeddings"
                    f" WHERE photo_id IN ({', '.join('?' * len(chunk))}) ORDER BY photo_id",
                    chunk,
                )
                for chunk in chunks
            ),
        )

    def _read_vectors(
        self, count: int, queries: Iterable[tuple[str, Sequence[Any]]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Copy the ``(id, vector)`` rows of ``queries``, at most ``count``, into new arrays.

        The rows arrive :data:`_VECTOR_CHUNK` at a time, so little is held besides the result.
        Rows of all the queries together must come in ascending id order.
        """
        ids = np.empty(count, np.int64)
        matrix = np.empty((count, self.embed_dim or 0), np.float32)
        done = 0
        for sql, params in queries:
            with self._reading(sql, params) as cursor:
                while rows := cursor.fetchmany(_VECTOR_CHUNK):
                    done = _copy_vector_rows(rows, ids, matrix, done)
                    del rows  # let this chunk go before the next one is fetched
        if done < count:  # indexed photos without an embedding: only in a damaged library
            ids, matrix = ids[:done].copy(), matrix[:done].copy()
        return ids, matrix

    def _record(self, row: tuple[Any, ...]) -> PhotoRecord:
        photo_id, text, size, mtime_ns, taken_at, source, width, height, status, error, thumb = row
        thumbnail = self.thumbnail_dir / thumb if thumb else None
        if thumbnail is not None and not thumbnail.is_file():
            thumbnail = None
        return PhotoRecord(
            id=photo_id,
            path=Path(_path_from_text(text)),
            size=size,
            mtime_ns=mtime_ns,
            taken_at=datetime.fromisoformat(taken_at) if taken_at else None,
            time_source=source,
            width=width,
            height=height,
            status=status,
            error=error,
            thumbnail=thumbnail,
        )

    def records(self, ids: Iterable[int]) -> list[PhotoRecord]:
        """The photos with these ids, in the order given; ids not in the library are left out."""
        wanted = [int(i) for i in ids]
        found: dict[int, PhotoRecord] = {}
        for start in range(0, len(wanted), _SQL_CHUNK):
            chunk = wanted[start : start + _SQL_CHUNK]
            marks = ", ".join("?" * len(chunk))
            for row in self._query(
                f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE id IN ({marks})", chunk
            ):
                found[row[0]] = self._record(row)
        return [found[i] for i in wanted if i in found]

    def record_for_path(self, path: Path | str) -> PhotoRecord | None:
        """The photo at this path (made absolute, not resolved), or None."""
        rows = self._query(
            f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE path = ?", (_path_text(_absolute(path)),)
        )
        return self._record(rows[0]) if rows else None

    def vector_for(self, photo_id: int, model_name: str) -> np.ndarray | None:
        """The embedding of one photo, ``[D] float32``; None when it has none for that model."""
        rows = self._query(
            "SELECT e.vector FROM embeddings AS e JOIN photos AS p ON p.id = e.photo_id "
            "WHERE e.photo_id = ? AND p.status = 'indexed' AND p.model = ?",
            (int(photo_id), model_name),
        )
        return np.frombuffer(bytearray(rows[0][0]), dtype=np.float32) if rows else None

    def vectors_for(self, ids: Iterable[int], model_name: str) -> dict[int, np.ndarray]:
        """The embeddings of several photos, ``{id: [D] float32}``, in a few queries.

        Photos without an embedding for ``model_name`` (not indexed, another model, unknown id)
        are left out; a damaged stored vector comes back as NaN, as from :meth:`vectors`.
        """
        if model_name != self.model_name:
            return {}
        wanted = np.unique(np.fromiter((int(i) for i in ids), dtype=np.int64))
        with self.snapshot():
            found, matrix = self._vectors_of(wanted)
        return dict(zip(found.tolist(), matrix, strict=True))

    def failures(self) -> list[PhotoRecord]:
        """Photos that could not be read, by path; they are tried again once they change."""
        rows = self._query(f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE status = 'failed'")
        return sorted((self._record(row) for row in rows), key=lambda record: str(record.path))

    def skipped(self) -> list[tuple[Path, str]]:
        """Files and folders the last scans did not index, with the reason, by path."""
        rows = self._query("SELECT path, reason FROM skipped")
        found = sorted((_path_from_text(text), reason) for text, reason in rows)
        return [(Path(path), reason) for path, reason in found]

    def timeline(
        self, now: datetime | None = None, *, folder: Path | None = None
    ) -> album.Timeline:
        """Every photo (or those inside ``folder``) grouped by year, month and day, with how
        many of each are indexed; counted in SQL, no photo is read one by one."""
        where, params = self._filters(None, None, None, folder)
        rows = self._query(
            "SELECT substr(wall, 1, 10), status = 'indexed', count(*) FROM photos "
            f"WHERE wall IS NOT NULL AND {where} GROUP BY 1, 2",
            params,
        )
        items = chain.from_iterable(
            repeat((datetime.fromisoformat(day), bool(indexed)), count)
            for day, indexed, count in rows
        )
        return album.build_timeline(items, now=now)

    def stats(self) -> dict[str, Any]:
        """Counts and sizes, JSON-ready.

        Keys: ``database`` (path), ``database_bytes`` (with its WAL file), ``schema_version``,
        ``model``, ``embed_dim``, ``roots`` (paths), ``photos``, ``indexed``, ``pending``,
        ``failed``, ``skipped``, ``revision``.
        """
        counts = dict.fromkeys(STATUSES, 0)
        counts.update(self._query("SELECT status, count(*) FROM photos GROUP BY status"))
        size = sum(
            p.stat().st_size
            for p in (self.path, self.path.with_name(self.path.name + "-wal"))
            if p.exists()
        )
        return {
            "database": str(self.path),
            "database_bytes": size,
            "schema_version": self._query("PRAGMA user_version")[0][0],
            "model": self.model_name,
            "embed_dim": self.embed_dim,
            "roots": [str(r) for r in self.roots()],
            "photos": sum(counts.values()),
            **counts,
            "skipped": self._query("SELECT count(*) FROM skipped")[0][0],
            "revision": self.revision,
        }


def _copy_vector_rows(
    rows: list[tuple[int, bytes]], ids: np.ndarray, matrix: np.ndarray, at: int
) -> int:
    """Copy ``(photo id, vector BLOB)`` rows to ``ids`` and ``matrix`` from row ``at`` on.

    Returns the row after the last one written. A BLOB of the wrong length gives a NaN row.
    """
    stop = at + len(rows)
    chunk_ids, blobs = zip(*rows, strict=True)
    ids[at:stop] = chunk_ids
    row_bytes = matrix.itemsize * matrix.shape[1]
    if set(map(len, blobs)) == {row_bytes}:
        matrix[at:stop] = np.frombuffer(b"".join(blobs), np.float32).reshape(len(rows), -1)
        return stop
    for row, blob in enumerate(blobs, at):  # a damaged row among them
        matrix[row] = np.frombuffer(blob, np.float32) if len(blob) == row_bytes else np.nan
    return stop


def _probe(item: tuple[album.FileEntry, bool], moving: set[str]) -> _Probe:
    """Hash a new or changed file and read its capture time (not for a probable move)."""
    entry, is_change = item
    try:
        digest = content_hash(entry.path, entry.size)
    except OSError as error:
        reason = "vanished before it was read" if isinstance(error, FileNotFoundError) else None
        return _Probe(entry, None, None, reason or error.strerror or str(error))
    if digest in moving and not is_change:
        return _Probe(entry, digest, None, None)
    return _Probe(entry, digest, album.read_capture_time(entry.path, entry.mtime_ns), None)
