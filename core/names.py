"""File names in JSON, losslessly.

A file name on Linux is bytes; one that is not valid UTF-8 reaches Python with each undecodable
byte as a lone surrogate (``surrogateescape``), which JSON cannot carry as text. Every ``--json``
output that names a file goes through :func:`path_fields`, the one rule for it.
"""

from __future__ import annotations

import base64
import os

__all__ = ["path_fields", "readable", "shown"]

SHOWN_CHARS = 120
"""The most characters of a user's text (a query, a name) that an error message repeats."""


def path_fields(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{"path": ...}`` for JSON, losslessly for any file name.

    ``path`` is the name as text; a name that is not valid UTF-8 has each undecodable byte
    replaced by U+FFFD there, and ``path_bytes`` beside it holds the exact bytes of the name in
    base64.

    Examples
    --------
    >>> path_fields("/photos/été.jpg")
    {'path': '/photos/été.jpg'}
    >>> path_fields(os.fsdecode(b"/photos/\\xe9t\\xe9.jpg"))
    {'path': '/photos/\ufffdt\ufffd.jpg', 'path_bytes': 'L3Bob3Rvcy/pdOkuanBn'}
    """
    raw = os.fsencode(path)
    try:
        return {"path": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {
            "path": raw.decode("utf-8", "replace"),
            "path_bytes": base64.b64encode(raw).decode("ascii"),
        }


def readable(text: str) -> str:
    """``text`` with each undecodable byte of a file name it quotes (a lone surrogate) replaced
    by U+FFFD, so that it can go into JSON as valid UTF-8 (a reason that names the file)."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def shown(text: str) -> str:
    """``text`` as an error message repeats it: cut in the middle when it is longer than
    :data:`SHOWN_CHARS`, so that a bad query or name of any length gets a line of bounded
    length."""
    if len(text) <= SHOWN_CHARS:
        return text
    half = SHOWN_CHARS // 2
    return f"{text[:half]}…{text[-half:]} ({len(text):,} characters)"
