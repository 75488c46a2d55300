"""The ``clipsearch-tui`` command's entry point.

It imports nothing at first, so that Ctrl-C at any moment, even while the command line is
still importing its modules (a few tenths of a second), ends with one line and exit code 130
rather than a traceback. Once :func:`cli.main.main` runs, it handles Ctrl-C itself.
"""

from __future__ import annotations

import sys

PROG = "clipsearch-tui"
EXIT_INTERRUPTED = 130


def run() -> int:
    """Run the command line (:func:`cli.main.run`); Ctrl-C is one line, exit code 130."""
    try:
        from cli.main import run as run_command

        return run_command()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
