"""The photo album: which files it holds, when each photo was taken, and a timeline over them.

Three jobs, none of which touches embeddings or the index:

- :func:`scan` walks the album folders and lists the photos in them with their size and
  modification time, so that the caller can tell new and changed files from known ones.
- :func:`read_capture_time` reads when a photo was taken (and its displayed size) from its EXIF
  metadata without decoding any pixels.
- :func:`build_timeline`, :func:`bucket_range` and :func:`parse_date` group capture times into
  years, months, days and recent periods, and turn the keys of those groups (or a date typed on
  the command line) back into date ranges.

Time rule
---------
Photos are placed in time by their *wall-clock* time: the time the camera's clock showed where
the photo was taken. A capture time that carries a UTC offset is reduced to its own wall-clock
time by dropping the offset, never converted to this computer's time zone, so a photo taken at
23:30 on holiday stays on that day. Times without an offset are wall-clock times already. Every
range this module returns is naive and half-open, ``start <= t < end``, and is meant to be
compared with :func:`wall_time` of a capture time.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from fnmatch import translate
from pathlib import Path
from typing import Any, Literal

from PIL import ExifTags, Image, features

from core.errors import ClipsearchError

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
"""File name suffixes (lower case) that are always indexed: JPEG, PNG, WebP, GIF, BMP, TIFF."""

HEIF_SUFFIXES: frozenset[str] = frozenset({".heic", ".heif", ".hif"})
"""HEIC/HEIF suffixes, indexed only when the optional ``pillow_heif`` package is installed."""

AVIF_SUFFIXES: frozenset[str] = frozenset({".avif"})
"""AVIF suffixes, indexed when Pillow was built with its AVIF plugin (Pillow 11.3 wheels on)."""

HEIF_MISSING_REASON = "HEIC/HEIF needs the optional extra: pip install 'clipsearch-tui[heif]'"
AVIF_MISSING_REASON = "AVIF needs a Pillow build with AVIF support (Pillow 11.3 or newer)"
RAW_REASON = "RAW camera files are not supported: index a JPEG or HEIC export instead"

_RAW_SUFFIXES = frozenset(
    {
        ".3fr", ".arw", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf", ".iiq", ".kdc", ".mef",
        ".mos", ".mrw", ".nef", ".nrw", ".orf", ".pef", ".raf", ".raw", ".rw2", ".rwl", ".sr2",
        ".srf", ".srw", ".x3f",
    }
)  # fmt: skip
_OTHER_IMAGE_SUFFIXES = frozenset(
    {".jxl", ".jp2", ".j2k", ".jpx", ".psd", ".psb", ".svg", ".svgz", ".xcf", ".exr"}
)

DEFAULT_EXCLUDES: tuple[str, ...] = (
    "@eaDir",  # Synology thumbnails
    "#recycle",  # Synology recycle bin
    "#snapshot",  # Synology snapshots
    "@Recycle",  # QNAP recycle bin
    ".@__thumb",  # QNAP thumbnails
    ".git",
    "node_modules",
    "__pycache__",
    "System Volume Information",
    "$RECYCLE.BIN",
    ".Trash",
    ".Trash-*",
    ".Trashes",
    ".Spotlight-V100",
    ".fseventsd",
    ".thumbnails",
    "lost+found",
    "._*",  # macOS resource forks: "._IMG_1234.JPG" is not a photo
)
"""Names (or ``fnmatch`` patterns) that :class:`ScanOptions` leaves out by default."""

_PROGRESS_INTERVAL_S = 0.1

CaptureSource = Literal["DateTimeOriginal", "DateTimeDigitized", "DateTime", "mtime"]
BucketKind = Literal["year", "month", "day", "relative"]


class AlbumError(ClipsearchError):
    """A problem with the album that the user has to fix."""


class AlbumNotFoundError(AlbumError):
    """A folder given as an album root does not exist or is not a folder."""


class PhotoMissingError(AlbumError):
    """A photo vanished (or cannot be looked at) before its capture time was read."""


class BadDateError(AlbumError, ValueError):
    """A date or a timeline key could not be understood."""


# --------------------------------------------------------------------------------------------
# Scanning


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """What :func:`scan` leaves out.

    Attributes
    ----------
    excludes
        Names or ``fnmatch`` patterns, matched case-insensitively against each folder and file
        name (not against whole paths). Matching folders are not entered.
    skip_hidden
        Leave out folders and files whose name starts with a dot (and, on Windows, those with
        the hidden attribute).
    follow_symlinks
        Follow symbolic links to folders and files. Loops are detected, and a photo reachable
        through several links is listed once.
    """

    excludes: tuple[str, ...] = DEFAULT_EXCLUDES
    skip_hidden: bool = True
    follow_symlinks: bool = True


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A photo found by :func:`scan`.

    Attributes
    ----------
    path
        Absolute path as reached from the album root; symbolic links in it are kept, not
        resolved, so it reads the way the user sees the album.
    size
        Size in bytes.
    mtime_ns
        Modification time in nanoseconds since the epoch.
    """

    path: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """A path that :func:`scan` did not list as a photo, and why."""

    path: Path
    reason: str


@dataclass(slots=True)
class ScanResult:
    """What :func:`scan` found.

    Attributes
    ----------
    files
        Photos to index, sorted by path.
    skipped
        Image-like files that are not indexed (unsupported format, missing extra, empty file).
    errors
        Folders and files that could not be read: permission denied, broken symbolic links,
        files that vanished during the scan. Photos under a folder listed here are missing from
        ``files`` without having been deleted.
    ignored
        Number of other files (not images) seen.
    cancelled
        True when the scan was stopped early; the lists are then incomplete.
    """

    files: list[FileEntry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[Skipped] = field(default_factory=list)
    ignored: int = 0
    cancelled: bool = False


@functools.cache
def heif_available() -> bool:
    """Whether HEIC/HEIF photos can be read; registers the ``pillow_heif`` opener on first call."""
    try:
        import pillow_heif
    except (ImportError, OSError):
        return False
    pillow_heif.register_heif_opener()
    return True


@functools.cache
def _avif_available() -> bool:
    return bool(features.check("avif"))


def _suffix_table() -> tuple[frozenset[str], dict[str, str]]:
    """Return the suffixes indexed now, and the reasons for image suffixes that are not."""
    supported = set(SUPPORTED_SUFFIXES)
    reasons = dict.fromkeys(_RAW_SUFFIXES, RAW_REASON)
    for suffix in _OTHER_IMAGE_SUFFIXES:
        reasons[suffix] = f"{suffix[1:].upper()} files are not supported"
    if heif_available():
        supported |= HEIF_SUFFIXES
    else:
        reasons.update(dict.fromkeys(HEIF_SUFFIXES, HEIF_MISSING_REASON))
    if _avif_available():
        supported |= AVIF_SUFFIXES
    else:
        reasons.update(dict.fromkeys(AVIF_SUFFIXES, AVIF_MISSING_REASON))
    return frozenset(supported), reasons


def _album_root(root: Path | str) -> Path:
    path = Path(root).expanduser().absolute()
    if not path.exists():
        raise AlbumNotFoundError(f"photo folder not found: {path}")
    if not path.is_dir():
        raise AlbumNotFoundError(f"not a folder: {path}")
    return path


def _reason(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "vanished during the scan"
    return error.strerror or str(error)


def _identity(path: str, st: os.stat_result) -> tuple[int, int]:
    if st.st_ino == 0:  # os.DirEntry.stat() on Windows leaves these zero
        st = os.stat(path)
    return st.st_dev, st.st_ino


def _hidden(entry: os.DirEntry[str]) -> bool:
    if entry.name.startswith("."):
        return True
    if os.name == "nt":
        attributes = getattr(entry.stat(follow_symlinks=False), "st_file_attributes", 0)
        return bool(attributes & getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0))
    return False


def scan(
    roots: Sequence[Path | str],
    options: ScanOptions = ScanOptions(),
    cancel: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
) -> ScanResult:
    """List the photos under one or more album folders.

    Folders are walked with ``os.scandir``; each photo costs one ``stat``. Folders reached
    through symbolic links are walked after all others, so a photo reachable both ways is listed
    under its plain path. A file reached twice (through links, or as hard links of one file) is
    listed once, by its ``(st_dev, st_ino)``. Nothing found in the album raises: unreadable
    folders and files go to ``ScanResult.errors``.

    Parameters
    ----------
    roots
        Album folders. ``~`` is expanded and relative paths are made absolute (not resolved).
        A root is walked even if it is hidden or excluded. Nested or repeated roots are fine.
    options
        What to leave out.
    cancel
        When set, the scan stops at the next folder and returns what it has, marked cancelled.
    progress
        Called from this thread with the number of photos found so far, at most every 0.1 s
        and once at the end.

    Returns
    -------
    ScanResult
        Photos sorted by path, skipped files, errors.

    Raises
    ------
    AlbumNotFoundError
        A root does not exist or is not a folder (checked before anything is walked).
    """
    folders = [_album_root(root) for root in roots]
    supported, skip_reasons = _suffix_table()
    exclude = (
        re.compile("|".join(translate(p) for p in options.excludes), re.IGNORECASE)
        if options.excludes
        else None
    )
    result = ScanResult()
    seen_folders: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    pending = [str(folder) for folder in reversed(folders)]
    through_links: deque[str] = deque()
    last_report = time.monotonic()

    def add_file(path: str, name: str, st: os.stat_result) -> None:
        suffix = os.path.splitext(name)[1].lower()
        if suffix not in supported and suffix not in skip_reasons:
            result.ignored += 1
            return
        key = _identity(path, st)
        if key in seen_files:
            return
        seen_files.add(key)
        if suffix not in supported:
            result.skipped.append(Skipped(Path(path), skip_reasons[suffix]))
        elif st.st_size == 0:
            result.skipped.append(Skipped(Path(path), "empty file"))
        else:
            result.files.append(FileEntry(Path(path), st.st_size, st.st_mtime_ns))

    def walk_folder(folder: str) -> None:
        try:
            key = _identity(folder, os.stat(folder))
            if key in seen_folders:
                return
            seen_folders.add(key)
            entries = os.scandir(folder)
        except OSError as error:
            result.errors.append(Skipped(Path(folder), _reason(error)))
            return
        with entries:
            for entry in entries:
                name = entry.name
                if exclude is not None and exclude.match(name):
                    continue
                try:
                    if options.skip_hidden and _hidden(entry):
                        continue
                    if entry.is_symlink():
                        if options.follow_symlinks:
                            through_links.append(entry.path)
                    elif entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        add_file(entry.path, name, entry.stat(follow_symlinks=False))
                    else:
                        result.ignored += 1
                except OSError as error:
                    result.errors.append(Skipped(Path(entry.path), _reason(error)))

    def follow_link(path: str) -> None:
        try:
            st = os.stat(path)
            if stat.S_ISDIR(st.st_mode):
                pending.append(path)
            elif stat.S_ISREG(st.st_mode):
                add_file(path, os.path.basename(path), st)
            else:
                result.ignored += 1
        except FileNotFoundError:
            result.errors.append(Skipped(Path(path), "broken symbolic link"))
        except OSError as error:
            result.errors.append(Skipped(Path(path), _reason(error)))

    while pending or through_links:
        if cancel is not None and cancel.is_set():
            result.cancelled = True
            break
        if pending:
            walk_folder(pending.pop())
        else:
            follow_link(through_links.popleft())
        if progress is not None and time.monotonic() - last_report >= _PROGRESS_INTERVAL_S:
            progress(len(result.files))
            last_report = time.monotonic()

    result.files.sort(key=lambda item: str(item.path))
    result.skipped.sort(key=lambda item: str(item.path))
    result.errors.sort(key=lambda item: str(item.path))
    if progress is not None:
        progress(len(result.files))
    return result


# --------------------------------------------------------------------------------------------
# Capture time


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
        Its modification time in nanoseconds, as :func:`scan` reported it; read from the file
        when not given.

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
            raise PhotoMissingError(f"cannot read {path}: {_reason(error)}") from error
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

RELATIVE_KEYS: tuple[str, ...] = ("last-7-days", "last-30-days", "last-12-months", "all")
"""Keys of the recent-period buckets, in the order :func:`build_timeline` lists them."""

_RELATIVE_LABELS = {
    "last-7-days": "Last 7 days",
    "last-30-days": "Last 30 days",
    "last-12-months": "Last 12 months",
    "all": "All photos",
}
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_PERIOD = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", re.ASCII)
_DATE_HELP = "expected YYYY, YYYY-MM or YYYY-MM-DD"


@dataclass(slots=True)
class Bucket:
    """A group of photos in the timeline.

    Attributes
    ----------
    key
        ``"2019"``, ``"2019-05"``, ``"2019-05-14"``, or one of :data:`RELATIVE_KEYS`.
    label
        Text to show: ``"2019"``, ``"May 2019"``, ``"Tue 14 May 2019"``, ``"Last 7 days"``.
    kind
        ``"year"``, ``"month"``, ``"day"`` or ``"relative"``.
    start, end
        Naive wall-clock range, half-open; the same as :func:`bucket_range` of ``key``.
    count
        Photos in the range.
    indexed
        Of those, how many are indexed.
    children
        Months of a year, days of a month, newest first; empty for days and relative buckets.
    """

    key: str
    label: str
    kind: BucketKind
    start: datetime
    end: datetime
    count: int = 0
    indexed: int = 0
    children: list[Bucket] = field(default_factory=list)


@dataclass(slots=True)
class Timeline:
    """Photos grouped by time.

    Attributes
    ----------
    relative
        One bucket per :data:`RELATIVE_KEYS` entry, in that order, always present.
    years
        Years that hold photos, newest first, each with its months and their days.
    """

    relative: list[Bucket]
    years: list[Bucket]

    def find(self, key: str) -> Bucket | None:
        """Return the bucket with this key, or None when no photo falls in it."""
        candidates = [*self.relative, *self.years]
        while candidates:
            bucket = candidates.pop()
            if bucket.key == key:
                return bucket
            if key.startswith(bucket.key):
                candidates.extend(bucket.children)
        return None


def wall_time(moment: datetime) -> datetime:
    """Return the naive wall-clock time of ``moment``: its offset, if any, is dropped.

    ``2022-08-14 14:12+03:00`` becomes ``2022-08-14 14:12``, whatever this computer's time zone.
    Compare capture times with the ranges of this module only through this function.
    """
    return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment


def _today(now: datetime | None) -> date:
    return wall_time(now).date() if now is not None else datetime.now().date()


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _month_start(index: int) -> datetime:
    """Return the first moment of month ``index`` (``year * 12 + month - 1``)."""
    year, month = divmod(index, 12)
    return datetime(year, month + 1, 1) if year <= 9999 else datetime.max


def _relative_range(key: str, today: date) -> tuple[datetime, datetime]:
    tomorrow = _midnight(today) + timedelta(days=1)
    if key == "last-7-days":
        return tomorrow - timedelta(days=7), tomorrow
    if key == "last-30-days":
        return tomorrow - timedelta(days=30), tomorrow
    if key == "last-12-months":
        return _month_start(today.year * 12 + today.month - 1 - 11), tomorrow
    return datetime.min, datetime.max


def _period_range(year: int, month: int | None, day: int | None) -> tuple[datetime, datetime]:
    """Return the range of a year, month or day; raises ValueError for impossible dates."""
    if month is None:
        start = datetime(year, 1, 1)
        return start, _month_start((year + 1) * 12)
    if day is None:
        start = datetime(year, month, 1)
        return start, _month_start(year * 12 + month)
    start = datetime(year, month, day)
    return start, (start + timedelta(days=1) if start.date() < date.max else datetime.max)


def _parse_period(text: str) -> tuple[datetime, datetime] | None:
    """Return the range named by ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``, None if not that form.

    Raises ValueError when the form is right but the date impossible (``2019-13``).
    """
    match = _PERIOD.fullmatch(text)
    if match is None:
        return None
    year, month, day = match.groups()
    return _period_range(int(year), int(month) if month else None, int(day) if day else None)


def bucket_range(key: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Turn a timeline key back into its naive half-open range ``(start, end)``.

    Parameters
    ----------
    key
        ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` or one of :data:`RELATIVE_KEYS`.
    now
        Reference time for the relative keys (default: now). ``last-7-days`` is today and the six
        days before it, ``last-30-days`` likewise; ``last-12-months`` is this month so far and the
        eleven before it. All three end at the end of today. ``all`` is unbounded
        (``datetime.min`` to ``datetime.max``).

    Raises
    ------
    BadDateError
        The key is none of these.
    """
    if key in _RELATIVE_LABELS:
        return _relative_range(key, _today(now))
    try:
        found = _parse_period(key)
    except ValueError:
        found = None
    if found is None:
        raise BadDateError(
            f'bad timeline key "{key}": {_DATE_HELP}, or one of {", ".join(RELATIVE_KEYS)}'
        )
    return found


def parse_date(text: str, *, end: bool = False) -> datetime:
    """Parse a date typed on the command line (``--since``, ``--until``).

    Parameters
    ----------
    text
        ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``, or an ISO 8601 date and time such as
        ``2019-05-14T09:30`` (an offset in it is kept; compare through :func:`wall_time`).
    end
        Return the end of the period named instead of its start: ``2019-05`` gives
        ``2019-06-01 00:00``, the exclusive end that makes ``--until 2019-05`` include May. A
        full date and time is returned as it is.

    Raises
    ------
    BadDateError
        ``bad date "2019-13": expected YYYY, YYYY-MM or YYYY-MM-DD``.
    """
    cleaned = text.strip()
    try:
        period = _parse_period(cleaned)
        if period is not None:
            return period[1] if end else period[0]
        return datetime.fromisoformat(cleaned)
    except ValueError:
        pass
    raise BadDateError(f'bad date "{text}": {_DATE_HELP}')


def build_timeline(items: Iterable[tuple[datetime, bool]], now: datetime | None = None) -> Timeline:
    """Group capture times into years, months and days, and recent periods.

    Parameters
    ----------
    items
        ``(taken_at, indexed)`` per photo; aware and naive times may be mixed (see
        :func:`wall_time`).
    now
        Reference time for the relative buckets (default: now).

    Returns
    -------
    Timeline
        Counts add up: the years sum to the ``all`` bucket, months to their year, days to their
        month.
    """
    per_day: dict[date, list[int]] = {}
    for taken_at, indexed in items:
        cell = per_day.setdefault(wall_time(taken_at).date(), [0, 0])
        cell[0] += 1
        cell[1] += bool(indexed)

    today = _today(now)
    relative = []
    for key in RELATIVE_KEYS:
        start, stop = _relative_range(key, today)
        bucket = Bucket(key, _RELATIVE_LABELS[key], "relative", start, stop)
        for day, (count, indexed) in per_day.items():
            if start <= _midnight(day) < stop:
                bucket.count += count
                bucket.indexed += indexed
        relative.append(bucket)

    years: dict[int, Bucket] = {}
    months: dict[tuple[int, int], Bucket] = {}
    for day in sorted(per_day, reverse=True):
        count, indexed = per_day[day]
        year = years.get(day.year)
        if year is None:
            name = f"{day.year:04d}"
            year = Bucket(name, name, "year", *_period_range(day.year, None, None))
            years[day.year] = year
        month = months.get((day.year, day.month))
        if month is None:
            key = f"{day.year:04d}-{day.month:02d}"
            label = f"{_MONTHS[day.month - 1]} {day.year:04d}"
            month = Bucket(key, label, "month", *_period_range(day.year, day.month, None))
            months[(day.year, day.month)] = month
            year.children.append(month)
        label = f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year:04d}"
        start, stop = _period_range(day.year, day.month, day.day)
        month.children.append(Bucket(day.isoformat(), label, "day", start, stop, count, indexed))
        for bucket in (year, month):
            bucket.count += count
            bucket.indexed += indexed
    return Timeline(relative, list(years.values()))
