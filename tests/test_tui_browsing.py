"""Browsing keys through Pilot: the footer's keys work while the query box has focus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.cells import cell_len
from textual.widgets import Input

from tests.test_tui_app import (  # noqa: F401 - fixtures
    settle,
    tui_album,
    tui_config,
    tui_home,
    tui_indexed_home,
    tui_indexed_template,
)
from tui.app import make_app
from tui.screen_text import screen_text
from tui.screens.help import HelpScreen

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning"),
]


def _screen(app) -> str:  # type: ignore[no-untyped-def]
    return screen_text(app)


@pytest.mark.usefixtures("tui_home")
async def test_slash_and_question_mark_do_what_the_footer_says(tmp_path: Path) -> None:
    app = make_app([tmp_path], images="none", config=tui_config())
    async with app.run_test(size=(80, 24)) as pilot:
        query = app.query_one("#query", Input)
        await settle(pilot, lambda: app.focused is query and app.model is not None)
        await settle(pilot, lambda: "/ Search" in _screen(app) and "? Help" in _screen(app))

        await pilot.press("slash")
        assert query.value == "" and app.focused is query
        await pilot.press("question_mark")
        await settle(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await settle(pilot, lambda: not isinstance(app.screen, HelpScreen))

        # once a query is begun, both are typed like any other character
        await pilot.press(*"why/not?")
        assert query.value == "why/not?"
        assert not isinstance(app.screen, HelpScreen)


@pytest.mark.usefixtures("tui_home")
async def test_i_indexes_from_the_empty_box_until_slash_starts_a_query(tmp_path: Path) -> None:
    app = make_app([tmp_path], images="none", config=tui_config())
    calls: list[str] = []
    app.action_index_bucket = lambda: calls.append("i")  # type: ignore[method-assign]
    app.action_index_all = lambda: calls.append("I")  # type: ignore[method-assign]
    async with app.run_test(size=(120, 30)) as pilot:
        query = app.query_one("#query", Input)
        await settle(pilot, lambda: app.focused is query and app.model is not None)
        await settle(pilot, lambda: "i Index" in _screen(app))

        await pilot.press("i", "I")
        assert calls == ["i", "I"] and query.value == ""

        # a query that does not begin with i: its later i's are typed
        await pilot.press(*"a dog in snow")
        assert query.value == "a dog in snow" and calls == ["i", "I"]

        # "/" says a query is being typed: now it may begin with i
        query.value = ""
        await pilot.press("slash")
        await settle(pilot, lambda: "i Index" not in _screen(app))
        await pilot.press(*"ice")
        assert query.value == "ice" and calls == ["i", "I"]

        # leaving the box and coming back with / keeps the typing rule
        query.value = ""
        await pilot.press("down")
        assert app.focused is not query
        await pilot.press("slash", "i")
        assert app.focused is query and query.value == "i" and calls == ["i", "I"]


@pytest.mark.usefixtures("tui_home")
async def test_down_leaves_the_query_box_for_the_timeline_when_there_are_no_results(
    tmp_path: Path,
) -> None:
    app = make_app([tmp_path], images="none", config=tui_config())
    async with app.run_test(size=(80, 24)) as pilot:
        query = app.query_one("#query", Input)
        await settle(pilot, lambda: app.focused is query and app.model is not None)
        await pilot.press("down")
        assert app.focused is app.query_one("#timeline")
        await pilot.press("slash")
        assert app.focused is query


async def test_detail_view_steps_through_the_results_and_opens_the_viewer(
    tui_indexed_home: Path,  # noqa: F811
    tui_album: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess

    from tests.test_tui_app import ready, search_for
    from tui.screens.detail import DetailScreen
    from tui.widgets.results import ResultsList

    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "a photo")
        results = app.query_one(ResultsList)
        results.focus()
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen))
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        first, second = results.hits[0], results.hits[1]
        assert screen.hit is first
        await pilot.press("n")
        assert screen.hit is second and results.cursor == 1
        await settle(pilot, lambda: Path(second.photo.path).name in _screen(app))
        await pilot.press("p")
        assert screen.hit is first and results.cursor == 0
        await pilot.press("p")  # before the first: stays, and says so
        assert screen.hit is first

        started: list[list[str]] = []
        monkeypatch.setattr(subprocess, "Popen", lambda command, **_: started.append(command))
        monkeypatch.setenv("DISPLAY", ":0")
        monkeypatch.setattr("shutil.which", lambda name, path=None: f"/usr/bin/{name}")
        await pilot.press("o")
        assert started == [["/usr/bin/xdg-open", str(first.photo.path)]]

        monkeypatch.delenv("DISPLAY")
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
        monkeypatch.setenv("SSH_CONNECTION", "10.0.0.2 50000 10.0.0.1 22")
        await pilot.press("o")
        assert len(started) == 1
        await settle(pilot, lambda: any("over SSH" in note for note in app.notices))


@pytest.mark.usefixtures("tui_home")
async def test_the_theme_is_a_setting_and_a_change_is_remembered(tmp_path: Path) -> None:
    import tomllib

    from tui.config import config_path, load_config

    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('# mine\n[tui]\nmodel = "tiny"\ntheme = "nord"\n\n[other]\nkeep = 1\n')
    app = make_app([tmp_path], images="none", config=load_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: app.model is not None)
        assert app.theme == "nord"
        app.theme = "gruvbox"
        await settle(pilot, lambda: 'theme = "gruvbox"' in path.read_text())
    text = path.read_text()
    assert text.startswith("# mine\n")
    data = tomllib.loads(text)
    assert data == {"tui": {"model": "tiny", "theme": "gruvbox"}, "other": {"keep": 1}}


def test_saving_a_theme_into_a_file_without_a_tui_table(tmp_path: Path) -> None:
    import tomllib

    from tui.config import save_theme

    path = tmp_path / "config.toml"
    save_theme("nord", path)
    assert tomllib.loads(path.read_text()) == {"tui": {"theme": "nord"}}
    path.write_text("[elsewhere]\nx = 2\n")
    save_theme("dracula", path)
    assert tomllib.loads(path.read_text()) == {"elsewhere": {"x": 2}, "tui": {"theme": "dracula"}}


_TERMINAL_TOKEN = re.compile(
    r"\x1bP.*?\x1b\\|\x1b\[(\d+);(\d+)H|\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]", re.DOTALL
)
"""One piece of what the app sends a terminal: a device control string (a Sixel picture), a
cursor move, another control sequence, a carriage return, a line feed, or one character."""


def cells_written(output: str) -> set[tuple[int, int]]:
    """The cells ``(column, row)`` that characters of ``output`` land on in a terminal."""
    written: set[tuple[int, int]] = set()
    row = column = 0
    for token in _TERMINAL_TOKEN.finditer(output):
        text = token.group(0)
        if token.group(1):
            row, column = int(token.group(1)) - 1, int(token.group(2)) - 1
        elif text == "\r":
            column = 0
        elif text == "\n":
            row += 1
        elif not text.startswith("\x1b"):
            width = cell_len(text)
            written.update((column + step, row) for step in range(width))
            column += width
    return written


async def test_a_full_redraw_with_a_sixel_photo_open_writes_every_cell(
    tui_indexed_home: Path,  # noqa: F811
    tui_album: Path,  # noqa: F811
) -> None:
    """After a resize the app redraws the whole screen; with a Sixel photo open every cell must
    still be written in its own row, or the terminal keeps what it had there before (the
    real-terminal version of this is tests/test_tui_emulators.py)."""
    from tests.test_tui_app import ready, search_for
    from tui.screens.detail import DetailScreen
    from tui.widgets.results import ResultsList

    app = make_app([tui_album], images="sixel", config=tui_config())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "a dog")
        app.query_one(ResultsList).focus()
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen))
        assert app.image_class is not None
        await settle(pilot, lambda: bool(app.screen.query(app.image_class)))
        await pilot.resize_terminal(140, 44)
        await pilot.pause(0.3)
        # what Textual sends the terminal for a full redraw (the headless driver sends nothing)
        update = app.screen._compositor.render_update(
            full=True, screen_stack=app._background_screens
        )
        output = update.render_segments(app.console)
    assert "\x1bP" in output, "no Sixel picture in the redraw"
    unwritten = {(column, row) for column in range(140) for row in range(44)}
    unwritten -= cells_written(output)
    assert not unwritten, f"{len(unwritten)} cells never written, from {min(unwritten)}"
