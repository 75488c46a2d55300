"""Capture times: when a photo was taken (and its displayed size), read from its EXIF metadata.

:func:`read_capture_time` reads them without decoding any pixels and falls back to the file's
modification time. :func:`wall_time` is how every capture time is compared with a date range.

Time rule
---------
Photos are placed in time by their *wall-clock* time: the time the camera's clock showed where
the photo was taken. A capture time that carries a UTC offset is reduced to its own wall-clock
time by dropping the offset, never converted to this computer's time zone, so a photo taken at
23:30 on holiday stays on that day. Times without an offset are wall-clock times already.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from PIL import ExifTags, Image

from core.errors import PhotoMissingError
from core.scan import os_error_reason

CaptureSource = Literal["DateTimeOriginal", "DateTimeDigitized", "DateTime", "mtime"]


@dataclass(frozen=True, slots=True)
class CaptureTime:
    """When a photo was taken, and how big it looks.

    Attributes
    ----------
    taken_at
        Capture time. Aware when the UTC offset is known (an EXIF ``OffsetTime*`` tag, or the
        file's modification time, which is converted to this computer's zone); naive otherwise,
        as a wall-clock time. See :func:`wall_time`.
    source
        Where ``taken_at`` came from: ``DateTimeOriginal``, ``DateTimeDigitized``, ``DateTime``
        or ``mtime``.
    width, height
        Size in pixels as displayed, after the EXIF orientation is applied; None when the file
        could not be opened as an image.
    error
        Why the file could not be opened as an image, else None. Broken EXIF alone is not an
        error: it only moves ``source`` down the list.
    """

    taken_at: datetime
    source: CaptureSource
    width: int | None
    height: int | None
    error: str | None = None


_EXIF_SOURCES: tuple[tuple[CaptureSource, int, int, int], ...] = (
    (
        "DateTimeOriginal",
        ExifTags.Base.DateTimeOriginal,
        ExifTags.Base.OffsetTimeOriginal,
        ExifTags.Base.SubsecTimeOriginal,
    ),
    (
        "DateTimeDigitized",
        ExifTags.Base.DateTimeDigitized,
        ExifTags.Base.OffsetTimeDigitized,
        ExifTags.Base.SubsecTimeDigitized,
    ),
    ("DateTime", ExifTags.Base.DateTime, ExifTags.Base.OffsetTime, ExifTags.Base.SubsecTime),
)
_ROTATED_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_DATETIME = re.compile(
    r"(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})(?:[ T]+(\d{1,2})[:.](\d{1,2})(?:[:.](\d{1,2}))?)?",
    re.ASCII,
)
_EXIF_OFFSET = re.compile(r"([+-])(\d{1,2}):?(\d{2})", re.ASCII)
_MIN_YEAR = 1826  # the oldest surviving photograph
_MAX_YEAR = 2200


def _text(value: Any) -> str | None:
    """Return an EXIF ASCII value as clean text, or None for anything else."""
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    return value.replace("\x00", " ").strip() or None


def _exif_datetime(value: Any) -> datetime | None:
    text = _text(value)
    match = _EXIF_DATETIME.match(text) if text else None
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part or 0) for part in match.groups())
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        return None
    try:
        return datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return None


def _exif_offset(value: Any) -> timezone | None:
    text = _text(value)
    if text is None:
        return None
    if text.upper() == "Z":
        return UTC
    match = _EXIF_OFFSET.fullmatch(text)
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14) or int(minutes) >= 60:
        return None
    return timezone(-delta if sign == "-" else delta)


def _exif_microseconds(value: Any) -> int:
    text = _text(value)
    digits = "".join(ch for ch in text if "0" <= ch <= "9") if text else ""
    return int(digits[:6].ljust(6, "0")) if digits else 0


def _exif_tags(image: Image.Image) -> tuple[Image.Exif, dict[int, Any]]:
    """Return IFD0 and the Exif IFD of an opened image, without decoding its pixels."""
    if image.format == "PNG":
        # PngImageFile.getexif() decodes the whole image to look for an eXIf chunk after the
        # pixel data; the base method reads only the chunks seen before it, which is where
        # cameras and editors put EXIF.
        exif = Image.Image.getexif(image)
    else:
        exif = image.getexif()
    try:
        exif_ifd = dict(exif.get_ifd(ExifTags.IFD.Exif))
    except Exception:  # noqa: BLE001 - a broken Exif IFD pointer raises struct.error, KeyError...
        exif_ifd = {}
    return exif, exif_ifd


def _capture_from_exif(
    exif: Image.Exif, exif_ifd: dict[int, Any]
) -> tuple[datetime, CaptureSource] | None:
    for source, date_tag, offset_tag, subsec_tag in _EXIF_SOURCES:
        # DateTime belongs in IFD0 and the others in the Exif IFD; some writers mix them up.
        first, second = (exif, exif_ifd) if date_tag == ExifTags.Base.DateTime else (exif_ifd, exif)
        taken = _exif_datetime(first.get(date_tag)) or _exif_datetime(second.get(date_tag))
        if taken is None:
            continue
        offset = _exif_offset(exif_ifd.get(offset_tag, exif.get(offset_tag)))
        micro = _exif_microseconds(exif_ifd.get(subsec_tag, exif.get(subsec_tag)))
        return taken.replace(microsecond=micro, tzinfo=offset), source
    return None


def _from_mtime(mtime_ns: int) -> datetime:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=mtime_ns // 1000)
    try:
        return moment.astimezone()
    except (OverflowError, OSError, ValueError):  # out of the platform's localtime() range
        return moment


def read_capture_time(path: Path | str, mtime_ns: int | None = None) -> CaptureTime:
    """Read when a photo was taken and its displayed size, without decoding pixels.

    The capture time is the first usable one of EXIF ``DateTimeOriginal``,
    ``DateTimeDigitized`` and ``DateTime`` (with the matching ``OffsetTime*`` and
    ``SubsecTime*`` tags when present), else the file's modification time. Unusable values (empty,
    zeros such as ``0000:00:00 00:00:00``, bytes, wrong types, NUL padding, impossible dates,
    years outside 1826-2200) fall through to the next source. Width and height are swapped for
    EXIF orientations 5-8.

    Parameters
    ----------
    path
        The photo.
    mtime_ns
        Its modification time in nanoseconds, as :func:`core.scan.scan` reported it; read from
        the file when not given.

    Returns
    -------
    CaptureTime
        Never raises for a broken photo: a file Pillow cannot open gives ``source == "mtime"``,
        no size, and ``error`` set.

    Raises
    ------
    PhotoMissingError
        ``mtime_ns`` was not given and the file cannot be looked at (it vanished).
    """
    if mtime_ns is None:
        try:
            mtime_ns = os.stat(path).st_mtime_ns
        except OSError as error:
            raise PhotoMissingError(f"cannot read {path}: {os_error_reason(error)}") from error
    try:
        image = Image.open(path)
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for unreadable files
        message = str(error) or type(error).__name__
        return CaptureTime(_from_mtime(mtime_ns), "mtime", None, None, message)
    with image:
        width, height = image.size
        try:
            exif, exif_ifd = _exif_tags(image)
            found = _capture_from_exif(exif, exif_ifd)
            orientation = exif.get(ExifTags.Base.Orientation)
        except Exception:  # noqa: BLE001 - EXIF is optional: broken EXIF never costs the photo
            found, orientation = None, None
    if isinstance(orientation, int) and orientation in _ROTATED_ORIENTATIONS:
        width, height = height, width
    if found is None:
        return CaptureTime(_from_mtime(mtime_ns), "mtime", width, height)
    taken_at, source = found
    return CaptureTime(taken_at, source, width, height)


# --------------------------------------------------------------------------------------------
# Timeline


def wall_time(moment: datetime) -> datetime:
    """Return the naive wall-clock time of ``moment``: its offset, if any, is dropped.

    ``2022-08-14 14:12+03:00`` becomes ``2022-08-14 14:12``, whatever this computer's time zone.
    Compare capture times with the ranges of this module only through this function.
    """
    return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment
