"""The screen as plain text, read back from Textual's public SVG screenshot."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Static

from tui.screen_text import screen_text, svg_screen_text

pytestmark = pytest.mark.anyio

WIDTH, HEIGHT = 24, 5


class _Rows(App[None]):
    CSS = "Static { height: 1; } #right { text-align: right; } #styled { color: red; }"

    def compose(self) -> ComposeResult:
        yield Static("a漢字b & <x> [b]no[/b]", markup=False)
        yield Static("")
        yield Static("x\xa0y  z ─█ é", id="styled")
        yield Static("東京 end", id="right")


async def test_screen_text_keeps_wide_characters_in_their_cells() -> None:
    app = _Rows()
    async with app.run_test(size=(WIDTH, HEIGHT)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        # the oracle: the compositor's own strips (private; read here only to check the SVG path)
        strips = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
    assert text == strips
    assert text.split("\n") == [
        "a漢字b & <x> [b]no[/b]".ljust(WIDTH - 2),  # two wide characters: two cells fewer
        " " * WIDTH,
        "x\xa0y  z ─█ é".ljust(WIDTH),
        " " * (WIDTH - 8) + "東京 end",
        " " * WIDTH,
    ]


async def test_screen_text_of_a_one_row_screen() -> None:
    app = _Rows()
    async with app.run_test(size=(WIDTH, 1)) as pilot:
        await pilot.pause()
        assert screen_text(app) == "a漢字b & <x> [b]no[/b]".ljust(WIDTH - 2)


def test_svg_screen_text_of_nothing_laid_out_and_of_what_is_not_a_terminal_svg() -> None:
    assert svg_screen_text("<svg></svg>", WIDTH, HEIGHT) == ""
    row = '<text x="0" clip-path="url(#t-line-0)">a</text>'
    with pytest.raises(ValueError, match="not a Rich terminal SVG"):
        svg_screen_text(f"<svg>{row}</svg>", WIDTH, HEIGHT)
