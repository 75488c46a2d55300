"""The Duplicates view through Pilot: groups side by side with their facts, copy, and move."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.encoder import ClipModel
from tests.test_tui_app import SAMPLES, settle, tui_config
from tui.app import make_app
from tui.screen_text import screen_text
from tui.screens.duplicates import DuplicatesScreen, PhotoCard

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning"),
]

SIZE = (100, 30)


@pytest.fixture
def duplicates_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: ClipModel
) -> tuple[Path, Path]:
    """A library of five photos, two of them one picture saved twice; the album folder."""
    from core.indexer import index
    from core.library import Library
    from tests.test_tui_app import link_model

    if not SAMPLES.is_dir():
        pytest.skip("shared photos not present")
    album = tmp_path / "album"
    (album / "copies").mkdir(parents=True)
    for name in ("Canon_40D.jpg", "Nikon_D70.jpg", "Pentax_K10D.jpg", "Sony_HDR-HC3.jpg"):
        shutil.copyfile(SAMPLES / name, album / name)
    shutil.copyfile(SAMPLES / "Canon_40D.jpg", album / "copies" / "Canon_40D.jpg")
    home = tmp_path / "home"
    link_model(home, tiny_model)
    monkeypatch.setenv("CLIPSEARCH_HOME", str(home))
    with Library.open() as library:
        assert index(library, tiny_model, [album]).indexed == 5
    return home, album


def _cards(app) -> list[PhotoCard]:  # type: ignore[no-untyped-def]
    return list(app.screen.query(PhotoCard))


async def test_groups_side_by_side_copy_and_move(duplicates_home: tuple[Path, Path]) -> None:
    _, album = duplicates_home
    app = make_app([album], images="none", config=tui_config(duplicate_threshold=0.999))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: app.model is not None and not app.indexing)
        await pilot.press("down", "D")  # from the results (the query box takes letters)
        await settle(pilot, lambda: isinstance(app.screen, DuplicatesScreen) and _cards(app))
        cards = _cards(app)
        assert [card.photo.path for card in cards] == [
            album / "Canon_40D.jpg",
            album / "copies" / "Canon_40D.jpg",
        ]
        text = screen_text(app)
        assert "Group 1: 2 photos" in text
        width, height = cards[0].photo.width, cards[0].photo.height
        assert f"{width}x{height}" in text and "kB" in text and "2008" in text

        await pilot.press("c")  # nothing marked: the whole group
        assert app.clipboard == f"{album / 'Canon_40D.jpg'}\n{album / 'copies' / 'Canon_40D.jpg'}"

        await pilot.press("right", "space")  # mark the copy
        assert cards[1].has_class("-marked") and not cards[0].has_class("-marked")
        await pilot.press("c")
        assert app.clipboard == str(album / "copies" / "Canon_40D.jpg")

        target = album.parent / "set-aside"
        await pilot.press("m")
        await pilot.pause()
        await pilot.press(*str(target), "enter")
        await pilot.pause()
        assert (album / "copies" / "Canon_40D.jpg").exists(), "moved before being confirmed"
        await pilot.press("y")
        await settle(pilot, lambda: (target / "Canon_40D.jpg").exists() and not _cards(app))
        assert not (album / "copies" / "Canon_40D.jpg").exists()
        assert (album / "Canon_40D.jpg").exists()

        await pilot.press("escape")
        assert not isinstance(app.screen, DuplicatesScreen)


async def test_moving_never_replaces_a_file_and_escape_moves_nothing(
    duplicates_home: tuple[Path, Path],
) -> None:
    _, album = duplicates_home
    target = album.parent / "taken"
    target.mkdir()
    (target / "Canon_40D.jpg").write_bytes(b"someone else's file")
    app = make_app([album], images="none", config=tui_config(duplicate_threshold=0.999))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: app.model is not None and not app.indexing)
        await pilot.press("down", "D")  # from the results (the query box takes letters)
        await settle(pilot, lambda: bool(_cards(app)))
        await pilot.press("m")  # nothing marked: says so, asks nothing
        await pilot.pause()
        assert isinstance(app.screen, DuplicatesScreen)

        await pilot.press("space", "m")
        await pilot.pause()
        await pilot.press("escape")  # the folder question, answered with Escape
        await pilot.pause()
        assert isinstance(app.screen, DuplicatesScreen)
        assert (album / "Canon_40D.jpg").exists()

        await pilot.press("m")
        await pilot.pause()
        await pilot.press(*str(target), "enter")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot, lambda: any("not moved" in note for note in app.notices))
        assert (target / "Canon_40D.jpg").read_bytes() == b"someone else's file"
        assert (album / "Canon_40D.jpg").exists()
        assert len(_cards(app)) == 2


async def test_screenshots_of_the_main_screen_the_grid_and_the_duplicates_view(
    duplicates_home: tuple[Path, Path], tmp_path: Path
) -> None:
    """SVG screenshots as Textual saves them; ``CLIPSEARCH_SCREENSHOTS=docs`` keeps them there."""
    import os
    import xml.etree.ElementTree as ElementTree

    from tests.test_tui_app import search_for

    _, album = duplicates_home
    out = Path(os.environ.get("CLIPSEARCH_SCREENSHOTS") or tmp_path)
    app = make_app([album], images="halfcell", config=tui_config(duplicate_threshold=0.999))
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(pilot, lambda: app.model is not None and not app.indexing)
        await search_for(pilot, app, "a photo")
        await pilot.pause(0.5)
        app.save_screenshot("main-screen.svg", str(out))
        await pilot.press("down", "g")
        await settle(
            pilot,
            lambda: "#2 " in next((ln for ln in screen_text(app).splitlines() if "#1 " in ln), ""),
        )
        await app.workers.wait_for_complete()
        await pilot.pause(0.5)
        app.save_screenshot("grid-view.svg", str(out))
        await pilot.press("g", "D")
        await settle(pilot, lambda: isinstance(app.screen, DuplicatesScreen) and _cards(app))
        await pilot.pause(0.5)
        app.save_screenshot("duplicates-view.svg", str(out))
    for name, wanted in (
        ("main-screen.svg", "Results"),
        ("grid-view.svg", "#2"),
        ("duplicates-view.svg", "Group 1"),
    ):
        svg = (out / name).read_text(encoding="utf-8").replace(str(album), "~/Pictures")
        (out / name).write_text(svg, encoding="utf-8")  # no machine's temporary path in docs/
        ElementTree.fromstring(svg)  # well-formed
        assert wanted.replace(" ", "&#160;") in svg or wanted in svg, name
