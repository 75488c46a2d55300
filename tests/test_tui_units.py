"""Parts of the terminal app that need no model: safe text, settings, timeline, result paging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image
from textual.app import App, ComposeResult

import tui
from core.library import PhotoRecord
from core.ranking import Hit
from core.timeline import Bucket, build_timeline
from tests.test_tui_app import settle
from tui.config import DEFAULT_LABELS, ConfigError, TuiConfig, load_config
from tui.engine import bucket_bounds
from tui.text import duration, file_size, inert, pace, percent, plural
from tui.widgets import images
from tui.widgets.results import ResultRow, ResultsList
from tui.widgets.timeline import TimelineTree, bucket_label

pytestmark = [
    pytest.mark.anyio,
    # textual-image 0.12 still calls Image.getdata, which Pillow 12 deprecates
    pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning"),
]

# --------------------------------------------------------------------------------------------
# Text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("IMG_0001.jpg", "IMG_0001.jpg"),
        ("été 東京 🍣 [bold].jpg", "été 東京 🍣 [bold].jpg"),
        ("a\x1b]0;title\x07b", "a\\x1b]0;title\\x07b"),
        ("csi\x9b31m", "csi\\x9b31m"),
        ("del\x7f", "del\\x7f"),
        ("line\nbreak\ttab", "line\\x0abreak\\x09tab"),
        ("rtl\u202egpj.exe", "rtl\\u202egpj.exe"),
        ("bytes\udcff", "bytes\\xff"),
        (os.fsdecode(b"caf\xe9.jpg"), "caf\\xe9.jpg"),
        ("sep\u2028x\u2029", "sep\\u2028x\\u2029"),
        ("nel\x85", "nel\\x85"),
        ("link\x1b]8;;http://x\x1b\\y", "link\\x1b]8;;http://x\\x1b\\\\y"),
        ("new\\x0aline.jpg", "new\\\\x0aline.jpg"),  # a backslash of the name's own
        ("C:\\photos\\", "C:\\\\photos\\\\"),
        ("iso\u2066late\u2069", "iso\\u2066late\\u2069"),
        ("zero\u200bwidth\u200d\u2060\ufeff", "zero\\u200bwidth\\u200d\\u2060\\ufeff"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("private\ue000 none\uffff", "private\\ue000 none\\uffff"),
    ],
)
def test_inert_escapes_what_could_act_on_the_terminal(raw: str, shown: str) -> None:
    assert inert(raw) == shown
    assert inert(raw).isprintable()


def test_inert_never_shows_two_names_alike() -> None:
    names = ["new\nline.jpg", "new\\x0aline.jpg", "new\\\nline.jpg", "new\\\\x0aline.jpg"]
    assert len({inert(name) for name in names}) == len(names)


def test_number_formats() -> None:
    assert percent(0.4213) == "42.1%"
    assert percent(0.0) == "0.0%"
    assert percent(0.000042) == "0.0042%"
    assert duration(75.3) == "1:15"
    assert duration(3725) == "1:02:05"
    assert duration(None) == duration(float("nan")) == duration(float("inf")) == "--:--"
    assert file_size(2_345_678) == "2.3 MB"
    assert file_size(999) == "999 B"
    assert [plural(n, "file") for n in (0, 1, 2)] == ["0 files", "1 file", "2 files"]
    assert plural(1, "file was", "files were") == "1 file was"
    assert plural(3, "file was", "files were") == "3 files were"


def test_pace_never_shows_a_rate_of_zero_or_a_stale_eta() -> None:
    from core.indexer import IndexProgress

    def at(done: int, rate: float, eta: float | None, **kw: object) -> str:
        return pace(IndexProgress(done, 60, rate, eta, None, 0, **kw), unit="/s")  # type: ignore[arg-type]

    assert at(0, 0.0, None, stage="loading") == "loading the model"
    assert at(0, 0.0, None) == "starting..."
    assert at(12, 2.5, 19.2) == "2.5/s  ETA 0:19"
    assert at(12, 2.5, None, paused=True) == "paused"
    assert at(60, 250.0, 0.0) == "250/s  ETA 0:00"


# --------------------------------------------------------------------------------------------
# Settings


def test_settings_default_when_there_is_no_file(tmp_path: Path) -> None:
    assert load_config(tmp_path / "config.toml") == TuiConfig()
    assert TuiConfig().labels == DEFAULT_LABELS


def test_settings_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        textwrap.dedent(
            """
            [tui]
            model = "tiny"
            images = "halfcell"
            results = 50
            page_size = 10
            batch_size = 4
            labels = ["a cat", " a dog "]
            gpu = true
            precision = "fp32"
            cluster = " tcp://127.0.0.1:8786 "

            [other]
            ignored = true
            """
        )
    )
    config = load_config(path)
    assert config == TuiConfig(
        "tiny", "halfcell", 50, 10, 4, ("a cat", "a dog"), gpu=True, precision="fp32",
        cluster="tcp://127.0.0.1:8786",
    )  # fmt: skip
    assert TuiConfig().gpu is False
    assert TuiConfig().cluster is None
    assert TuiConfig().precision == "auto"


def test_settings_from_json_when_there_is_no_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path))
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"tui": {"labels": ["x", "y"]}}))
    assert load_config().labels == ("x", "y")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[tui]\ncolour = 1\n", "unknown setting 'colour'"),
        ('[tui]\nimages = "ascii"\n', "images must be one of"),
        ("[tui]\nresults = 0\n", "results must be a whole number from 1"),
        ("[tui]\npage_size = true\n", "page_size must be a whole number"),
        ("[tui]\nlabels = []\n", "labels must be a list of non-empty texts"),
        ('[tui]\ngpu = "yes"\n', "gpu must be true or false"),
        ('[tui]\nprecision = "fp16"\n', "precision must be one of auto, fp32, bf16, int8"),
        ("[tui]\ncluster = 8786\n", "cluster must be a Dask scheduler address"),
        ('[tui]\nlabels = ["ok", " "]\n', "labels must be a list of non-empty texts"),
        ("tui = 3\n", "[tui] must be a table"),
        ('model = "tiny"\n[tui]\ngpu = true\n', "setting 'model' is outside the [tui] table"),
        ("[tui\n", "is not valid TOML"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(path)


def test_settings_are_bounded(tmp_path: Path) -> None:
    """At most a thousand labels (as describe takes), and a file of at most 1 MB is read."""
    path = tmp_path / "config.toml"
    path.write_text("[tui]\nlabels = [" + '"a", ' * 1000 + "]\n")
    assert len(load_config(path).labels) == 1000
    path.write_text("[tui]\nlabels = [" + '"a", ' * 1001 + "]\n")
    with pytest.raises(ConfigError, match="at most 1,000"):
        load_config(path)
    path.write_text("# " + "x" * 1024 * 1024 + "\n")
    with pytest.raises(ConfigError, match="larger than 1024 KB"):
        load_config(path)


# --------------------------------------------------------------------------------------------
# Timeline


def _node(tree: TimelineTree, key: str):  # type: ignore[no-untyped-def]
    """The tree node of the bucket ``key``, which must be shown."""
    node = tree.node(key)
    assert node is not None, key
    return node


def _timeline(days: dict[str, tuple[int, int]]) -> object:
    items = []
    for day, (count, indexed) in days.items():
        moment = datetime.fromisoformat(day)
        items += [(moment, i < indexed) for i in range(count)]
    return build_timeline(items, now=datetime(2020, 1, 1))


def test_bucket_labels() -> None:
    month = Bucket("2019-05", "May 2019", "month", datetime(2019, 5, 1), datetime(2019, 6, 1))
    month.count, month.indexed = 37, 30
    assert bucket_label(month).plain == "2019-05  37 photos  81%"
    recent = Bucket("last-7-days", "Last 7 days", "relative", datetime.min, datetime.max)
    assert bucket_label(recent).plain == "Last 7 days  0 photos"
    recent.count = recent.indexed = 1
    assert bucket_label(recent).plain == "Last 7 days  1 photo  100%"


def test_bucket_bounds() -> None:
    assert bucket_bounds("all") == (None, None)
    assert bucket_bounds("2019-05") == (datetime(2019, 5, 1), datetime(2019, 6, 1))
    since, until = bucket_bounds("last-7-days", now=datetime(2020, 1, 10, 12))
    assert (since, until) == (datetime(2020, 1, 4), datetime(2020, 1, 11))


class _TreeApp(App[None]):
    def compose(self) -> ComposeResult:
        yield TimelineTree(id="timeline")


async def test_timeline_updates_in_place() -> None:
    app = _TreeApp()
    async with app.run_test(size=(60, 20)) as pilot:
        tree = app.query_one(TimelineTree)
        tree.show(_timeline({"2019-05-14": (2, 0), "2018-01-02": (1, 0)}))  # type: ignore[arg-type]
        await pilot.pause()
        assert [child.data for child in tree.root.children] == [
            "last-7-days", "last-30-days", "last-12-months", "all", "2019", "2018",
        ]  # fmt: skip
        tree.move_cursor(_node(tree, "2018"))
        _node(tree, "2019").expand()
        tree.show(_timeline({"2019-05-14": (2, 2), "2020-02-01": (1, 0), "2017-03-03": (1, 1)}))  # type: ignore[arg-type]
        await pilot.pause()
        keys = [child.data for child in tree.root.children]
        assert keys[4:] == ["2020", "2019", "2017"]  # 2018 is gone, the others in date order
        assert _node(tree, "2019").is_expanded
        assert str(_node(tree, "2019-05").label) == "2019-05  2 photos  100%"
        assert tree.bucket("2018") is None and tree.node("2018-01") is None
        assert tree.selected_bucket is not None


# --------------------------------------------------------------------------------------------
# Result paging and thumbnails


def _hits(count: int, thumbnail: Path | None) -> list[Hit]:
    hits = []
    for i in range(count):
        record = PhotoRecord(
            id=i + 1,
            path=Path(f"/photos/IMG_{i:04d}.jpg"),
            size=1000,
            mtime_ns=0,
            taken_at=datetime(2019, 5, 14, 9, 30),
            time_source="DateTimeOriginal",
            width=640,
            height=480,
            status="indexed",
            error=None,
            thumbnail=thumbnail,
        )
        hits.append(Hit(i + 1, record, 0.3 - i * 0.001, 1.0 / count))
    return hits


class _ResultsApp(App[None]):
    CSS_PATH = str(Path(tui.__file__).parent / "app.tcss")

    def __init__(self, image_class: images.ImageWidget | None) -> None:
        super().__init__()
        self.image_class = image_class
        self.opened: list[Hit] = []

    def compose(self) -> ComposeResult:
        yield ResultsList(self.image_class, page_size=30, id="results")

    def on_results_opened(self, message: ResultsList.Opened) -> None:
        self.opened.append(message.hit)


async def test_results_mount_a_page_at_a_time() -> None:
    app = _ResultsApp(None)
    async with app.run_test(size=(60, 20)) as pilot:
        results = app.query_one(ResultsList)
        await results.show(_hits(200, None))
        await pilot.pause()
        assert results.mounted_rows == 30 and len(app.query(ResultRow)) == 30
        results.scroll_end(animate=False)
        await pilot.pause(0.2)
        assert results.mounted_rows == 60
        results.focus()
        await pilot.press("home", "down", "enter")
        assert app.opened[-1].rank == 2
        await pilot.press("end")
        await pilot.pause()
        assert results.mounted_rows == 200
        await results.show(_hits(3, None))
        await pilot.pause()
        assert results.mounted_rows == 3 and results.cursor == 0


async def test_thumbnails_are_decoded_off_the_ui_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tui.widgets.results as results_module

    thumb = tmp_path / "thumb.jpg"
    Image.new("RGB", (256, 192), (200, 30, 40)).save(thumb)
    threads: list[str] = []
    real = results_module.load_thumbnail

    def spy(path: Path | None, longest: int) -> Image.Image | None:
        threads.append(threading.current_thread().name)
        return real(path, longest)

    monkeypatch.setattr(results_module, "load_thumbnail", spy)
    app = _ResultsApp(images.image_class("halfcell"))
    async with app.run_test(size=(60, 20)) as pilot:
        ui_thread = threading.current_thread().name
        results = app.query_one(ResultsList)
        await results.show(_hits(40, thumb))

        def red_thumbnail() -> bool:
            row = app.query(ResultRow).first()
            colours = {segment.style.bgcolor for segment in row.render_line(0)}
            return any(c is not None and c.triplet and c.triplet.red > 150 for c in colours)

        # the loading worker may start only after the list is laid out, later under load
        await settle(pilot, lambda: len(threads) >= 30 and red_thumbnail())
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        assert len(threads) == 30 and ui_thread not in threads
        assert red_thumbnail()


def test_list_thumbnails_are_drawn_inline() -> None:
    from textual_image import widget
    from textual_image.renderable import halfcell, tgp

    assert images.renderable_class(None) is None
    assert images.renderable_class(widget.HalfcellImage) is halfcell.Image
    assert images.renderable_class(widget.TGPImage) is tgp.Image
    # Sixel needs one textual-image widget per picture: the list uses half-cell blocks instead
    assert images.renderable_class(widget.SixelImage) is halfcell.Image


def test_image_renderer_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from textual_image import widget

    assert images.image_class("none") is None
    assert images.image_class("halfcell") is widget.HalfcellImage
    assert images.image_class("kitty") is widget.TGPImage
    sixel = images.image_class("sixel")
    # textual-image's Sixel widget, redrawn whole after a resize (tests/test_tui_emulators.py)
    assert sixel is not None and issubclass(sixel, widget.SixelImage)
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    assert images.image_class("auto") is widget.HalfcellImage
    with pytest.raises(ValueError, match="images must be one of"):
        images.image_class("ascii")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("kitty(0.26.5)", "halfcell"),  # answers the graphics query, cannot draw placeholders
        ("kitty 0.27.1", "halfcell"),
        ("kitty(0.28.0)", "kitty"),
        ("kitty(0.35.2)", "kitty"),
        ("kitty(1.0.0)", "kitty"),
        ("WezTerm 20240203-110809-5046fc22", "kitty"),  # not kitty: the detection stands
        ("kitty", "kitty"),  # no version: the detection stands
        (None, "kitty"),  # no answer: the detection stands
    ],
)
def test_auto_falls_back_to_half_cell_on_kitty_before_0_28(
    version: str | None, expected: str
) -> None:
    assert images.auto_mode("kitty", version) == expected


def test_auto_keeps_sixel_and_half_cell_whatever_the_version() -> None:
    assert images.auto_mode("sixel", "kitty(0.26.5)") == "sixel"
    assert images.auto_mode("halfcell", "kitty(0.26.5)") == "halfcell"


def test_auto_asks_the_version_when_the_terminal_answers_the_kitty_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from textual_image import renderable, widget

    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.setenv("TERM", "xterm-kitty")
    monkeypatch.setattr(renderable, "Image", renderable.TGPImage)
    monkeypatch.setattr(images, "terminal_version", lambda: "kitty(0.26.5)")
    assert images.image_class("auto") is widget.HalfcellImage
    monkeypatch.setattr(images, "terminal_version", lambda: "kitty(0.28.1)")
    assert images.image_class("auto") is widget.TGPImage
    monkeypatch.setattr(images, "terminal_version", lambda: None)
    assert images.image_class("auto") is widget.TGPImage


def test_terminal_version_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM_PROGRAM", "kitty")
    monkeypatch.setenv("TERM_PROGRAM_VERSION", "0.26.5")
    assert images.terminal_version() == "kitty 0.26.5"
    assert images.auto_mode("kitty", images.terminal_version()) == "halfcell"


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize(
    ("answer", "expected"), [(b"\x1bP>|kitty(0.26.5)\x1b\\", "kitty(0.26.5)"), (None, "None")]
)
def test_terminal_version_asks_the_terminal(answer: bytes | None, expected: str) -> None:
    """XTVERSION on a pseudo-terminal: kitty's answer is read; no answer means unknown."""
    import pty
    import select
    import time

    main_fd, child_fd = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERM_PROGRAM")}
    child = subprocess.Popen(
        [sys.executable, "-c", "from tui.widgets import images; print(images.terminal_version())"],
        stdin=child_fd,
        stdout=child_fd,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    os.close(child_fd)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not seen.rstrip().endswith(expected.encode()):
            if not select.select([main_fd], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(main_fd, 1024)
            except OSError:
                break
            seen += chunk
            if answer is not None and b"\x1b[>q" in seen:
                os.write(main_fd, answer)
                answer = None
    finally:
        child.wait(timeout=60)
        os.close(main_fd)
    assert b"\x1b[>q" in seen
    assert seen.rstrip().endswith(expected.encode())


# --------------------------------------------------------------------------------------------
# Native libraries' stderr


def test_native_stderr_is_kept_off_the_terminal(tmp_path: Path) -> None:
    """What C code writes on descriptor 2 goes to the log; what Textual writes, to the terminal."""
    script = textwrap.dedent(
        """
        import os, pty, sys
        from pathlib import Path
        master, slave = pty.openpty()
        os.dup2(slave, 2)
        sys.__stderr__ = os.fdopen(2, "w")
        from tui.terminal import divert_native_stderr
        log = Path(sys.argv[1])
        with divert_native_stderr(log):
            os.write(2, b"native warning\\n")
            sys.__stderr__.write("drawn by textual\\n")
            sys.__stderr__.flush()
        os.write(2, b"after\\n")
        import select
        screen = ""
        while "after" not in screen and select.select([master], [], [], 2.0)[0]:
            screen += os.read(master, 1000).decode()
        print(repr(screen))
        print(repr(log.read_text()))
        """
    )
    log = tmp_path / "native.log"
    out = subprocess.run(
        [sys.executable, "-c", script, str(log)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.splitlines()
    screen, logged = (eval(line) for line in out)  # noqa: S307 - our own repr() output
    assert "drawn by textual" in screen and "after" in screen
    assert "native warning" not in screen
    assert logged == "native warning\n"


class _PanelApp(App[None]):
    CSS_PATH = str(Path(tui.__file__).with_name("app.tcss"))

    def compose(self) -> ComposeResult:
        from tui.widgets.indexing import IndexingPanel

        yield IndexingPanel(id="indexing")


async def test_the_indexing_bar_sweeps_only_while_a_job_runs_without_a_count() -> None:
    """Idle, or after a job that failed or stopped while scanning, the bar is empty and still,
    without a percentage; it sweeps (no percentage known) only while a job scans."""
    from textual.widgets import ProgressBar
    from textual.widgets._progress_bar import PercentageStatus

    from tui.messages import IndexFinished
    from tui.widgets.indexing import IndexingPanel

    app = _PanelApp()
    async with app.run_test(size=(40, 10)) as pilot:
        panel = app.query_one(IndexingPanel)
        bar = app.query_one(ProgressBar)

        def still() -> bool:
            shown = bar.query_one(PercentageStatus).visible
            return bar.percentage == 0 and bar.has_class("-still") and not shown

        await pilot.pause()
        assert still()
        for ending in (
            IndexFinished(1, "2019", 0, 0, cancelled=False, error="the library is damaged"),
            IndexFinished(2, "2019", 0, 0, cancelled=True),
        ):
            panel.started("2019")
            await pilot.pause()
            assert bar.percentage is None and not still()  # sweeping: the count is unknown
            panel.finished(ending, "2019")
            await pilot.pause()
            assert still(), ending
        panel.started("2019")
        panel.finished(IndexFinished(3, "2019", 4, 0, cancelled=False), "2019")
        await pilot.pause()
        assert bar.percentage == 1 and not bar.has_class("-still")


def test_only_registry_models_are_offered_for_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.registry import default_model_name
    from tui.engine import not_installable

    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path / "home"))
    assert not_installable(default_model_name(), from_setting=True) is None
    by_library = not_installable("tiny", from_setting=False)
    assert by_library is not None and "the model this library was indexed with" in str(by_library)
    by_setting = not_installable("tiny", from_setting=True)
    assert by_setting is not None and "config.toml" in str(by_setting)
    assert "model install --from FILE --as tiny" in str(by_setting)
