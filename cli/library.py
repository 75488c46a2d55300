"""The ``library`` command: ``library repair`` rebuilds a damaged library."""

from __future__ import annotations

import argparse

from cli.output import print_json
from tui.text import inert


def add_library_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    library = commands.add_parser(
        "library",
        help="look after the library file",
        description="Commands that look after the library database itself.",
    )
    actions = library.add_subparsers(
        title="commands", dest="library_command", metavar="COMMAND", required=True
    )
    repair = actions.add_parser(
        "repair",
        help="rebuild a damaged library from what can still be read",
        description=(
            "Copy every readable row of the library into a new database and put it in place; "
            "the damaged file is kept beside it (library.sqlite.damaged-DATE). Embeddings are "
            "kept where their rows are sound; photos that lost theirs are encoded again by the "
            "next index, and photos whose rows were lost are found again by the next scan."
        ),
    )
    repair.add_argument("--json", action="store_true", help="print what was kept as JSON")
    repair.set_defaults(handler=_repair)


def _repair(args: argparse.Namespace) -> int:
    from core.database import default_database_path
    from core.repair import repair_library

    path = default_database_path()
    report = repair_library(path)
    aside = str(report.moved_aside) if report.moved_aside else None
    if args.json:
        print_json(
            {
                "library": str(path),
                "photos": report.photos,
                "vectors": report.vectors,
                "pending": report.pending,
                "unreadable_row_ids": report.unreadable,
                "damaged_file": aside,
            }
        )
        return 0
    print(
        f"repaired {inert(str(path))}: {report.photos} photos and {report.vectors} embeddings "
        f"kept, {report.pending} photos to encode again (run index)"
    )
    if aside:
        print(f"the damaged file is kept as {inert(aside)}")
    return 0
