"""The ``serve`` command: the app in a web browser, through ``textual-serve``."""

from __future__ import annotations

import argparse

from cli.arguments import path_arg


def add_serve_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the app to a web browser",
        description=(
            "Serve the app on http://HOST:PORT; each browser tab runs its own session on this "
            "machine. Binds to this machine only (127.0.0.1) unless --host names another "
            "address, which also needs --allow-remote: the page asks for no password."
        ),
    )
    serve.add_argument("paths", nargs="*", type=path_arg, metavar="PATH", help="album folder")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=8000, metavar="N", help="port to listen on (default: 8000)"
    )
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host that other machines can reach (anyone who reaches it sees the album)",
    )
    serve.add_argument(
        "--gpu", action="store_true", help="sessions encode on a Vulkan GPU when there is one"
    )
    serve.set_defaults(handler=_serve, parser=serve)


def _serve(args: argparse.Namespace) -> int:
    from cli.output import usage_error
    from cli.photos import existing_folder

    if not 0 < args.port < 65536:
        return usage_error(args.parser, f"--port must be from 1 to 65535: {args.port}")
    for path in args.paths:
        existing_folder(path, "photo folder")
    try:
        from tui.serve import RemoteHostError, serve
    except ImportError as error:
        return usage_error(args.parser, f"serving needs textual-serve ({error})")
    try:
        return serve(
            args.paths,
            host=args.host,
            port=args.port,
            allow_remote=args.allow_remote,
            gpu=args.gpu,
        )
    except RemoteHostError as error:
        return usage_error(args.parser, str(error))
