"""Indexing: scan the album, update the library, and encode the photos that need it.

:func:`index` is a pipeline in three parts:

1. **Decode pool.** ``decoders`` threads read ahead of the encoder: each reads the whole file's
   digest (:func:`core.sync.file_digest`, kept with the vector so that a later move or copy can be
   proven the same photo), opens the photo with :func:`core.preprocess.load_image` (a JPEG at a
   reduced DCT scale when the model allows draft decoding; EXIF orientation applied), turns it
   into the model input, and from the same decoded image writes the photo's thumbnail, named
   after the digest, so no screen ever has to decode an original.
2. **Inference, photo by photo.** Decoded photos are encoded one per call of
   :meth:`core.encoder.ClipModel.encode_pixels`, ``model.threads`` of them at a time, in the
   order of the run, while the pool decodes the next ones. The model runs each photo of a batch
   on its own extractor anyway, so a vector is bit for bit the one a batch would give; encoding
   photo by photo lets a pause or a stop take effect between photos, and the progress count
   each photo as it is done.
3. **One writer.** Every ``batch_size`` photos are committed in one transaction, embeddings
   together with the ``indexed`` or ``failed`` status (:meth:`core.library.Library.save_batch`),
   so a crash or a kill leaves every photo either fully indexed or still pending, and the next
   run resumes.

A photo that cannot be read is recorded as ``failed`` with the reason and the run goes on; it is
tried again only once its size or modification time changes. Setting ``pause`` or ``cancel``
takes effect between photos: no photo is started after it, the photos already being encoded
(at most ``model.threads``) are finished, and everything encoded is committed, so a stopped run
loses nothing and the next run encodes only the rest.

The module is a little over the house guide of about 600 lines: the decode pool, the encoder loop,
the points where a pause or a stop is looked at, and the commit share one run's counters
(:class:`RunCounters`), and the rule that holds them together (nothing encoded twice, nothing
encoded lost) is easiest to check read in one place.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from PIL import Image

from core import ann
from core.database import is_under
from core.encoder import ClipModel
from core.errors import ClipsearchError
from core.library import Library, PendingPhoto
from core.names import path_fields, readable
from core.preprocess import load_image, preprocess, resize_for
from core.progress import StageClock
from core.scan import ScanOptions, Skipped, scan
from core.sync import SyncReport, digest_or_none
from core.thumbnails import THUMBNAIL_MAX_SIDE, save_thumbnail

__all__ = [
    "IndexProgress",
    "IndexSummary",
    "decode_photo",
    "encode_batch",
    "encode_photo",
    "index",
    "sync_album",
    "save_results",
]

DEFAULT_DECODERS = max(1, min(4, os.cpu_count() or 1))
PROGRESS_INTERVAL_S = 0.1  # at most this often, besides the reports that always go out
PAUSE_POLL_S = 0.05  # how often a paused run looks whether it was resumed or cancelled

Stage = Literal["scanning", "reading", "loading", "encoding"]
_T = TypeVar("_T")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IndexProgress:
    """How far an indexing run is.

    Attributes
    ----------
    done
        Photos handled (encoded or failed) so far in this run; during ``scanning`` the photos
        found, during ``reading`` the new and changed photos read.
    total
        Photos this run will handle (0 while scanning, when it is not known yet).
    rate_per_s
        Photos handled per second of work since this stage began (paused time left out); 0.0
        until the first one is done.
    eta_s
        Estimated seconds left in this stage; None when not known: before the first photo is
        done, while paused, or while the total is not known.
    current
        The last photo handled, if any.
    errors
        Photos that failed so far in this run.
    stage
        ``scanning`` the folders, ``reading`` new and changed photos (content hash, capture
        time), ``loading`` the model's image network, or ``encoding``.
    paused
        True while the run waits to be resumed (``done`` is then what was committed).
    """

    done: int
    total: int
    rate_per_s: float
    eta_s: float | None
    current: Path | None
    errors: int
    stage: Stage = "encoding"
    paused: bool = False


@dataclass(slots=True)
class IndexSummary:
    """What an indexing run did.

    Attributes
    ----------
    indexed
        Photos encoded in this run.
    unchanged
        Photos that were already known, indexed, with the same size and modification time.
    skipped
        ``(path, reason)`` of files not indexed: unsupported formats, empty files, unreadable
        folders, folders that are missing.
    failed
        ``(path, reason)`` of the photos in the folders indexed that could not be read: in this
        run, or in an earlier one and unchanged since (a failed photo is tried again once its
        file changes, or appears under a new name).
    cancelled
        True when the run was stopped before the end.
    elapsed_s
        Wall-clock seconds for the whole run.
    new, changed, moved, copied, deleted
        What the sync found (:class:`core.sync.SyncReport`).
    remaining
        Photos still pending in the folders indexed: outside the date range, left by a cancel,
        or vanished.
    vanished
        Photos whose file was gone when the run came to read it (an album folder unmounted or
        renamed during the run, a file moved away): not failed, they stay pending, and the
        next run tries them again or finds them deleted.
    """

    indexed: int
    unchanged: int
    skipped: list[tuple[Path, str]]
    failed: list[tuple[Path, str]]
    cancelled: bool
    elapsed_s: float
    new: int = 0
    changed: int = 0
    moved: int = 0
    copied: int = 0
    deleted: int = 0
    remaining: int = 0
    vanished: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``skipped`` and ``failed`` as ``{"path", "reason"}``, with ``path_bytes``
        beside ``path`` for a name that is not valid UTF-8 (:func:`core.names.path_fields`)."""
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "new": self.new,
            "changed": self.changed,
            "moved": self.moved,
            "copied": self.copied,
            "deleted": self.deleted,
            "remaining": self.remaining,
            "vanished": self.vanished,
            "skipped": [{**path_fields(p), "reason": readable(r)} for p, r in self.skipped],
            "failed": [{**path_fields(p), "reason": readable(r)} for p, r in self.failed],
            "cancelled": self.cancelled,
            "elapsed_s": round(self.elapsed_s, 3),
        }


@dataclass(slots=True)
class _Decoded:
    """One photo on its way: model input and thumbnail, then its vector; or why it failed."""

    photo: PendingPhoto
    pixels: np.ndarray | None = None
    thumbnail: str | None = None
    error: str | None = None
    vector: np.ndarray | None = None
    digest: str | None = None


@dataclass(slots=True)
class RunCounters:
    """Counters of one run, its progress callback, and the events that pause and cancel it.

    ``clock`` is :func:`time.monotonic` unless a test passes a fake one. ``thumbnails_full`` is
    set once a thumbnail found the disk full: the run writes no more thumbnails then, and says
    so once (:func:`core.thumbnails.store_thumbnail`).
    """

    progress: Callable[[IndexProgress], None] | None
    pause: threading.Event | None = None
    cancel: threading.Event | None = None
    clock: Callable[[], float] = time.monotonic
    indexed: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    vanished: int = 0
    last_report: float = float("-inf")
    thumbnails_full: threading.Event = field(default_factory=threading.Event)

    def start(self, stage: Stage, total: int = 0) -> StageClock:
        """Begin timing ``stage`` and report it (nothing done yet)."""
        stage_clock = StageClock(self.clock)
        self.report(stage, 0, total, stage_clock, force=True)
        return stage_clock

    def report(
        self,
        stage: Stage,
        done: int,
        total: int,
        stage_clock: StageClock,
        current: Path | None = None,
        *,
        force: bool = False,
        errors: int | None = None,
    ) -> bool:
        """Call the progress callback, at most every :data:`PROGRESS_INTERVAL_S` unless
        ``force``; ``errors`` defaults to the failures committed so far. Returns whether it
        was called."""
        if self.progress is None:
            return False
        now = self.clock()
        if not force and now - self.last_report < PROGRESS_INTERVAL_S:
            return False
        self.last_report = now
        rate = stage_clock.rate(done)
        eta = stage_clock.eta(done, total)
        failures = len(self.failed) if errors is None else errors
        self.progress(
            IndexProgress(done, total, rate, eta, current, failures, stage, stage_clock.paused)
        )
        return True

    def step(self, stage: Stage, done: int, total: int, stage_clock: StageClock) -> None:
        """One more file scanned or read: wait here while paused, then report."""
        self.hold(stage, done, total, stage_clock)
        self.report(stage, done, total, stage_clock)

    def hold(
        self,
        stage: Stage,
        done: int,
        total: int,
        stage_clock: StageClock,
        current: Path | None = None,
    ) -> None:
        """While ``pause`` is set (and ``cancel`` is not), wait, with the clock stopped.

        Reports the pause when it begins (``paused`` True, no ETA) and the resumption when it
        ends, so that whoever shows the progress never shows a stale figure.
        """
        pause, cancel = self.pause, self.cancel or threading.Event()
        if pause is None or not pause.is_set() or cancel.is_set():
            return
        stage_clock.pause()
        self.report(stage, done, total, stage_clock, current, force=True)
        while pause.is_set() and not cancel.wait(PAUSE_POLL_S):
            pass
        stage_clock.resume()
        self.report(stage, done, total, stage_clock, current, force=True)

    @property
    def stopping(self) -> bool:
        """Whether the run should start no more photos now: paused or cancelled."""
        return bool(
            (self.pause is not None and self.pause.is_set())
            or (self.cancel is not None and self.cancel.is_set())
        )


def decode_photo(
    path: Path, model: ClipModel, min_side: int | None
) -> tuple[np.ndarray, Image.Image] | str:
    """Decode one photo into the model input and the image to thumbnail; never raises.

    The thumbnail is made from the image already scaled for the model (its short side is the
    model's input size, at least :data:`THUMBNAIL_MAX_SIDE` for every registry model) rather
    than from the decoded photo, which is several times larger; a photo smaller than that is
    thumbnailed from its own pixels.

    Returns
    -------
    ``(pixels, image)``: the model input ``[3, S, S] float32`` and the image to thumbnail; or the
    error text when the photo cannot be read.
    """
    try:
        image = load_image(path, min_side=min_side)
        spec = model.spec.preprocess
        resized = resize_for(image, spec)
        pixels = preprocess(resized, spec)
    except Exception as error:  # noqa: BLE001 - one bad photo must never stop the run
        text = str(error) or type(error).__name__
        if not isinstance(error, ClipsearchError):
            text = f"cannot read {path}: {text}"
        return text
    shrunk = min(resized.size) >= THUMBNAIL_MAX_SIDE and min(resized.size) < min(image.size)
    shrunk = shrunk and spec.resize == "shortest"  # a squashed image has lost the aspect ratio
    return pixels, resized if shrunk else image


def _decode(
    photo: PendingPhoto,
    model: ClipModel,
    min_side: int | None,
    folder: Path,
    disk_full: threading.Event | None = None,
) -> _Decoded:
    """Read the whole file's digest, decode the photo (:func:`decode_photo`) and write its
    thumbnail, named after the digest; never raises.

    The digest is read here rather than by the sync, which reads only the two ends of a new
    file: the whole file is read once more just before it is decoded (from the page cache
    then), instead of the whole album once more before indexing can start.
    """
    digest = digest_or_none(photo.path)
    decoded = decode_photo(photo.path, model, min_side)
    if isinstance(decoded, str):
        return _Decoded(photo, error=decoded)
    pixels, source = decoded
    name = digest or photo.content_hash
    thumbnail = save_thumbnail(source, folder, name, disk_full)
    return _Decoded(photo, pixels, thumbnail, digest=digest)


def encode_photo(model: ClipModel, pixels: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Embed one photo's model input ``[3, S, S] float32``; never raises for a bad photo.

    Returns the ``[D] float32`` vector, or None and the error text when the model failed on it.
    The vector is bit for bit the photo's row of a batch (each photo of a batch runs on its own
    extractor, and rows are normalised one by one).
    """
    try:
        return model.encode_pixels(pixels[None])[0], ""
    except ClipsearchError as error:
        return None, str(error)


def encode_batch(model: ClipModel, pixels: list[np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Embed a batch; when the batch fails, each photo alone, so only the bad ones fail.

    Returns the ``[B, D] float32`` rows (zeros where a photo failed) and the error per photo
    (empty text where it worked).
    """
    try:
        return model.encode_pixels(np.stack(pixels)), [""] * len(pixels)
    except ClipsearchError:
        pass
    rows, errors = [], []
    for one in pixels:
        try:
            rows.append(model.encode_pixels(one[None])[0])
            errors.append("")
        except ClipsearchError as error:
            rows.append(np.zeros(model.embed_dim, np.float32))
            errors.append(str(error))
    return np.stack(rows), errors


def _pipeline(
    library: Library,
    model: ClipModel,
    todo: Sequence[PendingPhoto],
    run: RunCounters,
    batch_size: int,
    decoders: int,
) -> bool:
    """Decode, encode and commit ``todo``; returns True when it was cancelled before the end.

    ``run.pause`` and ``run.cancel`` are looked at between photos: the photos already being
    encoded (at most ``model.threads``) are finished and everything encoded is committed before
    the run waits or stops.
    """
    cancel = run.cancel or threading.Event()
    min_side = 2 * model.spec.preprocess.size if model.draft else None
    folder = library.thumbnail_dir
    read_ahead = 2 * batch_size + decoders
    in_flight = max(1, model.threads)
    total = len(todo)
    pending: Iterator[PendingPhoto] = iter(todo)
    decoding: deque[Future[_Decoded]] = deque()
    encoding: deque[tuple[_Decoded, Future[tuple[np.ndarray | None, str]] | None]] = deque()
    window: list[_Decoded] = []
    done = shown = 0  # photos done, and the count the last report showed
    last: Path | None = None

    if todo:
        run.start("loading", total)
        model.load_image_tower()  # seconds for a large model: not counted in the rate
    clock = run.start("encoding", total)

    def commit() -> None:
        if window:
            _commit(library, model, window, run)
            window.clear()

    def show(force: bool) -> None:
        nonlocal shown
        errors = len(run.failed) + sum(item.vector is None for item in window)
        if run.report("encoding", done, total, clock, last, force=force, errors=errors):
            shown = done

    def wait(future: Future[_T]) -> _T:
        """The future's result; the photos done so far are reported first when it takes long
        (a report held back by the interval would otherwise stay unseen while the run waits)."""
        try:
            return future.result(timeout=PROGRESS_INTERVAL_S)
        except FutureTimeout:
            if shown != done:
                show(force=True)
            return future.result()

    with (
        ThreadPoolExecutor(decoders, thread_name_prefix="clipsearch-decode") as decode_pool,
        ThreadPoolExecutor(in_flight, thread_name_prefix="clipsearch-encode") as encode_pool,
    ):

        def fill() -> None:
            while len(decoding) < read_ahead and not cancel.is_set():
                photo = next(pending, None)
                if photo is None:
                    return
                decoding.append(
                    decode_pool.submit(_decode, photo, model, min_side, folder, run.thumbnails_full)
                )

        try:
            fill()
            while decoding or encoding:
                while decoding and len(encoding) < in_flight and not run.stopping:
                    item = wait(decoding.popleft())
                    fill()
                    encoded: Future[tuple[np.ndarray | None, str]] | None = None
                    if item.pixels is not None:
                        encoded = encode_pool.submit(encode_photo, model, item.pixels)
                    encoding.append((item, encoded))
                if encoding:
                    item, future = encoding.popleft()
                    if future is not None:
                        item.vector, error = wait(future)
                        item.error = error or None
                    item.pixels = None  # the input is not needed any more
                    window.append(item)
                    done += 1
                    last = item.photo.path
                    full = len(window) >= batch_size
                    if full:
                        commit()
                    show(force=full or done in (1, total))
                    continue
                # nothing is being encoded: paused or cancelled with photos left
                commit()
                if cancel.is_set():
                    break
                run.hold("encoding", done, total, clock, last)
            commit()
        finally:
            for waiting in decoding:
                waiting.cancel()
    if done and done < total:  # the count at which the run really stopped
        show(force=True)
    return cancel.is_set() and done < total


def _commit(library: Library, model: ClipModel, window: list[_Decoded], run: RunCounters) -> None:
    """Commit the encoded photos of one window with the failures, in one transaction."""
    good = [item for item in window if item.vector is not None]
    failed = [(item.photo, item.error or "unreadable") for item in window if item.vector is None]
    vectors = np.zeros((0, model.embed_dim), np.float32)
    if good:
        vectors = np.stack([item.vector for item in good if item.vector is not None])
    ids = [item.photo.id for item in good]
    thumbnails = [item.thumbnail for item in good]
    digests = [item.digest for item in good]
    save_results(library, model.name, ids, vectors, thumbnails, failed, run, digests)


def save_results(
    library: Library,
    model_name: str,
    ids: Sequence[int],
    vectors: np.ndarray,
    thumbnails: Sequence[str | None],
    failed: Sequence[tuple[PendingPhoto, str]],
    run: RunCounters,
    digests: Sequence[str | None] | None = None,
) -> None:
    """Commit one batch (:meth:`core.library.Library.save_batch`) and count it in ``run``.

    A photo of ``failed`` whose file is gone now is not recorded as failed: it vanished during
    the run (its folder unmounted, say), and stays pending for the next run, which tries it
    again or finds it deleted. A failure is for good until the file changes.
    """
    readable_now = [(photo, error) for photo, error in failed if os.path.exists(photo.path)]
    run.vanished += len(failed) - len(readable_now)
    failed = readable_now
    library.save_batch(
        model_name,
        ids,
        vectors,
        thumbnails,
        [(photo.id, error) for photo, error in failed],
        digests,
    )
    run.indexed += len(ids)
    run.failed.extend((photo.path, error) for photo, error in failed)


def _split_roots(folders: Sequence[Path]) -> tuple[list[Path], list[Skipped]]:
    present, missing = [], []
    for folder in folders:
        if folder.is_dir():
            present.append(folder)
        else:
            missing.append(Skipped(folder, "folder not found"))
    return present, missing


def sync_album(
    library: Library,
    roots: Sequence[Path | str] | None = None,
    *,
    cancel: threading.Event | None = None,
    progress: Callable[[IndexProgress], None] | None = None,
    pause: threading.Event | None = None,
) -> tuple[SyncReport, int]:
    """Scan the album folders and bring the library in line with them, encoding nothing.

    The first two stages of :func:`index` (``scanning`` and ``reading``, reported to
    ``progress`` with the same rate and ETA), for a caller that wants the timeline to know the
    new photos before any is encoded. While ``pause`` is set it waits between files.

    Parameters
    ----------
    roots
        Album folders to add first; the library's folders when None.

    Returns
    -------
    tuple[SyncReport, int]
        What the sync changed, and how many photo files the scan found.
    """
    run = RunCounters(progress, pause, cancel or threading.Event())
    with library.indexing_lock():
        folders = library.add_roots(roots) if roots else library.roots()
        return _scan_and_sync(library, folders, run)


def _scan_and_sync(
    library: Library, folders: Sequence[Path], run: RunCounters
) -> tuple[SyncReport, int]:
    """Scan ``folders`` (a missing one keeps its photos) and sync the library with the scan.

    The scan never enters the program's own folders nor the library's thumbnail folder, even
    when an album folder holds them. The library's album folders inside ``folders`` are scanned
    with them, as roots of their own: they own their photos (:meth:`core.sync.AlbumSync.sync`),
    so a folder is scanned and synced the same whether it is indexed alone or with the others.
    """
    cancel = run.cancel or threading.Event()
    texts = [str(folder) for folder in folders]
    inside = [r for r in library.roots() if str(r) not in texts and is_under(str(r), texts)]
    folders = [*folders, *inside]
    present, missing = _split_roots(folders)
    scanning = run.start("scanning")
    found = scan(
        present,
        ScanOptions(skip_folders=(library.thumbnail_dir,)),
        cancel=cancel,
        progress=lambda count: run.step("scanning", count, 0, scanning),
    )
    files = len(found.files)
    run.report("scanning", files, 0, scanning, force=True)  # the count, whatever the interval
    found.errors.extend(missing)
    reading = StageClock(run.clock)
    synced = library.sync(
        found,
        roots=folders,
        cancel=cancel,
        progress=lambda done, total: run.step("reading", done, total, reading),
    )
    return synced, files


def index(
    library: Library,
    model: ClipModel,
    roots: Sequence[Path | str] | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[IndexProgress], None] | None = None,
    cancel: threading.Event | None = None,
    pause: threading.Event | None = None,
    batch_size: int = 16,
    decoders: int | None = None,
    cluster: str | None = None,
    retry_failed: bool = False,
) -> IndexSummary:
    """Scan album folders, update the library, and encode the photos that need it.

    Parameters
    ----------
    library
        The library to update. The run holds its indexing lock throughout.
    model
        The model to encode with; must be the library's model (:attr:`Library.model_name`),
        or the library must be new.
    roots
        Album folders to index; they are added to the library's roots. Default: every root of
        the library. A root that is missing (an unplugged drive) is reported in ``skipped`` and
        its photos are kept.
    since, until
        Encode only pending photos whose wall-clock capture time is in ``[since, until)``; the
        others stay pending (the scan and the timeline still cover every photo).
    progress
        Called from this thread with an :class:`IndexProgress` as photos are done: at most
        every 0.1 s, and always for the first photo, after each batch is committed, when a
        pause begins and ends, and for the last photo (or the one the run stopped at).
    cancel
        When set, the run stops between photos: the photos being encoded (at most
        ``model.threads``) are finished and committed with the rest of their batch, so nothing
        encoded is lost and the next run encodes only the photos left.
    pause
        While set, the run waits between photos (between files while scanning and reading),
        after committing what was encoded; the time paused is not counted in the rate, and
        the progress says ``paused`` with no ETA.
    batch_size
        Photos per transaction.
    decoders
        Threads in the decode pool (default: the CPU count, at most 4).
    cluster
        The address of a Dask ``distributed`` scheduler (``tcp://host:8786``): the pending
        photos are decoded and encoded by its workers, a batch per task, and committed here as
        they come back (:mod:`core.distributed`). Dask is imported only then.
    retry_failed
        Try again the photos of these folders that failed before, although their files have
        not changed (:meth:`Library.retry_failed`).

    Returns
    -------
    IndexSummary

    Raises
    ------
    core.library.LibraryBusyError
        Another process is indexing this library.
    core.database.ModelMismatchError
        The library was indexed with another model.
    ClipsearchError
        No album folders are known, or the library cannot be written.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    started = time.monotonic()
    cancel = cancel or threading.Event()
    workers = max(1, decoders or DEFAULT_DECODERS)
    run = RunCounters(progress, pause, cancel)
    with library.indexing_lock():
        library.use_model(model.name, model.embed_dim, weights=model.weights)
        folders = library.add_roots(roots) if roots else library.roots()
        if not folders:
            raise ClipsearchError(
                "no photo folders to index: give one (clipsearch-tui index FOLDER)"
            )
        synced, _ = _scan_and_sync(library, folders, run)
        cancelled = synced.cancelled
        if retry_failed and not cancelled:
            library.retry_failed(folders, since=since, until=until)
        waiting = 0  # pending after the sync, in every date range
        if not cancelled:
            todo = library.pending(since=since, until=until, roots=folders)
            dated = since is not None or until is not None
            waiting = len(library.pending(roots=folders)) if dated else len(todo)
            if cluster is None:
                cancelled = _pipeline(library, model, todo, run, batch_size, workers)
            else:
                try:
                    from core.distributed import encode_on_cluster
                except ImportError as error:
                    raise ClipsearchError(
                        f"encoding on a Dask cluster needs dask and distributed ({error}): "
                        "pip install 'clipsearch-tui[cluster]'"
                    ) from None
                cancelled = encode_on_cluster(
                    cluster, library, model, todo, run, cancel, batch_size
                )
        if not cancelled:
            ann.build_if_due(library, model.name)  # beyond a million photos; off the search path
        remaining = len(library.pending(roots=folders))
        # photos that failed in an earlier run and were not tried again (unchanged files) are
        # still failed: counted as failed, not as unchanged
        this_run = {path for path, _ in run.failed}
        earlier = [
            (record.path, record.error or "could not be read")
            for record in library.failures()
            if record.path not in this_run and any(record.path.is_relative_to(f) for f in folders)
        ]
    # unchanged files that were still pending (left by a cancelled run) are not "unchanged":
    # they are encoded now, or stay pending
    unchanged_pending = max(0, waiting - synced.new - synced.changed)
    return IndexSummary(
        indexed=run.indexed,
        unchanged=max(0, synced.unchanged - len(earlier) - unchanged_pending),
        skipped=synced.skipped,
        failed=sorted([*run.failed, *earlier], key=lambda item: str(item[0])),
        cancelled=cancelled,
        elapsed_s=time.monotonic() - started,
        new=synced.new,
        changed=synced.changed,
        moved=synced.moved,
        copied=synced.copied,
        deleted=synced.deleted,
        remaining=remaining,
        vanished=run.vanished,
    )
