"""Ranking the indexed photos: text to image, image to image, image to text, text to text.

Public surface: :func:`search`, :func:`search_pages`, :func:`similar`, :func:`describe` and
:func:`check_labels`, and the result types :class:`Hit` and :class:`Label`. Queries are parsed
by :mod:`core.query`; the compact copy of the vectors that a search scores comes from
:mod:`core.vector_cache`.

Scores and probabilities
------------------------
``score`` is the cosine similarity of the query vector and the photo's embedding.
``probability`` follows the model's training loss (:mod:`core.scoring`): for CLIP models, the
softmax of ``model.logit_scale * score`` over every candidate photo (all indexed photos that pass
the filters, not only the ones returned), computed in float64 after subtracting the largest
value; for SigLIP models, ``sigmoid(model.logit_scale * score + model.logit_bias)`` for each photo
on its own. Rows whose score is not finite (a damaged vector) are left out of
the candidates; NaN and infinity never reach a result.

Ranking
-------
A search ranks a compact copy of the library's vectors (:mod:`core.compact`): int8 codes with
one scale per row (about ``D + 12`` bytes a photo instead of ``4 * D + 8``), memory-mapped from
the vector file beside the database (:mod:`core.vectorfile`), so that the first search of a
process reads no float32 vector but the ones it re-scores. Its scores are within about 2e-3 of
the exact ones; the best ``max(4 * top, top + 100)`` by those scores are found with
``np.argpartition`` and scored again with their stored float32 vectors, so the scores returned,
and their order, are exact. A search with filters asks the library only for the ids of the
photos that pass them (:meth:`core.library.Library.photo_ids`) and ranks those rows of the same
copy.

The copy follows the library: when the library changed only by gaining embeddings (an indexing
run that commits a batch every second), the next search reads and appends just the new ones
(:meth:`core.library.Library.vectors_added`); when an embedding was removed or overwritten, it is
mapped again from the vector file, which the indexing run keeps current.

From :data:`core.ann.APPROXIMATE_FROM` photos on, a search without filters takes its candidates
from the approximate index beside the database instead of a pass over every row (when it is
current enough, see :mod:`core.ann`); they are re-scored the same way, and the part of the
softmax that comes from the other photos is estimated from a random sample of them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core import ann
from core.compact import CompactVectors
from core.errors import ClipsearchError
from core.query import (
    MAX_LABELS,
    QueryError,
    existing_image,
    image_vector,
    normalised,
    parse_query,
    query_vector,
    record_for,
    stored_vector,
)
from core.scoring import match_probabilities
from core.vector_cache import compact_vectors

if TYPE_CHECKING:
    from PIL import Image

    from core.encoder import ClipModel
    from core.library import Library, PhotoRecord

DEFAULT_TOP = 20


class NoCandidatesError(ClipsearchError):
    """No indexed photo is left to rank (empty library, or filters that match nothing)."""


@dataclass(frozen=True, slots=True)
class Hit:
    """A photo found by :func:`search` or :func:`similar`.

    Attributes
    ----------
    rank
        1 for the best match.
    photo
        The photo's record in the library.
    score
        Cosine similarity with the query, in ``[-1, 1]``.
    probability
        Softmax of ``logit_scale * score`` over all candidates.
    """

    rank: int
    photo: PhotoRecord
    score: float
    probability: float


@dataclass(frozen=True, slots=True)
class Label:
    """A text ranked by :func:`describe`.

    Attributes
    ----------
    label
        The text.
    score
        Cosine similarity with the image (or query).
    probability
        Softmax of ``logit_scale * score`` over all the texts given.
    """

    label: str
    score: float
    probability: float


def _best(scores: np.ndarray, count: int) -> np.ndarray:
    """Positions of the ``count`` largest scores, in no order: O(N) with ``np.argpartition``."""
    n = len(scores)
    if count >= n:
        return np.arange(n)
    return np.argpartition(scores, n - count)[n - count :]


def _describe_filters(
    since: datetime | None, until: datetime | None, folder: str | os.PathLike[str] | None
) -> str:
    parts = []
    if folder is not None:
        parts.append(f"in {os.fspath(folder)}")
    if since is not None:
        parts.append(f"taken on or after {since.isoformat(sep=' ')}")
    if until is not None:
        parts.append(f"taken before {until.isoformat(sep=' ')}")
    return ", ".join(parts)


@dataclass(slots=True)
class _Candidates:
    """The photos a search ranks: their ids ``[N] int64`` and rows of the compact copy.

    ``rows`` is None when every row is a candidate.
    """

    ids: np.ndarray
    compact: CompactVectors
    rows: np.ndarray | None = None


def _candidates(
    library: Library,
    model: ClipModel,
    since: datetime | None,
    until: datetime | None,
    folder: str | os.PathLike[str] | None,
) -> _Candidates:
    """Fetch what a search ranks; raise :class:`NoCandidatesError` when nothing is left."""
    library.check_model(model.name, model.weights)
    with library.snapshot():  # the copy and the filtered ids describe the same moment
        compact = compact_vectors(library, model.name)
        if since is None and until is None and folder is None:
            found = _Candidates(compact.ids, compact)
        else:
            wanted = library.photo_ids(
                model.name,
                since=since,
                until=until,
                folder=None if folder is None else Path(folder),
            )
            rows = compact.rows_of(wanted)
            found = _Candidates(compact.ids[rows], compact, rows)
    if len(found.ids) == 0:
        filters = _describe_filters(since, until, folder)
        if filters:
            raise NoCandidatesError(f"no indexed photos match: none {filters}")
        raise NoCandidatesError(
            "no indexed photos match: the library has no indexed photos yet; "
            "index a folder first (clipsearch-tui index FOLDER)"
        )
    if compact.dim != model.embed_dim:
        raise NoCandidatesError(
            f"no indexed photos match: the stored embeddings have {compact.dim} dimensions but "
            f"model {model.name!r} makes {model.embed_dim}; re-index the library with this model"
        )
    return found


def _rescore_count(top: int) -> int:
    """How many of the best approximate candidates are re-scored exactly."""
    return max(4 * top, top + 100)


def _exact_scores(
    library: Library, model: ClipModel, ids: np.ndarray, query: np.ndarray
) -> np.ndarray:
    """Exact cosine of the stored float32 vectors of ``ids`` with ``query``; NaN where missing."""
    out = np.full(len(ids), np.nan, np.float32)
    vectors = library.vectors_for(ids, model.name)
    for i, photo_id in enumerate(ids):
        vector = vectors.get(int(photo_id))
        if vector is not None and vector.shape == query.shape:
            out[i] = float(np.dot(vector, query))
    return out


def _approximate_for(library: Library, found: _Candidates) -> ann.ApproximateIndex | None:
    """The approximate index to take ``found``'s candidates from, or None to score every row.

    The one rule for every search: only without filters, only from
    :data:`core.ann.APPROXIMATE_FROM` candidates on, and only while the library's index is
    current enough (:meth:`core.ann.ApproximateIndex.usable`).
    """
    if found.rows is not None or len(found.ids) < ann.APPROXIMATE_FROM:
        return None
    return _approximate_index(library)


def _ranked(
    library: Library,
    model: ClipModel,
    found: _Candidates,
    query: np.ndarray,
    tops: Sequence[int],
    first: int | None = None,
) -> Iterator[list[Hit]]:
    """The ``top`` best candidates for each length in ``tops`` (``first`` always first if present).

    Decides once between the approximate index and a pass over every candidate
    (:func:`_approximate_for`); the pass, when made, is made once for all lengths, and not before
    the approximate index has failed to give candidates.
    """
    approximate = _approximate_for(library, found)
    scores: np.ndarray | None = None
    for index, top in enumerate(tops):
        if approximate is not None:
            hits = _rank_approximate(library, model, found, approximate, query, top, first)
            if hits is not None:
                yield hits
                continue
        if scores is None:
            scores = found.compact.scores(query, found.rows)
        mine = scores if index == len(tops) - 1 else scores.copy()  # the last may change them
        yield _rank_exact(library, model, found, query, top, first, mine)


def _rank_exact(
    library: Library,
    model: ClipModel,
    found: _Candidates,
    query: np.ndarray,
    top: int,
    first: int | None,
    scores: np.ndarray,
) -> list[Hit]:
    """The ``top`` best candidates; ``scores`` are all their int8 scores (changed in place)."""
    ids = found.ids
    chosen = _best(scores, _rescore_count(top))
    if first is not None:
        chosen = np.union1d(chosen, np.flatnonzero(ids == first))
    scores[chosen] = _exact_scores(library, model, ids[chosen], query)
    finite = np.isfinite(scores)
    if not finite.all():
        keep = np.flatnonzero(finite)
        chosen = np.flatnonzero(np.isin(keep, chosen, assume_unique=True))
        ids, scores = ids[keep], scores[keep]
        if len(ids) == 0:
            raise NoCandidatesError(
                "no indexed photos match: every stored embedding is damaged; re-index the library"
            )
    np.clip(scores, -1.0, 1.0, out=scores)
    return _hits(library, model, ids, scores, chosen, top, first)


def _hits(
    library: Library,
    model: ClipModel,
    ids: np.ndarray,
    scores: np.ndarray,
    chosen: np.ndarray,
    top: int,
    first: int | None,
    others: tuple[np.ndarray, float] | None = None,
) -> list[Hit]:
    """The ``top`` best of the ``chosen`` positions (exact, finite ``scores``) as hits."""
    best = chosen[np.lexsort((ids[chosen], -scores[chosen]))]
    if first is not None:
        at = np.flatnonzero(ids[best] == first)
        best = np.concatenate([best[at], np.delete(best, at)])
    best = best[:top]

    # the model's own rule: a softmax over every candidate (CLIP), or a sigmoid per photo (SigLIP)
    probabilities = match_probabilities(model, scores, best, others)

    records = {record.id: record for record in library.records(ids[best])}
    hits: list[Hit] = []
    for index, probability in zip(best, probabilities, strict=True):
        record = records.get(int(ids[index]))
        if record is not None:
            hits.append(Hit(len(hits) + 1, record, float(scores[index]), float(probability)))
    return hits


_approximate: dict[str, tuple[tuple[int, int], ann.ApproximateIndex]] = {}
_approximate_lock = threading.Lock()


def _approximate_index(library: Library) -> ann.ApproximateIndex | None:
    """The library's approximate index when it can be used now (loaded once per file)."""
    _, meta_path = ann.paths(library.path)
    try:
        stat = os.stat(meta_path)
    except OSError:
        return None
    stamp = (stat.st_ino, stat.st_mtime_ns)
    with _approximate_lock:
        kept = _approximate.get(str(library.path))
    if kept is None or kept[0] != stamp:
        loaded = ann.load(library)
        if loaded is None:
            return None
        kept = (stamp, loaded)
        with _approximate_lock:
            _approximate[str(library.path)] = kept
    return kept[1] if kept[1].usable(library.vector_version, library.indexed_count()) else None


def _rank_approximate(
    library: Library,
    model: ClipModel,
    found: _Candidates,
    approximate: ann.ApproximateIndex,
    query: np.ndarray,
    top: int,
    first: int | None,
) -> list[Hit] | None:
    """Rank with the approximate index's candidates (see :mod:`core.ann`); None to go exact."""
    picked = approximate.candidates(query, _rescore_count(top))
    added_ids, _ = library.vectors_added(model.name, approximate.revision)
    wanted = np.union1d(picked, added_ids)
    if first is not None:
        wanted = np.union1d(wanted, [first])
    scores = _exact_scores(library, model, wanted, query)
    keep = np.isfinite(scores)
    ids, scores = wanted[keep], np.clip(scores[keep], -1.0, 1.0)
    if not len(ids):
        return None
    # the rest of the softmax's denominator, from the int8 scores of a random sample of photos
    total = len(found.ids)
    rng = np.random.default_rng()
    sample = np.sort(rng.choice(total, min(total, ann.SAMPLE_ROWS), replace=False))
    sample = sample[~np.isin(found.ids[sample], ids)]
    sampled = found.compact.scores(query, sample)
    sampled = sampled[np.isfinite(sampled)]
    weight = (total - len(ids)) / max(1, len(sampled))
    return _hits(library, model, ids, scores, np.arange(len(ids)), top, first, (sampled, weight))


def search(
    library: Library,
    model: ClipModel,
    query: str | np.ndarray,
    *,
    top: int = DEFAULT_TOP,
    since: datetime | None = None,
    until: datetime | None = None,
    folder: str | os.PathLike[str] | None = None,
) -> list[Hit]:
    """Rank the indexed photos by similarity to a query.

    Parameters
    ----------
    library
        The index to search.
    model
        The model the library was indexed with; encodes the query.
    query
        A query string (see the module documentation) or a query vector ``[D]`` (normalised
        here).
    top
        Largest number of hits to return.
    since, until
        Only photos taken in ``since <= taken_at < until`` (wall-clock times, see
        :func:`core.capture_time.wall_time`).
    folder
        Only photos under this folder.

    Returns
    -------
    list[Hit]
        At most ``top`` hits, best first, ranked 1, 2, ...; ties are ordered by photo id.

    Raises
    ------
    QueryError
        The query cannot be parsed, names a missing image, or cancels out.
    core.database.ModelMismatchError
        The library was indexed with another model.
    NoCandidatesError
        The library is empty, or no indexed photo passes the filters.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    found, vector = _query_and_candidates(library, model, query, since, until, folder)
    return next(_ranked(library, model, found, vector, (top,)))


def search_pages(
    library: Library,
    model: ClipModel,
    query: str | np.ndarray,
    tops: Sequence[int],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    folder: str | os.PathLike[str] | None = None,
) -> Iterator[list[Hit]]:
    """:func:`search` for several lengths of one ranking: a first screenful, then the full list.

    The query is parsed and encoded once, and the choice between the approximate index and a
    pass over every candidate is the one :func:`search` makes. Without the index every candidate
    is scored once for all lengths; each length then only re-scores exactly its best candidates
    and fetches their records. With it, no length scores every candidate: each takes its
    candidates from the index as :func:`search` does. A caller that stops iterating never pays
    for the longer lists.

    Parameters
    ----------
    tops
        The lengths wanted, in the order the lists are to come (each at least 1).
    library, model, query, since, until, folder
        As for :func:`search`.

    Yields
    ------
    list[Hit]
        For each length in ``tops``, what :func:`search` with that ``top`` returns.
    """
    if not tops or min(tops) < 1:
        raise ValueError(f"every top must be at least 1, got {list(tops)}")
    found, vector = _query_and_candidates(library, model, query, since, until, folder)
    yield from _ranked(library, model, found, vector, tops)


def _query_and_candidates(
    library: Library,
    model: ClipModel,
    query: str | np.ndarray,
    since: datetime | None,
    until: datetime | None,
    folder: str | os.PathLike[str] | None,
) -> tuple[_Candidates, np.ndarray]:
    """Parse the query (syntax errors before anything is read), fetch the candidates, encode."""
    terms = parse_query(query) if isinstance(query, str) else None
    found = _candidates(library, model, since, until, folder)
    if terms is not None:
        vector = query_vector(model, terms, library)
    else:
        vector = normalised(np.asarray(query), "the query vector")
        if vector.shape != (model.embed_dim,):
            raise QueryError(
                f"the query vector has {vector.shape[0]} dimensions, the model {model.embed_dim}"
            )
    return found, vector


def similar(
    library: Library,
    model: ClipModel,
    image_path: str | os.PathLike[str],
    *,
    top: int = DEFAULT_TOP,
    since: datetime | None = None,
    until: datetime | None = None,
    folder: str | os.PathLike[str] | None = None,
) -> list[Hit]:
    """Rank the indexed photos by similarity to an image.

    Parameters
    ----------
    image_path
        An indexed photo (its stored embedding is used) or any image file (encoded now).
    top, since, until, folder
        As for :func:`search`.

    Returns
    -------
    list[Hit]
        When ``image_path`` is an indexed photo that passes the filters, it is hit 1 (score 1),
        ahead of any exact duplicates.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    path = existing_image(os.fspath(image_path))
    found = _candidates(library, model, since, until, folder)
    record = record_for(library, path)
    stored = stored_vector(library, path, model)
    if stored is not None and record is not None:
        vector, first = normalised(stored, "the image's embedding"), record.id
    else:
        vector, first = normalised(model.encode_images([path])[0], "the image's embedding"), None
    return next(_ranked(library, model, found, vector, (top,), first))


def check_labels(labels: Sequence[str]) -> list[str]:
    """Check the labels of :func:`describe` before anything is encoded; return them as a list.

    Raises
    ------
    QueryError
        No label, an empty one, or more than :data:`core.query.MAX_LABELS`.
    """
    texts = list(labels)
    if not texts:
        raise QueryError("give at least one label")
    if len(texts) > MAX_LABELS:
        raise QueryError(f"give at most {MAX_LABELS} labels (these are {len(texts)})")
    if any(not text.strip() for text in texts):
        raise QueryError("a label is empty")
    return texts


def _rank_labels(model: ClipModel, query: np.ndarray, texts: list[str]) -> list[Label]:
    """Rank ``texts`` (checked by :func:`check_labels`) against a unit vector ``[D]``."""
    vectors = model.encode_texts(texts)
    scores = np.clip(vectors.astype(np.float64) @ query.astype(np.float64), -1.0, 1.0)
    if not np.isfinite(scores).all():
        raise QueryError("the model produced a non-finite embedding for a label")
    probabilities = match_probabilities(model, scores)
    order = sorted(range(len(texts)), key=lambda i: (-scores[i], i))
    return [Label(texts[i], float(scores[i]), float(probabilities[i])) for i in order]


def describe(
    model: ClipModel,
    image: str | os.PathLike[str] | Image.Image,
    labels: Sequence[str],
    *,
    library: Library | None = None,
) -> list[Label]:
    """Rank texts by how well they describe an image (zero-shot classification).

    Parameters
    ----------
    model
        Encodes the labels, and the image unless it is an indexed photo of ``library``.
    image
        An image file path or a PIL image.
    labels
        Candidate descriptions, e.g. ``["a cat", "a dog", "a car"]``: from 1 to
        :data:`core.query.MAX_LABELS`, none empty (:func:`check_labels`).
    library
        When given and ``image`` is one of its indexed photos, its stored embedding is used.

    Returns
    -------
    list[Label]
        All labels, best first; for CLIP models the probabilities are a softmax over the labels
        and sum to 1, for SigLIP models each is its own sigmoid (:mod:`core.scoring`).

    Raises
    ------
    QueryError
        The labels fail :func:`check_labels`, or the image file does not exist.
    """
    texts = check_labels(labels)  # before the image is read or encoded
    if isinstance(image, (str, os.PathLike)):
        embedding = image_vector(model, image, library)
    else:
        embedding = model.encode_images([image])[0]
    return _rank_labels(model, normalised(embedding, "the image's embedding"), texts)
