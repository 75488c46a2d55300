"""The library database: its file, schema and migrations, transactions, and the writer lock.

One SQLite database, ``library.sqlite`` in :func:`core.paths.data_dir` by default (never inside
the album), in WAL mode: any number of processes read it while one writes, and readers never
wait. Writing (a sync, an indexing run) takes the *indexing lock* first, an exclusive
:mod:`filelock` lock on ``library.sqlite.lock`` beside the database; a second writer gets
:class:`LibraryBusyError` at once instead of waiting.

:class:`LibraryDatabase` is the connection and its plumbing; :class:`core.sync.AlbumSync` adds
the album folders and the sync with them, and :class:`core.library.Library` the records and
vectors.

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
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Self

from filelock import FileLock, Timeout

from core import health
from core.capture_time import wall_time
from core.errors import ClipsearchError, LibraryError
from core.paths import cache_dir, data_dir

DATABASE_NAME = "library.sqlite"
"""File name of the library database inside :func:`core.paths.data_dir`."""

VECTOR_FILE_SUFFIX = ".vectors"
"""Added to the database file's name to name its vector file (:mod:`core.vectorfile`)."""

THUMBNAIL_FOLDER = "thumbnails"
"""Sub-folder of :func:`core.paths.cache_dir` that holds the thumbnails."""

STATUSES = ("pending", "indexed", "failed")
"""Values of a photo's ``status``: waiting to be encoded, encoded, could not be read."""

PAGE_SIZE = 16384
BUSY_TIMEOUT_S = 10.0
_WALL_FORMAT = "microseconds"


class LibraryBusyError(LibraryError):
    """Another process holds the indexing lock of this library."""


class ModelMismatchError(LibraryError):
    """The library holds embeddings of another model than the one asked for."""


class VectorVersion(NamedTuple):
    """Where the embeddings of a library stand (:attr:`Library.vector_version`).

    Attributes
    ----------
    revision
        :attr:`Library.revision`.
    removed
        How many embeddings were ever deleted or overwritten. While it stays the same, the
        embeddings of a later version are those of an earlier one plus the ones
        :meth:`core.library.Library.vectors_added` returns.
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


def default_database_path() -> Path:
    """``library.sqlite`` in the data folder (``$CLIPSEARCH_HOME/data`` when that is set)."""
    return data_dir() / DATABASE_NAME


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


def _migrate_6_file_digest(db: sqlite3.Connection) -> None:
    """Store a digest of each photo's whole file (:func:`core.sync.file_digest`).

    NULL for photos read before; the sync then reads it from the file when it needs it.
    """
    db.execute("ALTER TABLE photos ADD COLUMN file_digest TEXT")


Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: tuple[Migration, ...] = (
    _migrate_1_tables,
    _migrate_2_indexes,
    _migrate_3_exact_paths,
    _migrate_4_vector_changes,
    _migrate_5_vector_generation,
    _migrate_6_file_digest,
)
"""Schema changes in order; ``PRAGMA user_version`` counts how many a database has had."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The ``user_version`` of a database this version writes."""


def wall_text(moment: datetime) -> str:
    """Naive wall-clock time as fixed-width ISO text, so that text order is time order."""
    return wall_time(moment).isoformat(timespec=_WALL_FORMAT)


_PATH_ESCAPE = "\ufdd0"
_UNSTORABLE = re.compile("[\ud800-\udfff\ufdd0]")
_ESCAPED = re.compile("\ufdd0([0-9a-f]{4})")


def _escape_code_point(char: str) -> str:
    return f"{_PATH_ESCAPE}{ord(char):04x}"


def path_text(path: str | os.PathLike[str]) -> str:
    """The text that stands for ``path`` in the database (see *Paths* above).

    Lone surrogates (bytes of a name that is not valid UTF-8, under Python's
    ``surrogateescape``) and U+FDD0 become U+FDD0 and four hex digits; the rest is unchanged.
    """
    text = os.fspath(path)
    if text.isascii():
        return text
    return _UNSTORABLE.sub(lambda match: _escape_code_point(match.group()), text)


def path_from_text(text: str) -> str:
    """The path that :func:`path_text` turned into ``text``."""
    if _PATH_ESCAPE not in text:
        return text
    return _ESCAPED.sub(lambda match: chr(int(match.group(1), 16)), text)


def is_under(path: str, folders: Sequence[str]) -> bool:
    """Whether ``path`` is one of ``folders`` or inside one of them."""
    return any(
        path == f or path.startswith(f if f.endswith(os.sep) else f + os.sep) for f in folders
    )


def prefix_range(folder: Path) -> tuple[str, str]:
    """``(low, high)``: the stored text of a path is in ``[low, high)`` iff it is in ``folder``."""
    text = path_text(folder)
    base = text if text.endswith(os.sep) else text + os.sep
    return base, base[:-1] + chr(ord(os.sep) + 1)


def absolute_path(path: Path | str) -> Path:
    """``path`` with ``~`` expanded, made absolute and normalised (``a/./b`` and ``a/x/../b``
    are ``a/b``), symbolic links not resolved: one text for one place, as it is stored."""
    return Path(os.path.normpath(Path(path).expanduser().absolute()))


class _WriterLock:
    """The indexing lock: exclusive across processes, non-blocking, re-entrant in this object.

    A :class:`filelock.FileLock` (``flock`` on POSIX, ``LockFileEx`` on Windows) on its own
    file, shared by the threads that use one :class:`LibraryDatabase`: a sync started on one
    thread holds it for the writes of another.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = FileLock(path, thread_local=False, mode=0o644)
        self._guard = threading.Lock()

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    @property
    def depth(self) -> int:
        """How many times this object holds the lock now (0 when it does not)."""
        return self._lock.lock_counter

    def acquire(self, what: str) -> None:
        """Take the lock for ``what`` (the work that needs it: "the repair"), or raise
        :class:`LibraryBusyError` when another process holds it and
        :class:`~core.errors.LibraryError` when its file cannot be written (a read-only
        folder)."""
        with self._guard:
            try:
                self._lock.acquire(blocking=False)
            except Timeout:
                raise LibraryBusyError(
                    f"another clipsearch-tui process is indexing this library, so {what} "
                    "cannot start; wait for it to finish, or stop it"
                ) from None
            except OSError as error:
                raise LibraryError(f"cannot write {self.path}: {error.strerror or error}") from None

    def release(self) -> None:
        with self._guard:
            if self._lock.is_locked:
                self._lock.release()


def _why(path: Path, error: BaseException) -> str:
    """``error``, with the reason when the library's folder cannot be written.

    SQLite's own words for that are "unable to open database file" or "attempt to write a
    readonly database"; the library writes beside its file (the journal, the lock) even to search.
    """
    folder = path.parent
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return str(error)
    if read_only:
        return f"{error} (its folder {folder} is on a read-only file system)"
    if not os.access(folder, os.W_OK):
        return f"{error} (its folder {folder} is not writable: the library writes beside its file)"
    return str(error)


class LibraryDatabase:
    """The library's database connection: transactions, snapshots, the revision and the lock.

    The base of :class:`core.library.Library`, which is what callers open and which documents
    the attributes (``path``, ``thumbnail_dir``, ``vector_file_path``). Every call holds an
    internal lock around the one connection, so threads may share an object; only one process
    at a time can sync or index (:meth:`indexing_lock`).
    """

    def __init__(self, path: Path, thumbnail_dir: Path) -> None:
        self.path = path
        self.thumbnail_dir = thumbnail_dir
        self.vector_file_path: Path | None = path.with_name(path.name + VECTOR_FILE_SUFFIX)
        self._mutex = threading.RLock()
        self._writer = _WriterLock(path.with_name(path.name + ".lock"))
        health.check_library_file(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as error:
            raise LibraryError(f"cannot open the library {path}: {_why(path, error)}") from error
        try:
            if health.is_foreign(self._db):  # before WAL mode would change its header
                raise health.foreign(path)
            self._configure()
            self._migrate()
            self._check_health()
        except sqlite3.DatabaseError as error:
            self._db.close()
            known = health.library_error(path, error, "open")
            raise known or LibraryError(
                f"cannot open the library {path}: {_why(path, error)}"
            ) from error
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open(cls, db_path: Path | None = None, *, thumbnail_dir: Path | None = None) -> Self:
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
        path = absolute_path(db_path) if db_path is not None else default_database_path()
        thumbs = absolute_path(thumbnail_dir) if thumbnail_dir else cache_dir() / THUMBNAIL_FOLDER
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

    def _check_health(self) -> None:
        """``PRAGMA quick_check`` when one is due (:func:`core.health.quick_check_due`).

        A writer that did not close cleanly left :data:`core.health.WRITER_KEY` set; it counts
        only when no live process holds the writer lock now.
        """
        db = self._db
        if not health.quick_check_due(db):
            return
        unclean = bool(self._meta(health.WRITER_KEY))
        try:
            self._writer.acquire("the health check")
        except LibraryBusyError:
            if unclean:
                return  # a writer is at work: the mark is its own
        try:
            finding = health.quick_check(db)
            if finding is not None:
                raise health.damaged(self.path, f"quick_check: {finding}")
            with self._transaction() as writing:
                self._set_meta(writing, health.QUICK_CHECK_KEY, str(time.time()))
                self._set_meta(writing, health.WRITER_KEY, None)
        except health.LibraryDamagedError:
            raise
        except LibraryError:
            pass  # busy or read-only: check again next time
        finally:
            if self._writer.held:
                self._writer.release()

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
            except BaseException as error:
                self._rollback()
                if isinstance(error, sqlite3.Error):
                    raise self._error(error, "write") from error
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                self._rollback()
                raise self._error(error, "write") from error

    def _rollback(self) -> None:
        """Roll back the open transaction, if SQLite has not done so already (a full disk)."""
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _error(self, error: sqlite3.Error, doing: str) -> ClipsearchError:
        """The one-line error for ``error``, met while ``doing`` (read, write) the library."""
        known = health.library_error(self.path, error, doing)
        return known or LibraryError(f"cannot {doing} the library {self.path}: {error}")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._reading(sql, params) as cursor:
            return cursor.fetchall()

    @contextlib.contextmanager
    def _reading(self, sql: str, params: Sequence[Any] = ()) -> Iterator[sqlite3.Cursor]:
        """A cursor over the rows of ``sql``, to be read inside the block (which holds the lock)."""
        with self._mutex:
            try:
                cursor = self._db.execute(sql, params)
            except sqlite3.DatabaseError as error:
                raise self._error(error, "read") from error
            try:
                yield cursor
            except sqlite3.DatabaseError as error:
                raise self._error(error, "read") from error
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
            failed = True
            try:
                yield
                failed = False
            finally:
                try:
                    self._db.execute("COMMIT")  # ends the read; nothing was written
                except sqlite3.Error as error:
                    self._rollback()
                    if not failed:  # else the error that is on its way says more
                        raise self._error(error, "read") from error

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
        self._writer.acquire("this run")
        first = self._writer.depth == 1 and not self._db.in_transaction
        try:
            if first:  # marks a writer at work, until it lets go cleanly
                with self._transaction() as db:
                    self._set_meta(db, health.WRITER_KEY, str(os.getpid()))
            yield
        finally:
            try:
                if first:
                    with contextlib.suppress(LibraryError):
                        with self._transaction() as db:
                            self._set_meta(db, health.WRITER_KEY, None)
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
