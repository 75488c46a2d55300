"""Open a photo in the system's own viewer: ``xdg-open``, ``open`` or ``os.startfile``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["open_in_viewer", "viewer_command"]


def viewer_command(
    path: Path, *, platform: str | None = None, environ: Mapping[str, str] | None = None
) -> list[str] | str:
    """The command that shows ``path`` in the system viewer, or why there is none.

    Returns a list of arguments (``["xdg-open", PATH]``, ``["open", PATH]``, or
    ``["startfile", PATH]`` for Windows, where :func:`os.startfile` is used), or a sentence
    saying why the photo cannot be opened here: over SSH without a display, the viewer would
    open (if at all) on the other machine.
    """
    platform = platform or sys.platform
    env = os.environ if environ is None else environ
    if platform.startswith("win"):
        return ["startfile", str(path)]
    if platform == "darwin":
        if env.get("SSH_CONNECTION") or env.get("SSH_TTY"):
            return "this session runs over SSH: the photo cannot be opened on your screen"
        return ["open", str(path)]
    if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        if env.get("SSH_CONNECTION") or env.get("SSH_TTY"):
            return "this session runs over SSH: the photo cannot be opened on your screen"
        return "no graphical display here (DISPLAY and WAYLAND_DISPLAY are unset)"
    opener = shutil.which("xdg-open", path=env.get("PATH"))
    if opener is None:
        return "xdg-open is not installed"
    return [opener, str(path)]


def open_in_viewer(path: Path) -> str | None:
    """Start the system viewer on ``path`` without waiting; None, or why it cannot be done."""
    if not Path(path).is_file():
        return f"the photo is gone: {path}"
    command = viewer_command(path)
    if isinstance(command, str):
        return command
    try:
        if command[0] == "startfile":
            os.startfile(command[1])  # type: ignore[attr-defined]
        else:
            subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
    except OSError as error:
        return f"cannot start {command[0]}: {error.strerror or error}"
    return None
