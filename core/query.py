"""The query language: a typed query parsed into weighted terms and turned into one vector.

Public surface: :func:`parse_query`, :func:`query_vector`, :class:`QueryTerm`, the limits
:data:`MAX_TERMS`, :data:`MIN_WEIGHT`, :data:`MAX_WEIGHT` and :data:`MAX_LABELS`; the helpers
:func:`normalised`, :func:`existing_image`, :func:`record_for`, :func:`stored_vector` and
:func:`image_vector` that ranking shares.

Query syntax
------------
A query is one or more *terms* joined by ``+`` and ``-``::

    beach + sunset - people
    2:cat + 0.5:"red car"
    ./holiday/IMG_0042.jpg + night
    img:"holiday photos/IMG 0042.jpg" - 2:rain

- **Operators** are a ``+`` or ``-`` standing alone, with white space (or a quote) on both sides.
  ``t-shirt``, ``black-and-white`` and ``c++`` are plain text.
- **Weights** are a decimal number from :data:`MIN_WEIGHT` (0.001) to :data:`MAX_WEIGHT`
  (1000) and a colon in front of a term: ``2:cat``, ``0.5:"red car"``. A colon followed by a
  digit is not a weight, so ``10:30 at night`` is text.
- **Quotes** are double quotes around a whole term; inside them ``+``, ``-`` and ``:`` lose their
  meaning and ``\\"`` is a literal quote. Single quotes are ordinary text (``Grandma's cat``).
- **Images**: a term is an image when it starts with ``img:``, or when it looks like a path
  (starts with ``/``, ``./``, ``../``, ``~/`` (or ``~user/``) or a drive such as ``C:\\``) and
  either names an existing file or ends in a photo suffix (``.jpg``, ``.png``, ...): so
  ``/a red car`` is text, and a mistyped ``./cat.jpg`` is reported as a missing image. A
  name such as ``cat.jpg`` is text (write ``./cat.jpg``). An image that is an indexed photo uses
  its stored embedding; any other image file is encoded.
- **Size**: a query has at most :data:`MAX_TERMS` (64) terms, far more than a person types; a
  longer one is refused when it is parsed, before any term is looked up or encoded.

The query vector is ``normalise(sum(sign * weight * normalise(embedding(term))))``.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from core.errors import ClipsearchError
from core.names import shown

if TYPE_CHECKING:
    from core.encoder import ClipModel
    from core.library import Library, PhotoRecord

TermKind = Literal["text", "image"]

IMAGE_PREFIX = "img:"
"""Prefix that makes a term an image path whatever it looks like."""

MAX_TERMS = 64
"""Most terms a query may have: each is encoded, which takes time and memory."""

MAX_LABELS = 1000
"""Most labels :func:`core.ranking.describe` ranks at once: each is encoded like a term, and a
thousand holds a classifier's whole list (ImageNet has 1000 classes). Kept here, beside
:data:`MAX_TERMS`, so that the command line's help can give it without loading the ranking."""

MIN_WEIGHT = 0.001
"""Smallest weight a term may have. Only the ratios of the weights matter: a million to one is
more than any query needs, and no sum of weights in this range overflows or vanishes."""

MAX_WEIGHT = 1000.0
"""Largest weight a term may have (see :data:`MIN_WEIGHT`)."""

_WEIGHT = re.compile(r"([0-9.]+):(?![0-9])")
_PATH_LIKE = re.compile(r"(?:/|\.{1,2}[/\\]|~[\w.-]*[/\\]|[A-Za-z]:[/\\])")
_PHOTO_SUFFIX = re.compile(
    r"\.(?:jpe?g|png|gif|webp|bmp|tiff?|heic|heif|avif|jxl|dng|cr2|nef|arw)$", re.IGNORECASE
)
_OPERATORS = "+-"
_MIN_NORM = 1e-6


class QueryError(ClipsearchError, ValueError):
    """A query that cannot be parsed or turned into a vector."""


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
    raise QueryError(f"bad query: unbalanced quote at character {start + 1}: {shown(text)}")


def _read_bare(text: str, start: int) -> tuple[str, int]:
    """Read unquoted text up to the next operator; return it stripped and the index after."""
    i = start
    while i < len(text):
        char = text[i]
        if char == '"':
            raise QueryError(
                f"bad query: a quote must enclose a whole term (character {i + 1}): {shown(text)}"
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
    if not MIN_WEIGHT <= weight <= MAX_WEIGHT:  # NaN too
        raise QueryError(
            f'bad query: bad weight "{shown(literal)}" (expected a number from {MIN_WEIGHT:g} to '
            f"{MAX_WEIGHT:g}): {shown(text)}"
        )
    return weight, match.end()


def _classify(value: str, forced_image: bool) -> TermKind:
    if forced_image:
        return "image"
    if not _PATH_LIKE.match(value):
        return "text"
    if _PHOTO_SUFFIX.search(value.strip()):
        return "image"
    try:
        return "image" if Path(value.strip()).expanduser().is_file() else "text"
    except (OSError, ValueError, RuntimeError):  # a name the system cannot look up
        return "text"


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
        trailing operator, ``""``), a quote inside a term, a weight outside
        :data:`MIN_WEIGHT` to :data:`MAX_WEIGHT`, or more than :data:`MAX_TERMS` terms.
    """
    if not text.strip():
        raise QueryError("bad query: the query is empty")
    read = _read_terms(text)
    if len(read) > MAX_TERMS:
        raise QueryError(f"a query has at most {MAX_TERMS} terms (this one has {len(read)})")
    terms: list[QueryTerm] = []
    for weight, forced_image, value in read:
        kind = _classify(value, forced_image)
        terms.append(QueryTerm(weight, kind, value if kind == "image" else value.strip()))
    return terms


def _read_terms(text: str) -> list[tuple[float, bool, str]]:
    """Split a non-empty query into its terms: signed weight, ``img:`` given, value as typed.

    Nothing is looked up on disk here, so that a query of too many terms is refused at the cost
    of reading it.
    """
    terms: list[tuple[float, bool, str]] = []
    sign = 1.0
    i = 0
    while True:
        i = _skip_space(text, i)
        term_start = i
        if i >= len(text) or _is_operator_at(text, i):
            where = "at the end" if i >= len(text) else f"at character {i + 1}"
            raise QueryError(f"bad query: empty term {where}: {shown(text)}")
        weight, i = _parse_weight(text, i)
        forced_image = text.startswith(IMAGE_PREFIX, i)
        if forced_image:
            i += len(IMAGE_PREFIX)
        if i < len(text) and text[i] == '"':
            value, i = _read_quoted(text, i)
            i = _skip_space(text, i)
            if i < len(text) and not _is_operator_at(text, i):
                raise QueryError(
                    "bad query: expected + or - after the quoted term "
                    f"(character {i + 1}): {shown(text)}"
                )
        else:
            value, i = _read_bare(text, i)
            i = _skip_space(text, i)
        if not value.strip():
            raise QueryError(f"bad query: empty term at character {term_start + 1}: {shown(text)}")
        terms.append((sign * weight, forced_image, value))
        if i >= len(text):
            return terms
        sign = 1.0 if text[i] == "+" else -1.0
        i += 1


# --------------------------------------------------------------------------------------------
# Vectors


def normalised(vector: np.ndarray, what: str) -> np.ndarray:
    """Return ``vector`` ``[D]`` scaled to unit length in float32; refuse zero or non-finite."""
    vector = np.asarray(vector, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm):
        raise QueryError(f"{what} is not a finite vector")
    if norm < _MIN_NORM:
        raise QueryError(f"{what} is a zero vector (do the query terms cancel out?)")
    return (vector / norm).astype(np.float32)


def existing_image(value: str) -> Path:
    """The image file ``value`` names (``~`` expanded), checked to be a regular file.

    Raises
    ------
    QueryError
        Nothing is there ("image not found"), it is a folder, a pipe or a device ("not a
        regular file"), or it cannot be looked up (a folder on the way that cannot be read).
    """
    try:
        path = Path(value).expanduser()
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError, RuntimeError, ValueError):
        raise QueryError(f"image not found: {value}") from None  # ValueError: a NUL in the name
    except OSError as error:
        raise QueryError(f"cannot read image {value}: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        raise QueryError(f"image is not a regular file: {value}")
    return path


def record_for(library: Library, path: Path) -> PhotoRecord | None:
    """The library's record of ``path``, as typed or with symbolic links resolved."""
    for candidate in dict.fromkeys((path.absolute(), path.resolve())):
        record = library.record_for_path(candidate)
        if record is not None:
            return record
    return None


def stored_vector(library: Library | None, path: Path, model: ClipModel) -> np.ndarray | None:
    """Return the stored embedding ``[D] float32`` of ``path`` when it is an indexed photo."""
    if library is None:
        return None
    record = record_for(library, path)
    if record is None:
        return None
    vector = library.vector_for(record.id, model.name)
    if vector is None:
        return None
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    return vector if vector.shape == (model.embed_dim,) and np.isfinite(vector).all() else None


def image_vector(
    model: ClipModel, image: str | os.PathLike[str], library: Library | None
) -> np.ndarray:
    """Return the embedding ``[D] float32`` of an image file: stored if indexed, else encoded."""
    path = existing_image(os.fspath(image))
    stored = stored_vector(library, path, model)
    if stored is not None:
        return stored
    encoded: np.ndarray = model.encode_images([path])[0]
    return encoded


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
            embedding = image_vector(model, term.value, library)
        unit = normalised(embedding, f'the embedding of "{term.value}"').astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # a sum that overflows is reported
            total += term.weight * unit
    return normalised(total, "the query")
