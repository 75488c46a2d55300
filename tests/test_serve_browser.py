"""End to end in a real browser: ``clipsearch-tui serve``, headless Chromium, a query, results.

The browser's terminal (xterm.js) draws on a canvas, so its text is not in the page. The page is
given a script, before its own, that keeps a copy of every byte the server sends over the
WebSocket: the screens the app draws, as the browser receives them. The query is typed into the
page with real key events. A screenshot of the page is saved, and checked to hold a drawn
terminal. Skipped when Chromium, its driver or selenium is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.encoder import ClipModel
from tests.test_tui_app import (  # noqa: F401 - fixtures used by name
    link_model,
    tui_album,
    tui_indexed_template,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None, reason="chromium and chromedriver are not installed"
)

RECORDER = """
window.__received = [];
const decoder = new TextDecoder();
const Native = window.WebSocket;
window.WebSocket = function (url, protocols) {
  const socket = new Native(url, protocols);
  socket.addEventListener("message", (event) => {
    if (typeof event.data !== "string") {
      window.__received.push(decoder.decode(event.data, { stream: true }));
    }
  });
  return socket;
};
window.WebSocket.prototype = Native.prototype;
"""

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[PX^_].*?\x1b\\|\x1b\][^\x07]*\x07|\x1b.")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(
    tmp_path: Path,
    tiny_model: ClipModel,
    tui_indexed_template: Path,  # noqa: F811 - the fixture imported above
    tui_album: Path,  # noqa: F811 - the fixture imported above
) -> Iterator[str]:
    """``clipsearch-tui serve ALBUM`` on a free port of 127.0.0.1; its address."""
    home = tmp_path / "home"
    shutil.copytree(tui_indexed_template, home)
    link_model(home, tiny_model)
    (home / "config").mkdir(exist_ok=True)
    (home / "config" / "config.toml").write_text('[tui]\nmodel = "tiny"\n')
    port = _free_port()
    env = {
        **os.environ,
        "CLIPSEARCH_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port), str(tui_album)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    error = server.stderr.read() if server.stderr else ""
                    raise AssertionError(f"the server did not start: {error}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def browser() -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM or ""
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,800",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER or ""), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER})
    try:
        yield driver
    finally:
        driver.quit()


def _screen_text(driver: object) -> str:
    raw = "".join(driver.execute_script("return window.__received;"))  # type: ignore[attr-defined]
    return ESCAPES.sub("", raw)


def _wait_for(driver: object, wanted: str, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = _screen_text(driver)
        if wanted in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"the browser never received {wanted!r}; got:\n{text[-2000:]}")
        time.sleep(0.3)


def test_a_query_typed_in_the_browser_shows_results(
    served: str, browser: object, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    driver.get(served)  # type: ignore[attr-defined]
    _wait_for(driver, "Type a query below")
    terminal = driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")  # type: ignore[attr-defined]
    driver.execute_script("arguments[0].focus();", terminal)  # type: ignore[attr-defined]
    terminal.send_keys("/")  # the footer's key for the query box
    terminal.send_keys("a dog")
    terminal.send_keys(Keys.ENTER)
    text = _wait_for(driver, "for a dog")
    assert "#1" in text and "%" in text

    shot = tmp_path / "browser.png"
    driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    # a drawn terminal: many colours (text, borders, thumbnails), not a blank or error page
    assert colours is None or len(colours) > 50, len(colours or [])
    out = os.environ.get("CLIPSEARCH_SCREENSHOTS")
    if out:
        shutil.copy(shot, Path(out) / "browser.png")
