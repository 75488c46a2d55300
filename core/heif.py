"""HEIC/HEIF support: the optional ``pillow_heif`` opener, registered with Pillow once.

The one place that registers it, for both the scan (which lists HEIC files only when they can be
read) and the decoder (which registers it the first time a HEIC file is met).
"""

from __future__ import annotations

import functools


@functools.cache
def heif_available() -> bool:
    """Whether HEIC/HEIF photos can be read; registers the ``pillow_heif`` opener on first call."""
    try:
        import pillow_heif
    except (ImportError, OSError):
        return False
    pillow_heif.register_heif_opener()
    return True
