"""The ``completion`` command: a shell completion script generated from the parser (shtab)."""

from __future__ import annotations

import argparse
import sys

SHELLS = ("bash", "zsh", "fish")


def add_completion_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description=(
            "Print the completion script of SHELL, generated from this command line's own "
            "options. Install it with one line: "
            "bash: clipsearch-tui completion bash > ~/.local/share/bash-completion/completions/"
            "clipsearch-tui; zsh: clipsearch-tui completion zsh > "
            '"${fpath[1]}/_clipsearch-tui"; fish: clipsearch-tui completion fish > '
            "~/.config/fish/completions/clipsearch-tui.fish"
        ),
    )
    completion.add_argument("shell", choices=SHELLS, metavar="SHELL", help=", ".join(SHELLS))
    completion.set_defaults(handler=_completion, parser=completion)


def _completion(args: argparse.Namespace) -> int:
    from cli.output import usage_error

    try:
        import shtab
    except ImportError:
        return usage_error(args.parser, "shell completion needs shtab (pip install shtab)")
    from cli.main import build_parser

    parser = build_parser()
    sys.stdout.write(shtab.complete(parser, shell=args.shell))
    return 0
