"""Near-duplicate photos: groups of photos whose embeddings are nearly the same.

Bursts, edits and re-saves of one picture land within a hair of each other in the model's
embedding space. Two photos are *near-duplicates* when the cosine similarity of their embeddings
is at least a threshold; a *group* is a connected set of such pairs.

Comparing every pair costs ``N**2 * D`` operations (about 5 TFLOP at 100,000 photos), so pairs
are looked for inside small blocks of photos that lie close together::

    1. Split the vectors recursively with spherical k-means (at most 64 parts per level, a
       sample of the vectors trains each split) until a part holds at most ``leaf_size``.
    2. In every part, one matrix product finds the pairs at or above the threshold.
    3. Do it again with another random split (``rounds``), so that a pair cut apart by one
       split's boundary is found by the next; keep the union of the pairs.
    4. Join the pairs into groups (union-find).

Every pair reported is a true pair (its similarity is computed exactly); a pair can be missed
only when every round puts its two photos in different parts. ``bench/duplicates.py`` measures
how often that happens against the exact all-pairs answer. The work is matrix products in
NumPy's BLAS, so no index library is needed.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.errors import ClipsearchError

if TYPE_CHECKING:
    from core.library import Library

__all__ = [
    "DEFAULT_THRESHOLD",
    "DuplicateGroup",
    "DuplicatesCancelledError",
    "exact_pairs",
    "find_duplicates",
    "group_pairs",
    "map_members",
    "move_photos",
    "near_duplicate_pairs",
    "TooManyPairsError",
]

DEFAULT_THRESHOLD = 0.95
"""Cosine similarity from which two photos count as near-duplicates."""

LEAF_SIZE = 768
"""Largest block compared all-pairs; larger parts are split again."""

_MAX_SPLIT = 64  # parts per k-means split
_KMEANS_ITERATIONS = 6
_SAMPLE_PER_PART = 40  # training vectors per part of a split
_ROWS_PER_BLOCK = 4096  # rows of one matrix product when a block is compared (memory bound)

MAX_PAIRS = 10_000_000
"""Most pairs found before the search is refused: about 20 bytes each, some 200 MB with their
copies while they are merged. Only a threshold far below what near-duplicates need, or
thousands of copies of one photo, makes more; the error says to raise the threshold."""


class TooManyPairsError(ClipsearchError):
    """More than :data:`MAX_PAIRS` pairs are at the threshold or above."""


class DuplicatesCancelledError(ClipsearchError):
    """The caller's cancel event was set."""

    exit_code = 130


@dataclass(frozen=True)
class DuplicateGroup:
    """Photos whose embeddings are nearly the same.

    Attributes
    ----------
    members
        Row indices (or photo ids, once mapped), ascending; at least two.
    similarity
        The lowest similarity among the pairs that joined the group: every member is at least
        this similar to some other member.
    """

    members: tuple[int, ...]
    similarity: float


def find_duplicates(
    library: Library,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    folder: Path | None = None,
    cancel: threading.Event | None = None,
) -> list[DuplicateGroup]:
    """Groups of near-duplicate photos among the library's indexed photos.

    Parameters
    ----------
    library
        The library; its model's embeddings are compared.
    threshold
        Cosine similarity from which two photos count as near-duplicates, in ``(0, 1]``.
    folder
        Only photos inside this folder (at any depth).
    cancel
        When set, stops with :class:`DuplicatesCancelledError`.

    Returns
    -------
    list of DuplicateGroup
        Groups of photo ids, largest first; empty for a library with nothing indexed.
    """
    _check_threshold(threshold)
    model_name = library.model_name
    if model_name is None:
        return []
    ids, vectors = library.vectors(model_name, folder=folder)
    pairs, similarity = near_duplicate_pairs(vectors, threshold, cancel=cancel)
    return map_members(group_pairs(pairs, similarity), ids)


def near_duplicate_pairs(
    vectors: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    leaf_size: int = LEAF_SIZE,
    rounds: int = 3,
    seed: int = 0,
    cancel: threading.Event | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows whose cosine similarity is at least ``threshold``, without all pairs.

    Parameters
    ----------
    vectors
        ``[N, D] float32``, rows L2-normalised. Rows that are not finite take no part.
    threshold
        Cosine similarity in ``(0, 1]``.
    leaf_size
        Largest block compared all-pairs. With ``N <= leaf_size`` the answer is exact.
    rounds
        Independent random splits whose pairs are joined; more rounds find more pairs.
    seed
        Seed of the random splits, for repeatable results.
    cancel
        When set, stops with :class:`DuplicatesCancelledError` at the next block.

    Returns
    -------
    pairs : numpy.ndarray
        ``[P, 2] int64``, ``i < j``, sorted, no repeats.
    similarity : numpy.ndarray
        ``[P] float32``, each pair's similarity.
    """
    _check_threshold(threshold)
    x = _usable(vectors)
    rows = np.flatnonzero(np.isfinite(x).all(axis=1))
    if len(rows) < 2:
        return _no_pairs()
    x = np.ascontiguousarray(x[rows]) if len(rows) < len(x) else x
    rng = np.random.default_rng(seed)
    pairs, similarity = _no_pairs()
    # Blocks are small: BLAS threads would spin more than they work (4x the CPU time, measured
    # on a busy 2-core machine), so each block runs on one thread, and blocks run side by side.
    # Each round's pairs are merged into those found before (a pair found again is kept once),
    # so that what is held stays within about twice MAX_PAIRS.
    with _one_blas_thread(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for _ in range(1 if len(x) <= leaf_size else max(1, rounds)):
            counted = _PairCount()
            found: list[Future[tuple[np.ndarray, np.ndarray]]] = []
            for block in _blocks(x, np.arange(len(x)), leaf_size, rng, cancel):
                if counted.exceeded():
                    break
                found.append(pool.submit(_counted_block_pairs, x, block, threshold, counted))
            results = [future.result() for future in found]
            if counted.exceeded():
                raise _too_many(threshold)
            pairs, similarity = _merge([(pairs, similarity), *results])
            if len(pairs) > MAX_PAIRS:
                raise _too_many(threshold)
    return rows[pairs] if len(pairs) else pairs, similarity


def _too_many(threshold: float) -> TooManyPairsError:
    return TooManyPairsError(
        f"more than {MAX_PAIRS:,} pairs of photos are at similarity {threshold} or more (a "
        "threshold far too low, or thousands of copies of the same photos): too many to group; "
        "raise the threshold, or look at one folder at a time (duplicates FOLDER)"
    )


def _counted_block_pairs(
    x: np.ndarray, block: np.ndarray, threshold: float, counted: _PairCount
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_block_pairs`, counted in ``counted``; nothing once the round has too many."""
    if counted.exceeded():
        return _no_pairs()
    result = _block_pairs(x, block, threshold)
    counted.add(len(result[0]))
    return result


class _PairCount:
    """Pairs found so far by the blocks' threads, and whether they passed :data:`MAX_PAIRS`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0

    def add(self, count: int) -> None:
        with self._lock:
            self._total += count

    def exceeded(self) -> bool:
        return self._total > MAX_PAIRS


def exact_pairs(
    vectors: np.ndarray, threshold: float = DEFAULT_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair at or above ``threshold``, comparing all pairs (the reference; ``O(N**2)``).

    Same arguments and results as :func:`near_duplicate_pairs`.
    """
    _check_threshold(threshold)
    x = _usable(vectors)
    rows = np.flatnonzero(np.isfinite(x).all(axis=1))
    if len(rows) < 2:
        return _no_pairs()
    pairs, similarity = _block_pairs(np.ascontiguousarray(x[rows]), np.arange(len(rows)), threshold)
    return rows[pairs] if len(pairs) else pairs, similarity


def group_pairs(pairs: np.ndarray, similarity: np.ndarray) -> list[DuplicateGroup]:
    """Join pairs into groups (connected components), largest group first.

    Parameters
    ----------
    pairs
        ``[P, 2] int64`` row indices.
    similarity
        ``[P] float32``.

    Returns
    -------
    list of DuplicateGroup
        Groups of two or more rows; ties in size are ordered by their first row.
    """
    parent: dict[int, int] = {}

    def root(i: int) -> int:
        parent.setdefault(i, i)
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs.tolist():
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for i in parent:
        members.setdefault(root(i), []).append(i)
    weakest: dict[int, float] = {}
    for (i, _), value in zip(pairs.tolist(), similarity.tolist(), strict=True):
        top = root(i)
        weakest[top] = min(weakest.get(top, 1.0), value)
    groups = [
        DuplicateGroup(tuple(sorted(rows)), float(weakest[top])) for top, rows in members.items()
    ]
    groups.sort(key=lambda group: (-len(group.members), group.members[0]))
    return groups


def map_members(groups: Iterable[DuplicateGroup], ids: np.ndarray) -> list[DuplicateGroup]:
    """The same groups with row indices replaced by ``ids[row]``."""
    return [
        DuplicateGroup(tuple(int(ids[row]) for row in group.members), group.similarity)
        for group in groups
    ]


def move_photos(paths: Iterable[Path], folder: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Move photos into ``folder`` (made if missing), never replacing a file already there.

    Only ever called after the user named the folder and confirmed; nothing is deleted, and a
    photo whose name is taken in ``folder`` stays where it is.

    Returns
    -------
    moved : list of (Path, Path)
        Each photo moved: where it was, where it is now.
    problems : list of str
        One line per photo that was not moved, saying why.
    """
    folder = Path(folder).expanduser().absolute()
    moved: list[tuple[Path, Path]] = []
    problems: list[str] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return moved, [f"cannot make {folder}: {error.strerror or error}"]
    for path in paths:
        source = Path(path)
        target = folder / source.name
        if target.exists() or target.is_symlink():
            problems.append(f"{source}: {target} already exists")
            continue
        try:
            shutil.move(source, target)
        except OSError as error:
            problems.append(f"{source}: {error.strerror or error}")
            continue
        moved.append((source, target))
    return moved, problems


# -- the split ---------------------------------------------------------------------------------


def _blocks(
    x: np.ndarray,
    rows: np.ndarray,
    leaf_size: int,
    rng: np.random.Generator,
    cancel: threading.Event | None,
) -> Iterable[np.ndarray]:
    """Row sets of at most about ``leaf_size`` rows that lie close together (depth first)."""
    stack = [rows]
    while stack:
        if cancel is not None and cancel.is_set():
            raise DuplicatesCancelledError("duplicate search cancelled")
        part = stack.pop()
        if len(part) <= leaf_size:
            yield part
            continue
        children = _split(x, part, min(_MAX_SPLIT, -(-len(part) // leaf_size)), rng)
        if max(len(child) for child in children) >= 0.9 * len(part):
            yield part  # the rows cannot be told apart (copies of one photo): compare them all
            continue
        stack.extend(child for child in children if len(child))


def _split(
    x: np.ndarray, rows: np.ndarray, parts: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Spherical k-means on a sample of ``rows``, then every row to its nearest centroid."""
    sample_size = min(len(rows), parts * _SAMPLE_PER_PART)
    sample = x[rng.choice(rows, size=sample_size, replace=False)]
    centroids = sample[rng.choice(sample_size, size=parts, replace=False)]
    for _ in range(_KMEANS_ITERATIONS):
        nearest = np.argmax(sample @ centroids.T, axis=1)
        members = np.zeros((parts, sample_size), np.float32)
        members[nearest, np.arange(sample_size)] = 1.0
        sums = members @ sample
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        sums[empty] = sample[rng.choice(sample_size, size=int(empty.sum()))]
        norms[empty] = 1.0
        centroids = (sums / norms).astype(np.float32)
    nearest = np.concatenate(
        [
            np.argmax(x[rows[start : start + _ROWS_PER_BLOCK]] @ centroids.T, axis=1)
            for start in range(0, len(rows), _ROWS_PER_BLOCK)
        ]
    )
    order = np.argsort(nearest, kind="stable")
    bounds = np.searchsorted(nearest[order], np.arange(parts + 1))
    return [rows[order[bounds[k] : bounds[k + 1]]] for k in range(parts)]


def _block_pairs(
    x: np.ndarray, rows: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of ``rows`` at or above ``threshold``, in row-block matrix products."""
    block = x[rows]
    found_pairs = []
    found_similarity = []
    for start in range(0, len(rows), _ROWS_PER_BLOCK):
        similarity = block[start : start + _ROWS_PER_BLOCK] @ block[start:].T
        i, j = np.nonzero(np.triu(similarity >= threshold, k=1))
        if len(i):
            found_similarity.append(similarity[i, j].astype(np.float32))
            found_pairs.append(np.stack([rows[i + start], rows[j + start]], axis=1))
    if not found_pairs:
        return _no_pairs()
    pairs = np.sort(np.concatenate(found_pairs), axis=1)  # rows of a block are not ascending
    return pairs, np.concatenate(found_similarity)


def _merge(found: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    found = [item for item in found if len(item[0])]
    if not found:
        return _no_pairs()
    pairs = np.concatenate([p for p, _ in found]).astype(np.int64)
    similarity = np.concatenate([s for _, s in found])
    keys = pairs[:, 0] * (int(pairs.max()) + 1) + pairs[:, 1]
    _, first = np.unique(keys, return_index=True)  # sorted by (i, j), repeats dropped
    return pairs[first], similarity[first]


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Within the block, BLAS matrix products run on the calling thread alone."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # only slower
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _no_pairs() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)


def _usable(vectors: np.ndarray) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"vectors must be [N, D], got shape {x.shape}")
    return x


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ClipsearchError(f"the threshold must be above 0 and at most 1, got {threshold}")
