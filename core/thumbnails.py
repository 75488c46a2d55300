"""Thumbnails: the small JPEG copy of each indexed photo, in the library's thumbnail folder.

The one owner of the files: made from a decoded photo while indexing (:func:`save_thumbnail`,
or :func:`thumbnail_jpeg` and :func:`store_thumbnail` where the bytes are made elsewhere), read
back and shrunk for display by the front ends (:func:`load_thumbnail`), and removed when no
photo has that content any more (:func:`remove_thumbnails`). A thumbnail is named after the
photo's content hash, so copies and moved photos share one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from core.errors import is_disk_full

THUMBNAIL_MAX_SIDE = 256
"""Longest side of a thumbnail, in pixels."""

THUMBNAIL_FORMAT = "JPEG"
"""Thumbnails are JPEG files named ``<content hash>.jpg``, quality :data:`THUMBNAIL_QUALITY`."""

THUMBNAIL_QUALITY = 85

log = logging.getLogger(__name__)
_DISK_FULL_LOCK = threading.Lock()  # so that one thread reports a full disk, not each


def thumbnail_jpeg(image: Image.Image) -> bytes:
    """The thumbnail of a decoded photo as JPEG bytes (``image`` is shrunk in place).

    At most :data:`THUMBNAIL_MAX_SIDE` pixels on its long side, quality
    :data:`THUMBNAIL_QUALITY`: the same bytes wherever it is made.
    """
    image.thumbnail((THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE), Image.Resampling.BICUBIC, 2.0)
    out = io.BytesIO()
    image.save(out, THUMBNAIL_FORMAT, quality=THUMBNAIL_QUALITY)
    return out.getvalue()


def store_thumbnail(
    folder: Path,
    name: str,
    make: Callable[[], bytes],
    disk_full: threading.Event | None = None,
) -> str | None:
    """Write ``<name>.jpg`` into ``folder`` from ``make()``, unless that file exists already.

    The file appears whole or not at all (written aside, then renamed). Returns the file name,
    or None when it could not be written (the reason is logged; the photo is indexed anyway).

    ``disk_full`` is one run's note that the disk is full: the first write that finds no room
    sets it and logs it once for the run, and while it is set no thumbnail is written (None),
    so a full disk is one warning, not one per photo.
    """
    file_name = f"{name}.jpg"
    target = folder / file_name
    if target.is_file():
        return file_name
    if disk_full is not None and disk_full.is_set():
        return None
    partial = folder / f".{file_name}.{os.getpid()}.{threading.get_ident()}.part"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(make())
        os.replace(partial, target)
    except (OSError, ValueError) as error:
        with contextlib.suppress(OSError):
            partial.unlink()
        if disk_full is None or not is_disk_full(error):
            log.warning("cannot write the thumbnail %s: %s", target, error)
            return None
        with _DISK_FULL_LOCK:
            first = not disk_full.is_set()
            disk_full.set()
        if first:
            log.warning(
                "cannot write thumbnails into %s: %s; the photos of this run are indexed "
                "without them",
                folder,
                error,
            )
        return None
    return file_name


def save_thumbnail(
    image: Image.Image, folder: Path, name: str, disk_full: threading.Event | None = None
) -> str | None:
    """Write a small copy of a decoded photo, unless a thumbnail of that name exists already.

    Parameters
    ----------
    image
        The decoded photo, already the right way up (as :func:`core.preprocess.load_image` gives
        it). Shrunk in place.
    folder
        The thumbnail folder; created when missing.
    name
        The photo's content hash; the file is ``<name>.jpg``.
    disk_full
        The run's note that the disk is full (see :func:`store_thumbnail`).

    Returns
    -------
    str or None
        The file name inside ``folder``, or None when it could not be written (the photo is
        indexed anyway; the reason is logged).
    """
    return store_thumbnail(folder, name, lambda: thumbnail_jpeg(image), disk_full)


def load_thumbnail(path: Path | None, longest: int) -> Image.Image | None:
    """Decode a thumbnail and shrink it to at most ``longest`` pixels a side, in RGB.

    None when there is none or it is unreadable. Thumbnails are small files made at indexing
    time, so no original photo is ever decoded here; call it off the UI thread all the same.
    """
    if path is None:
        return None
    try:
        with Image.open(path) as image:
            image.draft("RGB", (longest, longest))
            shown = image.convert("RGB") if image.mode != "RGB" else image.copy()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    shown.thumbnail((longest, longest), Image.Resampling.BILINEAR)
    return shown


def remove_thumbnails(folder: Path, content_hash: str) -> None:
    """Delete the thumbnail of ``content_hash`` (whatever its suffix); a missing one is fine."""
    for thumb in folder.glob(f"{content_hash}.*"):
        with contextlib.suppress(OSError):
            thumb.unlink()
