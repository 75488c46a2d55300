"""The terminal app: timeline, indexing and results panes over the engine in :mod:`core`.

:func:`make_app` builds the app for the command line and for the tests alike. Everything that
blocks (opening the library, loading the model, scanning, indexing, searching, reading
thumbnails) runs in thread workers, which report back only through the messages of
:mod:`tui.messages`; the UI thread never decodes a photo or waits on the database for long.

Writing to the library (a sync of the album, an indexing run) goes through one queue of
:class:`~tui.engine.Job` (:mod:`tui.indexing_job`), run one at a time on a library connection of
its own, while searches read through another; indexing therefore keeps running while the user
searches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.command import CommandPalette
from textual.containers import Horizontal, Vertical
from textual.notifications import SeverityLevel
from textual.theme import Theme
from textual.widgets import Footer, Input, Static
from textual.worker import Worker, WorkerState, get_current_worker

from core.encoder import ClipModel, load_model
from core.errors import ClipsearchError, ModelNotInstalledError
from core.languages import multilingual_model_name, script_hint
from core.library import Library
from core.paths import cache_dir
from core.ranking import Hit, search, search_pages, similar
from tui.commands import ClipSearchCommands, ModelCommands
from tui.config import (
    ConfigError,
    ImageMode,
    ResultsView,
    TuiConfig,
    config_path,
    load_config,
)
from tui.engine import bucket_bounds, choose_model_name, gallery_folder, not_installable
from tui.indexing_job import IndexingJobs
from tui.messages import (
    EngineReady,
    FailuresLoaded,
    IndexFinished,
    IndexProgressed,
    ModelMissing,
    ModelSwitched,
    SearchFailed,
    SearchFinished,
    TimelineLoaded,
)
from tui.screen_text import screen_text as read_screen_text
from tui.screens.confirm import ConfirmScreen
from tui.screens.detail import DetailScreen
from tui.screens.errors import ErrorsScreen
from tui.screens.help import HelpScreen, binding_rows
from tui.screens.install import InstallScreen
from tui.terminal import LOG_NAME, divert_native_stderr
from tui.text import inert, plural
from tui.widgets.grid import ResultsGrid
from tui.widgets.images import ImageWidget, image_class
from tui.widgets.indexing import IndexingPanel
from tui.widgets.query import QueryInput
from tui.widgets.results import PagedResults, ResultsList
from tui.widgets.timeline import TimelineTree

SearchKind = Literal["text", "similar"]

TIMELINE_REFRESH_S = 1.0
"""While indexing, the timeline's counts are refreshed at most this often."""

STOP_WAIT_S = 30.0
"""Longest wait for an indexing run to stop after it was cancelled, when quitting."""

NOTICES_KEPT = 100
"""Notification messages the app remembers for :attr:`ClipSearchApp.notices`."""


class ClipSearchApp(App[int]):
    """Search your photos in natural language: see :func:`make_app`.

    The handlers of worker messages return at once when the app is no longer running: a worker
    may report after shutdown began, when the widgets it would update are gone.

    The class is larger than the house guide of about 400 lines because Textual dispatches key
    actions (``action_*``) and worker messages (``on_*``) to the app itself: each of them is a
    short method here that hands the work to a module of its own (the panes in
    :mod:`tui.widgets`, the dialogs in :mod:`tui.screens`, the job queue in
    :mod:`tui.indexing_job`, the settings in :mod:`tui.config`, the engine in :mod:`core`).
    """

    CSS_PATH = "app.tcss"
    TITLE = "clipsearch"
    COMMANDS = App.COMMANDS | {ClipSearchCommands, ModelCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_query", "Search", key_display="/"),
        Binding("i", "index_bucket", "Index"),
        Binding("f", "filter_bucket", "Filter"),
        Binding("p", "pause", "Pause"),
        Binding("x", "stop_indexing", "Stop"),
        Binding("e", "errors", "Errors"),
        Binding("g", "toggle_grid", "Grid"),
        Binding("D", "duplicates", "Duplicates", show=False),
        Binding("question_mark,f1", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("s", "similar", "Similar", show=False),
        Binding("d", "describe", "Describe", show=False),
        Binding("c", "copy_path", "Copy path", show=False),
        Binding("I", "index_all", "Index everything", show=False),
        Binding("F", "clear_filter", "Clear filter", show=False),
        Binding("r", "rescan", "Rescan album", show=False),
        Binding("down", "focus_results", "Go to the results", show=False),
        Binding("escape", "focus_query", "Back to the query", show=False),
    ]
    MAIN_SCREEN_ACTIONS: ClassVar[frozenset[str]] = frozenset(
        binding.action for binding in BINDINGS if isinstance(binding, Binding)
    ) - {"quit"}
    """The keys of the main screen: off, and not in the footer, while a dialog is over it."""

    def __init__(
        self,
        paths: list[Path],
        *,
        config: TuiConfig,
        image_class: ImageWidget | None,
        config_error: str | None = None,
    ) -> None:
        super().__init__()
        self.paths = [Path(p).expanduser().absolute() for p in paths]
        self.config = config
        self.image_class = image_class
        self.config_error = config_error
        self.library: Library | None = None
        self.model: ClipModel | None = None
        self.model_name: str | None = None
        self._installed_choice: str | None = None  # the model the first-run dialog installed
        self._start_error: str | None = None  # why the library or the model could not open
        self.roots: list[Path] = []
        self.last_search_s: float | None = None
        """Seconds from Enter to the first page of the latest search."""
        self.search_complete = False
        """Whether the latest search's whole result list has arrived."""
        self._shown_generation = 0
        self._jobs = IndexingJobs(self)
        self._notices: deque[str] = deque(maxlen=NOTICES_KEPT)
        self._last_timeline = 0.0
        self._search_generation = 0
        self._query: tuple[SearchKind, str] | None = None
        self._filter: str | None = None
        self._quitting = False

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="side"):
                timeline = TimelineTree(id="timeline")
                timeline.border_title = "Timeline"
                yield timeline
                yield IndexingPanel(id="indexing")
            with Vertical(id="results-pane") as pane:
                pane.border_title = "Results"
                yield Static(
                    Text("Opening the library...", style="dim"), id="results-hint", markup=False
                )
                results = ResultsList(self.image_class, self.config.page_size, id="results")
                grid = ResultsGrid(self.image_class, self.config.page_size, id="results-grid")
                grid.display = self.config.view == "grid"
                results.display = not grid.display
                yield results
                yield grid
        yield QueryInput(
            placeholder="Search your photos: beach + sunset - people   (Enter)",
            id="query",
        )
        yield Footer(compact=True)

    def on_mount(self) -> None:
        if self.config.theme:
            if self.config.theme in self.available_themes:
                self.theme = self.config.theme
            else:
                self.notify(
                    f"Unknown theme {self.config.theme!r} in the settings", severity="warning"
                )
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        self.query_one("#query", Input).focus()
        if self.config_error:
            self.notify(self.config_error, title="Settings", severity="warning", markup=False)
        self._start(None)

    def _remember_theme(self, theme: Theme) -> None:
        """Write a theme chosen in the app to the settings, so that the next start uses it."""
        if theme.name != self.config.theme and self._save_setting("theme", theme.name):
            self.config = dataclasses.replace(self.config, theme=theme.name)

    def _save_setting(self, name: str, value: str) -> bool:
        """Write a setting changed in the app to ``config.toml``; False (said) when it fails."""
        from tui.config import save_setting

        try:
            save_setting(name, value)
        except (OSError, ValueError) as error:
            self.notify(f"The {name} is not saved: {error}", severity="warning", markup=False)
            return False
        return True

    # -- start-up ----------------------------------------------------------------------------

    @work(thread=True, group="engine", exclusive=True, exit_on_error=False)
    def _start(self, library: Library | None) -> None:
        """Open the library (unless given), add the folders given, and load the model."""
        if library is None:
            opened = Library.open()
            try:
                if self.paths:
                    opened.add_roots(self.paths)
            except BaseException:
                opened.close()
                raise
            library = opened
        name = self._installed_choice or choose_model_name(self.config, library)
        roots = library.roots()
        try:
            model = load_model(name, vulkan=self.config.gpu, precision=self.config.precision)
        except ModelNotInstalledError as error:
            unknown = not_installable(name, from_setting=name == self.config.model)
            if unknown is not None and not self._installed_choice:
                library.close()
                raise unknown from None
            self.post_message(ModelMissing(library, name, str(error)))
            return
        if self.config.gpu and not model.vulkan:
            self.call_from_thread(
                self.notify, "No Vulkan GPU found; encoding on the CPU.", title="Settings"
            )
        if model.precision.note:
            self.call_from_thread(
                self.notify, model.precision.note, title="Precision", markup=False
            )
        with contextlib.suppress(ClipsearchError):
            # Load the text network and the search's copy of the vectors now, not on first use.
            search(library, model, "a photo", top=1)
        offer = not roots and not self.paths and gallery_folder() is not None
        self.post_message(EngineReady(library, model, name, roots, offer))

    def on_model_missing(self, message: ModelMissing) -> None:
        if not self.is_running:
            message.library.close()
            return
        self.library = message.library
        self._hint("No model installed.")

        def installed(done: str | None) -> None:
            if done:
                self._installed_choice = done
                self.notify(f"Model {done} installed", markup=False)
                self._hint("Loading the model...")
                self._start(self.library)
            else:
                self.exit(return_code=1, message=Text("no CLIP model installed: " + message.reason))

        # a library that holds no embeddings yet may start with the multilingual model instead
        empty = message.library.model_name is None
        other = multilingual_model_name() if empty and not self.config.model else None
        dial = empty and not self.config.model
        screen = InstallScreen(message.model_name, message.reason, other, dial=dial)
        self.push_screen(screen, installed)

    def on_engine_ready(self, message: EngineReady) -> None:
        if not self.is_running:
            message.model.close()
            message.library.close()
            return
        self.library, self.model = message.library, message.model
        self.model_name = message.model_name
        self._start_error = None
        self.roots = list(message.roots)
        self.sub_title = f"model {message.model_name}, {message.model.precision}"
        self._hint("Type a query below and press Enter.")
        self._load_timeline()
        if message.offer_gallery:
            self.action_gallery()
        elif self.roots:
            self._jobs.enqueue(self._jobs.new("sync", None, "album scan"))
        else:
            self._hint("No album folder yet: start with clipsearch-tui PATH.")

    # -- timeline ----------------------------------------------------------------------------

    @work(thread=True, group="timeline", exclusive=True, exit_on_error=False)
    def _load_timeline(self) -> None:
        if self.library is not None:
            self.post_message(TimelineLoaded(self.library.timeline()))

    def on_timeline_loaded(self, message: TimelineLoaded) -> None:
        if not self.is_running:
            return
        self.query_one(TimelineTree).show(message.timeline)

    # -- indexing ----------------------------------------------------------------------------

    @property
    def indexing(self) -> bool:
        """Whether a sync or an indexing run is in progress."""
        return self._jobs.running is not None

    def on_index_progressed(self, message: IndexProgressed) -> None:
        if not self.is_running or not self._jobs.current(message.job):
            return
        self._panel().progressed(message.progress, len(self._jobs.waiting))
        now = time.monotonic()
        if now - self._last_timeline >= TIMELINE_REFRESH_S:
            self._last_timeline = now
            self._load_timeline()

    def on_index_finished(self, message: IndexFinished) -> None:
        if not self.is_running:
            return
        job = self._jobs.finished(message.job)
        if job is None:
            return
        if self._quitting:
            self.exit()
            return
        if message.roots is not None:
            self.roots = message.roots
        self._panel().finished(message, job.name, len(self._jobs.waiting))
        if message.error is not None and not message.unexpected:
            self.notify(
                inert(message.error), title=f"{job.name} failed", severity="error", markup=False
            )
        elif job.kind in ("index", "retry") and not message.cancelled:
            text = f"{plural(message.indexed, 'photo')} indexed"
            if message.errors:
                text += f", {message.errors} could not be read (e lists them)"
            self.notify(text, title=f"Indexed {job.name}", markup=False)
        self._load_timeline()
        self.refresh_bindings()
        self._jobs.start_next()

    def _panel(self) -> IndexingPanel:
        return self.query_one(IndexingPanel)

    # -- a small read-only surface for tests and scripts that drive the app ---------------------

    @property
    def searches_started(self) -> int:
        """How many searches were started; a newer one makes the results of older ones stale."""
        return self._search_generation

    @property
    def jobs_waiting(self) -> int:
        """Sync and indexing jobs queued behind the running one."""
        return len(self._jobs.waiting)

    @property
    def job_thread_running(self) -> bool:
        """Whether a job's thread is still at work (it may outlive the job a moment)."""
        return self._jobs.thread_running

    @property
    def notices(self) -> tuple[str, ...]:
        """The messages of the notifications shown so far, oldest first (the last
        :data:`NOTICES_KEPT`)."""
        return tuple(self._notices)

    def screen_text(self) -> str:
        """The screen as the user sees it now, as plain text: one line per terminal row.

        Read through Textual's public SVG screenshot (:func:`tui.screen_text.screen_text`).
        """
        return read_screen_text(self)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Textual's notification (thread-safe, as Textual's), also kept in :attr:`notices`."""
        self._notices.append(message)
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # -- searching ---------------------------------------------------------------------------

    @on(Input.Submitted, "#query")
    def _query_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if text:
            self.run_search("text", text)
        else:
            self._hint("Type what to look for, then press Enter.")

    def run_search(self, kind: SearchKind, query: str) -> None:
        """Start a search (text query, or photos similar to an image path) in a worker.

        A search for similar photos empties the query box: its text is no longer what the
        results are for (the results' title says which photo they are like)."""
        self._query = (kind, query)
        if kind == "similar":
            self.query_one("#query", QueryInput).value = ""
        if self.model is None or self.library is None:
            self._not_ready()
            return
        self._search_generation += 1
        self.search_complete = False
        since, until = bucket_bounds(self._filter) if self._filter else (None, None)
        self._search(self._search_generation, kind, query, since, until)

    @work(thread=True, group="search", exclusive=True, exit_on_error=False)
    def _search(
        self,
        generation: int,
        kind: SearchKind,
        query: str,
        since: datetime | None,
        until: datetime | None,
    ) -> None:
        """Rank the photos; a text query posts the first screenful before the rest.

        The query is encoded once and every photo scored once (:func:`core.ranking.search_pages`);
        re-scoring exactly only the best for a screenful is quicker than for
        :attr:`TuiConfig.results` of them, so the first page appears sooner and the full list
        follows in a second message.
        """
        assert self.library is not None and self.model is not None
        worker = get_current_worker()
        started = time.perf_counter()
        total = self.config.results
        try:
            if kind == "similar":
                hits = similar(self.library, self.model, query, top=total, since=since, until=until)
            else:
                first = min(total, self.config.page_size)
                tops = (first, total) if first < total else (total,)
                pages = search_pages(
                    self.library, self.model, query, tops, since=since, until=until
                )
                hits = next(pages)
                if len(hits) == first < total:
                    elapsed = time.perf_counter() - started
                    self.post_message(SearchFinished(generation, query, hits, elapsed, False))
                    if worker.is_cancelled:
                        return
                    hits = next(pages)
        except ClipsearchError as error:
            self.post_message(SearchFailed(generation, query, str(error)))
            return
        elapsed = time.perf_counter() - started
        self.post_message(SearchFinished(generation, query, hits, elapsed, True))

    async def on_search_finished(self, message: SearchFinished) -> None:
        if not self.is_running or message.generation != self._search_generation:
            return
        results = self._results()
        if self._shown_generation == message.generation:
            results.extend(message.hits)  # the rest of the list behind the first page
        else:
            self._shown_generation = message.generation
            await results.show(message.hits)
            self.last_search_s = message.elapsed_s
        self.search_complete = message.complete
        kind = self._query[0] if self._query else "text"
        what = Path(message.query).name if kind == "similar" else message.query
        label = "like" if kind == "similar" else "for"
        count = f"{len(message.hits)}" if message.complete else f"{len(message.hits)}+"
        subtitle = f"{count} {label} {inert(what)}"
        if self._filter:
            subtitle += f" in {self._filter}"
        first_page_s = message.elapsed_s if self.last_search_s is None else self.last_search_s
        subtitle += f" ({first_page_s * 1000:.0f} ms)"
        self.query_one("#results-pane").border_subtitle = Text(subtitle)
        hint = (
            script_hint(self.model.spec, message.query) if kind == "text" and self.model else None
        )
        self._hint(hint or ("" if message.hits else "No results."))

    def on_search_failed(self, message: SearchFailed) -> None:
        if not self.is_running or message.generation != self._search_generation:
            return
        self.search_complete = True
        self._hint(message.reason, error=True)

    def _not_ready(self) -> None:
        """Say why nothing can be searched yet: the start-up's error (a damaged library, say,
        with its way out) stays shown rather than giving way to "not loaded yet"."""
        if self._start_error is not None:
            self._hint(self._start_error, error=True)
        else:
            self._hint("The model is not loaded yet.")

    def _hint(self, text: str, *, error: bool = False) -> None:
        hint = self.query_one("#results-hint", Static)
        shown = Text(inert(text), style="red" if error else "dim")
        if hint.display != bool(text):
            hint.display = bool(text)
        if text and hint.content != shown:
            hint.update(shown)

    # -- results -----------------------------------------------------------------------------

    def _results(self) -> PagedResults:
        """The results view shown now: the list, or the grid (``g`` switches)."""
        return self.query_one(ResultsGrid if self.config.view == "grid" else ResultsList)

    def on_results_opened(self, message: PagedResults.Opened) -> None:
        self._open_detail(message.hit)

    def _open_detail(self, hit: Hit, *, describe: bool = False) -> None:
        def chosen(path: Path | None) -> None:
            if path is not None:
                self.run_search("similar", str(path))

        screen = DetailScreen(
            hit,
            library=self.library,
            model=self.model,
            labels=self.config.labels,
            image_class=self.image_class,
            describe_now=describe,
            step=self._step_result,
        )
        self.push_screen(screen, chosen)

    def _step_result(self, offset: int) -> Hit | None:
        """Move the results' cursor by ``offset`` (for the detail view); the hit now under it."""
        results = self._results()
        target = results.cursor + offset
        if not 0 <= target < len(results.hits):
            return None
        results.cursor = target
        return results.hits[target]

    # -- actions -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MAIN_SCREEN_ACTIONS and self._covered():
            return False
        if action in ("pause", "stop_indexing"):
            return self.indexing
        return True

    def _covered(self) -> bool:
        """Whether a dialog or another screen is over the main screen (the command palette,
        which runs the main screen's actions, does not count)."""
        return len(self.screen_stack) > 1 and not isinstance(self.screen, CommandPalette)

    def action_focus_query(self) -> None:
        """Go to the query box to type: letters are then typed, even ``i`` into the empty box."""
        query = self.query_one("#query", QueryInput)
        query.focus()
        query.typing = True

    def action_focus_results(self) -> None:
        """Leave the query box for the results, or for the timeline while there are none."""
        results = self._results()
        if results.hits:
            results.focus()
        else:
            self.query_one(TimelineTree).focus()

    def action_index_bucket(self) -> None:
        bucket = self.query_one(TimelineTree).selected_bucket
        if bucket is None:
            self.notify("Pick a period in the timeline first", severity="warning")
            return
        name = bucket.label if bucket.kind == "relative" else bucket.key
        self._jobs.enqueue(self._jobs.new("index", bucket.key, name))

    def action_index_all(self) -> None:
        self._jobs.enqueue(self._jobs.new("index", "all", "All photos"))

    def action_rescan(self) -> None:
        self._jobs.enqueue(self._jobs.new("sync", None, "album scan"))

    def action_filter_bucket(self) -> None:
        bucket = self.query_one(TimelineTree).selected_bucket
        if bucket is None:
            return
        if self._filter == bucket.key or bucket.key == "all":
            self.action_clear_filter()
            return
        self._filter = bucket.key
        self.query_one("#results-pane").border_title = f"Results in {bucket.key}"
        self._rerun()

    def action_clear_filter(self) -> None:
        self._filter = None
        self.query_one("#results-pane").border_title = "Results"
        self._rerun()

    def _rerun(self) -> None:
        if self._query is not None:
            self.run_search(*self._query)

    def action_pause(self) -> None:
        self._jobs.toggle_pause()

    def action_stop_indexing(self) -> None:
        self._jobs.stop()

    def action_errors(self) -> None:
        self._load_failures()

    @work(thread=True, group="failures", exclusive=True, exit_on_error=False)
    def _load_failures(self) -> None:
        if self.library is None:
            return
        failures = [(str(r.path), r.error or "unreadable") for r in self.library.failures()]
        skipped = [(str(path), reason) for path, reason in self.library.skipped()]
        self.post_message(FailuresLoaded(failures, skipped))

    def on_failures_loaded(self, message: FailuresLoaded) -> None:
        if not self.is_running:
            return

        def closed(retry: bool | None) -> None:
            if retry:
                self._jobs.enqueue(self._jobs.new("retry", "all", "failed photos"))

        self.push_screen(ErrorsScreen(message.failures, message.skipped), closed)

    def action_open_result(self) -> None:
        hit = self._results().highlighted
        if hit is not None:
            self._open_detail(hit)

    def action_similar(self) -> None:
        hit = self._results().highlighted
        if hit is not None:
            self.run_search("similar", str(hit.photo.path))

    def action_describe(self) -> None:
        hit = self._results().highlighted
        if hit is not None:
            self._open_detail(hit, describe=True)

    def action_copy_path(self) -> None:
        hit = self._results().highlighted
        if hit is not None:
            self.copy_to_clipboard(str(hit.photo.path))
            self.notify(inert(str(hit.photo.path)), title="Path copied", markup=False)

    def action_duplicates(self) -> None:
        """Open the Duplicates view over the library's indexed photos."""
        from tui.screens.duplicates import DuplicatesScreen

        if self.library is None:
            self.notify("The library is not open yet", severity="warning")
            return
        self.push_screen(
            DuplicatesScreen(self.library.path, self.config.duplicate_threshold, self.image_class)
        )

    async def action_toggle_grid(self) -> None:
        """Show the results as a grid of thumbnails, or as a list again; remembered."""
        shown = self._results()
        view: ResultsView = "list" if self.config.view == "grid" else "grid"
        self.config = dataclasses.replace(self.config, view=view)
        self._save_setting("view", view)
        results = self._results()
        had_focus = shown.has_focus
        shown.display, results.display = False, True
        await results.show(shown.hits, cursor=shown.cursor)
        if had_focus:
            results.focus()

    def action_gallery(self) -> None:
        folder = gallery_folder()
        if folder is None:
            self.notify("No sample gallery is installed", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._add_root(folder)
            elif not self.roots:
                self._hint("No album folder yet: start with clipsearch-tui PATH.")

        question = Text(
            "No photo folders are known yet. Open the sample gallery that comes with "
            "clipsearch-tui? You can add your own folders later with: clipsearch-tui PATH\n\n"
        )
        question.append(inert(str(folder)), style="dim")
        self.push_screen(ConfirmScreen("Sample gallery", question, "Open it", "Not now"), answered)

    def _add_root(self, folder: Path) -> None:
        """Add an album folder and scan it (both in the indexing worker)."""
        self._jobs.enqueue(self._jobs.new("sync", None, "album scan", [folder]))

    def action_help(self) -> None:
        sections = [
            ("Everywhere", binding_rows(self.BINDINGS)),
            ("Results", binding_rows(ResultsList.BINDINGS)),
            ("Results grid (g)", binding_rows(ResultsGrid.BINDINGS)),
            ("Result detail", binding_rows(DetailScreen.BINDINGS)),
            ("Indexing errors (e)", binding_rows(ErrorsScreen.BINDINGS)),
            (
                "Timeline",
                [("up, down", "Move"), ("enter, space", "Open or close a year or month")],
            ),
            ("Command palette", [("^p", "Every action by name")]),
            ("Settings", [("file", inert(str(config_path())))]),
        ]
        self.push_screen(HelpScreen(sections))

    def switch_model(self, name: str) -> None:
        """Make ``name`` the library's model, after asking: its embeddings replace the current
        model's, and every photo is indexed again."""
        if self.library is None or self.model is None:
            self._not_ready()
            return
        if self.indexing:
            self.notify("Stop indexing first (x), then switch the model", severity="warning")
            return
        question = Text(
            f"Search and index with {name} instead of {self.model_name}? The library's "
            "embeddings are dropped and every photo is indexed again with it (thumbnails and "
            "dates are kept)."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._hint(f"Loading {name}...")
                self._switch_model(name)

        self.push_screen(ConfirmScreen("Switch model?", question, "Switch", "Keep"), answered)

    @work(thread=True, group="engine", exclusive=True, exit_on_error=False)
    def _switch_model(self, name: str) -> None:
        assert self.library is not None
        try:
            model = load_model(name, vulkan=self.config.gpu, precision=self.config.precision)
        except ClipsearchError as error:
            self.call_from_thread(self._hint, str(error), error=True)
            return
        try:
            self.library.use_model(model.name, model.embed_dim, weights=model.weights, replace=True)
        except ClipsearchError as error:
            model.close()
            self.call_from_thread(self._hint, str(error), error=True)
            return
        self.post_message(ModelSwitched(model))

    def on_model_switched(self, message: ModelSwitched) -> None:
        if not self.is_running:
            message.model.close()
            return
        old, self.model = self.model, message.model
        self.model_name = message.model.name
        self.sub_title = f"model {message.model.name}, {message.model.precision}"
        if old is not None:
            old.close()
        self._query = None
        if self.config.model and self.config.model != message.model.name:
            self.notify(
                f"config.toml sets model = {self.config.model}; set it to {message.model.name} "
                "to keep this model next time",
                severity="warning",
                markup=False,
            )
        self._hint(f"Switched to {message.model.name}; indexing every photo again.")
        self._load_timeline()
        self.action_index_all()

    async def action_quit(self) -> None:
        running = self._jobs.running
        if running is None:
            self.exit()
            return
        question = Text(
            f"Indexing {running.name} is still running. Stop it and quit? "
            "Photos indexed so far are kept; the rest can be indexed later."
        )

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            if not self.indexing:
                self.exit()
                return
            self._quitting = True
            self.action_stop_indexing()
            self._panel().cancelling(quitting=True)
            self.set_timer(STOP_WAIT_S, self._quit_now)

        self.push_screen(ConfirmScreen("Quit?", question, "Stop and quit", "Keep going"), answered)

    def _quit_now(self) -> None:
        """Quit even though the indexing run has not stopped yet (it is waited for on unmount)."""
        self.exit()

    # -- errors and shutdown -----------------------------------------------------------------

    def run(self, *args: Any, **kwargs: Any) -> int | None:
        """Run the app, with what native libraries print kept off the screen (see
        :mod:`tui.terminal`)."""
        with divert_native_stderr(cache_dir() / LOG_NAME):
            return super().run(*args, **kwargs)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place where an unexpected failure of any worker is shown."""
        worker = event.worker
        if event.state != WorkerState.ERROR:
            return
        error = worker.error
        if isinstance(error, ClipsearchError):
            text = str(error)
        else:
            text = f"{type(error).__name__}: {error}"
        if worker.group == "engine":
            if self.model is None:
                self._start_error = text
            self._hint(text, error=True)
        self.notify(
            inert(text),
            title=f"{worker.group or worker.name} failed",
            severity="error",
            markup=False,
        )

    async def on_unmount(self) -> None:
        if self._jobs.thread_running:
            await self._jobs.wait_for_thread(STOP_WAIT_S)
        if self.model is not None:
            self.model.close()
        if self.library is not None:
            self.library.close()


def make_app(
    paths: list[Path],
    *,
    images: str = "auto",
    config: TuiConfig | None = None,
    gpu: bool = False,
) -> ClipSearchApp:
    """Build the app, for the command line and for the tests.

    Parameters
    ----------
    paths
        Album folders given on the command line; they are added to the library.
    images
        ``auto``, ``kitty``, ``sixel``, ``halfcell`` or ``none``: how thumbnails are drawn.
        ``auto`` defers to the ``images`` setting, then to detection.
    config
        Settings to use instead of those read from the configuration file.
    gpu
        Encode on a Vulkan GPU when there is one, whatever the ``gpu`` setting says.

    Notes
    -----
    The terminal is asked what graphics it supports here, before the app takes it over.
    """
    config_error = None
    if config is None:
        try:
            config = load_config()
        except ConfigError as error:
            config, config_error = TuiConfig(), f"{error}; using the default settings"
    if gpu:
        config = dataclasses.replace(config, gpu=True)
    mode: ImageMode = config.images if images == "auto" else images  # type: ignore[assignment]
    return ClipSearchApp(
        paths, config=config, image_class=image_class(mode), config_error=config_error
    )


def run_app(paths: list[Path], *, images: str = "auto", gpu: bool = False) -> int:
    """Build the app with :func:`make_app`, run it, and return its exit code.

    The one entry the command line (:mod:`cli.main`) opens the app through.
    """
    app = make_app(paths, images=images, gpu=gpu)
    app.run()
    return int(app.return_code or 0)
