"""Argument types shared by the commands: a path and a model name, checked while parsing.

A value that cannot be right is a usage error, one line naming the argument (``argument PATH:
empty path``), before any library or model is opened. An empty path would otherwise become
:class:`~pathlib.Path` ``"."``, the current folder, and an empty model name the default model.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def path_arg(text: str) -> Path:
    """A file or folder argument; refuses the empty string, which :class:`Path` reads as ``.``."""
    if not text:
        raise argparse.ArgumentTypeError("empty path")
    return Path(text)


def model_name_arg(text: str) -> str:
    """A model name argument; refuses an empty or blank one, which no model is installed as."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty model name")
    return text
