"""Keep native libraries from writing over the screen while the app runs.

Textual draws on the process's standard error. ncnn, OpenMP and image codecs print warnings on file
descriptor 2 from C, which would land in the middle of the screen. :func:`divert_native_stderr`
gives Textual its own descriptor for the terminal and points descriptor 2 at a log file until the
app exits.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

LOG_NAME = "native-stderr.log"
"""File in the cache folder that receives what native libraries print while the app runs."""


@contextlib.contextmanager
def divert_native_stderr(log_path: Path) -> Iterator[None]:
    """While the block runs, send descriptor 2 to ``log_path`` and Textual to the terminal.

    Does nothing when standard error is not a terminal (a test, output redirected) or when the log
    cannot be opened.
    """
    original = sys.__stderr__
    if original is None or not original.isatty():
        yield
        return
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - closed in the finally below
    except OSError:
        yield
        return
    original.flush()
    terminal_fd = os.dup(2)
    terminal = os.fdopen(
        terminal_fd, "w", encoding=original.encoding, errors=original.errors, buffering=1
    )
    os.dup2(log.fileno(), 2)
    # typeshed declares sys.__stderr__ final; Textual reads it to find the terminal, which is
    # why it is swapped here
    sys.__stderr__ = terminal  # type: ignore[misc]
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            terminal.flush()
        os.dup2(terminal_fd, 2)
        sys.__stderr__ = original  # type: ignore[misc]
        with contextlib.suppress(OSError):
            terminal.close()
        log.close()
