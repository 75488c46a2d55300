"""Text that is safe to put on the terminal, and the formats the app shows numbers in.

File names, folder names and EXIF fields come from the album, not from us: a name can hold an
escape sequence that would move the cursor or retitle the terminal, a bidirectional override that
reorders what the user reads, a surrogate from an undecodable byte, or a ``[`` that Rich would
take for markup. :func:`inert` turns every such character into a visible escape, and
:func:`plain` wraps the result in a :class:`rich.text.Text`, which is never parsed as markup.
"""

from __future__ import annotations

import math
import unicodedata
from datetime import datetime

from rich.text import Text

_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def inert(text: str) -> str:
    """Return ``text`` with every character that could act on the terminal written as an escape.

    Control characters (C0, DEL, C1: ``ESC``, ``BEL``, ``CSI``...), line and paragraph separators,
    lone surrogates (undecodable bytes in a file name), private-use and unassigned code points, and
    bidirectional controls become ``\\x1b``, ``\\u202e`` and so on. A backslash stays as it is.

    Examples
    --------
    >>> inert("holiday\\x1b]0;pwned\\x07.jpg")
    'holiday\\\\x1b]0;pwned\\\\x07.jpg'
    """
    if text.isprintable() and not any(char in _BIDI_CONTROLS for char in text):
        return text
    out = []
    for char in text:
        if char in _BIDI_CONTROLS or unicodedata.category(char) in _UNSAFE_CATEGORIES:
            out.append(_escape(char))
        else:
            out.append(char)
    return "".join(out)


def plain(text: str, style: str = "") -> Text:
    """:func:`inert` text as a Rich ``Text`` (never read as markup)."""
    return Text(inert(text), style=style, no_wrap=False)


def percent(fraction: float) -> str:
    """``0.4213`` -> ``"42.1%"``; below 0.1 % shows two significant digits (``"0.0042%"``)."""
    value = fraction * 100.0
    if value >= 0.1 or value == 0.0:
        return f"{value:.1f}%"
    return f"{value:.2g}%"


def duration(seconds: float | None) -> str:
    """``75.3`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``; None -> ``"--:--"``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def file_size(n: int | None) -> str:
    """``2_345_678`` -> ``"2.3 MB"`` (decimal units)."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def taken(moment: datetime | None) -> str:
    """A capture time as its wall-clock date and minute: ``"2019-05-14 09:30"``."""
    if moment is None:
        return "no date"
    return moment.strftime("%Y-%m-%d %H:%M")
