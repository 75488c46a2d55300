"""The terminal app driven through Pilot: every flow, on a tiny random model and real photos.

The model is the shared ``tiny_model`` (a random tiny ViT); each test gets its own
``CLIPSEARCH_HOME`` that links to it. The album is a dozen real photos with EXIF capture times, a
file that is not a photo, and a photo whose name holds an escape sequence and markup.
Thumbnails are off (``images="none"``) except where the half-cell renderer is under test.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.widgets import Button

from core.encoder import ClipModel
from core.errors import InstallCancelledError
from core.registry import default_model_name
from tests.samples import SAMPLES as SAMPLE_ROOT
from tui.app import ClipSearchApp, make_app
from tui.config import TuiConfig
from tui.screen_text import screen_text
from tui.screens.confirm import ConfirmScreen
from tui.screens.detail import DetailScreen
from tui.screens.errors import ErrorsScreen
from tui.screens.help import HelpScreen
from tui.screens.install import InstallScreen
from tui.widgets.indexing import IndexingPanel
from tui.widgets.results import ResultRow, ResultsList
from tui.widgets.timeline import TimelineTree

SAMPLES = SAMPLE_ROOT / "jpg"

TUI_PHOTOS = (
    "Canon_40D.jpg",
    "Canon_DIGITAL_IXUS_400.jpg",
    "Canon_PowerShot_S40.jpg",
    "Fujifilm_FinePix_E500.jpg",
    "Kodak_CX7530.jpg",
    "Nikon_COOLPIX_P1.jpg",
    "Nikon_D70.jpg",
    "Olympus_C8080WZ.jpg",
    "Pentax_K10D.jpg",
    "Sony_HDR-HC3.jpg",
    "gps/DSCN0010.jpg",
    "exif-org/canon-ixus.jpg",
)
"""Photos of the test album; every one has an EXIF capture time between 2001 and 2008."""

EVIL_NAME = "evil\x1b[31m[bold]red\x07.jpg"
"""A photo whose name holds an escape sequence, a bell and Rich markup."""

BROKEN_NAME = "not-a-photo.jpg"
FIXED_MTIME = 1_200_000_000  # 2008-01-10: for the files whose capture time is their mtime

SIZE = (80, 24)

pytestmark = [
    pytest.mark.anyio,
    # textual-image 0.12 still calls Image.getdata, which Pillow 12 deprecates
    pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning"),
]
TUI_LABELS = ("a cat", "a dog", "a red car", "a mountain")


def tui_config(**changes: object) -> TuiConfig:
    """Settings for the tests: the tiny model and a short label list."""
    values: dict[str, object] = {"model": "tiny", "labels": TUI_LABELS, "page_size": 8}
    values.update(changes)
    return TuiConfig(**values)  # type: ignore[arg-type]


async def settle(pilot: object, done: Callable[[], bool], timeout: float = 20.0) -> None:
    """Let the app run until ``done()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("the app did not get there in time")
        await pilot.pause(0.05)  # type: ignore[attr-defined]


def ready(app: ClipSearchApp) -> Callable[[], bool]:
    """True once the model is loaded and no sync or indexing runs."""
    return lambda: app.model is not None and not app.indexing and not app.jobs_waiting


def make_album(root: Path) -> Path:
    """Copy the test photos to ``root`` with fixed modification times."""
    root.mkdir(parents=True)
    for name in TUI_PHOTOS:
        shutil.copyfile(SAMPLES / name, root / Path(name).name)
    shutil.copyfile(SAMPLES / "Canon_40D.jpg", root / EVIL_NAME)
    (root / BROKEN_NAME).write_text("this is not a JPEG\n")
    for entry in root.iterdir():
        os.utime(entry, (FIXED_MTIME, FIXED_MTIME))
    return root


def link_model(home: Path, model: ClipModel) -> None:
    """Make the shared tiny model an installed model of ``home``.

    Unlike :func:`tests.conftest.link_tiny_model`, only the model is linked: the models folder
    is this home's own and holds nothing but ``tiny``, whatever other tests leave in the
    session's models folder."""
    models = home / "data" / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "tiny").symlink_to(model.model_dir, target_is_directory=True)


@pytest.fixture(scope="session")
def tui_album(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test album, shared by every test (nothing writes to it)."""
    return make_album(tmp_path_factory.mktemp("tui-album") / "album")


@pytest.fixture
def bare_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``CLIPSEARCH_HOME`` with no model installed and no library: the first run."""
    home = tmp_path / "home"
    monkeypatch.setenv("CLIPSEARCH_HOME", str(home))
    return home


@pytest.fixture
def tui_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: ClipModel) -> Path:
    """A fresh ``CLIPSEARCH_HOME`` with the tiny model installed and no library."""
    home = tmp_path / "home"
    link_model(home, tiny_model)
    monkeypatch.setenv("CLIPSEARCH_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tui_indexed_template(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: ClipModel, tui_album: Path
) -> Path:
    """A home whose library holds the test album, indexed with the tiny model."""
    from core.indexer import index
    from core.library import Library

    home = tmp_path_factory.mktemp("tui-indexed") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLIPSEARCH_HOME", str(home))
        with Library.open() as library:
            summary = index(library, tiny_model, [tui_album])
    assert summary.indexed == len(TUI_PHOTOS) + 1
    return home


@pytest.fixture
def tui_indexed_home(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model: ClipModel,
    tui_indexed_template: Path,
) -> Path:
    """A copy of the indexed home for this test."""
    home = tmp_path / "home"
    shutil.copytree(tui_indexed_template, home)
    link_model(home, tiny_model)
    monkeypatch.setenv("CLIPSEARCH_HOME", str(home))
    return home


class _SlowIndex(threading.Event):
    """Set to let batches commit; ``libraries`` holds the databases whose batches wait for it.

    An indexing thread left over from an earlier test may call the patched function too, so a
    test checks for its own library rather than for any call.
    """

    def __init__(self) -> None:
        super().__init__()
        self.libraries: set[Path] = set()


@pytest.fixture
def tui_slow_index(monkeypatch: pytest.MonkeyPatch) -> Iterator[_SlowIndex]:
    """Make each indexing batch wait until the returned event is set (120 s at most)."""
    import core.indexer

    release = _SlowIndex()
    real_commit = core.indexer._commit

    def slow_commit(library: object, *args: object, **kwargs: object) -> None:
        release.libraries.add(Path(library.path))  # type: ignore[attr-defined]
        release.wait(120.0)
        real_commit(library, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(core.indexer, "_commit", slow_commit)
    yield release
    release.set()


class _PhotoGate:
    """Lets photos through the image encoder as permits are given; counts those let through."""

    def __init__(self) -> None:
        self.permits = threading.Semaphore(0)
        self.passed = 0
        self._lock = threading.Lock()

    def let_through(self, photos: int) -> None:
        for _ in range(photos):
            self.permits.release()


@pytest.fixture
def tui_photo_gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[_PhotoGate]:
    """Make every photo wait at the image encoder for a permit of the returned gate (120 s at
    most), so that a test knows how many photos an indexing run has encoded."""
    gate = _PhotoGate()
    real = ClipModel.encode_pixels

    def gated(self: ClipModel, pixels):  # type: ignore[no-untyped-def]
        for _ in range(len(pixels)):
            gate.permits.acquire(timeout=120.0)
        with gate._lock:
            gate.passed += len(pixels)
        return real(self, pixels)

    monkeypatch.setattr(ClipModel, "encode_pixels", gated)
    yield gate
    gate.let_through(1000)


def handled_photos() -> tuple[int, int]:
    """Photos of the test's library indexed, and failed, read through a connection of its own."""
    from core.library import Library

    with Library.open() as library:
        stats = library.stats()
    return int(stats["indexed"]), int(stats["failed"])


def region_text(app: ClipSearchApp, widget: object) -> str:
    """The screen text inside ``widget``'s region, its border and scroll bar taken off."""
    region = widget.region  # type: ignore[attr-defined]
    rows = screen_text(app).splitlines()[region.y : region.y + region.height]
    frame = "".join(chr(code) for code in range(0x2500, 0x25A0)) + " "
    return "\n".join(row[region.x : region.x + region.width].strip(frame) for row in rows)


async def search_for(pilot: object, app: ClipSearchApp, query: str) -> None:
    """Type ``query`` in the query box, press Enter and wait for the results."""
    generation = app.searches_started
    box = app.query_one("#query")
    box.focus()
    if len(query) <= 12:
        box.value = ""  # type: ignore[attr-defined]
        await pilot.press(*query, "enter")  # type: ignore[attr-defined]
    else:  # long queries are pasted, as typing them key by key only slows the test down
        box.value = query  # type: ignore[attr-defined]
        await pilot.press("enter")  # type: ignore[attr-defined]
    await settle(pilot, lambda: app.searches_started > generation and app.search_complete)
    await pilot.pause(0.1)  # type: ignore[attr-defined]


async def select_bucket(pilot: object, app: ClipSearchApp, key: str) -> None:
    """Put the timeline cursor on the bucket ``key`` (once it is shown), opening its parents."""
    tree = app.query_one(TimelineTree)
    await settle(pilot, lambda: tree.node(key) is not None)
    node = tree.node(key)
    assert node is not None
    parent = node.parent
    while parent is not None:
        parent.expand()
        parent = parent.parent
    tree.focus()

    def on_node() -> bool:
        # The tree numbers its lines again only when it next draws, and until then a node
        # just added or shown by expanding reads as line -1: move again until it lands.
        tree.move_cursor(node)
        return tree.cursor_node is node

    await settle(pilot, on_node)


# --------------------------------------------------------------------------------------------
# Opening and the timeline


async def test_a_small_terminal_still_shows_timeline_rows(tui_indexed_home: Path, tui_album: Path):
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=(40, 12)) as pilot:
        await settle(pilot, ready(app))
        await pilot.pause(0.2)
        timeline = app.query_one(TimelineTree)  # half of the height, not a bare border
        assert timeline.scrollable_content_region.height >= 1
        assert "Last 7 days" in region_text(app, timeline)
        state, bar = app.query_one("#index-state"), app.query_one("#index-bar")
        assert state.region.height == bar.region.height == 1  # the panel's first two lines


async def test_opens_scans_the_album_and_shows_the_timeline(tui_home: Path, tui_album: Path):
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await pilot.pause(0.2)
        tree = app.query_one(TimelineTree)
        all_photos = tree.bucket("all")
        assert all_photos is not None and all_photos.count == len(TUI_PHOTOS) + 2
        assert all_photos.indexed == 0
        assert tree.bucket("2008") is not None and tree.bucket("2008").count == 7
        await select_bucket(pilot, app, "2008-03")
        await pilot.pause(0.1)
        text = screen_text(app)
        assert "Last 7 days  0 photos" in text
        assert "All photos  14 photos  0%" in text
        assert "2008-03  2 photos  0%" in text
        assert app.sub_title == "model tiny, fp32"
        assert app.roots == [tui_album]


async def test_the_one_model_installed_is_used_without_a_model_setting(
    tui_home: Path, tui_album: Path
):
    """The tiny model, installed under a name of its own and the only one: the app opens with
    it rather than offering to install the registry's default."""
    app = make_app([tui_album], images="none", config=tui_config(model=None))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        assert app.model_name == "tiny" and not isinstance(app.screen, InstallScreen)


async def test_a_model_setting_outside_the_registry_is_explained_not_offered_for_download(
    tui_home: Path, tui_album: Path
):
    app = make_app([tui_album], images="none", config=tui_config(model="NoSuch"))
    async with app.run_test(size=SIZE) as pilot:

        def hint() -> str:  # the words of the hint, however they wrap
            return "".join(region_text(app, app.query_one("#results-hint")).split())

        await settle(pilot, lambda: "notintheregistry" in hint())
        assert "model'NoSuch'(themodelsettingin" in hint() and "--asNoSuch" in hint()
        assert not isinstance(app.screen, InstallScreen)


async def test_index_a_bucket_in_the_background(
    tui_home: Path,
    tui_album: Path,
    monkeypatch: pytest.MonkeyPatch,
    tui_slow_index: threading.Event,
):
    seen: list[tuple[int, int]] = []
    real = IndexingPanel.progressed

    def spy(self: IndexingPanel, progress, queued: int = 0) -> None:  # type: ignore[no-untyped-def]
        seen.append((progress.done, progress.total))
        real(self, progress, queued)

    monkeypatch.setattr(IndexingPanel, "progressed", spy)
    app = make_app([tui_album], images="none", config=tui_config(batch_size=2))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await select_bucket(pilot, app, "2008")
        await pilot.press("i")
        await settle(pilot, lambda: (0, 7) in seen)
        assert app.indexing
        assert "Indexing 2008" in screen_text(app)
        # photos are counted as they are encoded; the first batch of 2 waits to be committed
        assert re.search(r"\b[0-2]/7  ", screen_text(app))
        tui_slow_index.set()
        await settle(pilot, ready(app))
        await pilot.pause(0.2)
        tree = app.query_one(TimelineTree)
        year = tree.bucket("2008")
        assert year is not None and year.count == 7
        assert year.indexed == 6  # and the file that is not a photo failed
        other = tree.bucket("2006")
        assert other is not None and other.indexed == 0
        assert seen[-1] == (7, 7)
        text = screen_text(app)
        assert "Done: 2008" in text
        assert "6 indexed, 1 failed" in text
        assert "1 error (e lists)" in text


async def test_searching_while_indexing_runs(
    tui_indexed_home: Path, tui_album: Path, tui_slow_index: threading.Event, tmp_path: Path
):
    from core.library import Library

    with Library.open() as library:
        library.use_model("tiny", 64)
        extra = tmp_path / "more"
        make_album(extra)
    app = make_app([tui_album, extra], images="none", config=tui_config(batch_size=1))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await select_bucket(pilot, app, "all")
        await pilot.press("i")
        await settle(pilot, lambda: "Indexing All photos" in screen_text(app))
        await search_for(pilot, app, "a dog")
        assert app.indexing, "the search finished while indexing still ran"
        assert app.query_one(ResultsList).hits
        tui_slow_index.set()
        await settle(pilot, ready(app))


# --------------------------------------------------------------------------------------------
# Searching


async def test_search_shows_ranked_results_with_probabilities(
    tui_indexed_home: Path, tui_album: Path
):
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "a red bicycle in the snow")
        results = app.query_one(ResultsList)
        hits = results.hits
        assert len(hits) == len(TUI_PHOTOS) + 1
        assert [hit.rank for hit in hits] == list(range(1, len(hits) + 1))
        scores = [hit.score for hit in hits]
        assert scores == sorted(scores, reverse=True)
        assert 0.99 < sum(hit.probability for hit in hits) < 1.01
        assert results.mounted_rows == 8  # one page; the rest is mounted on scroll
        text = screen_text(app)
        first = hits[0]
        assert f"#1  {first.probability * 100:.1f}%  cos {first.score:.3f}" in text
        assert f"{len(hits)} for a red bicycle in the snow" in text


async def test_query_arithmetic_and_a_bad_query(tui_indexed_home: Path, tui_album: Path):
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, 'beach + 2:"red car" - people')
        assert len(app.query_one(ResultsList).hits) == len(TUI_PHOTOS) + 1
        await search_for(pilot, app, f"4:{tui_album / 'Canon_40D.jpg'} + 0.1:night")
        best = app.query_one(ResultsList).hits[0].photo.path.name
        assert best in ("Canon_40D.jpg", EVIL_NAME)  # the same photo under two names
        generation = app.searches_started
        app.query_one("#query").value = "a + + oops"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await settle(pilot, lambda: "bad query" in screen_text(app))
        assert app.searches_started == generation + 1
        app.query_one("#query").value = "   "  # type: ignore[attr-defined]
        await pilot.press("enter")
        await settle(pilot, lambda: "Type what to look for" in screen_text(app))
        assert app.searches_started == generation + 1


async def test_a_query_in_a_script_the_model_cannot_read_gets_a_hint(
    tui_indexed_home: Path, tui_album: Path
):
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "一只狗在雪地里奔跑")
        text = " ".join(screen_text(app).split())
        assert "reads English only, not Chinese" in text
        assert "ViT-B-32-SigLIP2-256-webli" in text
        await search_for(pilot, app, "a dog running in the snow")
        assert "reads English only" not in " ".join(screen_text(app).split())


async def test_a_damaged_library_stays_explained_when_a_query_is_typed(
    tui_home: Path, tui_album: Path
):
    from core.database import default_database_path

    database = default_database_path()
    database.parent.mkdir(parents=True, exist_ok=True)
    database.write_bytes(b"this is not a SQLite database" * 100)
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: "library repair" in " ".join(screen_text(app).split()))
        app.query_one("#query").value = "a dog"  # type: ignore[attr-defined]
        app.query_one("#query").focus()
        await pilot.press("enter")
        await pilot.pause(0.2)
        text = " ".join(screen_text(app).split())
        assert "library repair" in text and "not loaded yet" not in text


async def test_switch_model_reindexes_the_library(
    tui_indexed_home: Path, tui_album: Path, tmp_path: Path
):
    pytest.importorskip("open_clip")
    from cli.main import main as cli_main
    from tests.reference import TINY_VIT, make_reference, save_checkpoint

    checkpoint = save_checkpoint(make_reference(TINY_VIT, seed=7), tmp_path / "other.safetensors")
    assert cli_main(["model", "install", "--from", str(checkpoint), "--as", "tiny-other"]) == 0
    app = make_app([tui_album], images="none", config=tui_config(model=None))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        assert app.model_name == "tiny"
        app.switch_model("tiny-other")
        await settle(pilot, lambda: "Switch model?" in screen_text(app))
        assert isinstance(app.screen, ConfirmScreen) and "tiny-other" in screen_text(app)
        await pilot.press("y")
        await settle(pilot, lambda: app.model_name == "tiny-other", timeout=60)
        await settle(pilot, lambda: not app.indexing, timeout=120)
        assert app.library is not None and app.library.model_name == "tiny-other"
        await search_for(pilot, app, "a red bicycle in the snow")
        assert len(app.query_one(ResultsList).hits) == len(TUI_PHOTOS) + 1


async def test_down_and_escape_move_between_the_query_and_the_results(
    tui_indexed_home: Path, tui_album: Path
):
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "[bold]cat")
        assert "for [bold]cat" in screen_text(app)  # the query is shown as typed, not as markup
        await pilot.press("down")
        assert app.focused is app.query_one(ResultsList)
        await pilot.press("down")
        assert app.query_one(ResultsList).cursor == 1
        await pilot.press("escape")
        assert app.focused is app.query_one("#query")


async def test_results_mount_more_rows_as_the_list_scrolls(tui_indexed_home: Path, tui_album: Path):
    app = make_app([tui_album], images="none", config=tui_config(page_size=5))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "a dog")
        results = app.query_one(ResultsList)
        assert results.mounted_rows == 5
        results.focus()
        await pilot.press("down", "down")
        await pilot.pause(0.1)
        assert results.mounted_rows == 10
        await pilot.press("end")
        await pilot.pause(0.1)
        assert results.mounted_rows == len(results.hits)
        assert len(app.query(ResultRow)) == len(results.hits)


async def test_filter_results_to_the_selected_bucket(tui_indexed_home: Path, tui_album: Path):
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "a dog")
        await select_bucket(pilot, app, "2008")
        generation = app.searches_started
        await pilot.press("f")
        await settle(pilot, lambda: app.searches_started > generation)
        await settle(pilot, lambda: "in 2008" in screen_text(app))
        hits = app.query_one(ResultsList).hits
        assert len(hits) == 6  # the seventh photo of 2008 could not be indexed
        assert all(hit.photo.taken_at.year == 2008 for hit in hits)
        assert "Results in 2008" in screen_text(app)
        generation = app.searches_started
        await pilot.press("f")
        await settle(pilot, lambda: app.searches_started > generation)
        await settle(pilot, lambda: len(app.query_one(ResultsList).hits) == len(TUI_PHOTOS) + 1)


# --------------------------------------------------------------------------------------------
# The detail view


async def test_a_dialog_keeps_the_main_screens_keys_off_and_out_of_its_footer(
    tui_indexed_home: Path, tui_album: Path
):
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))

        def footer() -> str:
            return screen_text(app).splitlines()[-1]

        await settle(pilot, lambda: "Index" in footer() and "Help" in footer())
        await search_for(pilot, app, "a dog")
        app.query_one(ResultsList).focus()
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen))
        await pilot.pause(0.1)
        assert "Find similar" in footer()
        for key in ("Index", "Filter", "Grid", "Help"):
            assert key not in footer(), footer()
        await pilot.press("i", "g", "question_mark")  # the main screen's keys do nothing here
        await pilot.pause(0.2)
        assert isinstance(app.screen, DetailScreen)
        assert not app.indexing and not app.jobs_waiting and app.config.view == "list"
        await pilot.press("escape")
        await settle(pilot, lambda: not isinstance(app.screen, DetailScreen))
        await settle(pilot, lambda: "Index" in footer())


async def test_detail_view_shows_path_date_size_and_camera(tui_indexed_home: Path, tui_album: Path):
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, str(tui_album / "Canon_40D.jpg"))
        app.query_one(ResultsList).focus()
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen))
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await settle(pilot, lambda: screen.camera is not None)
        await pilot.pause(0.1)
        text = screen_text(app)
        assert "Canon_40D.jpg" in text
        assert str(tui_album) in text
        assert "2008-05-30 15:56 (DateTimeOriginal)" in text
        assert "8.0 kB, 100x68" in text
        assert "Canon EOS 40D" in text
        await pilot.press("c")
        assert app.clipboard == str(tui_album / "Canon_40D.jpg")
        await pilot.press("O")
        assert app.clipboard == str(tui_album)
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


async def test_detail_view_shows_a_larger_preview(tui_indexed_home: Path, tui_album: Path):
    app = make_app([tui_album], images="halfcell", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, str(tui_album / "Canon_40D.jpg"))
        app.query_one(ResultsList).focus()
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen))
        preview = app.screen.query_one("#detail-preview")
        await settle(pilot, lambda: bool(preview.children))
        await pilot.pause(0.1)
        picture = preview.children[0]
        assert picture.size.width > 10  # larger than a list thumbnail
        assert "▀" in "".join(segment.text for segment in picture.render_line(0))


async def test_a_click_on_a_result_opens_it(tui_indexed_home: Path, tui_album: Path):
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "a dog")
        second = app.query(ResultRow)[1]
        await pilot.click(second, offset=(5, 1))
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen))
        assert app.screen.hit is second.hit  # type: ignore[attr-defined]
        assert app.query_one(ResultsList).cursor == 1


async def test_find_similar_replaces_the_results(tui_indexed_home: Path, tui_album: Path):
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "a dog")
        results = app.query_one(ResultsList)
        results.focus()
        await pilot.press("down", "down", "enter")
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen))
        chosen = app.screen.hit.photo  # type: ignore[attr-defined]
        generation = app.searches_started
        await pilot.press("s")
        await settle(pilot, lambda: not isinstance(app.screen, DetailScreen))
        await settle(pilot, lambda: app.searches_started > generation)
        await settle(pilot, lambda: results.hits and results.hits[0].photo.id == chosen.id)
        assert results.hits[0].score == pytest.approx(1.0, abs=1e-5)
        await settle(pilot, lambda: f"like {chosen.path.name}" in screen_text(app))
        assert app.query_one("#query").value == ""  # type: ignore[attr-defined]


async def test_describe_ranks_the_configured_labels(tui_indexed_home: Path, tui_album: Path):
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "a dog")
        app.query_one(ResultsList).focus()
        await pilot.press("d")  # from the results: opens the detail view and describes
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen))
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await settle(pilot, lambda: bool(screen.described))
        labels = [label for label, _ in screen.described]
        assert sorted(labels) == sorted(TUI_LABELS)
        assert sum(p for _, p in screen.described) == pytest.approx(1.0)
        await pilot.pause(0.1)
        text = screen_text(app)
        best, probability = screen.described[0]
        assert f"{probability * 100:.1f}% {best}" in text


async def test_gpu_option_runs_on_vulkan_or_says_it_uses_the_cpu(
    tui_indexed_home: Path, tui_album: Path
):
    from core.encoder import gpu_count

    app = make_app([tui_album], images="none", config=tui_config(), gpu=True)
    assert app.config.gpu is True
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        assert app.model is not None and app.model.vulkan == (gpu_count() > 0)
        notes = app.notices
        assert ("No Vulkan GPU found; encoding on the CPU." in notes) == (gpu_count() == 0)
        await search_for(pilot, app, "a dog")
        assert app.query_one(ResultsList).hits


async def test_copy_path_from_the_results(tui_indexed_home: Path, tui_album: Path):
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "a dog")
        results = app.query_one(ResultsList)
        results.focus()
        await pilot.press("c")
        assert app.clipboard == str(results.hits[0].photo.path)


async def test_names_and_exif_text_reach_the_screen_inert(tui_indexed_home: Path, tui_album: Path):
    app = make_app([tui_album], images="none", config=tui_config(page_size=20))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, ready(app))
        await search_for(pilot, app, "a dog")
        results = app.query_one(ResultsList)
        index = next(i for i, hit in enumerate(results.hits) if hit.photo.path.name == EVIL_NAME)
        results.focus()
        results.cursor = index
        escaped = "evil\\x1b[31m[bold]red\\x07.jpg"
        await settle(pilot, lambda: escaped in screen_text(app))  # scrolled to and drawn
        text = screen_text(app)
        assert "\x1b" not in text and "\x07" not in text
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen))
        await settle(pilot, lambda: "reading..." not in screen_text(app))
        assert "evil\\x1b[31m[bold]red\\x07.jpg" in screen_text(app)


# --------------------------------------------------------------------------------------------
# Errors


async def open_error_list(pilot: object, app: ClipSearchApp) -> None:
    """Once the app is ready, open the list of indexing errors (``e`` from the timeline)."""
    await settle(pilot, ready(app))
    app.query_one(TimelineTree).focus()
    await pilot.press("e")  # type: ignore[attr-defined]
    await settle(pilot, lambda: isinstance(app.screen, ErrorsScreen))
    await pilot.pause(0.1)  # type: ignore[attr-defined]


async def test_error_list_shows_the_photos_that_failed(tui_indexed_home: Path, tui_album: Path):
    from textual.widgets import OptionList

    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await open_error_list(pilot, app)
        screen = app.screen
        assert isinstance(screen, ErrorsScreen)
        assert [Path(path).name for path, _ in screen.failures] == [BROKEN_NAME]
        text = screen_text(app)
        assert "1 photo could not be indexed" in text and "1 photos" not in text
        # at 80 columns the path and the whole reason are on the screen, wrapped
        shown = "".join(region_text(app, screen.query_one(OptionList)).split())
        path, reason = screen.failures[0]
        assert "".join(path.split()) in shown
        assert "".join(reason.split()) in shown
        await pilot.press("escape")
        assert not isinstance(app.screen, ErrorsScreen)


async def test_the_error_list_tries_the_failed_photos_again(
    tui_indexed_home: Path, tui_album: Path, monkeypatch: pytest.MonkeyPatch
):
    from core.library import Library

    retried: list[list[Path]] = []
    real = Library.retry_failed

    def spy(self: Library, roots, **dates):  # type: ignore[no-untyped-def]
        retried.append([Path(root) for root in roots])
        return real(self, roots, **dates)

    monkeypatch.setattr(Library, "retry_failed", spy)
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await open_error_list(pilot, app)
        assert "Try the failed again" in screen_text(app).splitlines()[-1]
        await pilot.press("r")
        await settle(pilot, lambda: not isinstance(app.screen, ErrorsScreen))
        await settle(pilot, lambda: bool(retried) and ready(app)())
        assert retried == [[tui_album]]
        # the broken photo fails again, and is listed again
        assert any("1 could not be read" in notice for notice in app.notices)


# --------------------------------------------------------------------------------------------
# First run


def install_any_as_tiny(
    monkeypatch: pytest.MonkeyPatch, home: Path, tiny_model: ClipModel
) -> list[str]:
    """Make the app's model install put the tiny model under whatever name it is asked for;
    returns the names asked for, in order."""
    import core.install

    asked: list[str] = []

    def fake_install(name, from_file=None, *, progress=None, cancel=None, **_):  # type: ignore[no-untyped-def]
        asked.append(name)
        models = home / "data" / "models"
        models.mkdir(parents=True, exist_ok=True)
        (models / name).symlink_to(tiny_model.model_dir, target_is_directory=True)
        progress("done", 4, 4)
        return models / name

    monkeypatch.setattr(core.install, "install_model", fake_install)
    return asked


SCROLLBAR_GLYPHS = str.maketrans("", "", "\u2581\u2582\u2583\u2584\u2585\u2586\u2587")
"""The block elements a vertical scrollbar's thumb ends are drawn with (its body is blank)."""


def dialog_text(app: ClipSearchApp) -> str:
    """The text inside the dialog on screen, its wrapped lines joined (each row of the dialog
    reads "...█ text █...", and a dialog taller than the screen has a scrollbar inside it)."""
    rows = [row.split("\u2588") for row in screen_text(app).splitlines()]
    inner = [parts[1].translate(SCROLLBAR_GLYPHS) for parts in rows if len(parts) >= 3]
    return " ".join(" ".join(row.split()) for row in inner)


async def test_first_run_installs_the_model_with_progress(
    bare_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model: ClipModel,
    tui_album: Path,
):
    import core.install

    stages: list[str] = []

    default = default_model_name()  # a registry model: the dialog offers to download it

    def fake_install(name, from_file=None, *, progress=None, cancel=None, **_):  # type: ignore[no-untyped-def]
        assert name == default
        for step, stage in enumerate(("download", "hash", "convert", "manifest")):
            stages.append(stage)
            progress(stage, step, 4)
            assert not cancel.is_set()
        models = bare_home / "data" / "models"
        models.mkdir(parents=True, exist_ok=True)
        (models / name).symlink_to(tiny_model.model_dir, target_is_directory=True)
        progress("done", 4, 4)
        return models / name

    monkeypatch.setattr(core.install, "install_model", fake_install)
    app = make_app([tui_album], images="none", config=tui_config(model=default))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: "No CLIP model installed" in screen_text(app))
        assert isinstance(app.screen, InstallScreen)
        await pilot.click("#install")
        await settle(pilot, ready(app))
        assert stages == ["download", "hash", "convert", "manifest"]
        assert app.model is not None and app.model.name == "tiny"
        assert not isinstance(app.screen, InstallScreen)


async def test_first_run_offers_the_multilingual_model(
    bare_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model: ClipModel,
    tui_album: Path,
):
    from core.languages import multilingual_model_name

    multilingual = multilingual_model_name()
    assert multilingual is not None
    asked = install_any_as_tiny(monkeypatch, bare_home, tiny_model)
    app = make_app([tui_album], images="none", config=tui_config(model=None))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: "No CLIP model installed" in screen_text(app))
        text = dialog_text(app)
        assert default_model_name() in text and multilingual in text
        assert "reads many languages" in text and "reads English only" in text
        assert "MB to download" in text
        await pilot.press("tab", "enter")  # from Install to Install multilingual
        await settle(pilot, ready(app))
        assert asked == [multilingual]
        assert app.model_name == multilingual


async def test_first_run_shows_the_dial_and_installs_the_fastest_model(
    bare_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model: ClipModel,
    tui_album: Path,
):
    from core import registry

    measured = {
        "bf16": {"models": {}},
        "speed": {"measured_on": "Test CPU", "models": {"MobileCLIP2-S0": {"images_per_s": 9.5}}},
    }
    monkeypatch.setattr(registry, "measurements", lambda: measured)
    asked = install_any_as_tiny(monkeypatch, bare_home, tiny_model)
    app = make_app([tui_album], images="none", config=tui_config(model=None))
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot, lambda: "No CLIP model installed" in screen_text(app))
        text = dialog_text(app)
        assert "fastest MobileCLIP2-S0 9.5 photos/s, ImageNet 71.5%" in text
        assert "balanced ViT-B-32-256-datacomp speed not measured, ImageNet 72.8%" in text
        assert "best MobileCLIP2-S2" in text and "apple-amlr" in text
        assert "measured on Test CPU" in text
        await pilot.click("#install-fastest")
        await settle(pilot, ready(app))
        assert asked == ["MobileCLIP2-S0"]
        assert app.model_name == "MobileCLIP2-S0"


async def test_first_run_dialog_fits_80x24_its_text_from_the_top_and_every_button_shown(
    bare_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model: ClipModel,
    tui_album: Path,
):
    asked = install_any_as_tiny(monkeypatch, bare_home, tiny_model)
    app = make_app([tui_album], images="none", config=tui_config(model=None))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: "No CLIP model installed" in screen_text(app))
        await pilot.pause(0.2)
        assert isinstance(app.screen, InstallScreen)
        text = dialog_text(app)
        # opened at the top of its text, not scrolled down to the focused button
        assert text.split("\u2580")[-1].lstrip().startswith("Searching needs a CLIP model.")
        width, height = SIZE
        labels = ("Install", "Multilingual", "Fastest", "Best", "Cancel", "Quit")
        buttons = list(app.screen.query(Button).results(Button))
        assert [str(button.label) for button in buttons] == list(labels)
        dialog = app.screen.query_one(".install-dialog")
        assert dialog.max_scroll_y == 0  # only the text scrolls, not the buttons below it
        for button in buttons:  # wholly on the screen
            region = button.region
            assert region.width > len(str(button.label)) and region.height == 3, button
            assert region.right <= width and region.bottom <= height, (button, region)
        await pilot.click("#install-best")
        await settle(pilot, ready(app))
        assert asked == ["MobileCLIP2-S2"]


async def test_first_run_offline_shows_the_install_from_file_route(
    bare_home: Path, monkeypatch: pytest.MonkeyPatch, tui_album: Path
):
    import core.install
    from core.errors import DownloadError

    url = "https://hub.test/tiny/model.safetensors"

    def offline(name, from_file=None, **_):  # type: ignore[no-untyped-def]
        raise DownloadError(
            "cannot reach the model hub at https://huggingface.co (offline)",
            urls=(url,),
            route="clipsearch-tui model install tiny --from FILE",
        )

    monkeypatch.setattr(core.install, "install_model", offline)
    app = make_app([tui_album], images="none", config=tui_config(model=default_model_name()))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: "No CLIP model installed" in screen_text(app))
        await pilot.click("#install")
        await settle(pilot, lambda: "Install failed" in screen_text(app))
        text = screen_text(app)
        assert "cannot be reached (offline?)" in text
        assert text.count("clipsearch-tui model install tiny --from FILE") == 1
        assert text.count("https://hub.test/tiny/model.safetensors") == 1
        await pilot.click("#quit")
    assert app.return_code == 1


async def test_first_run_install_can_be_cancelled(
    bare_home: Path, monkeypatch: pytest.MonkeyPatch, tui_album: Path
):
    import core.install

    started = threading.Event()

    def waits(name, from_file=None, *, progress=None, cancel=None, **_):  # type: ignore[no-untyped-def]
        progress("download", 10, 1000)
        started.set()
        assert cancel.wait(10)
        raise InstallCancelledError("install cancelled")

    monkeypatch.setattr(core.install, "install_model", waits)
    app = make_app([tui_album], images="none", config=tui_config(model=default_model_name()))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: "No CLIP model installed" in screen_text(app))
        await pilot.click("#install")
        await settle(pilot, started.is_set)
        await pilot.click("#cancel")
        await settle(pilot, lambda: "Install cancelled" in screen_text(app))
        assert not app.screen.installing  # type: ignore[attr-defined]


async def test_with_no_library_and_no_path_the_gallery_is_offered(
    tui_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import tui.app

    gallery = make_album(tmp_path / "gallery")
    monkeypatch.setattr(tui.app, "gallery_folder", lambda: gallery)
    app = make_app([], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: "sample gallery" in screen_text(app))
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot, lambda: app.roots == [gallery])
        await settle(pilot, ready(app))
        await pilot.pause(0.2)
        bucket = app.query_one(TimelineTree).bucket("all")
        assert bucket is not None and bucket.count == len(TUI_PHOTOS) + 2


# --------------------------------------------------------------------------------------------
# Quitting, pausing, help, palette


async def test_quit_during_indexing_asks_then_stops_cleanly(
    tui_home: Path, tui_album: Path, tui_slow_index: _SlowIndex
):
    from core.library import Library

    app = make_app([tui_album], images="none", config=tui_config(batch_size=1))
    async with app.run_test(size=SIZE) as pilot:
        try:
            await settle(pilot, ready(app))
            await select_bucket(pilot, app, "all")
            await pilot.press("i")
            await settle(pilot, lambda: "0/14" in screen_text(app))
            own = Path(app.library.path)  # type: ignore[union-attr]
            await settle(pilot, lambda: own in tui_slow_index.libraries)  # a batch is under way
            await pilot.press("q")
            await settle(pilot, lambda: "still running" in screen_text(app))
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
            await pilot.pause(0.1)
            assert app.indexing and app.is_running
            await pilot.press("q")
            await settle(pilot, lambda: "still running" in screen_text(app))
            await pilot.press("y")
            await settle(pilot, lambda: "Stopping" in screen_text(app))
            assert app.job_thread_running, "the batch under way is still being encoded"
        finally:
            tui_slow_index.set()
        await settle(pilot, lambda: not app.is_running)
    assert not app.job_thread_running
    assert app.return_code == 0
    with Library.open() as library, library.indexing_lock():
        stats = library.stats()
    assert stats["indexed"] < len(TUI_PHOTOS) + 1


STOP_AFTER = 3
"""Photos let through the encoder before a test pauses or stops a run of one batch of 20."""


async def index_all_until_gate(pilot: object, app: ClipSearchApp, gate: _PhotoGate) -> int:
    """Index every photo and let :data:`STOP_AFTER` of them through the encoder; returns how
    many photos the engine encodes at once (those may still finish after a pause or a stop)."""
    await settle(pilot, ready(app))
    assert app.model is not None
    await select_bucket(pilot, app, "all")
    await pilot.press("i")
    gate.let_through(STOP_AFTER)
    await settle(pilot, lambda: gate.passed == STOP_AFTER)
    return app.model.threads


async def test_pause_takes_effect_between_photos_and_says_where(
    tui_home: Path, tui_album: Path, tui_photo_gate: _PhotoGate
):
    app = make_app([tui_album], images="none", config=tui_config(batch_size=20))
    async with app.run_test(size=SIZE) as pilot:
        in_flight = await index_all_until_gate(pilot, app, tui_photo_gate)
        await pilot.press("p")
        await settle(pilot, lambda: "Pausing All photos..." in screen_text(app))
        tui_photo_gate.let_through(in_flight)  # the photos already being encoded finish
        await settle(pilot, lambda: "Paused: All photos" in screen_text(app))
        tui_photo_gate.let_through(20)  # encoded, were the run not paused
        await pilot.pause(0.5)
        indexed, failed = handled_photos()
        # everything encoded is committed, although the batch of 20 is not full
        assert indexed == tui_photo_gate.passed
        assert STOP_AFTER <= indexed <= STOP_AFTER + in_flight
        assert f"{indexed + failed}/14  paused" in screen_text(app)
        assert app.indexing
        await pilot.press("p")
        await settle(pilot, ready(app))
        await settle(pilot, lambda: app.query_one(TimelineTree).bucket("all").indexed == 13)
        assert tui_photo_gate.passed == 13  # no photo encoded twice


async def test_stop_takes_effect_between_photos_and_the_next_run_does_the_rest(
    tui_home: Path, tui_album: Path, tui_photo_gate: _PhotoGate
):
    app = make_app([tui_album], images="none", config=tui_config(batch_size=20))
    async with app.run_test(size=SIZE) as pilot:
        in_flight = await index_all_until_gate(pilot, app, tui_photo_gate)
        await pilot.press("x")
        await settle(pilot, lambda: "Stopping All photos..." in screen_text(app))
        tui_photo_gate.let_through(in_flight)
        await settle(pilot, ready(app))
        indexed, failed = handled_photos()
        assert indexed == tui_photo_gate.passed
        assert STOP_AFTER <= indexed <= STOP_AFTER + in_flight
        text = screen_text(app)
        assert "Stopped: All photos" in text
        assert f"{indexed + failed}/14: {indexed} indexed" in text  # where it really stopped
        tui_photo_gate.let_through(20)
        app.query_one(TimelineTree).focus()
        await pilot.press("I")
        await settle(pilot, lambda: "Done: All photos" in screen_text(app))
        await settle(pilot, lambda: app.query_one(TimelineTree).bucket("all").indexed == 13)
        assert tui_photo_gate.passed == 13  # the second run encoded only the rest


async def test_stop_indexing_keeps_what_was_indexed(
    tui_home: Path, tui_album: Path, tui_slow_index: threading.Event
):
    app = make_app([tui_album], images="none", config=tui_config(batch_size=1))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        await select_bucket(pilot, app, "all")
        await pilot.press("i")
        await settle(pilot, lambda: "Indexing All photos" in screen_text(app))
        tui_slow_index.set()
        await pilot.press("x")
        await settle(pilot, ready(app))
        assert "Stopped: All photos" in screen_text(app)


async def test_indexing_while_another_process_indexes_says_so(tui_home: Path, tui_album: Path):
    from core.library import Library

    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, ready(app))
        with Library.open() as other, other.indexing_lock():
            await select_bucket(pilot, app, "2008")
            await pilot.press("i")
            await settle(pilot, lambda: "Failed: 2008" in screen_text(app))
        assert not app.indexing
        assert any("another clipsearch-tui process" in note for note in app.notices)


async def test_help_screen_lists_the_keys(tui_indexed_home: Path, tui_album: Path):
    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot, ready(app))
        app.query_one(TimelineTree).focus()
        await pilot.press("question_mark")
        await settle(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = screen_text(app)
        for key, action in (("i", "Index"), ("f", "Filter"), ("p", "Pause"), ("x", "Stop")):
            assert re.search(rf"\b{key} +{action}\b", text), (key, action)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_command_palette_offers_every_action(tui_indexed_home: Path, tui_album: Path):
    from tui.commands import APP_COMMANDS, ClipSearchCommands

    app = make_app([tui_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, ready(app))
        for _, _, action in APP_COMMANDS:
            assert hasattr(app, f"action_{action}"), action
        provider = ClipSearchCommands(app.screen)
        found = [hit.text async for hit in provider.search("index")]
        assert "Index the selected period" in found
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"errors")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, ErrorsScreen))


# --------------------------------------------------------------------------------------------
# Snapshots: the whole screen at a fixed size, compared with files kept in tests/snapshots/tui.

SNAPSHOTS = Path(__file__).parent / "snapshots" / "tui"
UPDATE_SNAPSHOTS = os.environ.get("TUI_SNAPSHOT_UPDATE") == "1"
"""Set ``TUI_SNAPSHOT_UPDATE=1`` to write the snapshot files anew instead of comparing."""


def normalised(text: str) -> str:
    """Screen text with the search time (which differs between runs) replaced."""
    lines = []
    for line in text.splitlines():
        if re.search(r"\(\d+ ms\)", line):
            line = re.sub(r"─+(?= \d+ (for|like) )", "─", re.sub(r"\(\d+ ms\)", "(N ms)", line))
        lines.append(line)
    text = "\n".join(lines)
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def assert_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if UPDATE_SNAPSHOTS or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not UPDATE_SNAPSHOTS:
            pytest.fail(f"snapshot {path.name} was missing and has been written; run again")
    assert text == path.read_text(encoding="utf-8"), f"screen differs from {path}"


async def snapshot_screen(pilot: object, app: ClipSearchApp) -> str:
    """Wait until every worker is done and the screen is drawn, then read it."""
    await app.workers.wait_for_complete()
    await pilot.pause(0.2)  # type: ignore[attr-defined]
    return screen_text(app)


@pytest.fixture
def tui_snapshot_album() -> Iterator[Path]:
    """The test album at a fixed path, so that the screen does not depend on a temporary name."""
    import tempfile

    base = Path(tempfile.gettempdir()) / "clipsearch-tui-snapshot"
    shutil.rmtree(base, ignore_errors=True)
    album = make_album(base / "album")
    yield album
    shutil.rmtree(base, ignore_errors=True)


async def index_everything(pilot: object, app: ClipSearchApp) -> None:
    await settle(pilot, ready(app))
    app.query_one(TimelineTree).focus()
    await pilot.press("I")  # type: ignore[attr-defined]
    tree = app.query_one(TimelineTree)
    await settle(pilot, lambda: ready(app)() and tree.bucket("all").indexed == 13)  # type: ignore[union-attr]


@pytest.mark.parametrize("images", ["none", "halfcell"])
async def test_snapshot_of_results(tui_home: Path, tui_snapshot_album: Path, images: str):
    app = make_app([tui_snapshot_album], images=images, config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await index_everything(pilot, app)
        await search_for(pilot, app, "a dog")
        if images != "none":
            rows = list(app.query(ResultRow))[:4]
            await settle(pilot, lambda: all(row._image is not None for row in rows))
            await pilot.pause(0.1)
            colours = {segment.style.bgcolor for segment in rows[0].render_line(0)}
            assert len(colours) > 2, "the thumbnail is drawn with the photo's colours"
        text = await snapshot_screen(pilot, app)
    assert_snapshot(f"results-{images}", normalised(text))


async def test_snapshot_of_the_detail_view(tui_home: Path, tui_snapshot_album: Path):
    app = make_app([tui_snapshot_album], images="none", config=tui_config())
    async with app.run_test(size=SIZE) as pilot:
        await index_everything(pilot, app)
        await search_for(pilot, app, str(tui_snapshot_album / "Nikon_D70.jpg"))
        app.query_one(ResultsList).focus()
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, DetailScreen))
        await pilot.press("d")
        await settle(pilot, lambda: bool(app.screen.described))  # type: ignore[attr-defined]
        text = await snapshot_screen(pilot, app)
    assert_snapshot("detail-none", normalised(text))


def test_snapshots_are_committed() -> None:
    """The snapshot files exist, so the comparisons above cannot pass by writing them."""
    for name in ("results-none", "results-halfcell", "detail-none"):
        assert (SNAPSHOTS / f"{name}.txt").is_file(), name
