"""The app's writer jobs: album scans and indexing runs, queued and run one at a time.

:class:`IndexingJobs` belongs to the app. On the UI thread it queues jobs, starts the next one in
a thread worker of the ``index`` group, and pauses, resumes or stops the running one. In the
job's thread (of low CPU priority: :func:`tui.engine.run_in_low_priority_thread`) it opens a
library connection of its own and runs :func:`core.indexer.sync_album` or
:func:`core.indexer.index` with the worker's cancel event and the pause event; it reports only
through :class:`~tui.messages.IndexProgressed` and, always, one
:class:`~tui.messages.IndexFinished`.

The engine pauses and stops between photos and says so in its progress (``paused``, and the
count it stopped at), so the indexing pane shows what the engine did, not what was asked.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from textual.worker import get_current_worker

from core.errors import ClipsearchError
from core.library import Library
from tui.engine import Job, JobKind, bucket_bounds, run_in_low_priority_thread
from tui.messages import IndexFinished, IndexProgressed
from tui.text import plural
from tui.widgets.indexing import IndexingPanel

if TYPE_CHECKING:
    from core.indexer import IndexProgress
    from tui.app import ClipSearchApp

GROUP = "index"
"""The worker group of the jobs' threads."""


class IndexingJobs:
    """The queue of sync and indexing jobs of one app, and the one that runs.

    Everything but the job's own thread runs on the UI thread.
    """

    def __init__(self, app: ClipSearchApp) -> None:
        self._app = app
        self.running: Job | None = None
        """The job under way, if any."""
        self.waiting: deque[Job] = deque()
        """Jobs queued behind it."""
        self.pause = threading.Event()
        """Set while the user wants the running job paused; the engine waits between photos."""
        self._numbers = 0
        # set while no job thread runs; a count, because a finished job's thread may still be
        # returning when the next job has started
        self._idle = threading.Event()
        self._idle.set()
        self._threads = 0
        self._threads_lock = threading.Lock()

    # -- on the UI thread --------------------------------------------------------------------

    @property
    def thread_running(self) -> bool:
        """Whether a job's thread is still at work (it may outlive its job a moment)."""
        return not self._idle.is_set()

    def new(
        self, kind: JobKind, key: str | None, name: str, roots: list[Path] | None = None
    ) -> Job:
        """A job with the next number of this app run."""
        self._numbers += 1
        return Job(self._numbers, kind, key, name, list(roots or []))

    def enqueue(self, job: Job) -> None:
        """Run ``job`` now, or after the jobs before it; the same work is never queued twice."""
        if self.running is not None and self.running.same_work(job):
            self._app.notify(f"Already running: {job.name}", markup=False)
            return
        if any(queued.same_work(job) for queued in self.waiting):
            return
        self.waiting.append(job)
        if self.running is None:
            self.start_next()
        else:
            self._app.notify(f"{job.name}: queued after {self.running.name}", markup=False)
            self._panel().set_queued(len(self.waiting))

    def start_next(self) -> None:
        """Start the first waiting job, unless one runs or the model is not loaded yet."""
        if self.running is not None or not self.waiting or self._app.model is None:
            return
        job = self.waiting.popleft()
        self.running = job
        with self._threads_lock:
            self._threads += 1
            self._idle.clear()
        self.pause.clear()
        self._panel().started(job.name, len(self.waiting))
        self._app.refresh_bindings()
        self._app.run_worker(
            functools.partial(self._thread, job),
            name=f"{job.kind} {job.name}",
            group=GROUP,
            thread=True,
            exit_on_error=False,
        )

    def toggle_pause(self) -> None:
        """Ask the running job to pause, or to go on; the pane says so until the engine has."""
        if self.running is None:
            return
        if self.pause.is_set():
            self.pause.clear()
        else:
            self.pause.set()
        self._panel().pause_asked(self.pause.is_set())

    def stop(self) -> None:
        """Stop the running job between photos (what it encoded is kept) and drop the queue."""
        if self.running is None:
            return
        self.waiting.clear()
        self._app.workers.cancel_group(self._app, GROUP)
        self._panel().cancelling()

    def current(self, number: int) -> bool:
        """Whether a message of job ``number`` is about the job that runs now."""
        return self.running is not None and self.running.number == number

    def finished(self, number: int) -> Job | None:
        """Job ``number`` ended: return it (None when it is not the running one)."""
        job = self.running
        if job is None or job.number != number:
            return None
        self.running = None
        self.pause.clear()
        return job

    async def wait_for_thread(self, timeout: float) -> bool:
        """Cancel the running job and wait until its thread has left the engine."""
        self._app.workers.cancel_group(self._app, GROUP)
        deadline = time.monotonic() + timeout
        while not self._idle.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self._idle.is_set()

    def _panel(self) -> IndexingPanel:
        return self._app.query_one(IndexingPanel)

    # -- in the job's thread -----------------------------------------------------------------

    def _thread(self, job: Job) -> None:
        """Run one job in a thread of low CPU priority, so that searching stays quick."""
        worker = get_current_worker()
        try:
            run_in_low_priority_thread(self._body, job, worker.cancelled_event)
        finally:
            with self._threads_lock:
                self._threads -= 1
                if self._threads == 0:
                    self._idle.set()

    def _body(self, job: Job, cancel: threading.Event) -> None:
        """Run one job on a library connection of its own; always posts IndexFinished."""
        app = self._app
        library: Library | None = None
        try:
            library = Library.open(app.library.path if app.library else None)
            if job.kind == "sync":
                self._sync(library, job, cancel)
            else:
                self._index(library, job, cancel)
        except ClipsearchError as error:
            app.post_message(IndexFinished(job.number, job.key or "", 0, 0, False, str(error)))
        except BaseException as error:
            text = f"{type(error).__name__}: {error}"
            app.post_message(
                IndexFinished(job.number, job.key or "", 0, 0, False, text, unexpected=True)
            )
            raise  # shown by the app's worker-state handler, with its traceback in the log
        finally:
            if library is not None:
                library.close()

    def _sync(self, library: Library, job: Job, cancel: threading.Event) -> None:
        """Scan the album and record new and changed photos, so the timeline knows them."""
        from core.indexer import sync_album

        report, found = sync_album(
            library,
            job.roots or None,
            cancel=cancel,
            pause=self.pause,
            progress=self._reporter(job),
        )
        summary = plural(found, "photo")
        if report.new or report.changed:
            summary += f", {report.new + report.changed} new or changed"
        if report.deleted:
            summary += f", {report.deleted} gone"
        self._app.post_message(
            IndexFinished(
                job.number, "", 0, 0, report.cancelled, summary=summary, roots=library.roots()
            )
        )

    def _index(self, library: Library, job: Job, cancel: threading.Event) -> None:
        """Encode the pending photos of the job's period."""
        from core.indexer import index

        app = self._app
        assert app.model is not None and job.key is not None
        since, until = bucket_bounds(job.key)
        summary = index(
            library,
            app.model,
            since=since,
            until=until,
            progress=self._reporter(job),
            cancel=cancel,
            pause=self.pause,
            batch_size=app.config.batch_size,
            cluster=app.config.cluster,
            retry_failed=job.kind == "retry",
        )
        failed = len(summary.failed)
        line = f"{summary.indexed} indexed"
        if failed:
            line += f", {failed} failed"
        if summary.vanished:
            line += f", {summary.vanished} gone when read (tried again next run)"
        app.post_message(
            IndexFinished(
                job.number, job.key, summary.indexed, failed, summary.cancelled, summary=line
            )
        )

    def _reporter(self, job: Job) -> Callable[[IndexProgress], None]:
        """The engine's progress of ``job``, posted as :class:`IndexProgressed` messages."""

        def report(progress: IndexProgress) -> None:
            self._app.post_message(IndexProgressed(job.number, progress))

        return report
