"""Browsing keys through Pilot: the footer's keys work while the query box has focus."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from tests.test_tui_app import settle, tui_config, tui_home  # noqa: F401 - a fixture
from tui.app import make_app
from tui.screens.help import HelpScreen

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning"),
]


def _screen(app) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(str(line.text) for line in app.screen._compositor.render_strips())


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
