"""The ``duplicates`` command: groups of near-duplicate photos of the library."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cli.arguments import path_arg
from cli.output import PROG, isatty, print_json, print_line, usage_error
from core.errors import ClipsearchError
from core.names import path_fields
from tui.text import file_size, plural


def add_duplicates_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from core.duplicates import DEFAULT_THRESHOLD

    duplicates = commands.add_parser(
        "duplicates",
        help="groups of near-duplicate photos (bursts, edits, re-saves)",
        description=(
            "Group the indexed photos (of PATH, or of the whole library) whose embeddings are "
            "nearly the same. On a terminal each group is listed with each photo's size, "
            "resolution and date; through a pipe, one path per line and an empty line between "
            "groups. Nothing is moved or deleted."
        ),
    )
    duplicates.add_argument(
        "path", nargs="?", type=path_arg, metavar="PATH", help="only photos in this folder"
    )
    duplicates.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="T",
        help=f"cosine similarity from which photos count as near-duplicates, above 0 and at "
        f"most 1 (default: {DEFAULT_THRESHOLD})",
    )
    duplicates.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of groups: similarity, photos (path, size, width, height, "
        "taken_at; a name that is not valid UTF-8 has U+FFFD in path and its exact bytes in "
        "base64 in path_bytes)",
    )
    duplicates.set_defaults(handler=_duplicates, parser=duplicates)


def _duplicates(args: argparse.Namespace) -> int:
    from cli.photos import existing_folder
    from core.duplicates import find_duplicates
    from core.library import Library

    if not 0 < args.threshold <= 1:
        return usage_error(args.parser, f"--threshold must be above 0, at most 1: {args.threshold}")
    folder = existing_folder(args.path) if args.path is not None else None
    with Library.open() as library:
        if folder is not None and not len(library.photo_ids(folder=folder)):
            # "no near-duplicates" would pass for an answer about photos never looked at
            raise ClipsearchError(
                f"the library has no indexed photos in {folder}; index it first: "
                f"{PROG} index {folder}"
            )
        groups = find_duplicates(library, args.threshold, folder=folder)
        found = []
        for group in groups:
            records = {record.id: record for record in library.records(group.members)}
            found.append((group.similarity, [records[i] for i in group.members if i in records]))
    if args.json:
        print_json(
            [{"similarity": s, "photos": [_photo(p) for p in photos]} for s, photos in found]
        )
        return 0
    tty = isatty(sys.stdout)
    if not found and tty:
        print(f"no near-duplicates at similarity {args.threshold} or more", file=sys.stderr)
    for number, (similarity, photos) in enumerate(found, 1):
        if number > 1:
            print()
        if not tty:
            for photo in photos:
                print_line(str(photo.path), tty)
            continue
        print(f"group {number}: {len(photos)} photos, similarity at least {similarity:.3f}")
        rows = [
            (
                file_size(photo.size),
                f"{photo.width}x{photo.height}" if photo.width and photo.height else "-",
                photo.taken_at.strftime("%Y-%m-%d %H:%M") if photo.taken_at else "no date",
                str(photo.path),
            )
            for photo in photos
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            cells = [row[0].rjust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2])]
            print_line("  " + "  ".join([*cells, row[3]]), tty)
    if found and tty:
        groups_line = f"{plural(len(found), 'group')}; nothing was moved or deleted"
        print(f"\n{PROG}: {groups_line}", file=sys.stderr)
    return 0


def _photo(photo: Any) -> dict[str, Any]:
    return {
        **path_fields(photo.path),
        "size": photo.size,
        "width": photo.width,
        "height": photo.height,
        "taken_at": photo.taken_at.isoformat() if photo.taken_at else None,
    }
