"""What a user sees in real terminal emulators: xterm in VT340 Sixel mode and kitty, under Xvfb.

The real ``clipsearch-tui`` command runs in the emulator's window on a virtual X display; keys
are typed through XTEST and the screen is read back as pixels. A picture drawn in pixels (Sixel)
shows as cells of many colours, half-cell blocks as cells whose upper and lower halves are two
flat colours, and text (xterm's bitmap font) as cells of two colours. Skipped where Xvfb,
xdotool, ImageMagick or the emulator is not installed (CI installs them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image as PILImage

from core.encoder import ClipModel
from tests.emulators import (
    X_TOOLS_MISSING,
    Display,
    Emulator,
    Grid,
)
from tests.test_tui_app import (  # noqa: F401 - fixtures used by name
    link_model,
    tui_album,
    tui_indexed_template,
)

XTERM = shutil.which("xterm")
KITTY = shutil.which("kitty")
COMMAND = Path(sys.executable).with_name("clipsearch-tui")
SCREENSHOTS = os.environ.get("CLIPSEARCH_EMULATOR_SCREENSHOTS")
"""A folder to save each test's screenshots in, to look at them; unset: none are saved."""

pytestmark = [
    pytest.mark.skipif(bool(X_TOOLS_MISSING), reason=f"not installed: {X_TOOLS_MISSING}"),
    pytest.mark.skipif(not COMMAND.exists(), reason="the clipsearch-tui command is not installed"),
]

COLUMNS, ROWS = 100, 30
"""The terminal's size when the app starts."""


@pytest.fixture
def display() -> Iterator[Display]:
    screen = Display()
    try:
        yield screen
    finally:
        screen.close()


@pytest.fixture
def app_home(
    tmp_path: Path,
    tiny_model: ClipModel,
    tui_indexed_template: Path,  # noqa: F811 - the fixture imported above
) -> Path:
    """A home whose library holds the test album, indexed, with the tiny model as the model."""
    home = tmp_path / "home"
    shutil.copytree(tui_indexed_template, home)
    link_model(home, tiny_model)
    (home / "config").mkdir(exist_ok=True)
    (home / "config" / "config.toml").write_text('[tui]\nmodel = "tiny"\n')
    return home


def app_command(home: Path, album: Path) -> list[str]:
    return ["env", f"CLIPSEARCH_HOME={home}", str(COMMAND), str(album)]


class Terminal(Emulator):
    """An emulator running the app in a window without padding, cells of ``cell`` pixels."""

    cell = (0, 0)

    def grid(self) -> Grid:
        """The character cells of the window as it is now."""
        x, y, width, height = self.geometry()
        return Grid((x, y), self.cell, (width // self.cell[0], height // self.cell[1]))

    def save(self, shot: PILImage.Image, name: str) -> None:
        """Keep the window's part of ``shot`` as ``NAME.png`` when screenshots are asked for."""
        if SCREENSHOTS:
            x, y, width, height = self.geometry()
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            window = shot.crop((x, y, x + width, y + height))
            window.save(Path(SCREENSHOTS) / f"{name}.png", optimize=True)

    def measure_cells(self, columns: int, rows: int) -> None:
        """Learn the cell size from the window's size when it holds ``columns`` x ``rows``."""
        _, _, width, height = self.geometry()
        self.cell = (width // columns, height // rows)

    def search(self, text: str) -> None:
        self.wait_output(b"Type a query below")
        self.wait_output(b"Done: album scan")
        self.focus()
        self.display.type(text)
        self.display.keys("Return")
        self.wait_output(f"for {text}".encode())

    def open_first_result(self) -> None:
        self.display.keys("Down")
        time.sleep(1.0)  # the focus moves to the results on the app's next turn
        self.display.keys("Return")


def start_xterm(display: Display, home: Path, album: Path, log: Path) -> Terminal:
    assert XTERM is not None
    command = [
        XTERM,
        "-ti",
        "vt340",
        "-xrm",
        "XTerm*decTerminalID: vt340",
        "-xrm",
        "XTerm*numColorRegisters: 256",
        "-xrm",
        "XTerm*termName: xterm-256color",
        "-u8",
        # DejaVu without anti-aliasing: text cells of two colours, and the block elements drawn
        "-fa",
        "DejaVu Sans Mono:antialias=false",
        "-fs",
        "10",
        "-b",
        "0",
        "-xrm",
        "XTerm*borderWidth: 0",
        "-geometry",
        f"{COLUMNS}x{ROWS}+0+0",
        "-l",
        "-lf",
        str(log),
        "-e",
        *app_command(home, album),
    ]
    terminal = Terminal(display, command, log, name="xterm")
    terminal.measure_cells(COLUMNS, ROWS)
    return terminal


def bounds(cells: set[tuple[int, int]]) -> tuple[int, int, int, int]:
    """``(left, top, columns, rows)`` of the smallest rectangle holding ``cells``."""
    columns = [column for column, _ in cells]
    rows = [row for _, row in cells]
    return min(columns), min(rows), max(columns) - min(columns) + 1, max(rows) - min(rows) + 1


def one_picture(cells: set[tuple[int, int]], most: tuple[int, int]) -> tuple[int, int, int, int]:
    """Check that ``cells`` form one solid rectangle no larger than ``most``; return its bounds."""
    left, top, columns, rows = bounds(cells)
    assert columns <= most[0] + 1 and rows <= most[1] + 1, (
        f"pictures drawn over {columns}x{rows} cells from ({left}, {top}), "
        f"more than one preview of at most {most[0]}x{most[1]}"
    )
    assert len(cells) >= 0.85 * columns * rows, (
        f"only {len(cells)} of the {columns}x{rows} cells from ({left}, {top}) are a picture"
    )
    return left, top, columns, rows


def tallest_block(cells: set[tuple[int, int]], width: int) -> int:
    """The most consecutive rows that each hold at least ``width`` of ``cells``."""
    per_row: dict[int, int] = {}
    for _, row in cells:
        per_row[row] = per_row.get(row, 0) + 1
    tallest = run = 0
    for row in range(min(per_row, default=0), max(per_row, default=-1) + 1):
        run = run + 1 if per_row.get(row, 0) >= width else 0
        tallest = max(tallest, run)
    return tallest


PREVIEW = (34, 16)
"""The detail view's preview box in cells (``#detail-preview`` in tui/app.tcss)."""


@pytest.mark.skipif(XTERM is None, reason="xterm is not installed")
def test_xterm_sixel_draws_thumbnails_and_the_detail_photo(
    display: Display,
    app_home: Path,
    tui_album: Path,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """xterm as a VT340 answers that it draws Sixel: the detail view's photo is a Sixel picture,
    one solid rectangle within the preview box."""
    terminal = start_xterm(display, app_home, tui_album, tmp_path / "xterm.log")
    try:
        grid = terminal.grid()
        terminal.search("a dog")
        # list thumbnails are half-cell blocks in Sixel mode (a Sixel widget per row costs too much)
        shot = terminal.wait_screen(
            lambda shot: len(grid.half_blocks(shot)) >= 40, "half-cell thumbnails"
        )
        terminal.save(shot, "xterm-results")
        sent = len(terminal.output())
        terminal.open_first_result()
        terminal.wait_output(b"\x1bP", after=sent)  # the start of a Sixel image
        shot = terminal.wait_screen(
            lambda shot: len(grid.pictures(shot)) >= 60, "the detail photo in pixels"
        )
        terminal.save(shot, "xterm-detail")
        one_picture(grid.pictures(shot), PREVIEW)
    finally:
        terminal.close()


GRAPHICS_COMMAND = re.compile(rb"\x1b_G([^;\x1b]*)")
"""The keys of a kitty graphics command; ``a=q`` only asks whether the protocol is supported."""


def kitty_version() -> tuple[int, ...]:
    assert KITTY is not None
    text = subprocess.run([KITTY, "--version"], capture_output=True, text=True, timeout=30).stdout
    found = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    assert found, f"kitty --version said {text!r}"
    return tuple(int(part) for part in found.groups())


def start_kitty(display: Display, home: Path, album: Path, log: Path) -> Terminal:
    assert KITTY is not None
    command = [
        KITTY,
        "--config",
        "NONE",
        "-o",
        "font_family=DejaVu Sans Mono",
        "-o",
        "font_size=10",
        "-o",
        f"initial_window_width={COLUMNS}c",
        "-o",
        f"initial_window_height={ROWS}c",
        "-o",
        "remember_window_size=no",
        "-o",
        "window_padding_width=0",
        "-o",
        "enable_audio_bell=no",
        "-o",
        "cursor_blink_interval=0",
        "--dump-bytes",
        str(log),
        *app_command(home, album),
    ]
    # kitty draws with OpenGL 3.3: Mesa's software renderer on a display without a GPU
    extra = {"LIBGL_ALWAYS_SOFTWARE": "1"}
    terminal = Terminal(display, command, log, extra=extra, name="kitty")
    terminal.measure_cells(COLUMNS, ROWS)
    return terminal


@pytest.mark.skipif(KITTY is None, reason="kitty is not installed")
def test_kitty_draws_thumbnails_it_can_show(
    display: Display,
    app_home: Path,
    tui_album: Path,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """kitty before 0.28 cannot draw the placeholders kitty images are placed with: half-cell
    blocks there; kitty images from 0.28 on."""
    old = kitty_version() < (0, 28)
    terminal = start_kitty(display, app_home, tui_album, tmp_path / "kitty.log")
    try:
        grid = terminal.grid()
        terminal.search("a dog")
        if not old:
            # kitty's own text is anti-aliased, so pixels alone cannot tell pictures from text
            terminal.wait_output(b"\x1b_Ga=p")  # an image placed
            return
        shot = terminal.wait_screen(
            lambda shot: len(grid.half_blocks(shot)) >= 40, "half-cell thumbnails"
        )
        terminal.save(shot, "kitty-results")
        listed = grid.half_blocks(shot)
        terminal.open_first_result()
        # the preview: a block of rows of half-cell blocks (the dialog's borders are drawn with
        # half blocks too, one row each)
        shot = terminal.wait_screen(
            lambda shot: tallest_block(grid.half_blocks(shot) - listed, 20) >= 6,
            "the detail photo in half-cell blocks",
        )
        terminal.save(shot, "kitty-detail")
        output = terminal.output()
        assert b"\x1b[>q" in output, "the terminal's version was not asked"
        sent = [keys for keys in GRAPHICS_COMMAND.findall(output) if b"a=q" not in keys]
        assert not sent, f"kitty images sent to kitty {kitty_version()}: {sent[:3]}"
    finally:
        terminal.close()


def settled(
    terminal: Terminal, found: Callable[[PILImage.Image], bool], what: str
) -> PILImage.Image:
    """The screen once ``found`` holds and two screenshots in a row are the same."""
    previous: list[PILImage.Image] = []

    def still(shot: PILImage.Image) -> bool:
        same = bool(previous) and found(shot) and shot.tobytes() == previous[-1].tobytes()
        previous[:] = [shot]
        return same

    return terminal.wait_screen(still, what)


@pytest.mark.skipif(XTERM is None, reason="xterm is not installed")
def test_xterm_enlarged_with_the_detail_open_keeps_no_fragments(
    display: Display,
    app_home: Path,
    tui_album: Path,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """Enlarging the window while a Sixel photo is open redraws it like a fresh opening.

    textual-image left the rest of the picture's last line unwritten on a full redraw: a white
    bar of xterm's own colours where the window grew, or borders of the old layout
    (tui/widgets/sixel.py).
    """
    terminal = start_xterm(display, app_home, tui_album, tmp_path / "xterm.log")
    try:
        grid = terminal.grid()
        terminal.search("a dog")
        terminal.open_first_result()
        shot = settled(terminal, lambda shot: len(grid.pictures(shot)) >= 60, "the detail photo")
        terminal.save(shot, "xterm-resize-before")
        before = one_picture(grid.pictures(shot), PREVIEW)
        # drag the window larger, as a user would
        width, height = terminal.cell
        terminal.resize(140 * width, 44 * height)
        grid = terminal.grid()
        assert (grid.columns, grid.rows) == (140, 44)
        enlarged = settled(
            terminal,
            lambda shot: (
                bool(grid.pictures(shot)) and bounds(grid.pictures(shot))[:2] != before[:2]
            ),
            "the detail photo moved to the enlarged window's centre",
        )
        terminal.save(enlarged, "xterm-resize-after")
        # the same view drawn afresh at this size: close the detail and open it again
        terminal.display.keys("Escape")
        time.sleep(1.0)
        terminal.display.keys("Return")
        fresh = settled(terminal, lambda shot: len(grid.pictures(shot)) >= 60, "the reopened photo")
        terminal.save(fresh, "xterm-resize-reopened")
        one_picture(grid.pictures(fresh), PREVIEW)
        stale = grid.changed(enlarged, fresh)
        assert not stale, f"{len(stale)} cells differ from a fresh drawing, around {bounds(stale)}"
        one_picture(grid.pictures(enlarged), PREVIEW)
    finally:
        terminal.close()
