"""The results as a grid of thumbnails, as many columns as the pane is wide.

:class:`ResultsGrid` is the other view of :class:`~tui.widgets.results.PagedResults`: the same
hits, cursor, paging and thumbnail loading as the list, laid out in cells. It differs in two
ways. The number of columns follows the pane's width (:func:`grid_columns`), and changes when
the terminal is resized. Thumbnails are read lazily: only the cells on screen, and one row of
cells past it, ask for theirs; the rest ask when they are scrolled into view.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.segment import Segment
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container
from textual.events import Resize
from textual.widget import Widget

from core.ranking import Hit
from tui.text import inert, percent, taken
from tui.widgets.images import ImageWidget
from tui.widgets.results import PagedResults, ResultItem

CELL_MIN_WIDTH = 19
"""Narrowest cell, in terminal columns: the pane holds as many cells of at least this width as
fit, with :data:`GUTTER` between them."""

GUTTER = 1
"""Blank columns between cells, and blank lines between rows of cells (``.grid-cells``)."""

THUMBNAIL_ROWS = 5
"""Lines of a cell's thumbnail."""

TEXT_LINES = 3
"""Lines of a cell's text: rank and probability, file name, date."""

CELL_HEIGHT = THUMBNAIL_ROWS + TEXT_LINES
"""Lines per cell with thumbnails (see ``.grid-cell`` in ``app.tcss``)."""

TEXT_CELL_HEIGHT = TEXT_LINES
"""Lines per cell without thumbnails (``.grid-cell.-text-only``)."""

NEAR_ROWS = 1
"""Rows of cells below the screen that read their thumbnails before they are scrolled to."""

GRID_THUMBNAIL_PIXELS = 192
"""Longest side, in pixels, of a thumbnail decoded for a cell."""


def grid_columns(width: int) -> int:
    """How many cells fit side by side in ``width`` columns (at least one)."""
    return max(1, (width + GUTTER) // (CELL_MIN_WIDTH + GUTTER))


def cell_text(hit: Hit) -> Text:
    """Rank and probability, file name, and date of a hit, one line each, all inert."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"#{hit.rank}", style="bold")
    text.append(f"  {percent(hit.probability)}\n", style="bold cyan")
    text.append(inert(Path(hit.photo.path).name) + "\n")
    text.append(taken(hit.photo.taken_at), style="dim")
    return text


class _CellLines:
    """A Rich renderable: the thumbnail centred in its box, then the text below it."""

    def __init__(self, thumbnail: Any, columns: int, text: Text) -> None:
        self.thumbnail = thumbnail
        self.columns = columns
        self.text = text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        if self.thumbnail is None:
            picture = [[Segment(" " * width)]] * THUMBNAIL_ROWS
        else:
            columns = min(self.columns, width)
            box = options.update(width=columns, height=THUMBNAIL_ROWS)
            left = Segment(" " * ((width - columns) // 2))
            right = Segment(" " * (width - columns - len(left.text)))
            picture = [
                [left, *line, right] for line in console.render_lines(self.thumbnail, box, pad=True)
            ]
        text = console.render_lines(self.text, options.update(height=TEXT_LINES), pad=True)
        for line in [*picture, *text]:
            yield from line
            yield Segment.line()


class GridCell(ResultItem):
    """One hit of the grid: its thumbnail above its rank, probability, name and date."""

    def __init__(self, hit: Hit, index: int, renderable: type | None) -> None:
        super().__init__(hit, index, renderable, "grid-cell")
        self._box_width = 0

    def thumbnail_box(self) -> tuple[int, int]:
        return self._box_width, THUMBNAIL_ROWS

    def render(self) -> RenderableType:
        if self._renderable_class is None:
            return cell_text(self.hit)
        width = self.content_size.width
        if width != self._box_width:  # the cell was resized: fit the thumbnail again
            self._drop_thumbnail()
            self._box_width = width
        thumbnail = self.thumbnail()
        return _CellLines(thumbnail, self.thumbnail_cells[0], cell_text(self.hit))


class ResultsGrid(PagedResults):
    """The hits as a grid of cells; arrows move by cell and by row, Enter or a click opens one.

    Cells are shown a page at a time as in the list; each reads its thumbnail only once it is
    on screen or within :data:`NEAR_ROWS` rows of it.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right,l", "cursor(1)", "Next", show=False),
        Binding("left,h", "cursor(-1)", "Previous", show=False),
        Binding("down,j", "row(1)", "Row down", show=False),
        Binding("up,k", "row(-1)", "Row up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("enter", "open", "Open"),
    ]

    thumbnail_pixels = GRID_THUMBNAIL_PIXELS

    def __init__(
        self, image_class: ImageWidget | None, page_size: int = 30, *, id: str | None = None
    ) -> None:
        super().__init__(image_class, page_size, id=id)
        self._columns = 1

    def compose(self) -> ComposeResult:
        yield Container(classes="grid-cells")

    @property
    def columns(self) -> int:
        """Cells side by side now (follows the pane's width)."""
        return self._columns

    @property
    def prefetch_items(self) -> int:  # type: ignore[override]
        return 2 * self._columns

    def _pitch(self) -> int:
        """Lines from the top of one row of cells to the top of the next."""
        return (CELL_HEIGHT if self._renderable else TEXT_CELL_HEIGHT) + GUTTER

    def _rows_in_view(self) -> int:
        height = self.scrollable_content_region.height or self.size.height
        return max(1, height // self._pitch())

    def make_item(self, hit: Hit, index: int) -> ResultItem:
        return GridCell(hit, index, self._renderable)

    def item_container(self) -> Widget:
        return self.query_one(".grid-cells", Container)

    def items_in_view(self) -> int:
        if not (self.scrollable_content_region.height or self.size.height):
            return self.page_size
        self._fit_columns()
        return (self._rows_in_view() + 1) * self._columns

    def want_thumbnails(self, start: int, end: int) -> None:
        """Read thumbnails only for the cells in view (once the new cells are laid out)."""
        self.call_after_refresh(self.load_in_view)

    def load_in_view(self) -> None:
        """Ask for the thumbnails of the cells on screen and of :data:`NEAR_ROWS` rows below."""
        if not self.is_mounted or self.image_class is None:
            return
        pitch = self._pitch()
        top = int(self.scroll_y)
        height = self.scrollable_content_region.height or self.size.height
        first_row = top // pitch
        last_row = (top + max(0, height - 1)) // pitch + NEAR_ROWS
        self.request_thumbnails(range(first_row * self._columns, (last_row + 1) * self._columns))

    def _fit_columns(self) -> bool:
        """Set the number of columns for the pane's width; True when it changed."""
        width = self.scrollable_content_region.width or self.size.width
        columns = grid_columns(width) if width else self._columns
        if columns == self._columns:
            return False
        self._columns = columns
        self.item_container().styles.grid_size_columns = columns
        return True

    def on_mount(self) -> None:
        self._fit_columns()

    def on_resize(self, event: Resize) -> None:
        self._fit_columns()
        self.call_after_refresh(self._after_resize)

    def _after_resize(self) -> None:
        self._highlight(self.cursor)  # keep the cursor's cell on screen
        self.load_in_view()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.load_in_view()

    def action_row(self, delta: int) -> None:
        """Move the cursor ``delta`` rows down (up when negative), in its column.

        Past the last full row it goes to the last hit, if that is on a lower row; above the
        first row it stays.
        """
        if not self.hits:
            return
        columns = self._columns
        last = len(self.hits) - 1
        target = self.cursor + delta * columns
        if target < 0:
            target = self.cursor % columns
        elif target > last:
            target = last if last // columns > self.cursor // columns else self.cursor
        self.cursor = target

    def action_page(self, delta: int) -> None:
        """Move the cursor a screenful of rows down (up when negative)."""
        self.action_row(delta * self._rows_in_view())
