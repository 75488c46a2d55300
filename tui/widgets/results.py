"""The results pane: a ranked stream of photos, shown a page at a time.

Textual slows down with hundreds of widgets, so :class:`ResultsList` keeps every hit as data and
shows rows only a page at a time: the rows that fit on screen when results arrive, the rest of the
page right after, the next page when the list is scrolled (or the cursor moved) near its end. Rows
are reused from one search to the next. Each page's thumbnails are read from the thumbnail cache
in a thread worker, shrunk there, and handed to the rows by a message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image as PILImage
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.events import Click
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.worker import get_current_worker

from core.ranking import Hit
from core.thumbnails import load_thumbnail
from tui.messages import ThumbnailsLoaded
from tui.text import inert, percent, taken
from tui.widgets.images import ImageWidget, cells_for, renderable_class

THUMBNAIL_PIXELS = 96
"""Longest side, in pixels, of a thumbnail decoded for a result row."""

THUMBNAIL_COLUMNS = 10
"""Width of a row's thumbnail, in terminal columns."""

ROW_HEIGHT = 4
"""Lines per result row (see ``.result-row`` in ``app.tcss``)."""

_PREFETCH_ROWS = 5


def hit_text(hit: Hit) -> Text:
    """Rank, probability, cosine score, date, file name and folder of a hit, all inert."""
    photo = hit.photo
    text = Text()
    text.append(f"#{hit.rank}", style="bold")
    text.append(f"  {percent(hit.probability)}", style="bold cyan")
    text.append(f"  cos {hit.score:.3f}\n", style="dim")
    text.append(f"{taken(photo.taken_at)}\n")
    path = Path(photo.path)
    text.append(inert(path.name), style="bold")
    text.append("\n")
    text.append(inert(str(path.parent)), style="dim")
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


class _RowLines:
    """A Rich renderable: the thumbnail's lines and the text's lines side by side."""

    def __init__(self, thumbnail: Any, text: Text, columns: int) -> None:
        self.thumbnail = thumbnail
        self.text = text
        self.columns = columns

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        height = options.height or ROW_HEIGHT
        if not self.columns:
            yield from _lines(console.render_lines(self.text, options, pad=True))
            return
        gap = 1
        text_options = options.update(width=max(1, options.max_width - self.columns - gap))
        text = console.render_lines(self.text, text_options.update(height=height), pad=True)
        if self.thumbnail is None:
            blank = [Segment(" " * self.columns)]
            picture = [blank] * height
        else:
            box = options.update(width=self.columns, height=height)
            picture = console.render_lines(self.thumbnail, box, pad=True)
        space = Segment(" " * gap)
        for left, right in zip(picture, text, strict=False):
            yield from left
            yield space
            yield from right
            yield Segment.line()


def _lines(lines: list[list[Segment]]) -> Iterable[Segment]:
    for line in lines:
        yield from line
        yield Segment.line()


class ResultRow(Widget):
    """One hit: its thumbnail and its text, drawn by this one widget.

    One widget per row keeps each frame cheap; a new hit or a new thumbnail only repaints the
    row. Rows are reused from one search to the next.
    """

    def __init__(self, hit: Hit, index: int, renderable: type | None) -> None:
        super().__init__(classes="result-row" if renderable else "result-row -text-only")
        self.hit = hit
        self.index = index
        self._renderable_class = renderable
        self._image: PILImage.Image | None = None
        self._thumbnail: Any = None

    def render(self) -> RenderResult:
        if self._renderable_class is None:
            return _RowLines(None, hit_text(self.hit), 0)
        if self._thumbnail is None and self._image is not None:
            cells = cells_for(self._image, (THUMBNAIL_COLUMNS, ROW_HEIGHT))
            self._thumbnail = self._renderable_class(self._image, *cells)
        return _RowLines(self._thumbnail, hit_text(self.hit), THUMBNAIL_COLUMNS)

    def set_hit(self, index: int, hit: Hit) -> None:
        """Show another hit in this row (its thumbnail follows later)."""
        self.index = index
        if hit is self.hit:
            return
        self.hit = hit
        self.set_image(None)
        self.refresh()

    def set_image(self, image: PILImage.Image | None) -> None:
        """Show ``image`` (decoded off the UI thread) as the thumbnail; blank when None."""
        if image is self._image:
            return
        self._drop_thumbnail()
        self._image = image
        self.refresh()

    def _drop_thumbnail(self) -> None:
        if self._thumbnail is not None:
            self._thumbnail.cleanup()  # frees a Kitty image held by the terminal
        self._thumbnail = None

    def on_unmount(self) -> None:
        self._drop_thumbnail()

    def on_click(self, event: Click) -> None:
        event.stop()
        self.query_ancestor(ResultsList).open_row(self.index)


class ResultsList(VerticalScroll, can_focus=True):
    """The hits of the latest search, best first; Enter or a click opens one.

    Only the rows that show hits are displayed; rows left over from a longer earlier result list
    are hidden and reused, so a new search mostly updates text instead of mounting widgets. The
    rows that fit on screen are filled first, the rest of the page after that frame is drawn.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("pagedown", "cursor(5)", "Page down", show=False),
        Binding("pageup", "cursor(-5)", "Page up", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("enter", "open", "Open"),
    ]

    cursor: reactive[int] = reactive(0, init=False)

    @dataclass
    class Opened(Message):
        """The user opened a hit (Enter or click)."""

        hit: Hit

    def __init__(
        self, image_class: ImageWidget | None, page_size: int = 30, *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.image_class = image_class
        self._renderable = renderable_class(image_class)
        self.page_size = page_size
        self.hits: list[Hit] = []
        self._rows: list[ResultRow] = []
        self._shown = 0
        self._generation = 0
        self._filling = False

    def compose(self) -> ComposeResult:
        yield Vertical(id="result-rows")

    @property
    def mounted_rows(self) -> int:
        """Rows showing hits so far (at most the number of hits)."""
        return self._shown

    @property
    def highlighted(self) -> Hit | None:
        """The hit under the cursor."""
        return self.hits[self.cursor] if 0 <= self.cursor < len(self.hits) else None

    def _rows_in_view(self) -> int:
        height = self.scrollable_content_region.height or self.size.height
        return max(1, height // ROW_HEIGHT + 1) if height else self.page_size

    async def show(self, hits: list[Hit]) -> None:
        """Replace the list with ``hits``: the rows on screen now, the rest of the page next."""
        self._generation += 1
        self.workers.cancel_group(self, "thumbnails")
        if self._rows and 0 <= self.cursor < len(self._rows):
            self._rows[self.cursor].remove_class("-highlight")
        self.hits = list(hits)
        self._shown = 0
        self.set_reactive(ResultsList.cursor, 0)
        first = min(len(self.hits), self._rows_in_view(), self.page_size)
        # Rows past the screen keep their old hit until the rest of the page is filled, right
        # after this frame; only rows that this result list will not reach are hidden.
        for row in self._rows[min(len(self.hits), self.page_size) :]:
            if row.display:
                row.display = False
        self.scroll_home(animate=False)
        await self._show_rows(first)
        self._highlight(0)
        if self._shown < min(self.page_size, len(self.hits)):
            self.call_after_refresh(self._fill_first_page)

    async def _fill_first_page(self) -> None:
        """Show the rest of the first page (the rows below the screen)."""
        await self._show_rows(min(self.page_size, len(self.hits)))

    def extend(self, hits: list[Hit]) -> None:
        """Take the complete list of a search whose first hits are shown: cursor and scroll stay.

        Rows whose hit reads differently in the longer list (a rounding of the probability, a
        tie broken otherwise) are updated.
        """
        self.hits = list(hits)
        self._shown = min(self._shown, len(self.hits))
        moved = []
        for index in range(self._shown):
            row, hit = self._rows[index], self.hits[index]
            if row.hit.photo.id != hit.photo.id:
                moved.append((hit.photo.id, hit.photo.thumbnail))
            if hit_text(row.hit).plain != hit_text(hit).plain:
                row.set_hit(index, hit)
            else:
                row.hit = hit
        if moved and self.image_class is not None:
            self._load_thumbnails(self._generation, moved)
        if self._shown < min(self.page_size, len(self.hits)):
            self.call_after_refresh(self._fill_first_page)

    async def _show_rows(self, count: int) -> None:
        """Make rows ``[shown, count)`` show their hits, reusing hidden rows, then mounting."""
        start = self._shown
        if count <= start:
            return
        for index in range(start, min(count, len(self._rows))):
            row = self._rows[index]
            row.set_hit(index, self.hits[index])
            if not row.display:
                row.display = True
        new = [
            ResultRow(self.hits[index], index, self._renderable)
            for index in range(len(self._rows), count)
        ]
        self._shown = count
        if new:
            self._rows.extend(new)
            await self.query_one("#result-rows", Vertical).mount_all(new)
        if self.image_class is not None:
            wanted = [(hit.photo.id, hit.photo.thumbnail) for hit in self.hits[start:count]]
            self._load_thumbnails(self._generation, wanted)

    async def mount_more(self) -> None:
        """Show the next page of rows and ask for their thumbnails."""
        if self._filling or self._shown >= len(self.hits):
            return
        self._filling = True
        try:
            page_end = (self._shown // self.page_size + 1) * self.page_size
            await self._show_rows(min(page_end, len(self.hits)))
        finally:
            self._filling = False

    @work(thread=True, group="thumbnails", exit_on_error=False)
    def _load_thumbnails(self, generation: int, wanted: list[tuple[int, Path | None]]) -> None:
        worker = get_current_worker()
        images: dict[int, PILImage.Image | None] = {}
        for photo_id, path in wanted:
            if worker.is_cancelled:
                return
            images[photo_id] = load_thumbnail(path, THUMBNAIL_PIXELS)
        self.post_message(ThumbnailsLoaded(generation, images))

    def on_thumbnails_loaded(self, message: ThumbnailsLoaded) -> None:
        message.stop()
        if message.generation != self._generation or not self.app.is_running:
            return
        for row in self._rows[: self._shown]:
            if row.hit.photo.id in message.images:
                row.set_image(message.images[row.hit.photo.id])

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._shown < len(self.hits) and new_value >= self.max_scroll_y - 2:
            self.call_after_refresh(self.mount_more)

    async def watch_cursor(self, old: int, new: int) -> None:
        while new >= self._shown - _PREFETCH_ROWS and self._shown < len(self.hits):
            before = self._shown
            await self.mount_more()
            if self._shown == before:
                break
        self._highlight(new, old)

    def _row(self, index: int) -> ResultRow | None:
        return self._rows[index] if 0 <= index < self._shown else None

    def _highlight(self, new: int, old: int | None = None) -> None:
        if old is not None and (row := self._row(old)) is not None:
            row.remove_class("-highlight")
        row = self._row(new)
        if row is not None:
            row.add_class("-highlight")
            self.scroll_to_widget(row, animate=False)

    def action_cursor(self, delta: int) -> None:
        if self.hits:
            self.cursor = max(0, min(len(self.hits) - 1, self.cursor + delta))

    def action_first(self) -> None:
        if self.hits:
            self.cursor = 0

    def action_last(self) -> None:
        if self.hits:
            self.cursor = len(self.hits) - 1

    def action_open(self) -> None:
        hit = self.highlighted
        if hit is not None:
            self.post_message(self.Opened(hit))

    def open_row(self, index: int) -> None:
        """Move the cursor to row ``index`` and open its hit."""
        if 0 <= index < len(self.hits):
            self.focus()
            self.cursor = index
            self.post_message(self.Opened(self.hits[index]))
