"""The ``clipsearch-tui`` command line: parsing, the command groups, and opening the app.

::

    clipsearch-tui [PATH ...]                  open the app (on these album folders)
    clipsearch-tui --version
    clipsearch-tui model install [NAME] [--from FILE|FOLDER] [--as NEWNAME] [--quick-gelu]
                                 [--precision {fp32,int8}] [--keep-checkpoint]
    clipsearch-tui model list [--json]
    clipsearch-tui model remove NAME
    clipsearch-tui index PATH... [--model NAME] [--since DATE] [--until DATE] [--reindex] [--json]
                         [--precision {auto,fp32,bf16,int8}] [--dask ADDRESS]
    clipsearch-tui search QUERY... [--top N] [--in PATH] [--since DATE] [--until DATE]
                                [--model NAME] [--json | -0]
    clipsearch-tui search --similar IMAGE [same options]
    clipsearch-tui describe IMAGE --labels TEXT... [--model NAME] [--json]
    clipsearch-tui timeline [PATH] [--json]
    clipsearch-tui library repair [--json]

Each command group is added by one ``add_*_commands(subparsers)`` function (in
:mod:`cli.models` and :mod:`cli.photos`) listed in :data:`COMMAND_GROUPS`; a command's handler
takes the parsed arguments and returns the exit code. With no command, :func:`open_app` starts
the terminal app through its one entry, :func:`tui.app.run_app`, imported only then.
Every :class:`~core.errors.ClipsearchError` is printed as one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from core.errors import ClipsearchError
from core.manifest import clipsearch_version

if TYPE_CHECKING:
    pass

from cli.arguments import path_arg
from cli.completion import add_completion_commands
from cli.duplicates import add_duplicates_commands
from cli.library import add_library_commands
from cli.models import add_model_commands
from cli.output import (
    EXIT_INTERRUPTED,
    PROG,
    OutputError,
    ReaderGone,
    SafeArgumentParser,
    command_output,
    print_error,
    print_way_round,
    usage_error,
)
from cli.photos import add_index_commands, add_search_commands
from cli.serve import add_serve_commands
from tui.config import IMAGE_MODES
from tui.text import inert

LaunchApp = Callable[[list[Path], str, bool], int | None]
Handler = Callable[[argparse.Namespace], int]

COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    add_model_commands,
    add_index_commands,
    add_search_commands,
    add_duplicates_commands,
    add_serve_commands,
    add_completion_commands,
    add_library_commands,
]


def main(argv: Sequence[str] | None = None, launch_app: LaunchApp | None = None) -> int:
    """Run one command and return the process exit code.

    Parameters
    ----------
    argv
        Arguments without the program name; ``sys.argv[1:]`` when None.
    launch_app
        Called with the album folders given on the command line when no command is named. When
        None, the help is printed instead.

    Returns
    -------
    int
        0 on success (also when the reader of stdout stops early, as ``| head`` does), 1 for an
        error, 2 for a usage error, 130 when interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        with command_output():  # --help and --version write, and may fail to
            args = _parse(parser, argv)
    except SystemExit as exit_:
        return _exit_code(exit_)
    except OutputError as error:
        print_error(str(error))
        return error.exit_code
    except ReaderGone:
        return 0
    notes = _EngineNotes()
    engine_log = logging.getLogger("core")
    level = engine_log.level
    engine_log.addHandler(notes)
    engine_log.setLevel(logging.INFO)
    try:
        handler: Handler | None = getattr(args, "handler", None)
        if handler is not None:
            with command_output():
                return handler(args)
        missing = [path for path in args.paths if not path.is_dir()]
        if missing:
            names = sorted(_command_names(parser))
            close = difflib.get_close_matches(str(missing[0]), names, n=1, cutoff=0.6)
            if close:
                return usage_error(
                    parser, f"{missing[0]}: no such command or folder; did you mean {close[0]!r}?"
                )
            commands = ", ".join(names)
            return usage_error(parser, f"{missing[0]}: no such folder (commands are: {commands})")
        if launch_app is None:
            parser.print_help()
            return 0
        return int(launch_app(list(args.paths), args.images, args.gpu) or 0)
    except ClipsearchError as error:
        print_error(str(error))
        print_way_round(error)
        return error.exit_code
    except sqlite3.Error as error:  # one that no library call put into words
        from core.database import default_database_path
        from core.health import library_error

        known = library_error(default_database_path(), error, "read")
        print_error(str(known) if known else f"the library failed: {error}")
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ReaderGone:  # | head: a success, as it would be had the reader read everything
        return 0
    except OSError as error:  # one that no command put into words
        where = f"{error.filename}: " if error.filename else ""
        print_error(f"{where}{error.strerror or error}")
        return 1
    finally:
        engine_log.removeHandler(notes)
        engine_log.setLevel(level)


class _VersionAction(argparse._VersionAction):
    """``--version``: print the program's version and exit, looking the version up only then
    (reading the installed package's metadata costs every other command time). A kind of
    argparse's own version action, so that completion scripts treat it as one."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        sys.stdout.write(f"{PROG} {clipsearch_version()}\n")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The full parser: top-level options, album folders, and every command group."""
    parser = SafeArgumentParser(
        prog=PROG,
        description="Search your own photo album in natural language, from a terminal.",
        usage=f"{PROG} [-h] [--version] [--images MODE] [--gpu] [PATH ...] | {PROG} COMMAND ...",
        epilog=f"With no command, {PROG} opens the app, on the album folders PATH if given.",
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument(
        "--images",
        choices=IMAGE_MODES,
        default="auto",
        help="how the app draws thumbnails: detected (auto), Kitty or Sixel graphics, "
        "half-cell blocks (any terminal, SSH, tmux) or none",
    )
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="the app encodes on a Vulkan GPU when there is one (the gpu setting)",
    )
    # the commands' parsers are SafeArgumentParser too (argparse makes them of the parent's class)
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", prog=PROG),
    )
    for add_commands in COMMAND_GROUPS:
        add_commands(commands)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse a command, or else the album folders that open the app."""
    commands = _command_names(parser)
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    if first in commands or argv[:1] in (["-h"], ["--help"], ["--version"]):
        return parser.parse_args(argv)
    app = SafeArgumentParser(prog=PROG, usage=parser.usage, add_help=False)
    app.add_argument("-h", "--help", action="help", help=argparse.SUPPRESS)
    app.add_argument("--version", action=_VersionAction)
    app.add_argument("paths", nargs="*", type=path_arg, metavar="PATH")
    app.add_argument("--images", choices=IMAGE_MODES, default="auto")
    app.add_argument("--gpu", action="store_true")
    return app.parse_args(argv)


def _command_names(parser: argparse.ArgumentParser) -> set[str]:
    names: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            names.update(action.choices)
    return names


def _exit_code(exit_: SystemExit) -> int:
    code: Any = exit_.code
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


class _EngineNotes(logging.Handler):
    """Prints the engine's progress notes (``core.*`` loggers, INFO and up) on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"{PROG}: {inert(record.getMessage())}", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            self.handleError(record)


def run() -> int:
    """Entry point of the ``clipsearch-tui`` command and of ``python -m cli``."""
    return main(sys.argv[1:], launch_app=open_app)


def open_app(paths: list[Path], images: str = "auto", gpu: bool = False) -> int:
    """Run the terminal app, imported only now so that commands never load Textual."""
    try:
        from tui.app import run_app
    except ImportError as error:
        if getattr(error, "name", None) not in ("tui.app", "textual"):
            raise
        print(
            f"{PROG}: error: the terminal app cannot start ({error}); "
            f"the commands still work, see: {PROG} --help",
            file=sys.stderr,
        )
        return 1
    return run_app(paths, images=images, gpu=gpu)
