"""Search the indexed photos: text to image, image to image, image to text, text to text.

Public surface: :func:`parse_query`, :func:`query_vector`, :func:`search`, :func:`similar`,
:func:`describe`, :func:`rank_texts`, and the result types :class:`QueryTerm`, :class:`Hit`,
:class:`Label`.

Query syntax
------------
A query is one or more *terms* joined by ``+`` and ``-``::

    beach + sunset - people
    2:cat + 0.5:"red car"
    ./holiday/IMG_0042.jpg + night
    img:"holiday photos/IMG 0042.jpg" - 2:rain

- **Operators** are a ``+`` or ``-`` standing alone, with white space (or a quote) on both sides.
  ``t-shirt``, ``black-and-white`` and ``c++`` are plain text.
- **Weights** are a positive decimal number and a colon in front of a term: ``2:cat``,
  ``0.5:"red car"``. A colon followed by a digit is not a weight, so ``10:30 at night`` is text.
- **Quotes** are double quotes around a whole term; inside them ``+``, ``-`` and ``:`` lose their
  meaning and ``\\"`` is a literal quote. Single quotes are ordinary text (``Grandma's cat``).
- **Images**: a term is an image when it starts with ``img:`` or looks like a path, that is
  starts with ``/``, ``./``, ``../``, ``~/`` (or ``~user/``) or a drive such as ``C:\\``. A
  name such as ``cat.jpg`` is text (write ``./cat.jpg``). An image that is an indexed photo uses
  its stored embedding; any other image file is encoded.

The query vector is ``normalise(sum(sign * weight * normalise(embedding(term))))``.

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
photos that pass them (:meth:`core.store.Library.photo_ids`) and ranks those rows of the same
copy.

The copy follows the library: when the library changed only by gaining embeddings (an indexing
run that commits a batch every second), the next search reads and appends just the new ones
(:meth:`core.store.Library.vectors_added`); when an embedding was removed or overwritten, it is
mapped again from the vector file, which the indexing run keeps current.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from core import vectorfile
from core.compact import CompactVectors
from core.errors import ClipsearchError
from core.scoring import match_probabilities

if TYPE_CHECKING:
    from PIL import Image

    from core.encoder import ClipModel
    from core.store import Library, PhotoRecord, VectorVersion

TermKind = Literal["text", "image"]

IMAGE_PREFIX = "img:"
"""Prefix that makes a term an image path whatever it looks like."""

DEFAULT_TOP = 20

_WEIGHT = re.compile(r"([0-9.]+):(?![0-9])")
_PATH_LIKE = re.compile(r"(?:/|\.{1,2}[/\\]|~[\w.-]*[/\\]|[A-Za-z]:[/\\])")
_OPERATORS = "+-"
_MIN_NORM = 1e-6


class QueryError(ClipsearchError, ValueError):
    """A query that cannot be parsed or turned into a vector."""


class NoCandidatesError(ClipsearchError):
    """No indexed photo is left to rank (empty library, or filters that match nothing)."""


@dataclass(frozen=True, slots=True)
class QueryTerm:
    """One term of a query.

    Attributes
    ----------
    weight
        Signed weight: ``-2.0`` for ``- 2:cat``.
    kind
        ``"text"`` or ``"image"``.
    value
        The text, or the image path as typed (``~`` not yet expanded).
    """

    weight: float
    kind: TermKind
    value: str


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
    """A text ranked by :func:`describe` or :func:`rank_texts`.

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


# --------------------------------------------------------------------------------------------
# Parsing


def _is_operator_at(text: str, i: int) -> bool:
    """Whether ``text[i]`` is a ``+`` or ``-`` followed by white space, a quote or the end."""
    if i >= len(text) or text[i] not in _OPERATORS:
        return False
    return i + 1 == len(text) or text[i + 1].isspace() or text[i + 1] == '"'


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read a quoted string whose opening quote is at ``start``; return it and the index after."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise QueryError(f"bad query: unbalanced quote at character {start + 1}: {text}")


def _read_bare(text: str, start: int) -> tuple[str, int]:
    """Read unquoted text up to the next operator; return it stripped and the index after."""
    i = start
    while i < len(text):
        char = text[i]
        if char == '"':
            raise QueryError(
                f"bad query: a quote must enclose a whole term (character {i + 1}): {text}"
            )
        if char.isspace() and _is_operator_at(text, _skip_space(text, i)):
            break
        i += 1
    return text[start:i].strip(), i


def _parse_weight(text: str, i: int) -> tuple[float, int]:
    match = _WEIGHT.match(text, i)
    if match is None:
        return 1.0, i
    literal = match.group(1)
    try:
        weight = float(literal)
    except ValueError:
        weight = math.nan
    if not math.isfinite(weight) or weight <= 0:
        raise QueryError(f'bad query: bad weight "{literal}" (expected a positive number): {text}')
    return weight, match.end()


def _classify(value: str, forced_image: bool) -> TermKind:
    if forced_image:
        return "image"
    return "image" if _PATH_LIKE.match(value) else "text"


def parse_query(text: str) -> list[QueryTerm]:
    """Parse a query such as ``beach + 2:sunset - "people"`` into weighted terms.

    Parameters
    ----------
    text
        The query, in the syntax described in this module's documentation.

    Returns
    -------
    list[QueryTerm]
        The terms in order; a term after ``-`` has a negative weight.

    Raises
    ------
    QueryError
        The query is empty, has an unbalanced quote, an empty term (``a + + b``, a leading or
        trailing operator, ``""``), a quote inside a term, or a weight that is not a positive
        finite number.
    """
    if not text.strip():
        raise QueryError("bad query: the query is empty")
    terms: list[QueryTerm] = []
    sign = 1.0
    i = 0
    while True:
        i = _skip_space(text, i)
        term_start = i
        if i >= len(text) or _is_operator_at(text, i):
            where = "at the end" if i >= len(text) else f"at character {i + 1}"
            raise QueryError(f"bad query: empty term {where}: {text}")
        weight, i = _parse_weight(text, i)
        forced_image = text.startswith(IMAGE_PREFIX, i)
        if forced_image:
            i += len(IMAGE_PREFIX)
        if i < len(text) and text[i] == '"':
            value, i = _read_quoted(text, i)
            i = _skip_space(text, i)
            if i < len(text) and not _is_operator_at(text, i):
                raise QueryError(
                    f"bad query: expected + or - after the quoted term (character {i + 1}): {text}"
                )
        else:
            value, i = _read_bare(text, i)
            i = _skip_space(text, i)
        if not value.strip():
            raise QueryError(f"bad query: empty term at character {term_start + 1}: {text}")
        kind = _classify(value, forced_image)
        terms.append(QueryTerm(sign * weight, kind, value if kind == "image" else value.strip()))
        if i >= len(text):
            return terms
        sign = 1.0 if text[i] == "+" else -1.0
        i += 1


# --------------------------------------------------------------------------------------------
# Vectors


def _normalised(vector: np.ndarray, what: str) -> np.ndarray:
    """Return ``vector`` ``[D]`` scaled to unit length in float32; refuse zero or non-finite."""
    vector = np.asarray(vector, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm):
        raise QueryError(f"{what} is not a finite vector")
    if norm < _MIN_NORM:
        raise QueryError(f"{what} is a zero vector (do the query terms cancel out?)")
    return (vector / norm).astype(np.float32)


def _image_path(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise QueryError(f"image not found: {value}")
    return path


def _record_for(library: Library, path: Path) -> PhotoRecord | None:
    """The library's record of ``path``, as typed or with symbolic links resolved."""
    for candidate in dict.fromkeys((path.absolute(), path.resolve())):
        record = library.record_for_path(candidate)
        if record is not None:
            return record
    return None


def _stored_vector(library: Library | None, path: Path, model: ClipModel) -> np.ndarray | None:
    """Return the stored embedding ``[D] float32`` of ``path`` when it is an indexed photo."""
    if library is None:
        return None
    record = _record_for(library, path)
    if record is None:
        return None
    vector = library.vector_for(record.id, model.name)
    if vector is None:
        return None
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    return vector if vector.shape == (model.embed_dim,) and np.isfinite(vector).all() else None


def _image_vector(
    model: ClipModel, image: str | os.PathLike[str], library: Library | None
) -> np.ndarray:
    """Return the embedding ``[D] float32`` of an image file: stored if indexed, else encoded."""
    path = _image_path(os.fspath(image))
    stored = _stored_vector(library, path, model)
    if stored is not None:
        return stored
    return model.encode_images([path])[0]


def query_vector(
    model: ClipModel, terms: Sequence[QueryTerm], library: Library | None = None
) -> np.ndarray:
    """Combine weighted query terms into one unit vector.

    Parameters
    ----------
    model
        Encodes the text terms (in one batch) and the image terms that are not indexed photos.
    terms
        From :func:`parse_query`.
    library
        When given, an image term that is an indexed photo uses its stored embedding.

    Returns
    -------
    np.ndarray
        ``[D] float32``, L2-normalised: ``normalise(sum(weight * normalise(embedding)))``.

    Raises
    ------
    QueryError
        No terms, an image that does not exist, or terms that cancel out.
    """
    if not terms:
        raise QueryError("bad query: the query is empty")
    texts = [term.value for term in terms if term.kind == "text"]
    text_vectors = iter(model.encode_texts(texts)) if texts else iter(())
    total = np.zeros(model.embed_dim, np.float64)
    for term in terms:
        if term.kind == "text":
            embedding = next(text_vectors)
        else:
            embedding = _image_vector(model, term.value, library)
        total += term.weight * _normalised(embedding, f'the embedding of "{term.value}"')
    return _normalised(total, "the query")


# --------------------------------------------------------------------------------------------
# Ranking


def _best(scores: np.ndarray, count: int) -> np.ndarray:
    """Positions of the ``count`` largest scores, in no order: O(N) with ``np.argpartition``."""
    n = len(scores)
    if count >= n:
        return np.arange(n)
    return np.argpartition(scores, n - count)[n - count :]


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


def _compact_vectors(library: Library, model_name: str) -> CompactVectors:
    """The library's vectors, quantised, kept for later searches and brought up to date.

    Reuses the copy while :attr:`~core.store.Library.vector_version` stays the same, and appends
    the embeddings written since when nothing was removed (an indexing run commits a batch every
    second or so), until the appended rows pass an eighth of the copy. Otherwise it maps the
    vector file beside the database (:func:`core.vectorfile.load`), and only when there is
    none that can be used, quantises the database's vectors in memory. Locks are taken in one
    order: the library's (:meth:`~core.store.Library.snapshot`), then the cache's.
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
        compact = vectorfile.load(library, model_name)
        if compact is None:
            ids, matrix = library.vectors(model_name)
            compact = CompactVectors.build(ids, matrix)
            del ids, matrix
        _return_freed_memory()
        _cache[key] = _Cached(identity, model_name, version, compact)
        while len(_cache) > _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        return compact


def _check_model(library: Library, model: ClipModel) -> None:
    from core.store import ModelMismatchError

    indexed_with = library.model_name
    if indexed_with is not None and indexed_with != model.name:
        raise ModelMismatchError(
            f"this library was indexed with model {indexed_with!r} but {model.name!r} is "
            f"loaded: use --model {indexed_with}, or re-index it with {model.name!r} "
            f"(clipsearch-tui index --model {model.name} --reindex)"
        )


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
    _check_model(library, model)
    with library.snapshot():  # the copy and the filtered ids describe the same moment
        compact = _compact_vectors(library, model.name)
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


def _rank(
    library: Library,
    model: ClipModel,
    found: _Candidates,
    query: np.ndarray,
    top: int,
    first: int | None = None,
) -> list[Hit]:
    """Score every candidate, keep the ``top`` best (``first`` always first when present)."""
    ids = found.ids
    scores = found.compact.scores(query, found.rows)
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
    best = chosen[np.lexsort((ids[chosen], -scores[chosen]))]
    if first is not None:
        at = np.flatnonzero(ids[best] == first)
        best = np.concatenate([best[at], np.delete(best, at)])
    best = best[:top]

    # the model's own rule: a softmax over every candidate (CLIP), or a sigmoid per photo (SigLIP)
    probabilities = match_probabilities(model, scores, best)

    records = {record.id: record for record in library.records(ids[best])}
    hits: list[Hit] = []
    for index, probability in zip(best, probabilities, strict=True):
        record = records.get(int(ids[index]))
        if record is not None:
            hits.append(Hit(len(hits) + 1, record, float(scores[index]), float(probability)))
    return hits


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
        :func:`core.album.wall_time`).
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
    core.store.ModelMismatchError
        The library was indexed with another model.
    NoCandidatesError
        The library is empty, or no indexed photo passes the filters.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    terms = parse_query(query) if isinstance(query, str) else None
    found = _candidates(library, model, since, until, folder)
    if terms is not None:
        vector = query_vector(model, terms, library)
    else:
        vector = _normalised(query, "the query vector")
        if vector.shape != (model.embed_dim,):
            raise QueryError(
                f"the query vector has {vector.shape[0]} dimensions, the model {model.embed_dim}"
            )
    return _rank(library, model, found, vector, top)


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
    path = _image_path(os.fspath(image_path))
    found = _candidates(library, model, since, until, folder)
    record = _record_for(library, path)
    stored = _stored_vector(library, path, model)
    if stored is not None and record is not None:
        vector, first = _normalised(stored, "the image's embedding"), record.id
    else:
        vector, first = _normalised(model.encode_images([path])[0], "the image's embedding"), None
    return _rank(library, model, found, vector, top, first)


def _rank_labels(model: ClipModel, query: np.ndarray, labels: Sequence[str]) -> list[Label]:
    texts = list(labels)
    if not texts:
        raise QueryError("give at least one label")
    if any(not text.strip() for text in texts):
        raise QueryError("a label is empty")
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
        Candidate descriptions, e.g. ``["a cat", "a dog", "a car"]``.
    library
        When given and ``image`` is one of its indexed photos, its stored embedding is used.

    Returns
    -------
    list[Label]
        All labels, best first; for CLIP models the probabilities are a softmax over the labels
        and sum to 1, for SigLIP models each is its own sigmoid (:mod:`core.scoring`).
    """
    if isinstance(image, (str, os.PathLike)):
        embedding = _image_vector(model, image, library)
    else:
        embedding = model.encode_images([image])[0]
    return _rank_labels(model, _normalised(embedding, "the image's embedding"), labels)


def rank_texts(model: ClipModel, query: str, texts: Sequence[str]) -> list[Label]:
    """Rank texts by similarity to a query (text to text).

    Parameters
    ----------
    query
        A query string; the arithmetic of :func:`parse_query` applies.
    texts
        Texts to rank.

    Returns
    -------
    list[Label]
        All texts, best first, with probabilities by the model's rule (:mod:`core.scoring`).
    """
    vector = query_vector(model, parse_query(query))
    return _rank_labels(model, vector, texts)
