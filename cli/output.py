"""What the command line writes: one-line errors, escaped lines, JSON, and the progress bar.

Every human-readable line goes through :func:`tui.text.inert` (the one escaping rule of both
front ends), on a terminal or not, argparse's own messages included, so a file name holding an
escape sequence or a newline is shown, never run, and stays on one line of a log; a backslash is
doubled, so that a name's own ``\\x0a`` is told from an escaped line break. Scripts that need
the exact names use ``search -0`` (NUL-separated bytes) or ``--json`` (see
:func:`core.names.path_fields`).

A command writes to standard output through :func:`command_output`: a character the output's
encoding lacks is written as an escape (``\\xe9``) rather than failing, a stream that cannot be
written (a full disk, a closed stdout) is :class:`OutputError`, one line, and a reader that went
away (``| head -1``) is :class:`ReaderGone`, which ends the command quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, cast

from cli.launch import EXIT_INTERRUPTED as EXIT_INTERRUPTED
from cli.launch import PROG as PROG
from core.errors import ClipsearchError
from tui.text import inert, pace, plural

if TYPE_CHECKING:
    from core.indexer import IndexProgress

EXIT_USAGE = 2


def usage_error(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    print_error(message)
    return EXIT_USAGE


def print_error(message: str) -> None:
    print(f"{PROG}: error: {inert(' '.join(message.split()))}", file=sys.stderr)


def print_way_round(error: ClipsearchError) -> None:
    """For a failed download: the files to fetch by hand and the command that installs one."""
    urls: tuple[str, ...] = getattr(error, "urls", ())
    route: str | None = getattr(error, "route", None)
    if urls:
        print("  to install without the hub, fetch one of these files by hand:", file=sys.stderr)
        for url in urls:
            print(f"    {inert(url)}", file=sys.stderr)
    if route:
        lead = "then run" if urls else "to install from a checkpoint file, run"
        print(f"  {lead}: {inert(route)}", file=sys.stderr)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def print_line(text: str, tty: bool = False) -> None:
    """Print one human-readable line on stdout, escaped (:func:`tui.text.inert`) whether it goes
    to a terminal or not; ``tty`` is kept for callers that lay out a terminal differently."""
    print(inert(text))


def print_null_separated(paths: list[str]) -> None:
    """Write each path's exact bytes followed by a NUL, for ``xargs -0`` and friends."""
    sys.stdout.flush()
    out = sys.stdout.buffer
    for path in paths:
        out.write(os.fsencode(path) + b"\0")
    out.flush()


class OutputError(ClipsearchError):
    """Standard output cannot be written: a full disk, an I/O error, or a closed stdout."""


class ReaderGone(Exception):
    """The program reading standard output has exited (``search cat | head -1``): not an error."""


@contextlib.contextmanager
def command_output() -> Iterator[None]:
    """Within the block, standard output is written through a guard; at its end it is flushed.

    The guard turns a failed write into :class:`OutputError` or :class:`ReaderGone` and then
    points the stream's file descriptor at the null device, so that what is still buffered
    cannot fail a second time when the interpreter exits. Text that the stream's encoding cannot
    hold (``PYTHONIOENCODING=ascii``) is written with escapes (``backslashreplace``).
    """
    real = sys.stdout
    guarded = _GuardedStream(real)
    sys.stdout = cast(TextIO, guarded)
    try:
        yield
        guarded.flush()  # what is still buffered fails here, not at exit
    except BaseException:
        with contextlib.suppress(OutputError, ReaderGone):
            guarded.flush()
        raise
    finally:
        sys.stdout = real


class _GuardedStream:
    """A text stream, or its binary buffer, whose failures are those of :func:`command_output`.

    ``stream`` is None when the process started with its stdout closed (``>&-``).
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: Any) -> int:
        if self._stream is None:
            raise OutputError("cannot write the output: standard output is closed")
        try:
            return int(self._stream.write(data))
        except UnicodeEncodeError:
            encoding = self._stream.encoding
            return int(
                self._stream.write(data.encode(encoding, "backslashreplace").decode(encoding))
            )
        except OSError as error:
            self._failed(error)

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except OSError as error:
            self._failed(error)
        except ValueError:  # closed by the command itself
            pass

    @property
    def buffer(self) -> _GuardedStream:
        return _GuardedStream(None if self._stream is None else self._stream.buffer)

    def isatty(self) -> bool:
        return isatty(self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _failed(self, error: OSError) -> NoReturn:
        _discard_output(self._stream)
        if isinstance(error, BrokenPipeError):
            raise ReaderGone from None
        raise OutputError(f"cannot write the output: {error.strerror or error}") from None


def _discard_output(stream: Any) -> None:
    """Point ``stream``'s file descriptor at the null device (the way the Python documentation
    gives for a broken pipe), so that flushing it again succeeds; a stream without one (a test's
    capture) is left as it is."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


class SafeArgumentParser(argparse.ArgumentParser):
    """An argument parser whose messages (usage errors echo what was typed) are escaped, and
    where a negative number is always a value.

    argparse takes ``-1`` for an option as soon as the parser has an option that looks like a
    number (``search -0``), so that ``--top -1`` said "expected one argument" instead of what
    is wrong with -1. Here a negative number is a value unless it is itself an option.
    """

    def _parse_optional(self, arg_string: str) -> Any:
        if arg_string not in self._option_string_actions and self._negative_number_matcher.match(
            arg_string
        ):
            return None
        return super()._parse_optional(arg_string)

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            lines = message.split("\n")
            super()._print_message("\n".join(inert(line) for line in lines), file)


class ProgressBar:
    """Draws :class:`~core.indexer.IndexProgress` on a stream.

    On a terminal the bar is redrawn in place at most every 0.1 s; otherwise (a log file, a
    pipe) a line is written when a stage begins or a pause begins or ends, and then at most
    every 10 s, and a stage's last report that was held back is written when the next stage
    begins (so that a log says how many photos the scan found). The rate and ETA are the
    engine's, worded as the app words them (:func:`tui.text.pace`).
    """

    WIDTH = 24
    TTY_INTERVAL_S = 0.1
    LOG_INTERVAL_S = 10.0

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.tty = isatty(stream)
        self._lock = threading.Lock()
        self._last = 0.0
        self._stage: str | None = None
        self._state: tuple[str, int, int, bool] | None = None
        self._held: IndexProgress | None = None
        self._drawn = False

    def __call__(self, progress: IndexProgress) -> None:
        with self._lock:
            now = time.monotonic()
            state = (progress.stage, progress.done, progress.total, progress.paused)
            finished = progress.total > 0 and progress.done >= progress.total
            interval = self.TTY_INTERVAL_S if self.tty else self.LOG_INTERVAL_S
            due = (
                progress.stage != self._stage
                or (finished and state != self._state)
                or (self._state is not None and progress.paused != self._state[3])
                or now - self._last >= interval
            )
            if not due:
                self._held = progress
                return
            held, self._held = self._held, None
            if held is not None and held.stage != progress.stage and not self.tty:
                self._write(self._line(held))
            self._stage, self._state, self._last = progress.stage, state, now
            self._write(self._line(progress))

    def _write(self, line: str) -> None:
        try:
            if self.tty:
                self.stream.write(f"\r{line}\x1b[K")
                self._drawn = True
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def _line(self, p: IndexProgress) -> str:
        if p.stage == "scanning":
            return f"scanning {plural(p.done, 'photo')} found" if p.done else "scanning..."
        if p.stage == "loading":
            return pace(p)
        if p.total <= 0:
            return p.stage
        fraction = min(1.0, p.done / p.total)
        filled = round(fraction * self.WIDTH)
        parts = [
            f"{p.stage:<8} [{'#' * filled}{'-' * (self.WIDTH - filled)}]",
            f"{p.done}/{p.total}",
            f"{fraction:4.0%}",
            pace(p),
        ]
        if p.errors:
            parts.append(f"{p.errors} failed")
        return "  ".join(parts)

    def close(self) -> None:
        """Clear the bar from the terminal."""
        with self._lock:
            if self.tty and self._drawn:
                try:
                    self.stream.write("\r\x1b[K")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
            self._drawn = False
