"""The results pane: a ranked stream of photos, shown a page at a time, as a list or a grid.

Textual slows down with hundreds of widgets, so a results view keeps every hit as data and shows
items only a page at a time: the items that fit on screen when results arrive, the rest of the
page right after, the next page when the view is scrolled (or the cursor moved) near its end.
Items are reused from one search to the next. Thumbnails are read from the thumbnail cache
(:func:`core.thumbnails.load_thumbnail`) in a thread worker, shrunk there, and handed to the
items by a message.

:class:`PagedResults` holds what the list and the grid (:mod:`tui.widgets.grid`) share: the
hits, the cursor, the paging and the thumbnail loading. :class:`ResultsList` is the list: one
row per hit, every row of a page given its thumbnail as the page is shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image as PILImage
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
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


class ResultItem(Widget):
    """One hit on screen, with its thumbnail once loaded: the base of list rows and grid cells.

    One widget per hit keeps each frame cheap; a new hit or a new thumbnail only repaints the
    item. Items are reused from one search to the next. A subclass draws the hit in
    :meth:`render`, with the thumbnail that :meth:`thumbnail` fits into :meth:`thumbnail_box`.
    """

    def __init__(self, hit: Hit, index: int, renderable: type | None, classes: str) -> None:
        super().__init__(classes=classes if renderable else f"{classes} -text-only")
        self.hit = hit
        self.index = index
        self.requested = False
        """Whether this hit's thumbnail was asked for (it may still be on its way)."""
        self._renderable_class = renderable
        self._image: PILImage.Image | None = None
        self._thumbnail: Any = None
        self.thumbnail_cells = (0, 0)
        """Columns and rows of the thumbnail drawn now."""

    def thumbnail_box(self) -> tuple[int, int]:
        """Columns and rows the thumbnail is fitted into."""
        return THUMBNAIL_COLUMNS, ROW_HEIGHT

    def thumbnail(self) -> Any:
        """The thumbnail's renderable, fitted into :meth:`thumbnail_box`; None until loaded."""
        if self._thumbnail is None and self._image is not None and self._renderable_class:
            self.thumbnail_cells = cells_for(self._image, self.thumbnail_box())
            if 0 in self.thumbnail_cells:  # no room yet (before the first layout)
                return None
            self._thumbnail = self._renderable_class(self._image, *self.thumbnail_cells)
        return self._thumbnail

    def set_hit(self, index: int, hit: Hit) -> None:
        """Show another hit in this item (its thumbnail follows later, unless it is the same
        photo's)."""
        self.index = index
        if hit is self.hit:
            return
        same_photo = (hit.photo.id, hit.photo.thumbnail) == (
            self.hit.photo.id,
            self.hit.photo.thumbnail,
        )
        self.hit = hit
        if not same_photo:
            self.requested = False
            self.set_image(None)
        self.refresh()

    def forget_request(self) -> None:
        """A thumbnail asked for earlier will not arrive (a new search): ask again if needed."""
        if self._image is None:
            self.requested = False

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
        self.query_ancestor(PagedResults).open_row(self.index)


class ResultRow(ResultItem):
    """One hit of the list: its thumbnail and its text side by side."""

    def __init__(self, hit: Hit, index: int, renderable: type | None) -> None:
        super().__init__(hit, index, renderable, "result-row")

    def render(self) -> RenderableType:
        if self._renderable_class is None:
            return _RowLines(None, hit_text(self.hit), 0)
        return _RowLines(self.thumbnail(), hit_text(self.hit), THUMBNAIL_COLUMNS)


class PagedResults(VerticalScroll, can_focus=True):
    """The hits of the latest search, best first, shown as items a page at a time.

    Only the items that show hits are displayed; items left over from a longer earlier result
    list are hidden and reused, so a new search mostly updates text instead of mounting
    widgets. The items that fit on screen are filled first, the rest of the page after that
    frame is drawn. A subclass says how items look (:meth:`make_item`), where they are mounted
    (:meth:`item_container`), how many fit on screen (:meth:`items_in_view`) and which
    thumbnails to read when (:meth:`want_thumbnails`).
    """

    cursor: reactive[int] = reactive(0, init=False)

    thumbnail_pixels: ClassVar[int] = THUMBNAIL_PIXELS
    """Longest side, in pixels, of a thumbnail decoded for an item."""

    prefetch_items: ClassVar[int] = _PREFETCH_ROWS
    """The next page is shown when the cursor comes this close to the last item shown."""

    @dataclass
    class Opened(Message, namespace="results"):
        """The user opened a hit (Enter or click), in the list or the grid."""

        hit: Hit

    def __init__(
        self, image_class: ImageWidget | None, page_size: int = 30, *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.image_class = image_class
        self._renderable = renderable_class(image_class)
        self.page_size = page_size
        self.hits: list[Hit] = []
        self.thumbnails_requested = 0
        """Thumbnails asked for since the latest result list arrived (each read once)."""
        self._rows: list[ResultItem] = []
        self._shown = 0
        self._generation = 0
        self._filling = False

    # -- what a subclass provides ---------------------------------------------------------------

    def make_item(self, hit: Hit, index: int) -> ResultItem:
        """A new item widget showing ``hit`` at ``index``."""
        raise NotImplementedError

    def item_container(self) -> Widget:
        """The widget the items are mounted in."""
        raise NotImplementedError

    def items_in_view(self) -> int:
        """About how many items fit on screen (a page, before the view has a size)."""
        raise NotImplementedError

    def want_thumbnails(self, start: int, end: int) -> None:
        """Items ``[start, end)`` were just given hits: read the thumbnails to show now."""
        self.request_thumbnails(range(start, end))

    # -- the shared surface ---------------------------------------------------------------------

    @property
    def mounted_rows(self) -> int:
        """Items showing hits so far (at most the number of hits)."""
        return self._shown

    @property
    def highlighted(self) -> Hit | None:
        """The hit under the cursor."""
        return self.hits[self.cursor] if 0 <= self.cursor < len(self.hits) else None

    async def show(self, hits: list[Hit], cursor: int = 0) -> None:
        """Replace the hits: the items on screen now, the rest of the page next.

        ``cursor`` is the hit to put the cursor on (the first by default).
        """
        self._generation += 1
        self.workers.cancel_group(self, "thumbnails")
        if self._rows and 0 <= self.cursor < len(self._rows):
            self._rows[self.cursor].remove_class("-highlight")
        self.hits = list(hits)
        self.thumbnails_requested = 0
        for row in self._rows:
            row.forget_request()
        self._shown = 0
        self.set_reactive(PagedResults.cursor, 0)
        first = min(len(self.hits), self.items_in_view(), self.page_size)
        # Items past the screen keep their old hit until the rest of the page is filled, right
        # after this frame; only items that this result list will not reach are hidden.
        for row in self._rows[min(len(self.hits), self.page_size) :]:
            if row.display:
                row.display = False
        self.scroll_home(animate=False)
        await self._show_rows(first)
        self._highlight(0)
        if self._shown < min(self.page_size, len(self.hits)):
            self.call_after_refresh(self._fill_first_page)
        if 0 < cursor < len(self.hits):
            self.cursor = cursor

    async def _fill_first_page(self) -> None:
        """Show the rest of the first page (the items below the screen)."""
        await self._show_rows(min(self.page_size, len(self.hits)))

    def extend(self, hits: list[Hit]) -> None:
        """Take the complete list of a search whose first hits are shown: cursor and scroll stay.

        Items whose hit reads differently in the longer list (another photo, a rounding of the
        probability, a tie broken otherwise) are updated.
        """
        self.hits = list(hits)
        self._shown = min(self._shown, len(self.hits))
        for index in range(self._shown):
            row, hit = self._rows[index], self.hits[index]
            if row.hit.photo.id != hit.photo.id or hit_text(row.hit).plain != hit_text(hit).plain:
                row.set_hit(index, hit)
            else:
                row.hit = hit
        self.want_thumbnails(0, self._shown)
        if self._shown < min(self.page_size, len(self.hits)):
            self.call_after_refresh(self._fill_first_page)

    async def _show_rows(self, count: int) -> None:
        """Make items ``[shown, count)`` show their hits, reusing hidden items, then mounting."""
        start = self._shown
        if count <= start:
            return
        for index in range(start, min(count, len(self._rows))):
            row = self._rows[index]
            row.set_hit(index, self.hits[index])
            if not row.display:
                row.display = True
        new = [self.make_item(self.hits[index], index) for index in range(len(self._rows), count)]
        self._shown = count
        if new:
            self._rows.extend(new)
            await self.item_container().mount_all(new)
        self.want_thumbnails(start, count)

    async def mount_more(self) -> None:
        """Show the next page of items and ask for their thumbnails."""
        if self._filling or self._shown >= len(self.hits):
            return
        self._filling = True
        try:
            page_end = (self._shown // self.page_size + 1) * self.page_size
            await self._show_rows(min(page_end, len(self.hits)))
        finally:
            self._filling = False

    def request_thumbnails(self, indexes: Iterable[int]) -> None:
        """Read, in a worker, the thumbnails of the shown items at ``indexes`` not asked for yet."""
        if self.image_class is None:
            return
        wanted = []
        for index in indexes:
            row = self._row(index)
            if row is not None and not row.requested:
                row.requested = True
                wanted.append((row.hit.photo.id, row.hit.photo.thumbnail))
        if wanted:
            self.thumbnails_requested += len(wanted)
            self._load_thumbnails(self._generation, wanted)

    @work(thread=True, group="thumbnails", exit_on_error=False)
    def _load_thumbnails(self, generation: int, wanted: list[tuple[int, Path | None]]) -> None:
        worker = get_current_worker()
        images: dict[int, PILImage.Image | None] = {}
        for photo_id, path in wanted:
            if worker.is_cancelled:
                return
            images[photo_id] = load_thumbnail(path, self.thumbnail_pixels)
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
        while new >= self._shown - self.prefetch_items and self._shown < len(self.hits):
            before = self._shown
            await self.mount_more()
            if self._shown == before:
                break
        self._highlight(new, old)

    def _row(self, index: int) -> ResultItem | None:
        return self._rows[index] if 0 <= index < self._shown else None

    def _highlight(self, new: int, old: int | None = None) -> None:
        if old is not None and (row := self._row(old)) is not None:
            row.remove_class("-highlight")
        row = self._row(new)
        if row is not None:
            row.add_class("-highlight")
            if row.virtual_region.size:
                self.scroll_to_widget(row, animate=False)
            else:  # mounted just now: scroll once it has a place on the screen
                self.call_after_refresh(self._scroll_to_cursor)

    def _scroll_to_cursor(self) -> None:
        row = self._row(self.cursor)
        if row is not None:
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
        """Move the cursor to item ``index`` and open its hit."""
        if 0 <= index < len(self.hits):
            self.focus()
            self.cursor = index
            self.post_message(self.Opened(self.hits[index]))


class ResultsList(PagedResults):
    """The hits as a list, one row each; Enter or a click opens one.

    Every row of a page gets its thumbnail as the page is shown.
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

    def compose(self) -> ComposeResult:
        yield Vertical(id="result-rows")

    def make_item(self, hit: Hit, index: int) -> ResultItem:
        return ResultRow(hit, index, self._renderable)

    def item_container(self) -> Widget:
        return self.query_one("#result-rows", Vertical)

    def items_in_view(self) -> int:
        height = self.scrollable_content_region.height or self.size.height
        return max(1, height // ROW_HEIGHT + 1) if height else self.page_size
