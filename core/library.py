"""The library: what is known about every photo of the album, and its embedding, on disk.

:class:`Library` is what callers open (:meth:`Library.open`): the records of the photos (capture
time, status, thumbnail), the model their embeddings belong to, writing the results of an
indexing run, and reading vectors for a search. The database itself is :mod:`core.database`, the
sync with the album :mod:`core.sync`.

Embeddings are written in the same transaction as the status that says the photo is indexed, so
after a crash every photo is either indexed with its vector or still pending; there is never a
vector without an ``indexed`` status, nor the reverse.

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
"""

from __future__ import annotations

import shlex
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, repeat
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from core.database import (
    STATUSES,
    ModelMismatchError,
    absolute_path,
    is_under,
    path_from_text,
    path_text,
    prefix_range,
    wall_text,
)
from core.sync import AlbumSync, digest_or_none
from core.timeline import Timeline, build_timeline

_SQL_CHUNK = 500  # ids per ``IN (...)`` list
_VECTOR_CHUNK = 256  # rows fetched at a time while reading vectors: 512 KiB for D = 512


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
        Capture time (see :func:`core.capture_time.read_capture_time`): aware when the photo
        recorded its UTC offset, naive otherwise. Compare through
        :func:`core.capture_time.wall_time`.
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


class PendingPhoto(NamedTuple):
    """A photo waiting to be encoded: its id, path and the name of its thumbnail.

    ``content_hash`` is the digest of the whole file when the library has it, else the content
    hash: the thumbnail is stored under it, so two different files whose content hashes collide
    get their own thumbnails.
    """

    id: int
    path: Path
    content_hash: str


class EncodedPhoto(NamedTuple):
    """One photo for :meth:`Library.add_encoded`: what a sync would have read from its file.

    Attributes
    ----------
    path
        Where the photo is (made absolute; the file is not read).
    content_hash
        Its content hash (any text; :func:`core.sync.content_hash` for a real file).
    taken_at
        Its capture time; None for unknown.
    size, mtime_ns, width, height, time_source
        As in :class:`PhotoRecord`.
    """

    path: Path | str
    content_hash: str
    taken_at: datetime | None = None
    size: int = 0
    mtime_ns: int = 0
    width: int | None = None
    height: int | None = None
    time_source: str | None = None


_PHOTO_COLUMNS = (
    "id, path, size, mtime_ns, taken_at, time_source, width, height, status, error, thumbnail"
)


class Library(AlbumSync):
    """The photo library on disk: photos, their capture times, status and embeddings.

    The connection, schema and lock are :class:`~core.database.LibraryDatabase`'s and the album
    sync :class:`~core.sync.AlbumSync`'s. What is left here is one job, the photo rows and
    their embeddings, read and written through one set of filters (:meth:`_filters`), one model
    check and one vector-file refresh, which a further split would have to share. That is about
    640 lines, of which 240 are docstrings and 360 code (the writers, ``save_batch`` and
    ``add_encoded``, about 150 of them): over the 400 the house style suggests, kept whole
    because a reader and a writer class would each need the other's filters and generation.

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

    @property
    def model_weights(self) -> str | None:
        """The sha256 of the checkpoint the stored embeddings' model was installed from; None
        when the library is new, or was indexed before it recorded one."""
        return self._meta("model_weights")

    def _reindex_command(self, model: str) -> str:
        """The command that encodes this library's album folders again with ``model``: the
        folders named when there are at most three of them, else ``FOLDER...``."""
        roots = self.roots()
        folders = (
            " ".join(shlex.quote(str(root)) for root in roots)
            if 0 < len(roots) <= 3
            else "FOLDER..."
        )
        return f"clipsearch-tui index {folders} --model {model} --reindex"

    def _mismatch(self, stored: str, wanted: str) -> ModelMismatchError:
        return ModelMismatchError(
            f"this library was indexed with model {stored!r}; use --model {stored}, or re-index "
            f"it with {wanted!r} ({self._reindex_command(wanted)}), which encodes every photo "
            "again"
        )

    def _other_weights(self, name: str) -> ModelMismatchError:
        return ModelMismatchError(
            f"this library was indexed with other weights of model {name!r} (it was installed "
            f"again since, from another checkpoint); encode every photo again with the weights "
            f"installed now: {self._reindex_command(name)}"
        )

    def use_model(
        self, name: str, embed_dim: int, *, weights: str | None = None, replace: bool = False
    ) -> None:
        """Make ``name`` the model of this library.

        Parameters
        ----------
        name
            The model's name.
        embed_dim
            Its embedding length D.
        weights
            The sha256 of the checkpoint it was installed from (:attr:`ClipModel.weights`), when
            known. A library records it with its first embeddings; one indexed before it did
            records it now.
        replace
            When the library holds another model's embeddings, or the same model's from other
            weights: drop them all and make every indexed photo pending again (thumbnails and
            capture times are kept).

        Raises
        ------
        ModelMismatchError
            The library holds another model's embeddings, or embeddings of other weights of
            this model, and ``replace`` is False.
        LibraryBusyError
            ``replace`` is needed and another process is indexing.
        """
        stored, stored_weights = self.model_name, self.model_weights
        same_weights = weights is None or stored_weights is None or weights == stored_weights
        if stored == name and self.embed_dim == embed_dim and same_weights:
            if weights is not None and stored_weights is None:
                with self._transaction() as db:
                    self._set_meta(db, "model_weights", weights)
            return
        if stored is not None and not replace:
            if stored != name:
                raise self._mismatch(stored, name)
            if not same_weights:
                raise self._other_weights(name)
        with self.indexing_lock(), self._transaction() as db:
            db.execute("DELETE FROM embeddings")
            db.execute(
                "UPDATE photos SET status = 'pending', model = NULL WHERE status = 'indexed'"
            )
            self._set_meta(db, "model", name)
            self._set_meta(db, "embed_dim", str(int(embed_dim)))
            if weights is None:
                db.execute("DELETE FROM meta WHERE key = 'model_weights'")
            else:
                self._set_meta(db, "model_weights", weights)
            self._bump(db)

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
            f"SELECT id, path, COALESCE(file_digest, content_hash) FROM photos WHERE {sql}"
            " ORDER BY wall DESC, id",
            params,
        )
        folders = [str(absolute_path(r)) for r in roots] if roots is not None else None
        found = [(photo_id, path_from_text(text), digest) for photo_id, text, digest in rows]
        return [
            PendingPhoto(photo_id, Path(path), digest)
            for photo_id, path, digest in found
            if folders is None or is_under(path, folders)
        ]

    def save_batch(
        self,
        model_name: str,
        ids: Sequence[int],
        vectors: np.ndarray,
        thumbnails: Sequence[str | None],
        failed: Sequence[tuple[int, str]] = (),
        digests: Sequence[str | None] | None = None,
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
        digests
            The whole-file digest (:func:`core.sync.file_digest`) of each encoded photo as it
            was read for encoding, ``[B]``; None where it could not be read. It replaces the
            stored one (the sync reads it only for a photo that may be a move or a copy).
            Without it, each photo that has none stored is read for it here, before the
            transaction: an indexed photo needs one, so that a later move keeps its vector.

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
        if digests is None:
            digests = self._digests_read_now(ids)
        elif len(digests) != len(ids):
            raise ValueError(f"expected {len(ids)} digests, got {len(digests)}")
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
                " vector_revision = ?, file_digest = COALESCE(?, file_digest) WHERE id = ?",
                [
                    (t, model_name, revision, d, int(i))
                    for i, t, d in zip(ids, thumbnails, digests, strict=True)
                ],
            )
            db.executemany(
                "UPDATE photos SET status = 'failed', error = ?, model = NULL WHERE id = ?",
                # a reason may quote a name that is not UTF-8: stored as names are
                [(path_text(error), int(i)) for i, error in failed],
            )
        self.refresh_vector_file(before)

    def _digests_read_now(self, ids: Sequence[int]) -> list[str | None]:
        """Per photo of ``ids``: its file's digest read now when none is stored, else None."""
        missing: dict[int, str] = {}
        wanted = [int(i) for i in ids]
        for start in range(0, len(wanted), _SQL_CHUNK):
            part = wanted[start : start + _SQL_CHUNK]
            rows = self._query(
                "SELECT id, path FROM photos WHERE file_digest IS NULL AND id IN "
                f"({', '.join('?' * len(part))})",
                part,
            )
            missing.update((photo_id, path_from_text(text)) for photo_id, text in rows)
        return [digest_or_none(missing[i]) if i in missing else None for i in wanted]

    def add_encoded(
        self,
        model_name: str,
        photos: Sequence[EncodedPhoto],
        vectors: np.ndarray,
        *,
        update_vector_file: bool = True,
    ) -> np.ndarray:
        """Add photos that are already encoded, as indexed, with their embeddings.

        For imports and benchmarks that have the vectors but no album: the files are not read
        (no sync, no thumbnails). Rows and embeddings are committed in one transaction, as
        :meth:`save_batch` commits a batch.

        Parameters
        ----------
        model_name
            The model that made ``vectors``; must be :attr:`model_name`.
        photos
            The photos, ``[B]``; none of their paths may be in the library yet.
        vectors
            Their embeddings, ``[B, D] float32``, L2-normalised, D = :attr:`embed_dim`.
        update_vector_file
            Bring the vector file up to date afterwards (the default). With False the file is
            left stale, to be made later in one go with :meth:`refresh_vector_file` (a search
            would otherwise work from memory or rebuild it): building a large library in many
            calls then writes the file once.

        Returns
        -------
        numpy.ndarray
            The new photos' ids, ``[B] int64``, in the order of ``photos``.

        Raises
        ------
        RuntimeError
            The writer lock is not held.
        ModelMismatchError
            ``model_name`` is not the library's model.
        ValueError
            ``vectors`` is not ``[B, D]``.
        LibraryError
            A path is already in the library (nothing is written).
        """
        self._require_lock()
        stored = self.model_name
        if stored != model_name:
            raise self._mismatch(stored or "none", model_name)
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if matrix.shape != (len(photos), self.embed_dim):
            raise ValueError(
                f"expected {len(photos)} vectors of {self.embed_dim}, got {matrix.shape}"
            )
        with self._transaction() as db:
            before = self._generation(db)
            revision = self._bump(db)
            # ids as AUTOINCREMENT would give them: above every id ever used
            first = int(
                db.execute(
                    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'photos'),"
                    " 0), coalesce((SELECT max(id) FROM photos), 0)) + 1"
                ).fetchone()[0]
            )
            ids = np.arange(first, first + len(photos), dtype=np.int64)
            db.executemany(
                "INSERT INTO photos (id, path, size, mtime_ns, content_hash, taken_at, wall,"
                " time_source, width, height, status, model, vector_revision)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'indexed', ?, ?)",
                [
                    (
                        int(photo_id),
                        path_text(absolute_path(photo.path)),
                        photo.size,
                        photo.mtime_ns,
                        photo.content_hash,
                        None if photo.taken_at is None else photo.taken_at.isoformat(),
                        None if photo.taken_at is None else wall_text(photo.taken_at),
                        photo.time_source,
                        photo.width,
                        photo.height,
                        model_name,
                        revision,
                    )
                    for photo_id, photo in zip(ids, photos, strict=True)
                ],
            )
            db.executemany(
                "INSERT INTO embeddings (photo_id, vector) VALUES (?, ?)",
                [(int(i), row.tobytes()) for i, row in zip(ids, matrix, strict=True)],
            )
        if update_vector_file:
            self.refresh_vector_file(before)
        return ids

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
            params.append(wall_text(since))
        if until is not None:
            clauses.append(f"{plus}wall < ?")
            params.append(wall_text(until))
        if folder is not None:
            low, high = prefix_range(absolute_path(folder))
            clauses.append("path >= ? AND path < ?")
            params.extend((low, high))
        return " AND ".join(clauses) or "1", params

    def check_model(self, model_name: str | None, weights: str | None = None) -> None:
        """Raise :class:`ModelMismatchError` when the library holds another model's embeddings.

        The one check, and the one message, for whoever reads embeddings with a model: the
        readers below call it, and so does a search before it starts. ``weights``, when given
        (:attr:`ClipModel.weights`), must also be those the embeddings were made with, where
        the library recorded them.
        """
        stored = self.model_name
        if model_name is not None and stored is not None and stored != model_name:
            raise self._mismatch(stored, model_name)
        recorded = self.model_weights if weights is not None else None
        if model_name is not None and recorded is not None and recorded != weights:
            raise self._other_weights(model_name)

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
        self.check_model(model_name)
        folder = None if folder is None else self.canonical_folder(folder)
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
            Keep photos whose wall-clock capture time (:func:`core.capture_time.wall_time`) is in
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
        self.check_model(model_name)
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
        self.check_model(model_name)
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
        self.check_model(model_name)
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
            path=Path(path_from_text(text)),
            size=size,
            mtime_ns=mtime_ns,
            taken_at=datetime.fromisoformat(taken_at) if taken_at else None,
            time_source=source,
            width=width,
            height=height,
            status=status,
            error=path_from_text(error) if error is not None else None,
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
            f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE path = ?", (path_text(absolute_path(path)),)
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

    def retry_failed(
        self,
        roots: Sequence[Path | str],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Make the failed photos inside ``roots`` (taken in ``[since, until)``, when given)
        pending again; returns how many.

        A failed photo is otherwise tried again only once its file changes. This is for a
        reason fixed since without a change to the file: a decoder installed (HEIF), a file's
        permissions put right.
        """
        changed = 0
        with self.indexing_lock(), self._transaction() as db:
            for root in roots:
                where, params = self._filters("failed", since, until, Path(root))
                changed += db.execute(
                    f"UPDATE photos SET status = 'pending', error = NULL WHERE {where}", params
                ).rowcount
            if changed:
                self._bump(db)
        return changed

    def failures(self) -> list[PhotoRecord]:
        """Photos that could not be read, by path; they are tried again once they change."""
        rows = self._query(f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE status = 'failed'")
        return sorted((self._record(row) for row in rows), key=lambda record: str(record.path))

    def skipped(self) -> list[tuple[Path, str]]:
        """Files and folders the last scans did not index, with the reason, by path."""
        rows = self._query("SELECT path, reason FROM skipped")
        found = sorted((path_from_text(text), path_from_text(reason)) for text, reason in rows)
        return [(Path(path), reason) for path, reason in found]

    def timeline(self, now: datetime | None = None, *, folder: Path | None = None) -> Timeline:
        """Every photo (or those inside ``folder``) grouped by year, month and day, with how
        many of each are indexed; counted in SQL, no photo is read one by one."""
        folder = None if folder is None else self.canonical_folder(folder)
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
        return build_timeline(items, now=now)

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
