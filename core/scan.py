"""Scanning the album: which photo files its folders hold, with their size and modification time.

:func:`scan` walks the album folders and lists the photos in them with their size and
modification time, so that the caller can tell new and changed files from known ones, and the
files it leaves out with the reason (unsupported format, unreadable folder). It never opens a
photo; capture times are :mod:`core.capture_time`'s job, the timeline :mod:`core.timeline`'s.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import translate
from pathlib import Path

from PIL import features

from core.errors import AlbumNotFoundError
from core.heif import heif_available
from core.paths import own_folders

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
    skip_folders
        Folders never entered, besides the program's own (:func:`core.paths.own_folders`, always
        left out): the library's thumbnail folder when it lies elsewhere. Matched by identity
        (device and inode), so a link to one of them, or another spelling of its path, is left
        out too.
    """

    excludes: tuple[str, ...] = DEFAULT_EXCLUDES
    skip_hidden: bool = True
    follow_symlinks: bool = True
    skip_folders: tuple[Path, ...] = ()


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


def os_error_reason(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "vanished during the scan"
    return error.strerror or str(error)


def _identity(path: str, st: os.stat_result) -> tuple[int, int]:
    if st.st_ino == 0:  # os.DirEntry.stat() on Windows leaves these zero
        st = os.stat(path)
    return st.st_dev, st.st_ino


def _folder_identities(folders: Sequence[Path]) -> set[tuple[int, int]]:
    """The ``(st_dev, st_ino)`` of those of ``folders`` that exist."""
    found = set()
    for folder in folders:
        try:
            found.add(_identity(str(folder), os.stat(folder)))
        except OSError:
            continue
    return found


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

    Each path belongs to the deepest root that holds it, and a root lists the photos it holds
    whatever the other roots hold: a root that is a link to a folder of another root lists
    that folder's photos under its own path. A file is left out only when it is already listed
    under the same root or under a root inside it, so what a root lists does not depend on the
    roots above it that are scanned with it.

    The program's own folders (data, models, cache, configuration: :func:`core.paths.own_folders`)
    and ``options.skip_folders`` are never entered, even as a root or through a link, so an album
    that holds them never lists the program's thumbnails as photos.

    Parameters
    ----------
    roots
        Album folders. ``~`` is expanded and relative paths are made absolute (not resolved).
        A root is walked even if it is hidden or excluded. Nested or repeated roots are fine;
        they are walked in path order, each above the roots inside it.
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
    folders = sorted({_album_root(root) for root in roots}, key=str)
    owners = {str(folder) for folder in folders}
    # a root and the roots inside it: a file listed under any of them is not listed again
    holding = {
        owner: frozenset(
            o for o in owners if o == owner or o.startswith(owner.rstrip(os.sep) + os.sep)
        )
        for owner in owners
    }
    never_entered = _folder_identities([*own_folders(), *options.skip_folders])
    supported, skip_reasons = _suffix_table()
    exclude = (
        re.compile("|".join(translate(p) for p in options.excludes), re.IGNORECASE)
        if options.excludes
        else None
    )
    result = ScanResult()
    seen_folders: dict[tuple[int, int], set[str]] = {}  # identity: the roots it was walked under
    seen_files: dict[tuple[int, int], set[str]] = {}  # identity: the roots it was listed under
    pending = [(str(folder), str(folder)) for folder in reversed(folders)]  # (path, its root)
    through_links: deque[tuple[str, str]] = deque()
    last_report = time.monotonic()

    def owner_of(path: str, parent_owner: str) -> str:
        return path if path in owners else parent_owner

    def first_time(seen: dict[tuple[int, int], set[str]], key: tuple[int, int], owner: str) -> bool:
        """Record ``key`` under ``owner``; False when that root or one inside it had it."""
        under = seen.setdefault(key, set())
        if not under.isdisjoint(holding[owner]):
            return False
        under.add(owner)
        return True

    def add_file(path: str, name: str, st: os.stat_result, owner: str) -> None:
        suffix = os.path.splitext(name)[1].lower()
        if suffix not in supported and suffix not in skip_reasons:
            result.ignored += 1
            return
        if not first_time(seen_files, _identity(path, st), owner):
            return
        if suffix not in supported:
            result.skipped.append(Skipped(Path(path), skip_reasons[suffix]))
        elif st.st_size == 0:
            result.skipped.append(Skipped(Path(path), "empty file"))
        else:
            result.files.append(FileEntry(Path(path), st.st_size, st.st_mtime_ns))

    def walk_folder(folder: str, owner: str) -> None:
        try:
            key = _identity(folder, os.stat(folder))
            if key in never_entered or not first_time(seen_folders, key, owner):
                return
            entries = os.scandir(folder)
        except OSError as error:
            result.errors.append(Skipped(Path(folder), os_error_reason(error)))
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
                            through_links.append((entry.path, owner))
                    elif entry.is_dir(follow_symlinks=False):
                        pending.append((entry.path, owner_of(entry.path, owner)))
                    elif entry.is_file(follow_symlinks=False):
                        add_file(entry.path, name, entry.stat(follow_symlinks=False), owner)
                    else:
                        result.ignored += 1
                except OSError as error:
                    result.errors.append(Skipped(Path(entry.path), os_error_reason(error)))

    def follow_link(path: str, owner: str) -> None:
        try:
            st = os.stat(path)
            if stat.S_ISDIR(st.st_mode):
                pending.append((path, owner_of(path, owner)))
            elif stat.S_ISREG(st.st_mode):
                add_file(path, os.path.basename(path), st, owner)
            else:
                result.ignored += 1
        except FileNotFoundError:
            result.errors.append(Skipped(Path(path), "broken symbolic link"))
        except OSError as error:
            result.errors.append(Skipped(Path(path), os_error_reason(error)))

    while pending or through_links:
        if cancel is not None and cancel.is_set():
            result.cancelled = True
            break
        if pending:
            walk_folder(*pending.pop())
        else:
            follow_link(*through_links.popleft())
        if progress is not None and time.monotonic() - last_report >= _PROGRESS_INTERVAL_S:
            progress(len(result.files))
            last_report = time.monotonic()

    result.files.sort(key=lambda item: str(item.path))
    result.skipped.sort(key=lambda item: str(item.path))
    result.errors.sort(key=lambda item: str(item.path))
    if progress is not None:
        progress(len(result.files))
    return result
