"""Text that is safe to put on the terminal, and the formats numbers are shown in.

The one copy of these rules for both front ends: the app and the command line (which imports
this module; it loads neither Textual nor Rich).

File names, folder names and EXIF fields come from the album, not from us: a name can hold an
escape sequence that would move the cursor or retitle the terminal, a bidirectional override or
an invisible character that changes what the user reads, a line break, or a surrogate from an
undecodable byte. :func:`inert` turns every such character into a visible escape, and writes a
backslash as ``\\\\`` so that an escape it made never looks like a name's own text.
"""

from __future__ import annotations

import math
import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.indexer import IndexProgress

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Control (C0, DEL, C1), format (bidirectional controls, zero-width characters, the byte-order
mark, tags), surrogate, private-use and unassigned code points, line and paragraph separators."""


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, kept by ``surrogateescape``
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def inert(text: str) -> str:
    """Return ``text`` with every character that could act on the terminal written as an escape.

    Control characters (C0, DEL, C1: ``ESC``, ``BEL``, ``CSI``...), format characters
    (bidirectional overrides and isolates, zero-width spaces and joiners, the byte-order mark),
    line and paragraph separators, private-use and unassigned code points become ``\\x1b``,
    ``\\u202e`` and so on; an undecodable byte of a file name (a lone surrogate under
    ``surrogateescape``) becomes ``\\xe9``. A backslash is doubled (``\\\\``), so that two
    names never look the same: ``new\\x0aline.jpg`` is a line break, ``new\\\\x0aline.jpg`` the
    name's own backslash. The result is printable (:meth:`str.isprintable`).

    Examples
    --------
    >>> inert("holiday\\x1b]0;pwned\\x07.jpg")
    'holiday\\\\x1b]0;pwned\\\\x07.jpg'
    >>> inert("back\\\\slash.jpg")
    'back\\\\\\\\slash.jpg'
    """
    if text.isprintable() and "\\" not in text:  # nothing to escape, the usual case
        return text
    return "".join(_shown(char) for char in text)


def _shown(char: str) -> str:
    """One character of :func:`inert`'s result: itself, or its escape."""
    if char == "\\":
        return "\\\\"
    return _escape(char) if unicodedata.category(char) in _UNSAFE_CATEGORIES else char


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


def plural(number: int, noun: str, many: str | None = None) -> str:
    """``plural(1, "file")`` -> ``"1 file"``; ``plural(2, "file")`` -> ``"2 files"``.

    ``many`` is for a noun that does not just take an ``s``:
    ``plural(2, "photo is", "photos are")`` -> ``"2 photos are"``.
    """
    return f"{number} {noun if number == 1 else many or noun + 's'}"


def pace(progress: IndexProgress, *, unit: str = " photos/s") -> str:
    """How fast an indexing run goes and when it ends, as both front ends show it.

    The figures are the engine's own (:class:`core.indexer.IndexProgress`): ``"paused"`` while
    paused, ``"loading the model"`` while it loads, ``"starting..."`` until the first photo of
    the stage is done (rather than a rate of 0), then ``"12.5 photos/s  ETA 1:02"``.
    """
    if progress.paused:
        return "paused"
    if progress.stage == "loading":
        return "loading the model"
    if progress.rate_per_s <= 0:
        return "starting..."
    rate = progress.rate_per_s
    figure = f"{rate:.1f}" if rate < 100 else f"{rate:.0f}"
    text = f"{figure}{unit}"
    if progress.total > 0:
        text += f"  ETA {duration(progress.eta_s)}"
    return text
