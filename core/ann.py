"""Approximate search for libraries beyond :data:`APPROXIMATE_FROM` photos (faiss IVF, int8).

Below that size a search scores every photo (:mod:`core.compact`), which stays exact and takes
about 130 ms a million photos on two quiet cores; above it a full pass costs more than a search
should, so an inverted-file index picks the candidates instead: ``faiss.IndexIVFScalarQuantizer``
with inner product, :data:`LISTS` lists, the vectors as 8-bit codes in them, :data:`PROBES`
lists searched per query. The candidates are then re-scored with their float32 vectors as in an
exact search, so the scores returned are exact; only which photos are candidates is
approximate (recall@20 in ``bench/RESULTS.md``, section *Beyond a million*). Why faiss IVF and
not an HNSW graph (usearch): building the IVF index is a k-means on a sample and one
assignment pass, a few minutes for two million photos on two cores; an HNSW graph took 363 s
for 100,000 vectors on the same machine.

The index lives beside the database (``<database>.ivf``), with a small JSON file
(``<database>.ivf.json``) naming the library and the ``revision``, ``removed`` count and
``generation`` of :attr:`core.library.Library.vector_version` it was built at. It is built off
the search path, at the end of an indexing run (:func:`build_if_due`, under the writer lock),
never by a search. A search maps its lists (``IO_FLAG_MMAP``) and uses it only while no
embedding was removed since, and while the photos added since (read and scored exactly, added
to the candidates) are at most :data:`STALE_ROWS`; otherwise it searches exactly, and the next
indexing run builds it again.

The probability of a hit is the softmax over every photo; with the index, the part of its
denominator from photos that are not candidates is estimated from the int8 scores of
:data:`SAMPLE_ROWS` photos drawn at random.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from core.database import VectorVersion
    from core.library import Library

__all__ = ["APPROXIMATE_FROM", "ApproximateIndex", "build", "build_if_due", "load"]

APPROXIMATE_FROM = 2_000_000
"""Fewest indexed photos for which searches use the approximate index."""

LISTS = 1024
PROBES = 64
TRAIN_ROWS = 65_536
BUILD_ROWS = 65_536
STALE_ROWS = 4096
SAMPLE_ROWS = 4096
SUFFIX = ".ivf"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApproximateIndex:
    """A loaded IVF index and the library state it was built at."""

    index: Any
    library_id: str
    revision: int
    removed: int
    count: int

    def candidates(self, query: np.ndarray, count: int) -> np.ndarray:
        """Photo ids of about the ``count`` best matches of ``query`` ``[D]``: ``[<=count]``."""
        _, ids = self.index.search(np.ascontiguousarray(query, np.float32)[None], count)
        found = ids[0]
        kept: np.ndarray = found[found >= 0].astype(np.int64)
        return kept

    def usable(self, version: VectorVersion, indexed: int) -> bool:
        """Whether it still describes the library well enough to search with."""
        if (self.library_id, self.removed) != (version.library_id, version.removed):
            return False
        return self.revision <= version.revision and indexed - self.count <= STALE_ROWS


def paths(database: Path) -> tuple[Path, Path]:
    """The index file and its description, beside the database."""
    index = database.with_name(database.name + SUFFIX)
    return index, index.with_name(index.name + ".json")


def _faiss() -> Any:
    import faiss

    return faiss


def build(library: Library, model_name: str) -> None:
    """Build the index from the database's float32 vectors (the caller holds the writer lock).

    Trains on :data:`TRAIN_ROWS` vectors drawn at random, then adds every vector in blocks of
    :data:`BUILD_ROWS`; the files replace the old ones whole.
    """
    faiss = _faiss()
    index_path, meta_path = paths(library.path)
    with library.snapshot():
        version = library.vector_version
        dim = int(library.embed_dim or 0)
        ids = library.photo_ids(model_name)
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(ids, min(len(ids), TRAIN_ROWS), replace=False))
        found = library.vectors_for(sample, model_name)
        train = np.stack([v for v in found.values() if np.isfinite(v).all()])
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, min(LISTS, len(train)), faiss.ScalarQuantizer.QT_8bit,
            faiss.METRIC_INNER_PRODUCT,
        )  # fmt: skip
        index.train(train)
        del train, found
        after, count = 0, 0
        while True:
            block_ids, block = library.vectors_after_id(model_name, after, BUILD_ROWS)
            if not len(block_ids):
                break
            finite = np.isfinite(block).all(axis=1)
            index.add_with_ids(block[finite], block_ids[finite])
            after, count = int(block_ids[-1]), count + int(finite.sum())
    suffix = f".{os.getpid()}.{threading.get_ident()}.part"
    partial = index_path.with_name(index_path.name + suffix)
    partial_meta = meta_path.with_name(meta_path.name + suffix)
    try:
        faiss.write_index(index, str(partial))
        partial_meta.write_text(
            json.dumps(
                {
                    "library_id": version.library_id,
                    "generation": version.generation,
                    "revision": version.revision,
                    "removed": version.removed,
                    "count": count,
                }
            )
        )
        with contextlib.suppress(OSError):
            meta_path.unlink()  # the old description goes first: never a new index under it
        os.replace(partial, index_path)
        os.replace(partial_meta, meta_path)
    finally:
        for leftover in (partial, partial_meta):
            with contextlib.suppress(OSError):
                leftover.unlink()


def build_if_due(library: Library, model_name: str) -> bool:
    """Build the index when the library is large enough and its index is missing or stale.

    Called at the end of an indexing run, with the writer lock held. Returns whether it built.
    Failures are logged, never raised: searches are then exact.
    """
    indexed = library.indexed_count()
    if indexed < APPROXIMATE_FROM:
        return False
    current = load(library)
    if current is not None and current.usable(library.vector_version, indexed):
        return False
    try:
        build(library, model_name)
    except (OSError, RuntimeError, ImportError, ValueError) as error:
        log.warning("cannot build the approximate index of %s: %s", library.path, error)
        return False
    return True


def load(library: Library) -> ApproximateIndex | None:
    """The index beside the library, if there is one that belongs to it; None otherwise."""
    index_path, meta_path = paths(library.path)
    try:
        meta = json.loads(meta_path.read_text())
        if meta["library_id"] != library.vector_version.library_id:
            return None
        faiss = _faiss()
        # the lists are memory-mapped: a query reads the pages of the lists it probes
        index = faiss.read_index(str(index_path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, ImportError):
        return None
    index.nprobe = PROBES
    return ApproximateIndex(
        index, meta["library_id"], int(meta["revision"]), int(meta["removed"]), int(meta["count"])
    )
