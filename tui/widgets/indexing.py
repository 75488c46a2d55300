"""The indexing pane: progress of the background indexing job, its speed, ETA and errors."""

from __future__ import annotations

from pathlib import PurePath

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static

from tui.messages import IndexFinished, IndexProgressed
from tui.text import duration, inert


class IndexingPanel(Vertical):
    """Shows one indexing job at a time; idle otherwise.

    Every line has a fixed height, so updates repaint the lines without a new layout.

    The numbers come from :class:`~tui.messages.IndexProgressed`, which the indexing worker posts;
    the panel never asks the engine for anything.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Indexing"
        self._bucket: str | None = None
        self._paused = False
        self._errors = 0
        self._last: IndexProgressed | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("Idle: pick a period and press i", style="dim"), id="index-state")
        yield ProgressBar(total=None, show_eta=False, id="index-bar")
        yield Static("", id="index-numbers")
        yield Static("", id="index-current")
        yield Static("", id="index-errors")

    def started(self, bucket_name: str, queued: int = 0) -> None:
        """A job began indexing the bucket named ``bucket_name``."""
        self._bucket = bucket_name
        self._paused = False
        self._errors = 0
        self._last = None
        self._set_state()
        self.query_one("#index-bar", ProgressBar).update(total=None, progress=0)
        self.query_one("#index-numbers", Static).update("scanning...", layout=False)
        self.query_one("#index-current", Static).update("", layout=False)
        self._show_errors(queued)

    def progressed(self, progress: IndexProgressed, queued: int = 0) -> None:
        """New numbers from the running job."""
        self._last = progress
        self._errors = progress.errors
        bar = self.query_one("#index-bar", ProgressBar)
        bar.update(total=max(progress.total, 1), progress=progress.done)
        speed = progress.rate_per_s
        rate = f"{speed:.0f}/s" if speed >= 10 else f"{speed:.1f}/s" if speed > 0 else "--/s"
        numbers = f"{progress.done}/{progress.total}  {rate}  ETA {duration(progress.eta_s)}"
        self.query_one("#index-numbers", Static).update(Text(numbers), layout=False)
        current = PurePath(progress.current).name if progress.current else ""
        self.query_one("#index-current", Static).update(
            Text(inert(current), style="italic"), layout=False
        )
        self._show_errors(queued)

    def paused(self, paused: bool) -> None:
        """The job was paused or resumed."""
        self._paused = paused
        self._set_state()

    def cancelling(self, *, quitting: bool = False) -> None:
        """Cancellation was asked for; the job stops after its current batch."""
        then = " then quitting" if quitting else ""
        state = self.query_one("#index-state", Static)
        state.update(Text(f"Stopping {self._bucket or ''}{then}...", style="yellow"), layout=False)

    def finished(self, result: IndexFinished, bucket_name: str, queued: int = 0) -> None:
        """The job ended."""
        self._paused = False
        self._errors = result.errors
        if result.error is not None:
            state = Text(f"Failed: {bucket_name}", style="bold red")
            self.query_one("#index-current", Static).update(Text(inert(result.error)), layout=False)
        elif result.cancelled:
            state = Text(f"Stopped: {bucket_name}", style="yellow")
        else:
            state = Text(f"Done: {bucket_name}", style="green")
            self.query_one("#index-current", Static).update("", layout=False)
            bar = self.query_one("#index-bar", ProgressBar)
            if bar.total is None or bar.total == 0:
                bar.update(total=1, progress=1)
            else:
                bar.update(progress=bar.total)
        self.query_one("#index-state", Static).update(state, layout=False)
        self.query_one("#index-numbers", Static).update(Text(inert(result.summary)), layout=False)
        self._bucket = None
        self._show_errors(queued)

    def set_queued(self, queued: int) -> None:
        """Show how many jobs wait after this one."""
        self._show_errors(queued)

    def _set_state(self) -> None:
        name = self._bucket or ""
        if self._paused:
            text = Text(f"Paused: {name}", style="yellow")
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
