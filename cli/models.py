"""The ``model`` commands: install, list and remove CLIP models."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.hub import HubFile

from cli.arguments import model_name_arg, path_arg
from cli.output import PROG, usage_error
from core.registry import short_licence
from tui.text import file_size, inert


def add_model_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    model = commands.add_parser("model", help="install, list and remove CLIP models")
    actions = model.add_subparsers(
        title="model commands", dest="model_command", metavar="ACTION", prog=f"{PROG} model"
    )
    model.set_defaults(handler=lambda args: usage_error(model, "choose an action"))

    install = actions.add_parser(
        "install",
        help="download (or read) a checkpoint and convert it",
        description=(
            "Download a registry model from the model hub (HF_ENDPOINT, HF_HOME and "
            "HF_HUB_OFFLINE apply), or install one from a local checkpoint file."
        ),
    )
    install.add_argument(
        "name",
        nargs="?",
        type=model_name_arg,
        metavar="NAME",
        help="registry model name (default: the default model)",
    )
    install.add_argument(
        "--from",
        dest="from_file",
        type=path_arg,
        metavar="FILE|FOLDER",
        help="install from a local .safetensors or .bin checkpoint, or from a folder holding the "
        "files of the model's hub repository (checkpoint and, for models that have them, "
        "tokenizer files), instead of a download",
    )
    install.add_argument(
        "--as",
        dest="as_name",
        type=model_name_arg,
        metavar="NEWNAME",
        help="install a checkpoint under this name",
    )
    install.add_argument(
        "--quick-gelu",
        action="store_true",
        default=None,
        help="the checkpoint uses QuickGELU (OpenAI-trained weights); only with --from --as",
    )
    install.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default="fp32",
        help="image tower arithmetic: fp32 (exact, default) or int8 (faster indexing, "
        "embeddings move slightly)",
    )
    install.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="keep the downloaded checkpoint in the download cache after converting it "
        "(by default it is deleted, so the model does not take its disk space twice)",
    )
    install.set_defaults(handler=_model_install, parser=install)

    listing = actions.add_parser("list", help="show known and installed models")
    listing.add_argument("--json", action="store_true", help="print a JSON list of objects")
    listing.set_defaults(handler=_model_list)

    remove = actions.add_parser("remove", help="delete an installed model")
    remove.add_argument("name", type=model_name_arg, metavar="NAME")
    remove.set_defaults(handler=_model_remove)


def _model_install(args: argparse.Namespace) -> int:
    from core.catalog import describe_model
    from core.install import install_model

    if args.name is None and args.from_file is not None and args.as_name is None:
        return usage_error(args.parser, "--from FILE without a registry NAME needs --as NEWNAME")
    if args.from_file is None and args.as_name is not None:
        return usage_error(args.parser, "--as is only used with --from FILE")
    if args.quick_gelu and args.name is not None:
        return usage_error(args.parser, "--quick-gelu is only used with --from FILE --as NEWNAME")
    if args.from_file is not None and not args.from_file.expanduser().exists():
        return usage_error(args.parser, f"no such checkpoint file or folder: {args.from_file}")

    def announce(hub_file: HubFile) -> None:
        size = file_size(hub_file.size) if hub_file.size is not None else "size unknown"
        print(
            f"{PROG}: downloading {hub_file.filename} ({size}) from {hub_file.url}",
            file=sys.stderr,
            flush=True,
        )

    facts = describe_model(args.name) if args.from_file is None else None
    if facts is not None:
        print(f"{PROG}: installing {inert(facts)}", file=sys.stderr)

    folder = install_model(
        args.name,
        args.from_file,
        as_name=args.as_name,
        quick_gelu=args.quick_gelu,
        image_precision=args.precision,
        keep_checkpoint=args.keep_checkpoint,
        announce=announce,
    )
    print(f"installed {folder.name} ({file_size(_folder_bytes(folder))}) in {folder}")
    return 0


def _model_list(args: argparse.Namespace) -> int:
    from core.catalog import list_models

    rows = list_models()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    table = [
        ["", "NAME", "INSTALLED", "SIZE", "CLASS", "IMAGES/S", "IMAGENET", "LICENCE", "DESCRIPTION"]
    ]
    for row in rows:
        if row["problem"]:
            state = "broken"
        else:
            state = "yes" if row["installed"] else "no"
        if row["size"] is not None:
            size = file_size(row["size"])
        elif row["download_size"] is not None:
            size = f"~{file_size(row['download_size'])} download"
        else:
            size = "-"
        table.append(
            [
                "*" if row["default"] else "",
                row["name"],
                state,
                size,
                row["speed_class"] or "-",
                f"{row['images_per_s']:.1f}" if row["images_per_s"] else "-",
                f"{row['imagenet_top1']:.1f}%" if row["imagenet_top1"] else "-",
                short_licence(row["license"]),
                row["description"] or ("custom" if not row["in_registry"] else ""),
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        print("  ".join([*cells, line[-1]]).rstrip())
    print("\n* default model")
    print(
        "CLASS: the dial from the fastest model to the most accurate; IMAGENET: published "
        "zero-shot top-1 accuracy"
    )
    measured = sorted({row["speed_measured_on"] for row in rows if row["speed_measured_on"]})
    for where in measured:
        print(f"IMAGES/S: photos indexed per second, measured on {where}")
    for row in rows:
        if row["problem"]:
            print(f"{row['name']}: {row['problem']}")
    return 0


def _model_remove(args: argparse.Namespace) -> int:
    from core.install import remove_model

    folder = remove_model(args.name)
    print(f"removed {folder.name} ({folder})")
    return 0


def _folder_bytes(folder: Path) -> int:
    return sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())
