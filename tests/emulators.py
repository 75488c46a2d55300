"""Real terminal emulators on a virtual X display, for the tests that look at what a user sees.

:class:`Display` is an Xvfb server of its own (a free display number, no TCP, no access control
needed since nothing else knows it); :class:`Emulator` is one terminal window on it running one
command, with the bytes the command wrote logged to a file. Screens are read back as pixels
(ImageMagick's ``import``) and keys are typed through the XTEST extension (``xdotool``), as a
user's keyboard would.
"""

from __future__ import annotations

import io
import os
import random
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

XVFB = shutil.which("Xvfb")
XDOTOOL = shutil.which("xdotool")
IMPORT = shutil.which("import")
X_TOOLS_MISSING = ", ".join(
    name for name, found in (("Xvfb", XVFB), ("xdotool", XDOTOOL), ("import", IMPORT)) if not found
)
"""The X tools these tests need that are not installed, comma-separated; empty when all are."""

SCREEN = (1280, 800)

# Variables that would tell the app it runs somewhere other than the emulator under test.
FOREIGN_VARIABLES = (
    "TMUX",
    "STY",
    "TERM_PROGRAM",
    "TERM_PROGRAM_VERSION",
    "KITTY_WINDOW_ID",
    "KITTY_PID",
    "WEZTERM_PANE",
    "COLORTERM",
    "WAYLAND_DISPLAY",
)


class Display:
    """An Xvfb server of its own; stopped by :meth:`close`.

    Xvfb first picks a free display number itself; if a client cannot then reach that display
    with the expected screen (another server answering on the same number, which happens where
    several machines' containers share abstract sockets), numbers from a random high range are
    tried instead.
    """

    def __init__(self, size: tuple[int, int] = SCREEN, attempts: int = 4) -> None:
        assert XVFB is not None and XDOTOOL is not None
        self.size = size
        self.attempts = attempts
        self.errors = tempfile.TemporaryFile()
        self.start()

    def start(self) -> None:
        """Start a server; on a display number of Xvfb's choice first."""
        attempts = self.attempts
        for attempt in range(attempts):
            number = None if attempt == 0 else random.randrange(200, 60000)
            self.process, name = self._start(number)
            if name is not None:
                self.name = name
                if self.answers():
                    return
            self.close()
        raise RuntimeError(f"Xvfb could not start a display of its own in {attempts} attempts")

    def _start(self, number: int | None) -> tuple[subprocess.Popen[bytes], str | None]:
        """Start Xvfb; return it and its display name once it accepts clients (None: it failed)."""
        assert XVFB is not None
        read, write = os.pipe()
        chosen = [] if number is None else [f":{number}"]
        screen = f"{self.size[0]}x{self.size[1]}x24"
        try:
            process = subprocess.Popen(
                [XVFB, *chosen, "-displayfd", str(write), "-screen", "0", screen]
                # no reset when the last client leaves: nothing to race with between clients
                + ["-nolisten", "tcp", "-noreset"],
                pass_fds=(write,),
                stdout=subprocess.DEVNULL,
                stderr=self.errors,
            )
        finally:
            os.close(write)
        # Xvfb writes the number once it accepts connections, or closes the pipe on failure
        answer = b""
        deadline = time.monotonic() + 15
        with os.fdopen(read, "rb", buffering=0) as pipe:
            while not answer.endswith(b"\n") and time.monotonic() < deadline:
                ready, _, _ = select.select([pipe], [], [], 0.2)
                if ready:
                    chunk = pipe.read(64)
                    if not chunk:
                        break
                    answer += chunk
        return process, f":{int(answer)}" if answer.strip().isdigit() else None

    def answers(self) -> bool:
        """True when a client reaches this display and finds this server's screen there."""
        assert XDOTOOL is not None
        try:
            text = self.tool(XDOTOOL, "getdisplaygeometry")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return False
        return text.split() == [str(self.size[0]).encode(), str(self.size[1]).encode()]

    def restart(self) -> None:
        """Stop this server and start another in its place (its display name may change)."""
        self.close()
        self.start()

    def state(self) -> str:
        """Whether the server runs and answers, and the end of what it wrote, for a failure."""
        return self.checked()[1]

    def checked(self) -> tuple[bool, str]:
        """Whether the server answers, with :meth:`state`'s text (one question to the server)."""
        running = self.process.poll() is None
        answers = running and self.answers()
        self.errors.seek(0)
        said = self.errors.read()[-1500:].decode(errors="replace")
        return answers, (
            f"Xvfb {self.name}: {'running' if running else f'exited {self.process.returncode}'}, "
            f"{'answers' if answers else 'does not answer'}\nXvfb stderr:\n{said}"
        )

    def environment(self, **extra: str) -> dict[str, str]:
        """This process's environment pointed at this display, without other terminals' marks."""
        environment = {
            key: value for key, value in os.environ.items() if key not in FOREIGN_VARIABLES
        }
        environment["DISPLAY"] = self.name
        environment.update(extra)
        return environment

    def tool(self, *command: str, timeout: float = 10.0) -> bytes:
        """Run an X client on this display and return what it printed."""
        done = subprocess.run(
            list(command),
            env=self.environment(),
            capture_output=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout

    def screenshot(self) -> PILImage.Image:
        """The whole screen, as RGB pixels."""
        assert IMPORT is not None
        data = self.tool(IMPORT, "-window", "root", "png:-", timeout=20)
        return PILImage.open(io.BytesIO(data)).convert("RGB")

    def keys(self, *names: str) -> None:
        """Press and release keys by X name (``Return``, ``Down``, ``ctrl+q``), in order."""
        assert XDOTOOL is not None
        self.tool(XDOTOOL, "key", "--delay", "80", *names)

    def type(self, text: str) -> None:
        assert XDOTOOL is not None
        self.tool(XDOTOOL, "type", "--delay", "60", text)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Emulator:
    """One terminal emulator window on ``display``, started with ``command`` line.

    ``log`` is where the emulator writes the bytes the program sent it (xterm ``-lf``, kitty
    ``--dump-bytes``); ``extra`` are variables set for it besides ``DISPLAY``; ``name`` is only a
    name for error messages. The window is waited for here. An emulator that exits because it
    could not open the display is started again (``attempts`` in all), on a new server when the
    display no longer answers; what happened goes into the error if the last attempt fails too.
    """

    def __init__(
        self,
        display: Display,
        command: Sequence[str],
        log: Path,
        *,
        extra: dict[str, str] | None = None,
        name: str = "terminal",
        attempts: int = 3,
    ) -> None:
        self.display = display
        self.command = list(command)
        self.extra = extra or {}
        self.log = log
        self.name = name
        self.errors = log.with_suffix(".stderr")
        self.earlier: list[str] = []
        for attempt in range(attempts):
            self._launch()
            try:
                self.window()
                return
            except AssertionError:
                said = self.errors.read_bytes().decode(errors="replace")
                if "open display" not in said or attempt == attempts - 1:
                    raise
            answers, state = display.checked()
            self.earlier.append(f"attempt {attempt + 1}: {said.strip()[-300:]}\n{state}")
            if not answers:
                display.restart()

    def _launch(self) -> None:
        with open(self.errors, "wb") as errors:
            self.process = subprocess.Popen(
                self.command,
                env=self.display.environment(**self.extra),
                stdout=subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,
            )

    def output(self) -> bytes:
        try:
            return self.log.read_bytes()
        except FileNotFoundError:
            return b""

    def failure(self, what: str) -> AssertionError:
        errors = self.errors.read_bytes().decode(errors="replace")[-2000:]
        tail = self.output()[-1500:]
        state = "running" if self.process.poll() is None else f"exited {self.process.returncode}"
        earlier = "".join(f"\nearlier, {text}" for text in self.earlier)
        return AssertionError(
            f"{self.name}: {what} ({state})\nemulator stderr:\n{errors}\nlast output: {tail!r}"
            f"\n{self.display.state()}{earlier}"
        )

    def wait_output(self, text: bytes, timeout: float = 30.0, *, after: int = 0) -> int:
        """Wait until the program has written ``text`` (after byte ``after``); return where."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.output().find(text, after)
            if found >= 0:
                return found
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise self.failure(f"never wrote {text!r}")
            time.sleep(0.1)

    def wait_screen(
        self, found: Callable[[PILImage.Image], bool], what: str, timeout: float = 20.0
    ) -> PILImage.Image:
        """Take screenshots until ``found`` holds for one; return it."""
        deadline = time.monotonic() + timeout
        while True:
            shot = self.display.screenshot()
            if found(shot):
                return shot
            if time.monotonic() > deadline:
                last = self.log.with_suffix(".png")
                shot.save(last)
                raise self.failure(f"the screen never showed {what} (last screenshot: {last})")
            time.sleep(0.3)

    def window(self) -> str:
        """The X id of the emulator's window."""
        assert XDOTOOL is not None
        deadline = time.monotonic() + 15
        while True:
            try:
                found = self.display.tool(
                    XDOTOOL, "search", "--onlyvisible", "--pid", str(self.process.pid)
                )
            except subprocess.CalledProcessError:
                found = b""
            if found.split():
                return found.split()[-1].decode()
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise self.failure("no window appeared")
            time.sleep(0.2)

    def geometry(self) -> tuple[int, int, int, int]:
        """``(x, y, width, height)`` of the window, in pixels."""
        assert XDOTOOL is not None
        text = self.display.tool(XDOTOOL, "getwindowgeometry", "--shell", self.window())
        values = dict(line.split("=", 1) for line in text.decode().split())
        return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])

    def resize(self, width: int, height: int) -> None:
        """Resize the window to ``width`` x ``height`` pixels, as dragging its corner would."""
        assert XDOTOOL is not None
        self.display.tool(XDOTOOL, "windowsize", "--sync", self.window(), str(width), str(height))

    def focus(self) -> None:
        assert XDOTOOL is not None
        window = self.window()
        self.display.tool(XDOTOOL, "mousemove", "--window", window, "20", "20")
        self.display.tool(XDOTOOL, "windowfocus", "--sync", window)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Grid:
    """The character cells of a terminal window inside a screenshot.

    ``origin`` is the top-left pixel of cell (0, 0) on the screen, ``cell`` the size of a cell in
    pixels and ``size`` the window's ``(columns, rows)``. Cells are named ``(column, row)``.
    """

    def __init__(
        self, origin: tuple[int, int], cell: tuple[int, int], size: tuple[int, int]
    ) -> None:
        self.origin = origin
        self.cell = cell
        self.columns, self.rows = size

    def pixels(self, shot: PILImage.Image) -> np.ndarray:
        """``[rows, columns, cell height, cell width]`` uint32: each pixel's colour as 0xRRGGBB."""
        (left, top), (width, height) = self.origin, self.cell
        rgb = np.asarray(shot.convert("RGB"), dtype=np.uint32)
        rgb = rgb[top : top + self.rows * height, left : left + self.columns * width]
        packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        cells = packed.reshape(self.rows, height, self.columns, width)
        return cells.transpose(0, 2, 1, 3)

    @staticmethod
    def _where(found: np.ndarray) -> set[tuple[int, int]]:
        return {(int(column), int(row)) for row, column in zip(*np.nonzero(found), strict=True)}

    def colours(self, shot: PILImage.Image) -> np.ndarray:
        """``[rows, columns]``: how many distinct colours each cell holds."""
        cells = self.pixels(shot)
        flat = np.sort(cells.reshape(self.rows, self.columns, -1), axis=-1)
        result: np.ndarray = 1 + (np.diff(flat, axis=-1) != 0).sum(axis=-1)
        return result

    def pictures(self, shot: PILImage.Image, at_least: int = 5) -> set[tuple[int, int]]:
        """Cells of a picture drawn in pixels: more colours than a text cell has in a font drawn
        without anti-aliasing (a glyph and its background: two)."""
        return self._where(self.colours(shot) >= at_least)

    def half_blocks(self, shot: PILImage.Image) -> set[tuple[int, int]]:
        """Cells drawn as a half-cell block: the upper half one flat colour, the lower half another.

        The rows where the halves meet are left out (a cell of odd height splits unevenly), as
        are the outermost rows.
        """
        cells = self.pixels(shot)
        height = self.cell[1]
        upper = cells[:, :, 1 : height // 2 - 1].reshape(self.rows, self.columns, -1)
        lower = cells[:, :, height // 2 + 1 : height - 1].reshape(self.rows, self.columns, -1)
        flat_upper = (upper == upper[..., :1]).all(axis=-1)
        flat_lower = (lower == lower[..., :1]).all(axis=-1)
        return self._where(flat_upper & flat_lower & (upper[..., 0] != lower[..., 0]))

    def changed(self, first: PILImage.Image, second: PILImage.Image) -> set[tuple[int, int]]:
        """The cells whose pixels differ between two screenshots."""
        differ = (self.pixels(first) != self.pixels(second)).any(axis=(2, 3))
        return self._where(differ)
