"""The ``clipsearch-tui`` command line.

::

    clipsearch-tui [PATH ...]                  open the app (on these album folders)
    clipsearch-tui --version
    clipsearch-tui model install [NAME] [--from FILE] [--as NEWNAME] [--quick-gelu]
    clipsearch-tui model list [--json]
    clipsearch-tui model remove NAME

Each command group is added by one ``_add_*_commands(subparsers)`` function listed in
:data:`_COMMAND_GROUPS`; a command's handler takes the parsed arguments and returns the exit code.
Every :class:`~core.errors.ClipsearchError` is printed as one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.errors import ClipsearchError
from core.manifest import clipsearch_version

PROG = "clipsearch-tui"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

LaunchApp = Callable[[list[Path]], int | None]
Handler = Callable[[argparse.Namespace], int]


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
        0 on success, 1 for an error, 2 for a usage error, 130 when interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exit_:
        return _exit_code(exit_)
    notes = _EngineNotes()
    engine_log = logging.getLogger("core")
    level = engine_log.level
    engine_log.addHandler(notes)
    engine_log.setLevel(logging.INFO)
    try:
        handler: Handler | None = getattr(args, "handler", None)
        if handler is not None:
            return handler(args)
        if launch_app is None:
            parser.print_help()
            return 0
        missing = [path for path in args.paths if not path.is_dir()]
        if missing:
            commands = ", ".join(sorted(_command_names(parser)))
            return _usage(parser, f"{missing[0]}: no such folder (commands are: {commands})")
        return int(launch_app(list(args.paths)) or 0)
    except ClipsearchError as error:
        _print_error(str(error))
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 1
    finally:
        engine_log.removeHandler(notes)
        engine_log.setLevel(level)


def build_parser() -> argparse.ArgumentParser:
    """The full parser: top-level options, album folders, and every command group."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Search your own photo album in natural language, from a terminal.",
        usage=f"{PROG} [-h] [--version] [PATH ...] | {PROG} COMMAND ...",
        epilog=f"With no command, {PROG} opens the app, on the album folders PATH if given.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {clipsearch_version()}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", prog=PROG)
    for add_commands in _COMMAND_GROUPS:
        add_commands(commands)
    return parser


def _add_model_commands(commands: argparse._SubParsersAction) -> None:
    model = commands.add_parser("model", help="install, list and remove CLIP models")
    actions = model.add_subparsers(
        title="model commands", dest="model_command", metavar="ACTION", prog=f"{PROG} model"
    )
    model.set_defaults(handler=lambda args: _usage(model, "choose an action"))

    install = actions.add_parser(
        "install",
        help="download (or read) a checkpoint and convert it",
        description=(
            "Download a registry model from the model hub (HF_ENDPOINT, HF_HOME and "
            "HF_HUB_OFFLINE apply), or install one from a local checkpoint file."
        ),
    )
    install.add_argument("name", nargs="?", metavar="NAME", help="registry model name")
    install.add_argument(
        "--from",
        dest="from_file",
        type=Path,
        metavar="FILE",
        help="local .safetensors or .bin checkpoint instead of a download",
    )
    install.add_argument(
        "--as", dest="as_name", metavar="NEWNAME", help="install a checkpoint under this name"
    )
    install.add_argument(
        "--quick-gelu",
        action="store_true",
        default=None,
        help="the checkpoint uses QuickGELU (OpenAI-trained weights); only with --from --as",
    )
    install.set_defaults(handler=_model_install, parser=install)

    listing = actions.add_parser("list", help="show known and installed models")
    listing.add_argument("--json", action="store_true", help="print a JSON list of objects")
    listing.set_defaults(handler=_model_list)

    remove = actions.add_parser("remove", help="delete an installed model")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(handler=_model_remove)


_COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [_add_model_commands]


def _model_install(args: argparse.Namespace) -> int:
    from core.install import install_model

    if args.name is None and args.from_file is None:
        return _usage(args.parser, "give a model NAME, or --from FILE --as NEWNAME")
    if args.name is None and args.as_name is None:
        return _usage(args.parser, "--from FILE without a registry NAME needs --as NEWNAME")
    if args.from_file is None and args.as_name is not None:
        return _usage(args.parser, "--as is only used with --from FILE")
    if args.quick_gelu and args.name is not None:
        return _usage(args.parser, "--quick-gelu is only used with --from FILE --as NEWNAME")
    folder = install_model(
        args.name, args.from_file, as_name=args.as_name, quick_gelu=args.quick_gelu
    )
    print(f"installed {folder.name} ({_size(_folder_bytes(folder))}) in {folder}")
    return 0


def _model_list(args: argparse.Namespace) -> int:
    from core.install import list_models

    rows = list_models()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    table = [["", "NAME", "INSTALLED", "SIZE", "IMAGE", "DESCRIPTION"]]
    for row in rows:
        if row["problem"]:
            state = "broken"
        else:
            state = "yes" if row["installed"] else "no"
        table.append(
            [
                "*" if row["default"] else "",
                row["name"],
                state,
                _size(row["size"]) if row["size"] is not None else "-",
                f"{row['image_size']}px" if row["image_size"] else "-",
                row["description"] or ("custom" if not row["in_registry"] else ""),
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        print("  ".join([*cells, line[-1]]).rstrip())
    print("\n* default model")
    for row in rows:
        if row["problem"]:
            print(f"{row['name']}: {row['problem']}")
    return 0


def _model_remove(args: argparse.Namespace) -> int:
    from core.install import remove_model

    folder = remove_model(args.name)
    print(f"removed {folder.name} ({folder})")
    return 0


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse a command, or else the album folders that open the app."""
    commands = _command_names(parser)
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    if first in commands or argv[:1] in (["-h"], ["--help"], ["--version"]):
        return parser.parse_args(argv)
    app = argparse.ArgumentParser(prog=PROG, usage=parser.usage, add_help=False)
    app.add_argument("-h", "--help", action="help", help=argparse.SUPPRESS)
    app.add_argument("--version", action="version", version=f"{PROG} {clipsearch_version()}")
    app.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    return app.parse_args(argv)


def _command_names(parser: argparse.ArgumentParser) -> set[str]:
    names: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            names.update(action.choices)
    return names


def _usage(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    _print_error(message)
    return EXIT_USAGE


def _print_error(message: str) -> None:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


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
            print(f"{PROG}: {record.getMessage()}", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            self.handleError(record)


def _folder_bytes(folder: Path) -> int:
    return sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"
