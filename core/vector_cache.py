"""The compact vectors of each library, kept between searches and brought up to date.

:func:`compact_vectors` keeps one :class:`core.compact.CompactVectors` per library in a small
module-level cache: reused while the library's embeddings are unchanged, extended in memory while
an indexing run only adds embeddings, and otherwise mapped again from the vector file beside the
database (:mod:`core.vectorfile`), or made from the database's vectors when there is none.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core import vectorfile
from core.compact import CompactVectors

if TYPE_CHECKING:
    from core.database import VectorVersion
    from core.library import Library


def _return_freed_memory() -> None:
    """Hand heap pages freed after reading all vectors back to the system (glibc only).

    Reading the vectors allocates one small block per row; once they are freed glibc may keep
    the pages, which would stay resident for nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        pass


@dataclass(frozen=True, slots=True)
class _Cached:
    """A library's compact vectors and what they were made from."""

    identity: tuple[int, int] | None
    model_name: str
    version: VectorVersion
    compact: CompactVectors


_CACHE_SIZE = 2  # libraries whose compact vectors are kept
_APPEND_ROWS = 65_536  # rows a cached copy may gain in memory before the file is mapped again
_cache: dict[str, _Cached] = {}
_cache_lock = threading.Lock()


def compact_vectors(library: Library, model_name: str) -> CompactVectors:
    """The library's vectors, quantised, kept for later searches and brought up to date.

    Reuses the copy while :attr:`~core.library.Library.vector_version` stays the same, and appends
    the embeddings written since when nothing was removed (an indexing run commits a batch every
    second or so), until the appended rows pass an eighth of the copy. Otherwise it maps the
    vector file beside the database (:func:`core.vectorfile.load`), and only when there is
    none that can be used, quantises the database's vectors in memory. Locks are taken in one
    order: the library's (:meth:`~core.library.Library.snapshot`), then the cache's.
    """
    key = str(library.path)
    try:
        stat = os.stat(library.path)
        identity: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
    except OSError:
        identity = None
    with library.snapshot(), _cache_lock:
        version = library.vector_version
        found = _cache.get(key)
        if found is not None and (found.identity, found.model_name) == (identity, model_name):
            if found.version == version or found.version.revision > version.revision:
                return found.compact  # current, or newer than what this reader sees
            compact = found.compact
            if (
                found.version.removed == version.removed
                and found.version.library_id == version.library_id
                and compact.dim == (library.embed_dim or 0)
                and compact.appended_rows <= max(_APPEND_ROWS, len(compact) // 8)
            ):
                ids, matrix = library.vectors_added(model_name, found.version.revision)
                compact = compact.extended(ids, matrix)
                _cache[key] = _Cached(identity, model_name, version, compact)
                return compact
        _cache.pop(key, None)  # let the old codes go before the new ones are made
        del found
        mapped = vectorfile.load(library, model_name)
        if mapped is not None:
            compact = mapped
        else:
            ids, matrix = library.vectors(model_name)
            compact = CompactVectors.build(ids, matrix)
            del ids, matrix
        _return_freed_memory()
        _cache[key] = _Cached(identity, model_name, version, compact)
        while len(_cache) > _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        return compact
