"""Serve the app to a web browser, through ``textual-serve``.

Every browser tab that opens the page starts its own ``clipsearch-tui`` process on this machine
(thumbnails drawn with half-cell blocks, which the browser's terminal shows), so the album never
leaves the machine except as the screens a browser is sent. The server binds to this machine's
loopback address unless told otherwise: the album is private, and the page asks for no password.
"""

from __future__ import annotations

import ipaddress
import shlex
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from core.errors import ClipsearchError

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "RemoteHostError", "app_command", "is_local", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class RemoteHostError(ClipsearchError):
    """A host other than this machine's loopback was asked for without saying so explicitly."""

    exit_code = 2


def is_local(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (a loopback name or address)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def app_command(paths: Sequence[Path], *, gpu: bool = False) -> str:
    """The shell command each browser session runs: this program's app, drawing half-cells."""
    words = [sys.executable, "-m", "cli", "--images", "halfcell"]
    if gpu:
        words.append("--gpu")
    words.extend(str(path.expanduser().absolute()) for path in paths)
    return shlex.join(words)


def serve(
    paths: Sequence[Path],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_remote: bool = False,
    gpu: bool = False,
    stream: TextIO | None = None,
) -> int:
    """Serve the app on ``http://host:port`` until Ctrl-C.

    Parameters
    ----------
    paths
        Album folders each session opens, as on the command line.
    host, port
        Where to listen. A host that is not a loopback address needs ``allow_remote``.
    allow_remote
        The caller asked explicitly for a host other devices can reach; a warning is printed.
    gpu
        Sessions encode on a Vulkan GPU when there is one.
    stream
        Where the address and the warning are written (default: stderr).

    Returns
    -------
    int
        The exit code, 0 after Ctrl-C.

    Raises
    ------
    RemoteHostError
        ``host`` is not local and ``allow_remote`` is False.
    ClipsearchError
        The port cannot be listened on (in use, not allowed).
    """
    out = stream or sys.stderr
    if not is_local(host):
        if not allow_remote:
            raise RemoteHostError(
                f"{host} can be reached from other machines, and the page asks for no password; "
                "to serve your album there anyway, add --allow-remote"
            )
        print(
            f"clipsearch-tui: warning: serving on {host}: anyone who can reach port {port} of "
            "this machine can search and see your photos",
            file=out,
        )
    _check_port(host, port)
    from textual_serve.server import Server

    server = Server(app_command(paths, gpu=gpu), host=host, port=port, title="clipsearch-tui")
    print(f"clipsearch-tui: open http://{_url_host(host)}:{port} in a browser", file=out)
    out.flush()
    server.serve()
    return 0


def _check_port(host: str, port: int) -> None:
    """Fail with one line when ``host:port`` cannot be listened on, before the server starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        raise ClipsearchError(
            f"cannot serve on {host}: {getattr(error, 'strerror', error)}"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            raise ClipsearchError(
                f"cannot serve on {host} port {port}: {error.strerror or error}"
            ) from None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
