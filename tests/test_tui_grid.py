"""The grid view of results through Pilot: the g key, the setting, the columns, the keys, and
thumbnails read only near the screen.

About 21 s of its own on 2 shared cores (pytest --durations: 8.5 s, 7.9 s, 3.3 s, 1 s and
less), besides the tiny model and the indexed album that the app tests share (23 s, once).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_tui_app import (  # noqa: F401 - fixtures
    ready,
    search_for,
    settle,
    tui_album,
    tui_config,
    tui_home,
    tui_indexed_home,
    tui_indexed_template,
)
from tui.app import make_app
from tui.screens.detail import DetailScreen
from tui.widgets.grid import GridCell, ResultsGrid, grid_columns
from tui.widgets.results import ResultsList

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning"),
]

RANK = re.compile(r"#\d+ ")


def _columns_on_screen(text: str) -> int:
    """Cells side by side, read off the screen: ranks on the line that shows ``#1``."""
    line = next((line for line in text.splitlines() if "#1 " in line), "")
    return len(RANK.findall(line))


def test_columns_follow_the_width() -> None:
    assert [grid_columns(width) for width in (0, 18, 19, 39, 41, 81)] == [1, 1, 1, 2, 2, 4]


async def test_g_switches_to_the_grid_and_the_next_start_remembers_it(
    tui_indexed_home: Path,  # noqa: F811
    tui_album: Path,  # noqa: F811
) -> None:
    from tui.config import config_path, load_config

    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('[tui]\nmodel = "tiny"\npage_size = 8\n')
    app = make_app([tui_album], images="none", config=load_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "a photo")
        assert _columns_on_screen(app.screen_text()) == 1  # the list
        await pilot.press("down")
        await settle(pilot, lambda: "g Grid" in app.screen_text())  # the footer offers it
        await pilot.press("g")
        grid = app.query_one(ResultsGrid)
        await settle(pilot, lambda: grid.display and app.focused is grid)
        await settle(pilot, lambda: _columns_on_screen(app.screen_text()) == 2)
        assert grid.columns == 2 and not app.query_one(ResultsList).display
    assert 'view = "grid"' in path.read_text()

    # the next start shows the grid; at 120 columns it holds 4 cells a row
    app = make_app([tui_album], images="none", config=load_config())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, ready(app))
        grid = app.query_one(ResultsGrid)
        assert grid.display and not app.query_one(ResultsList).display
        await search_for(pilot, app, "a photo")
        await settle(pilot, lambda: _columns_on_screen(app.screen_text()) == 4)
        assert grid.columns == 4
        await pilot.resize_terminal(80, 24)  # a narrower terminal: fewer columns
        await settle(pilot, lambda: _columns_on_screen(app.screen_text()) == 2)
        await pilot.press("down", "g")  # back to the list, remembered too
        await settle(pilot, lambda: app.query_one(ResultsList).display)
        await settle(pilot, lambda: _columns_on_screen(app.screen_text()) == 1)
    assert 'view = "list"' in path.read_text()
    assert load_config().page_size == 8  # the rest of the file is kept


async def test_arrows_move_by_cell_and_row_and_enter_opens_the_photo(
    tui_indexed_home: Path,  # noqa: F811
    tui_album: Path,  # noqa: F811
) -> None:
    app = make_app([tui_album], images="none", config=tui_config(view="grid"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "a photo")
        grid = app.query_one(ResultsGrid)
        await pilot.press("down")  # from the query box to the grid
        assert app.focused is grid and grid.columns == 2
        await pilot.press("right", "down")
        assert grid.cursor == 3
        await pilot.press("left")
        assert grid.cursor == 2
        await pilot.press("up", "up")  # the first row: stays
        assert grid.cursor == 0
        await pilot.press("down", "down", "right")
        assert grid.cursor == 5

        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen))
        fifth, sixth, seventh = grid.hits[4:7]
        await settle(pilot, lambda: Path(sixth.photo.path).name in app.screen_text())
        assert app.screen.hit is sixth  # type: ignore[attr-defined]
        await pilot.press("n")  # the next result, and the grid's cursor follows
        await settle(pilot, lambda: Path(seventh.photo.path).name in app.screen_text())
        assert grid.cursor == 6
        await pilot.press("p", "p")
        await settle(pilot, lambda: Path(fifth.photo.path).name in app.screen_text())
        assert grid.cursor == 4
        await pilot.press("O")  # copies the folder of the photo shown
        assert app.clipboard == str(Path(fifth.photo.path).parent)
        await pilot.press("escape")
        await settle(pilot, lambda: not isinstance(app.screen, DetailScreen))

        await pilot.press("c")  # the app's keys act on the grid's cursor
        assert app.clipboard == str(fifth.photo.path)

        cell = list(app.query(GridCell))[5]  # a click opens the cell under it
        await pilot.click(cell, offset=(2, 1))
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen))
        assert app.screen.hit is grid.hits[5] and grid.cursor == 5  # type: ignore[attr-defined]


async def test_only_cells_near_the_screen_read_their_thumbnails(
    tui_indexed_home: Path,  # noqa: F811
    tui_album: Path,  # noqa: F811
) -> None:
    app = make_app([tui_album], images="halfcell", config=tui_config(view="grid"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "a photo")
        grid = app.query_one(ResultsGrid)
        await settle(pilot, lambda: "▀" in app.screen_text())  # thumbnails are drawn
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        hits = len(grid.hits)
        assert hits == 13 and grid.mounted_rows == 8  # one page of cells
        # two rows of two cells on screen, one more row read ahead; not the rest of the page
        assert grid.thumbnails_requested == 6

        grid.focus()
        await pilot.press("end")  # to the last photo: the rows on the way are skipped
        await settle(pilot, lambda: grid.mounted_rows == hits)
        await settle(pilot, lambda: grid.thumbnails_requested > 6)
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        assert 6 < grid.thumbnails_requested < hits
        assert "▀" in app.screen_text() and f"#{hits} " in app.screen_text()


def test_the_view_setting_is_checked_and_saved_beside_the_others(tmp_path: Path) -> None:
    import tomllib

    from tui.config import ConfigError, TuiConfig, save_setting

    assert TuiConfig.from_mapping({"view": "grid"}).view == "grid"
    with pytest.raises(ConfigError, match="view must be one of list, grid, not 'mosaic'"):
        TuiConfig.from_mapping({"view": "mosaic"})
    path = tmp_path / "config.toml"
    path.write_text('[tui]\ntheme = "nord"\nview = "list"\n')
    save_setting("view", "grid", path)
    assert tomllib.loads(path.read_text()) == {"tui": {"theme": "nord", "view": "grid"}}
    # a setting first in its table, as the app adds it, is replaced in place
    path.write_text('[tui]\nview = "grid"\nmodel = "tiny"\n')
    save_setting("view", "list", path)
    save_setting("theme", "nord", path)
    save_setting("theme", "gruvbox", path)
    assert path.read_text() == '[tui]\ntheme = "gruvbox"\nview = "list"\nmodel = "tiny"\n'
    with pytest.raises(ValueError, match="not a setting the app saves"):
        save_setting("model", "other", path)


async def test_kitty_thumbnails_are_drawn_in_the_cells(tmp_path: Path) -> None:
    """The grid draws Kitty images inline, as the list does (placeholders in the cell's lines)."""
    from PIL import Image
    from textual.app import App, ComposeResult
    from textual_image import widget

    from tests.test_tui_units import _hits

    thumb = tmp_path / "thumb.jpg"
    Image.new("RGB", (256, 192), (200, 30, 40)).save(thumb)

    class GridApp(App[None]):
        CSS_PATH = str(Path(__file__).parents[1] / "tui" / "app.tcss")

        def compose(self) -> ComposeResult:
            yield ResultsGrid(widget.TGPImage, page_size=30, id="results-grid")

    app = GridApp()
    async with app.run_test(size=(60, 20)) as pilot:
        grid = app.query_one(ResultsGrid)
        await grid.show(_hits(40, thumb))
        # the loading worker may start only after the grid is laid out, later under load
        await settle(pilot, lambda: grid.thumbnails_requested >= 12)
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        # 20 lines show rows 0 and 1 and the top of row 2; row 3 is read ahead; not the page
        assert grid.columns == 3 and grid.mounted_rows == 30
        assert grid.thumbnails_requested == 12
        cell = app.query(GridCell).first()
        drawn = "".join(segment.text for segment in cell.render_line(0))
        assert "\U0010eeee" in drawn  # Kitty's Unicode placeholder
