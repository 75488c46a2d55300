"""Keeping the library in line with the album: its folders, and what a scan found in them.

:class:`AlbumSync` adds the album folders (:meth:`AlbumSync.add_roots`) and :meth:`AlbumSync.sync`
to the database: new photos are read (content hash, capture time) and become pending, changed
ones pending again, moved and copied ones keep their embedding, deleted ones are removed.

Content hash
------------
:func:`content_hash` is the SHA-1 of the file size, the first 64 KiB and the last 64 KiB (the
whole file when it is at most 128 KiB): two reads, however big the photo. It recognises a
photo that was moved or renamed, or copied, so that its embedding is reused without
decoding it again. Two different files with the same size whose first and last 64 KiB are equal
(an uncompressed TIFF or BMP edited only in the middle) have the same content hash; the file
digest below tells them apart.

File digest
-----------
So a stored embedding is reused only for the same photo, the library also keeps
:func:`file_digest`, a BLAKE2b of the whole file read in chunks. Before the sync treats a new
path as a move or a copy it compares the new file's digest with the stored one (read from the
old file when none is stored); when they differ, or the old digest cannot be known, the new file
is a new photo and is encoded on its own. The sync reads a new file whole only when its content
hash is that of a photo gone from the scan or of an indexed one; every other photo gets its
digest when it is encoded (:mod:`core.indexer` reads it just before decoding), so a first sync
reads two 64 KiB pieces of each photo, not the whole album.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from core.capture_time import CaptureTime, read_capture_time
from core.database import (
    LibraryDatabase,
    absolute_path,
    is_under,
    path_from_text,
    path_text,
    wall_text,
)
from core.errors import AlbumNotFoundError
from core.scan import FileEntry, ScanResult
from core.thumbnails import remove_thumbnails

HASH_CHUNK = 64 * 1024
"""Bytes read from each end of a file for :func:`content_hash`."""

DIGEST_CHUNK = 1024 * 1024
"""Bytes read at a time by :func:`file_digest`."""

SYNC_CHUNK = 256  # photos hashed and read per transaction during a sync
SYNC_WORKERS = 4


@dataclass(slots=True)
class SyncReport:
    """What :meth:`AlbumSync.sync` changed.

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


def file_digest(path: str | os.PathLike[str]) -> str:
    """Hex BLAKE2b (32 bytes) of a whole file, read :data:`DIGEST_CHUNK` bytes at a time.

    Raises
    ------
    OSError
        The file cannot be read.
    """
    digest = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as handle:
        while chunk := handle.read(DIGEST_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def digest_or_none(path: str | os.PathLike[str]) -> str | None:
    """:func:`file_digest`, or None when the file cannot be read."""
    try:
        return file_digest(path)
    except OSError:
        return None


class _Found(NamedTuple):
    """A photo row as :meth:`AlbumSync.sync` compares it with the scan."""

    id: int
    size: int
    mtime_ns: int
    content_hash: str
    status: str
    time_source: str | None
    file_digest: str | None


class _Probe(NamedTuple):
    """A new or changed file, read: its hash and capture time (None when not read)."""

    entry: FileEntry
    content_hash: str | None
    capture: CaptureTime | None
    error: str | None
    file_digest: str | None = None


class _Owners(NamedTuple):
    """The album folders a sync covers, and the library's other album folders."""

    folders: list[str]
    others: list[str]

    def synced(self, path: str) -> bool:
        """Whether ``path`` belongs to one of ``folders``: the deepest album folder holding it
        is one of them, not one of ``others``."""
        if not is_under(path, self.folders):
            return False
        holders = [len(other) for other in self.others if is_under(path, [other])]
        if not holders:
            return True
        deepest = max(holders)
        return any(len(f) > deepest and is_under(path, [f]) for f in self.folders)


class AlbumSync(LibraryDatabase):
    """The library database with its album folders and the sync with a scan of them."""

    def canonical_folder(self, folder: Path | str) -> Path:
        """``folder`` as this library names it.

        Absolute and normalised (:func:`core.database.absolute_path`); and when it is one of
        the album folders, or inside one, reached another way (through a symbolic link), the
        path under that album folder, so that the same photos are never known under two
        names. Any other folder is kept as given: a symbolic link the user chose is not
        resolved.
        """
        path = absolute_path(folder)
        roots = self.roots()
        texts = [str(root) for root in roots]
        if is_under(str(path), texts):
            return path
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError):
            return path
        for root in roots:
            real_root = os.path.realpath(root)
            if is_under(real, [real_root]):
                return root / os.path.relpath(real, real_root) if real != real_root else root
        return path

    def add_roots(self, paths: Iterable[Path | str]) -> list[Path]:
        """Add album folders (``~`` expanded, made absolute, not resolved: see
        :meth:`canonical_folder`); returns them.

        Raises
        ------
        core.AlbumNotFoundError
            A path is not an existing folder; nothing is added then.
        """
        folders = [self.canonical_folder(p) for p in paths]
        for folder in folders:
            if not folder.is_dir():
                raise AlbumNotFoundError(f"photo folder not found: {folder}")
        now = datetime.now().isoformat(timespec="seconds")
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO roots (path, added_at) VALUES (?, ?)",
                [(path_text(f), now) for f in folders],
            )
        return folders

    def roots(self) -> list[Path]:
        """The album folders, sorted."""
        rows = self._query("SELECT path FROM roots")
        return [Path(path) for path in sorted(path_from_text(text) for (text,) in rows)]

    # -- sync --------------------------------------------------------------------------------

    def sync(
        self,
        scan_result: ScanResult,
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
          *copy*: the embedding is copied. Either only when the whole file's digest is the
          stored one too; otherwise the file is new.
        - A path whose size or modification time differs is *changed*: read again, its
          embedding dropped, pending.
        - A path with the same size and modification time is *unchanged* and not opened at all.
        - A stored photo under ``roots`` that the scan did not list is *deleted*, unless the scan
          was cancelled or the photo lies under a folder or file in ``scan_result.errors``.
          A photo belongs to the deepest album folder that holds it: one that belongs to
          another of the library's album folders inside ``roots`` is left alone, since a scan
          of ``roots`` alone may list it under another path (that folder being a link to one
          the scan reaches first) and the sync of that folder keeps it.

        Work is committed every :data:`SYNC_CHUNK` photos, so a crash or a cancel keeps what was
        read. Takes the writer lock for the call.

        Parameters
        ----------
        scan_result
            What :func:`core.scan.scan` found.
        roots
            The folders that were scanned (default: :meth:`roots`); photos outside them, and
            photos that belong to another album folder inside them, are left alone.
        cancel
            When set, stops after the current chunk; nothing is deleted then.
        progress
            Called with ``(done, total)`` new and changed photos read so far.

        Raises
        ------
        LibraryBusyError
            Another process is indexing.
        """
        folders = [str(absolute_path(r)) for r in roots] if roots is not None else None
        with self.indexing_lock():
            known = [str(r) for r in self.roots()]
            if folders is None:
                folders = known
            others = [root for root in known if root not in folders and is_under(root, folders)]
            return self._sync(scan_result, _Owners(folders, others), cancel, progress)

    def _sync(
        self,
        scan_result: ScanResult,
        owners: _Owners,
        cancel: threading.Event | None,
        progress: Callable[[int, int], None] | None,
    ) -> SyncReport:
        report = SyncReport(cancelled=scan_result.cancelled)
        stored = {
            path_from_text(row[1]): _Found(row[0], *row[2:])
            for row in self._query(
                "SELECT id, path, size, mtime_ns, content_hash, status, time_source, file_digest"
                " FROM photos"
            )
        }
        new: list[FileEntry] = []
        changed: list[FileEntry] = []
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
            if path not in listed and owners.synced(path)
        }
        vanished_by_hash: dict[str, list[str]] = {}
        for path, found in missing.items():
            vanished_by_hash.setdefault(found.content_hash, []).append(path)
        indexed_by_hash: dict[str, list[tuple[str, _Found]]] = {}
        for path, found in stored.items():
            if found.status == "indexed" and path not in missing:
                indexed_by_hash.setdefault(found.content_hash, []).append((path, found))

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
                known = moving | indexed_by_hash.keys()
                read = functools.partial(_probe, moving=moving, known=known)
                probes = list(pool.map(read, chunk))
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
                        old_path = self._same_file(db, probe, candidates or [], missing)
                        if old_path is not None:
                            assert candidates is not None
                            candidates.remove(old_path)
                            old = missing.pop(old_path)
                            self._move(db, old, probe)
                            report.moved += 1
                            if old.status == "indexed":
                                indexed_by_hash.setdefault(probe.content_hash, []).append(
                                    (str(entry.path), old._replace(file_digest=probe.file_digest))
                                )
                            continue
                        copies = indexed_by_hash.get(probe.content_hash, [])
                        found_by_path = dict(copies)
                        source_path = self._same_file(
                            db, probe, [path for path, _ in copies], found_by_path
                        )
                        source = found_by_path[source_path].id if source_path else None
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
            if report.cancelled or is_under(path, protected):
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
                        if owners.synced(path_from_text(text))
                    ],
                )
            db.executemany(
                "INSERT OR REPLACE INTO skipped (path, reason) VALUES (?, ?)",
                [(path_text(path), path_text(reason)) for path, reason in report.skipped],
            )
            db.executemany("DELETE FROM photos WHERE id = ?", [(f.id,) for _, f in gone])
            if gone:
                self._bump(db)
        report.deleted = len(gone)
        self._drop_orphan_thumbnails(
            {found.content_hash for _, found in gone}
            | {found.file_digest for _, found in gone if found.file_digest is not None}
        )
        self.refresh_vector_file()
        return report

    @staticmethod
    def _same_file(
        db: sqlite3.Connection,
        probe: _Probe,
        candidates: Sequence[str],
        found: dict[str, _Found],
    ) -> str | None:
        """The first candidate path whose whole file is the probed one's, or None.

        A candidate without a stored digest (a library made before digests were kept) is read
        from its file and the digest stored, or skipped when the file is gone.
        """
        new_digest = probe.file_digest
        if new_digest is None:
            return None
        for path in candidates:
            old = found[path]
            old_digest = old.file_digest
            if old_digest is None:
                old_digest = digest_or_none(path)
                if old_digest is None:
                    continue
                db.execute("UPDATE photos SET file_digest = ? WHERE id = ?", (old_digest, old.id))
                found[path] = old._replace(file_digest=old_digest)
            if old_digest == new_digest:
                return path
        return None

    @staticmethod
    def _capture_columns(probe: _Probe) -> tuple[Any, ...]:
        entry = probe.entry
        capture = probe.capture or read_capture_time(entry.path, entry.mtime_ns)
        return (
            capture.taken_at.isoformat(),
            wall_text(capture.taken_at),
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
            " width, height, status, thumbnail, model, vector_revision, file_digest)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                path_text(entry.path),
                entry.size,
                entry.mtime_ns,
                probe.content_hash,
                *self._capture_columns(probe),
                status,
                thumbnail,
                model,
                revision if copy_from is not None else 0,
                probe.file_digest,
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
            " thumbnail = NULL, model = NULL, file_digest = ? WHERE id = ?",
            (
                entry.size,
                entry.mtime_ns,
                probe.content_hash,
                *self._capture_columns(probe),
                probe.file_digest,
                photo_id,
            ),
        )

    def _move(self, db: sqlite3.Connection, old: _Found, probe: _Probe) -> None:
        entry = probe.entry
        db.execute(
            "UPDATE photos SET path = ?, size = ?, mtime_ns = ?, file_digest = ? WHERE id = ?",
            (path_text(entry.path), entry.size, entry.mtime_ns, probe.file_digest, old.id),
        )
        if old.status == "failed":
            # the failure belongs to the old path (often a rename while the photo waited to be
            # encoded): the photo under its new name is tried again
            db.execute("UPDATE photos SET status = 'pending', error = NULL WHERE id = ?", (old.id,))
        if old.time_source == "mtime" and old.mtime_ns != entry.mtime_ns:
            # the capture time was the file's modification time, which the move changed
            db.execute(
                "UPDATE photos SET taken_at = ?, wall = ?, time_source = ?, width = ?, height = ?"
                " WHERE id = ?",
                (*self._capture_columns(probe), old.id),
            )

    def _drop_orphan_thumbnails(self, hashes: set[str]) -> None:
        """Delete the thumbnails of content no photo in the library has any more.

        A thumbnail is named after the photo's file digest, or its content hash where the
        library has no digest (:meth:`core.library.Library.pending`).
        """
        if not hashes:
            return
        kept = {digest for (digest,) in self._query("SELECT content_hash FROM photos")}
        kept.update(
            digest
            for (digest,) in self._query(
                "SELECT file_digest FROM photos WHERE file_digest IS NOT NULL"
            )
        )
        for digest in hashes - kept:
            remove_thumbnails(self.thumbnail_dir, digest)

    def refresh_vector_file(self, previous_generation: int | None = None) -> None:
        """Bring what is derived from the embeddings up to date after a write; a hook.

        :class:`core.library.Library` rewrites its vector file here; the sync calls it after
        the photos it deleted are committed.
        """


def _probe(item: tuple[FileEntry, bool], moving: set[str], known: set[str]) -> _Probe:
    """Hash a new or changed file and read its capture time (not for a probable move).

    The whole file is read for its digest only when its content hash is in ``known`` (a photo
    gone from the scan or an indexed one: it may be a move or a copy); other photos get theirs
    when they are encoded.
    """
    entry, is_change = item
    try:
        digest = content_hash(entry.path, entry.size)
        whole = file_digest(entry.path) if digest in known and not is_change else None
    except OSError as error:
        reason = "vanished before it was read" if isinstance(error, FileNotFoundError) else None
        return _Probe(entry, None, None, reason or error.strerror or str(error))
    if digest in moving and not is_change:
        return _Probe(entry, digest, None, None, whole)
    return _Probe(entry, digest, read_capture_time(entry.path, entry.mtime_ns), None, whole)
