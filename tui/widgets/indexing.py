"""The indexing pane: progress of the background indexing job, its speed, ETA and errors."""

from __future__ import annotations

from pathlib import PurePath
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static

from tui.messages import IndexFinished
from tui.text import inert, pace, plural

if TYPE_CHECKING:
    from core.indexer import IndexProgress


class IndexingPanel(Vertical):
    """Shows one indexing job at a time; idle otherwise.

    Every line has a fixed height, so updates repaint the lines without a new layout. The bar
    sweeps only while a job runs and does not know its count yet; idle, or after a job that
    failed or stopped before it knew it, it is empty and still (class ``-still``, no percentage).

    The numbers are the engine's :class:`~core.indexer.IndexProgress`, which the indexing
    worker posts, worded as the command line words them (:func:`tui.text.pace`); the panel never
    asks the engine for anything. A pause or a stop is shown as asked ("Pausing...") until the
    engine reports that it has paused or stopped, and at which count.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Indexing"
        self._bucket: str | None = None
        self._pause_asked = False
        self._stopping: str | None = None  # what follows the stop: "" or " then quitting"
        self._errors = 0
        self._last: IndexProgress | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("Idle: pick a period and press i", style="dim"), id="index-state")
        yield ProgressBar(total=1, show_eta=False, id="index-bar", classes="-still")
        yield Static("", id="index-numbers")
        yield Static("", id="index-current")
        yield Static("", id="index-errors")

    def started(self, bucket_name: str, queued: int = 0) -> None:
        """A job began indexing the bucket named ``bucket_name``."""
        self._bucket = bucket_name
        self._pause_asked = False
        self._stopping = None
        self._errors = 0
        self._last = None
        self._set_state()
        bar = self.query_one("#index-bar", ProgressBar)
        bar.remove_class("-still")
        bar.update(total=None, progress=0)
        self.query_one("#index-numbers", Static).update("scanning...", layout=False)
        self.query_one("#index-current", Static).update("", layout=False)
        self._show_errors(queued)

    def progressed(self, progress: IndexProgress, queued: int = 0) -> None:
        """New numbers from the running job."""
        self._last = progress
        self._errors = progress.errors
        bar = self.query_one("#index-bar", ProgressBar)
        if progress.stage == "scanning":
            bar.update(total=None)
            numbers = f"scanning: {plural(progress.done, 'photo')} found"
        else:
            bar.update(total=max(progress.total, 1), progress=progress.done)
            numbers = f"{progress.done}/{progress.total}  {pace(progress, unit='/s')}"
        self.query_one("#index-numbers", Static).update(Text(numbers), layout=False)
        if progress.stage == "encoding":
            current = PurePath(progress.current).name if progress.current else ""
        else:
            current = progress.stage
        self.query_one("#index-current", Static).update(
            Text(inert(current), style="italic"), layout=False
        )
        self._set_state()
        self._show_errors(queued)

    def pause_asked(self, paused: bool) -> None:
        """The user asked the job to pause (True) or to go on (False)."""
        self._pause_asked = paused
        self._set_state()

    def cancelling(self, *, quitting: bool = False) -> None:
        """Cancellation was asked for; the job stops once the photos being encoded are done."""
        self._stopping = " then quitting" if quitting else ""
        self._set_state()

    def finished(self, result: IndexFinished, bucket_name: str, queued: int = 0) -> None:
        """The job ended; a stopped one says at which count it stopped."""
        self._pause_asked = False
        self._stopping = None
        self._errors = result.errors
        summary = result.summary
        bar = self.query_one("#index-bar", ProgressBar)
        if bar.total is None and (result.error is not None or result.cancelled):
            # ended before it knew how many photos: an empty bar, not one still sweeping
            bar.update(total=1, progress=0)
            bar.add_class("-still")
        if result.error is not None:
            state = Text(f"Failed: {bucket_name}", style="bold red")
            self.query_one("#index-current", Static).update(Text(inert(result.error)), layout=False)
        elif result.cancelled:
            state = Text(f"Stopped: {bucket_name}", style="yellow")
            last = self._last
            if last is not None and last.stage == "encoding" and last.total:
                summary = f"{last.done}/{last.total}: {result.summary}"
        else:
            state = Text(f"Done: {bucket_name}", style="green")
            self.query_one("#index-current", Static).update("", layout=False)
            if bar.total is None or bar.total == 0:
                bar.update(total=1, progress=1)
            else:
                bar.update(progress=bar.total)
        self.query_one("#index-state", Static).update(state, layout=False)
        self.query_one("#index-numbers", Static).update(Text(inert(summary)), layout=False)
        self._bucket = None
        self._show_errors(queued)

    def set_queued(self, queued: int) -> None:
        """Show how many jobs wait after this one."""
        self._show_errors(queued)

    def _set_state(self) -> None:
        name = self._bucket or ""
        engine_paused = self._last is not None and self._last.paused
        if self._stopping is not None:
            text = Text(f"Stopping {name}{self._stopping}...", style="yellow")
        elif self._pause_asked and engine_paused:
            text = Text(f"Paused: {name}", style="yellow")
        elif self._pause_asked:
            text = Text(f"Pausing {name}...", style="yellow")
        elif engine_paused:
            text = Text(f"Resuming {name}...", style="yellow")
        else:
            text = Text(f"Indexing {name}", style="bold")
        self.query_one("#index-state", Static).update(text, layout=False)

    def _show_errors(self, queued: int) -> None:
        parts = []
        if self._errors:
            noun = "error" if self._errors == 1 else "errors"
            parts.append(Text(f"{self._errors} {noun} (e lists)", style="red"))
        if queued:
            parts.append(Text(f"{queued} queued", style="dim"))
        self.query_one("#index-errors", Static).update(Text("  ").join(parts), layout=False)
