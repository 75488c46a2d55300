"""End to end: the real ``clipsearch-tui`` command in a tmux pane, read back with capture-pane.

Skipped when tmux is not installed. The tmux server runs on a socket of its own, with no user
configuration, and is killed at the end.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.encoder import ClipModel
from tests.test_tui_app import (  # noqa: F401 - fixtures used by name
    link_model,
    tui_album,
    tui_indexed_template,
)

TMUX = shutil.which("tmux")
COMMAND = Path(sys.executable).with_name("clipsearch-tui")

pytestmark = [
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed"),
    pytest.mark.skipif(not COMMAND.exists(), reason="the clipsearch-tui command is not installed"),
]


class Pane:
    """One tmux session on a private server: send keys, read the screen."""

    def __init__(self, socket: str, size: tuple[int, int]) -> None:
        self.socket = socket
        self.size = size
        """Columns and rows of the pane."""

    def tmux(self, *args: str) -> str:
        assert TMUX is not None
        done = subprocess.run(
            [TMUX, "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "e2e")

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "e2e", *keys)

    def wait_for(self, found: Callable[[str], bool], timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if found(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"the screen never showed what was expected:\n{text}")
            time.sleep(0.2)


@pytest.fixture(params=[(80, 24), (120, 40)], ids=["80x24", "120x40"])
def tui_pane(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tiny_model: ClipModel,
    tui_indexed_template: Path,  # noqa: F811 - the fixture imported above
    tui_album: Path,  # noqa: F811 - the fixture imported above
) -> Iterator[Pane]:
    """``clipsearch-tui ALBUM`` in a tmux pane (80x24, then 120x40), on an indexed library."""
    home = tmp_path / "home"
    shutil.copytree(tui_indexed_template, home)
    link_model(home, tiny_model)
    (home / "config").mkdir(exist_ok=True)
    (home / "config" / "config.toml").write_text('[tui]\nmodel = "tiny"\n')
    command = " ".join(
        [
            # the pane's shell exports COLUMNS and LINES from its first size (80x24), which
            # the app would take over the terminal's real size
            "env -u COLUMNS -u LINES",
            f"CLIPSEARCH_HOME={shlex.quote(str(home))}",
            "TERM=xterm-256color",
            shlex.quote(str(COMMAND)),
            shlex.quote(str(tui_album)),
            "; echo EXIT=$?; sleep 60",
        ]
    )
    columns, rows = request.param
    pane = Pane(f"clipsearch-e2e-{uuid.uuid4().hex[:8]}", (columns, rows))
    pane.tmux("new-session", "-d", "-s", "e2e", "-x", str(columns), "-y", str(rows), command)
    try:
        yield pane
    finally:
        subprocess.run([TMUX or "tmux", "-L", pane.socket, "kill-server"], check=False)


def test_type_a_query_and_read_the_results(tui_pane: Pane) -> None:
    tui_pane.wait_for(lambda text: "Type a query below" in text and "Done: album scan" in text)
    tui_pane.send("-l", "a dog")
    tui_pane.send("Enter")
    text = tui_pane.wait_for(lambda text: "for a dog" in text)
    assert "#1 " in text and "cos " in text and "%" in text
    assert "opt.num_threads" not in text, "a native library wrote over the screen"
    assert "\x1b" not in text
    # thumbnails are drawn with half-cell blocks inside tmux, by a worker, after the results
    text = tui_pane.wait_for(lambda text: "for a dog" in text and "▀" in text)
    assert "opt.num_threads" not in text and "\x1b" not in text
    # the Duplicates view: the album holds one photo saved twice under two names
    tui_pane.send("Down")
    # the focus moves to the results on the app's next turn; a key sent in the same read as
    # Down would still reach the query box, so give the app that turn before the next key
    time.sleep(1.0)
    tui_pane.send("D")
    text = tui_pane.wait_for(lambda text: "Group 1:" in text)
    assert "Canon_40D.jpg" in text and "100x68" in text
    tui_pane.send("Escape")
    tui_pane.wait_for(lambda text: "for a dog" in text)
    # g: the grid, as many cells a row as the width holds (2 at 80 columns, 4 at 120), and back
    cells = {80: 2, 120: 4}[tui_pane.size[0]]
    tui_pane.send("g")
    text = tui_pane.wait_for(lambda text: _ranks_beside_the_first(text) == cells and "▀" in text)
    assert "\x1b" not in text
    tui_pane.send("g")
    tui_pane.wait_for(lambda text: _ranks_beside_the_first(text) == 1)
    tui_pane.send("C-q")
    text = tui_pane.wait_for(lambda text: "EXIT=" in text, timeout=15)
    assert "EXIT=0" in text


def _ranks_beside_the_first(text: str) -> int:
    """How many results share the screen line that shows ``#1`` (cells of a grid row)."""
    line = next((line for line in text.splitlines() if "#1 " in line), "")
    return len(re.findall(r"#\d+ ", line))
