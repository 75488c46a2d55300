"""The health of the library file: what a damaged, foreign or full-disk database tells the user.

Three jobs, all about turning what SQLite reports into one clear line:

- :func:`library_error` maps a :class:`sqlite3.Error` met while reading or writing the library to
  :class:`LibraryDamagedError` (the file is damaged: run :data:`REPAIR_COMMAND`),
  :class:`LibraryFullError` (the disk is full or a file-size limit was reached: every committed
  batch is kept, and running the command again resumes) or a plain library error.
- :func:`check_library_file` refuses, before SQLite touches it, a file that is empty or is not a
  SQLite database, so that neither is silently replaced by a new, empty library.
- :func:`quick_check_due` and :func:`quick_check` run ``PRAGMA quick_check`` when the last check
  is older than :data:`QUICK_CHECK_EVERY_S`, or when the last writer did not close cleanly
  (damage in an index page is otherwise noticed only by the query that needs that page).
"""

from __future__ import annotations

import errno
import sqlite3
import time
from pathlib import Path

from core.errors import ClipsearchError, LibraryError, is_disk_full

REPAIR_COMMAND = "clipsearch-tui library repair"
"""The command that rebuilds a damaged library (:func:`core.repair.repair_library`)."""
SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""
QUICK_CHECK_EVERY_S = 7 * 24 * 3600
"""A library is checked at least once a week when opened (a few seconds for a million photos)."""
QUICK_CHECK_KEY = "quick_check_at"
"""``meta`` key: when the last ``PRAGMA quick_check`` passed (seconds since the epoch)."""
WRITER_KEY = "writer_open"
"""``meta`` key: set while a writer holds the library, cleared when it lets go cleanly."""

_FULL_CODES = frozenset(
    code
    for code in (getattr(sqlite3, "SQLITE_FULL", 13), getattr(sqlite3, "SQLITE_IOERR_WRITE", 778))
)
_FULL_WORDS = ("database or disk is full", "file too large", "no space left")
_DAMAGE_WORDS = ("malformed", "not a database", "corrupt", "disk image")


class LibraryDamagedError(LibraryError):
    """The library file is damaged or is not a library; :data:`REPAIR_COMMAND` rebuilds it."""


class LibraryFullError(LibraryError):
    """The disk is full (or a file-size limit was reached) while writing the library."""


def damaged(path: Path, what: str) -> LibraryDamagedError:
    """The error for a damaged library at ``path``; ``what`` says what was found."""
    return LibraryDamagedError(
        f"the library {path} is damaged ({what}); run: {REPAIR_COMMAND} "
        "(it keeps every embedding it can read and re-encodes only the rest)"
    )


def foreign(path: Path) -> LibraryDamagedError:
    """The error for a library file that another program wrote: not damaged, not ours."""
    return LibraryDamagedError(
        f"{path} is not a clipsearch-tui library (it holds the tables of another program); "
        f"move it elsewhere, or run: {REPAIR_COMMAND} (it moves the file aside, kept as "
        f"{path.name}.damaged-DATE, and starts an empty library)"
    )


def full(path: Path, what: str) -> LibraryFullError:
    """The error for a write to the library at ``path`` that found no room."""
    return LibraryFullError(
        f"cannot write the library {path} ({what}: the disk is full, a file-size limit was "
        "reached, or the disk failed); every batch committed before is kept: free some space "
        "and run the command again to resume"
    )


def is_full(error: BaseException) -> bool:
    """Whether ``error`` says the disk is full or a file-size limit was reached."""
    if is_disk_full(error) or (isinstance(error, OSError) and error.errno == errno.EFBIG):
        return True
    code = getattr(error, "sqlite_errorcode", None)
    if code in _FULL_CODES:
        return True
    text = str(error).lower()
    return any(words in text for words in _FULL_WORDS)


def is_damage(error: BaseException) -> bool:
    """Whether ``error`` says the database file is damaged or is not a database."""
    if isinstance(error, sqlite3.DatabaseError) and not isinstance(
        error, sqlite3.OperationalError | sqlite3.IntegrityError | sqlite3.ProgrammingError
    ):
        return True
    text = str(error).lower()
    return any(words in text for words in _DAMAGE_WORDS)


def library_error(path: Path, error: sqlite3.Error, doing: str) -> ClipsearchError | None:
    """The one-line error for ``error``, met while ``doing`` (``"read"``, ``"write"``) the
    library; None when it is neither damage nor a full disk (the caller words it)."""
    what = " ".join(str(error).split()) or type(error).__name__
    if is_full(error):
        return full(path, what)
    if is_damage(error):
        return damaged(path, what)
    return None


def check_library_file(path: Path) -> None:
    """Refuse a library file that is empty or not a SQLite database, before SQLite opens it.

    A missing file is fine (a new library is made). SQLite would quietly turn an empty file into
    a new database and report a foreign one only at the first query; both would cost the user
    the library they thought they had.

    Raises
    ------
    LibraryDamagedError
        The file is empty or does not start with the SQLite header.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError:
        return  # SQLite reports what is wrong with it
    if not head:
        raise damaged(path, "the file is empty")
    if head != SQLITE_HEADER:
        raise damaged(path, "the file is not a SQLite database")


def is_foreign(db: sqlite3.Connection) -> bool:
    """Whether an existing database holds tables but was never a library (schema version 0)."""
    if db.execute("PRAGMA user_version").fetchone()[0] != 0:
        return False
    row = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    return bool(row[0])


def quick_check_due(db: sqlite3.Connection, now: float | None = None) -> bool:
    """Whether the library should be checked now: never checked, checked more than
    :data:`QUICK_CHECK_EVERY_S` ago, or its last writer did not close cleanly."""
    rows = dict(
        db.execute(
            "SELECT key, value FROM meta WHERE key IN (?, ?)", (QUICK_CHECK_KEY, WRITER_KEY)
        ).fetchall()
    )
    if rows.get(WRITER_KEY):
        return True
    try:
        last = float(rows.get(QUICK_CHECK_KEY) or 0)
    except ValueError:
        return True
    return (time.time() if now is None else now) - last > QUICK_CHECK_EVERY_S


def quick_check(db: sqlite3.Connection) -> str | None:
    """Run ``PRAGMA quick_check``; None when the database is sound, else its first finding."""
    rows = db.execute("PRAGMA quick_check(5)").fetchall()
    findings = [str(row[0]) for row in rows]
    if findings == ["ok"]:
        return None
    return "; ".join(findings) or "quick_check found a problem"
