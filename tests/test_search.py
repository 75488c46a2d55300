"""Tests for core.query and core.ranking.

Query syntax, query vectors, ranking, probabilities, filters.
"""

from __future__ import annotations

import contextlib
import shutil
import tracemalloc
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from core import compact as compact_mod
from core import ranking, vector_cache
from core.capture_time import wall_time
from core.compact import CompactVectors
from core.database import ModelMismatchError, VectorVersion
from core.encoder import ClipModel
from core.indexer import index
from core.library import Library, PhotoRecord
from core.query import (
    MAX_LABELS,
    MAX_TERMS,
    MAX_WEIGHT,
    MIN_WEIGHT,
    QueryError,
    QueryTerm,
    parse_query,
    query_vector,
)
from core.ranking import (
    NoCandidatesError,
    check_labels,
    describe,
    search,
    search_pages,
    similar,
)
from core.scan import scan
from tests.samples import SAMPLES as SAMPLE_ROOT

SAMPLES = SAMPLE_ROOT / "jpg"

# photos of the test library, by sub-folder; their capture times span 2003 to 2018
LIBRARY_PHOTOS = {
    "trips": ("gps/DSCN0010.jpg", "gps/DSCN0027.jpg", "Canon_40D.jpg", "Nikon_D70.jpg"),
    "home": (
        "orientation/landscape_1.jpg",
        "orientation/portrait_6.jpg",
        "exif-org/kodak-dc240.jpg",
        "Fujifilm_FinePix_E500.jpg",
        "hdr/canon_hdr_NO.jpg",
    ),
}
OUTSIDE_PHOTO = "Pentax_K10D.jpg"


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x)


@pytest.fixture(scope="module")
def indexed(
    tiny_model: ClipModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Library, Path]]:
    """A library of nine real photos in two folders, indexed with the tiny model (read only)."""
    root = tmp_path_factory.mktemp("search-album")
    album = root / "album"
    for folder, names in LIBRARY_PHOTOS.items():
        (album / folder).mkdir(parents=True)
        for name in names:
            shutil.copy2(SAMPLES / name, album / folder / Path(name).name)
    library = Library.open(root / "library.sqlite", thumbnail_dir=root / "thumbnails")
    summary = index(library, tiny_model, [album])
    assert summary.indexed == sum(map(len, LIBRARY_PHOTOS.values())) and not summary.failed
    yield library, album
    library.close()


@pytest.fixture
def empty_library(tmp_path: Path) -> Iterator[Library]:
    with Library.open(tmp_path / "empty.sqlite", thumbnail_dir=tmp_path / "thumbs") as library:
        yield library


def _all_vectors(library: Library, model: ClipModel) -> tuple[np.ndarray, np.ndarray]:
    ids, matrix = library.vectors(model.name)
    return ids, matrix.astype(np.float64)


# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a photo of a cat", [(1.0, "text", "a photo of a cat")]),
        ("beach + sunset - people",
         [(1, "text", "beach"), (1, "text", "sunset"), (-1, "text", "people")]),
        ('2:cat + 0.5:"red car"', [(2.0, "text", "cat"), (0.5, "text", "red car")]),
        ('"beach"+"sunset"', [(1, "text", "beach"), (1, "text", "sunset")]),
        ('"a + b" - c', [(1, "text", "a + b"), (-1, "text", "c")]),
        ('"say \\"cheese\\""', [(1, "text", 'say "cheese"')]),
        ("t-shirt and c++", [(1, "text", "t-shirt and c++")]),
        ("10:30 at night", [(1, "text", "10:30 at night")]),
        ("2019-05-14: birthday", [(1, "text", "2019-05-14: birthday")]),
        ("Grandma's cat", [(1, "text", "Grandma's cat")]),
        ("./holiday/a b.jpg + night", [(1, "image", "./holiday/a b.jpg"), (1, "text", "night")]),
        ("/photos/x.jpg - 3:rain", [(1, "image", "/photos/x.jpg"), (-3, "text", "rain")]),
        ("~/x.png", [(1, "image", "~/x.png")]),
        ('0.5:img:"a + b.jpg"', [(0.5, "image", "a + b.jpg")]),
        ("img:cat.jpg", [(1, "image", "cat.jpg")]),
        ("cat.jpg", [(1, "text", "cat.jpg")]),
    ],
)  # fmt: skip
def test_parse_query(text: str, expected: list[tuple[float, str, str]]) -> None:
    assert parse_query(text) == [QueryTerm(float(w), k, v) for w, k, v in expected]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the query is empty"),
        ("   ", "the query is empty"),
        ('"beach + sunset', "unbalanced quote at character 1"),
        ('beach + "sunset', "unbalanced quote at character 9"),
        ("beach +", "empty term at the end"),
        ("- beach", "empty term at character 1"),
        ("beach + + sunset", "empty term at character 9"),
        ('beach + ""', "empty term at character 9"),
        ("2:", "empty term"),
        ('red "car"', "a quote must enclose a whole term"),
        ('"red" car', "expected + or - after the quoted term"),
        ("0:cat", 'bad weight "0" (expected a number from 0.001 to 1000)'),
        ("0.0001:cat", 'bad weight "0.0001"'),
        ("1000.5:cat", 'bad weight "1000.5"'),
        ("1" + "0" * 307 + ":cat + 1" + "0" * 307 + ":dog", 'bad weight "1000000'),
        ("0." + "0" * 299 + "1:cat", 'bad weight "0.000'),
        ("1" + "0" * 400 + ":cat", 'bad weight "1000000'),
        ("1.2.3:cat", 'bad weight "1.2.3"'),
        ("beach + .:sun", 'bad weight "."'),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(QueryError, match="bad query") as caught:
        parse_query(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "text",
    ['"' + "x" * 100_000, "a + + " + "b" * 100_000, "c" * 100_000 + " + ", "1" * 100_000 + ":cat"],
)
def test_a_long_bad_query_gets_a_short_error(text: str) -> None:
    """The error repeats the query cut in the middle, so any bad query gets one short line."""
    with pytest.raises(QueryError, match="bad query") as caught:
        parse_query(text)
    message = str(caught.value)
    assert len(message) < 400 and "…" in message and "characters)" in message, message[:500]


def test_weights_from_the_smallest_to_the_largest_are_taken() -> None:
    assert (MIN_WEIGHT, MAX_WEIGHT) == (0.001, 1000)  # the numbers the documentation gives
    got = parse_query("0.001:cat - 1000:dog + 1000.0:bird")
    assert [term.weight for term in got] == [0.001, -1000.0, 1000.0]


def test_a_query_vector_of_extreme_weights_is_finite_and_warns_nothing(
    tiny_model: ClipModel,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low = query_vector(tiny_model, parse_query("0.001:people"))
        high = query_vector(tiny_model, parse_query("1000:people + 1000:a red car"))
    people, car = tiny_model.encode_texts(["people", "a red car"]).astype(np.float64)
    np.testing.assert_allclose(low, people, atol=1e-6)
    np.testing.assert_allclose(high, (people + car) / np.linalg.norm(people + car), atol=1e-6)


def test_a_query_has_at_most_max_terms_terms() -> None:
    assert MAX_TERMS == 64  # the number the documentation and the error message give
    most = " + ".join(f"word{i}" for i in range(MAX_TERMS))
    assert len(parse_query(most)) == MAX_TERMS
    for count in (MAX_TERMS + 1, 1000):
        with pytest.raises(QueryError) as caught:
            parse_query(" - ".join(f"word{i}" for i in range(count)))
        assert str(caught.value) == f"a query has at most 64 terms (this one has {count})"


def test_a_query_of_too_many_image_terms_is_refused_before_any_file_is_looked_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked_up: list[Path] = []
    monkeypatch.setattr(Path, "is_file", lambda path: bool(looked_up.append(path)))
    with pytest.raises(QueryError, match="at most 64 terms"):
        parse_query(" + ".join(f"./photo{i}" for i in range(100)))
    assert looked_up == []


# -- query vectors -------------------------------------------------------------------------------


def test_sum_of_terms_is_the_normalised_sum_of_embeddings(tiny_model: ClipModel) -> None:
    a, b, c = tiny_model.encode_texts(["a red car", "a snowy forest", "people"]).astype(np.float64)
    got = query_vector(tiny_model, parse_query("a red car + a snowy forest"))
    assert got.dtype == np.float32 and got.shape == (tiny_model.embed_dim,)
    np.testing.assert_allclose(got, _unit(a + b), atol=1e-6)
    got = query_vector(tiny_model, parse_query("2:a red car + 0.5:a snowy forest - people"))
    np.testing.assert_allclose(got, _unit(2 * a + 0.5 * b - c), atol=1e-6)
    got = query_vector(tiny_model, parse_query("a red car - a snowy forest"))
    np.testing.assert_allclose(got, _unit(a - b), atol=1e-6)
    # one term is its own normalised embedding, whatever its weight
    np.testing.assert_allclose(query_vector(tiny_model, parse_query("3:people")), c, atol=1e-6)


def test_terms_that_cancel_out_are_refused(tiny_model: ClipModel) -> None:
    with pytest.raises(QueryError, match="cancel out"):
        query_vector(tiny_model, parse_query("a cat - a cat"))
    with pytest.raises(QueryError, match="empty"):
        query_vector(tiny_model, [])


def test_image_terms_use_stored_vectors_or_encode_the_file(
    indexed: tuple[Library, Path], tiny_model: ClipModel, tmp_path: Path
) -> None:
    library, album = indexed
    photo = album / "trips" / "DSCN0010.jpg"
    record = library.record_for_path(photo)
    assert record is not None
    stored = library.vector_for(record.id, tiny_model.name)
    assert stored is not None
    got = query_vector(tiny_model, parse_query(f"img:{photo}"), library)
    np.testing.assert_array_equal(got, _unit(stored).astype(np.float32))

    outside = tmp_path / "outside.jpg"
    shutil.copy2(SAMPLES / OUTSIDE_PHOTO, outside)
    encoded = tiny_model.encode_images([outside])[0]
    text = tiny_model.encode_texts(["night"])[0]
    got = query_vector(tiny_model, parse_query(f"{outside} + 0.5:night"), library)
    np.testing.assert_allclose(got, _unit(encoded + 0.5 * text.astype(np.float64)), atol=1e-6)

    with pytest.raises(QueryError, match="image not found: ./no-such-photo.jpg"):
        query_vector(tiny_model, parse_query("./no-such-photo.jpg"), library)
    with pytest.raises(QueryError) as caught:
        query_vector(tiny_model, parse_query(f"img:{tmp_path}"), library)
    assert str(caught.value) == f"image is not a regular file: {tmp_path}"
    with pytest.raises(QueryError, match="image is not a regular file: /dev/null"):
        describe(tiny_model, "/dev/null", ["a cat"])
    with pytest.raises(QueryError, match="image is not a regular file"):
        similar(library, tiny_model, tmp_path)


# -- ranking -------------------------------------------------------------------------------------


def test_hits_are_ranked_with_softmax_probabilities_over_all_candidates(
    indexed: tuple[Library, Path], tiny_model: ClipModel
) -> None:
    library, _ = indexed
    ids, matrix = _all_vectors(library, tiny_model)
    query = query_vector(tiny_model, parse_query("a dog running on the beach")).astype(np.float64)
    exact = matrix @ query
    logits = tiny_model.logit_scale * exact
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()

    hits = search(library, tiny_model, "a dog running on the beach", top=100)
    assert [hit.rank for hit in hits] == list(range(1, len(ids) + 1))
    assert [hit.photo.id for hit in hits] == [int(i) for i in ids[np.argsort(-exact)]]
    by_id = dict(zip(ids.tolist(), range(len(ids)), strict=True))
    for hit in hits:
        assert isinstance(hit.photo, PhotoRecord) and hit.photo.path.is_file()
        assert hit.score == pytest.approx(exact[by_id[hit.photo.id]], abs=1e-6)
        assert hit.probability == pytest.approx(softmax[by_id[hit.photo.id]], rel=1e-5)
    assert sum(hit.probability for hit in hits) == pytest.approx(1.0, abs=1e-9)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))

    # fewer hits than candidates: the same first hits, probabilities still over all of them
    top3 = search(library, tiny_model, "a dog running on the beach", top=3)
    assert [(h.photo.id, h.rank) for h in top3] == [(h.photo.id, h.rank) for h in hits[:3]]
    for short, full in zip(top3, hits, strict=False):
        assert short.probability == pytest.approx(full.probability, rel=1e-9)
    assert sum(h.probability for h in top3) < 1.0


def test_a_query_vector_ranks_like_the_same_query_text(
    indexed: tuple[Library, Path], tiny_model: ClipModel
) -> None:
    library, _ = indexed
    vector = query_vector(tiny_model, parse_query("mountains + fog"))
    by_text = search(library, tiny_model, "mountains + fog")
    by_vector = search(library, tiny_model, 3.0 * vector)  # normalised by search
    assert [h.photo.id for h in by_text] == [h.photo.id for h in by_vector]
    np.testing.assert_allclose([h.score for h in by_text], [h.score for h in by_vector], atol=1e-6)
    with pytest.raises(QueryError, match="dimensions"):
        search(library, tiny_model, np.ones(tiny_model.embed_dim + 1, np.float32))
    with pytest.raises(QueryError, match="zero vector"):
        search(library, tiny_model, np.zeros(tiny_model.embed_dim, np.float32))
    with pytest.raises(ValueError, match="top"):
        search(library, tiny_model, vector, top=0)


def test_filters_by_date_range_and_folder(
    indexed: tuple[Library, Path], tiny_model: ClipModel
) -> None:
    library, album = indexed
    ids, _ = library.vectors(tiny_model.name)
    records = library.records(ids)
    times = sorted(wall_time(r.taken_at) for r in records if r.taken_at is not None)
    since, until = times[2], times[-2]  # some photos fall outside on each side
    inside = {
        r.id for r in records if r.taken_at is not None and since <= wall_time(r.taken_at) < until
    }
    assert 0 < len(inside) < len(records)
    hits = search(library, tiny_model, "a house", top=100, since=since, until=until)
    assert {h.photo.id for h in hits} == inside
    assert sum(h.probability for h in hits) == pytest.approx(1.0, abs=1e-9)

    only_since = search(library, tiny_model, "a house", top=100, since=since)
    assert {h.photo.id for h in only_since} == {
        r.id for r in records if r.taken_at is not None and wall_time(r.taken_at) >= since
    }

    hits = search(library, tiny_model, "a house", top=100, folder=album / "home")
    assert sorted(h.photo.path.name for h in hits) == sorted(
        Path(name).name for name in LIBRARY_PHOTOS["home"]
    )
    assert sum(h.probability for h in hits) == pytest.approx(1.0, abs=1e-9)

    with pytest.raises(NoCandidatesError, match=r"no indexed photos match: none in .*nowhere"):
        search(library, tiny_model, "a house", folder=album / "nowhere")
    with pytest.raises(NoCandidatesError, match="taken on or after 2100-01-01"):
        search(library, tiny_model, "a house", since=datetime(2100, 1, 1))


def test_empty_library_and_other_model_are_clear_errors(
    empty_library: Library, indexed: tuple[Library, Path], tiny_model: ClipModel
) -> None:
    with pytest.raises(NoCandidatesError, match="no indexed photos match: .*index a folder first"):
        search(empty_library, tiny_model, "a cat")
    library, album = indexed
    other = SimpleNamespace(
        name="ViT-other", embed_dim=tiny_model.embed_dim, logit_scale=100.0, weights=None
    )
    with pytest.raises(ModelMismatchError, match="indexed with model 'tiny'.*--model tiny"):
        search(library, other, np.ones(tiny_model.embed_dim, np.float32))  # type: ignore[arg-type]
    with pytest.raises(ModelMismatchError):
        similar(library, other, album / "trips" / "DSCN0010.jpg")  # type: ignore[arg-type]


def test_similar_puts_the_photo_itself_first(
    indexed: tuple[Library, Path], tiny_model: ClipModel, tmp_path: Path
) -> None:
    library, album = indexed
    for photo in sorted(album.rglob("*.jpg")):
        hits = similar(library, tiny_model, photo, top=3)
        assert hits[0].photo.path == photo
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert [h.rank for h in hits] == [1, 2, 3]
    # an image outside the library is encoded; a library photo with the same pixels scores ~1
    outside = tmp_path / "copy.jpg"
    shutil.copy2(album / "home" / "canon_hdr_NO.jpg", outside)
    hits = similar(library, tiny_model, outside, top=2)
    assert hits[0].photo.path == album / "home" / "canon_hdr_NO.jpg"
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(QueryError, match="image not found"):
        similar(library, tiny_model, tmp_path / "missing.jpg")


def test_describe(indexed: tuple[Library, Path], tiny_model: ClipModel) -> None:
    library, album = indexed
    photo = album / "trips" / "Canon_40D.jpg"
    labels = ["a cat", "a dog", "a red car", "a mountain"]
    ranked = describe(tiny_model, photo, labels, library=library)
    assert sorted(x.label for x in ranked) == sorted(labels)
    assert sum(x.probability for x in ranked) == pytest.approx(1.0, abs=1e-12)
    image = _unit(tiny_model.encode_images([photo])[0])
    texts = tiny_model.encode_texts(labels).astype(np.float64)
    expected = dict(zip(labels, texts @ image, strict=True))
    for label in ranked:
        assert label.score == pytest.approx(expected[label.label], abs=1e-4)
    assert [x.score for x in ranked] == sorted((x.score for x in ranked), reverse=True)
    logits = tiny_model.logit_scale * np.array([x.score for x in ranked])
    np.testing.assert_allclose(
        [x.probability for x in ranked], np.exp(logits) / np.exp(logits).sum(), rtol=1e-9
    )
    with pytest.raises(QueryError, match="at least one label"):
        describe(tiny_model, photo, [])


def test_describe_ranks_at_most_max_labels_and_refuses_more_before_encoding(
    tiny_model: ClipModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert MAX_LABELS == 1000  # the number the command's help gives
    photo = SAMPLES / "Canon_40D.jpg"
    encoded: list[int] = []
    real = tiny_model.encode_texts

    def counting(texts: list[str]) -> np.ndarray:
        encoded.append(len(texts))
        return real(texts)

    monkeypatch.setattr(tiny_model, "encode_texts", counting)
    with pytest.raises(QueryError) as caught:
        describe(tiny_model, photo, [f"label {i}" for i in range(MAX_LABELS + 1)])
    assert str(caught.value) == "give at most 1000 labels (these are 1001)"
    assert encoded == []
    assert len(check_labels(["a"] * MAX_LABELS)) == MAX_LABELS


# -- a stand-in library: non-finite rows, the compact copy, the cache ------------------------------


class _FakeLibrary:
    """Just what :mod:`core.ranking` reads from a library, over a given matrix.

    Every photo passes every filter; ``vectors_read`` counts the rows handed out by
    :meth:`vectors` and :meth:`vectors_added`.
    """

    def __init__(self, path: Path, matrix: np.ndarray, model_name: str = "fake") -> None:
        self.path = path
        self.vector_file_path = None  # no vector file: the copy is made in memory
        self.model_name = model_name
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.ids = np.arange(1, len(matrix) + 1, dtype=np.int64) * 10
        self.vector_version = VectorVersion(1, 0)
        self.added: list[tuple[int, int]] = []  # (revision, first row it added)
        self.vector_calls = 0
        self.vector_rows = 0
        self.vectors_calls = 0
        self.vectors_read = 0

    @property
    def embed_dim(self) -> int:
        return int(self.matrix.shape[1])

    def check_model(self, model_name: str | None, weights: str | None = None) -> None:
        assert model_name in (None, self.model_name)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        yield

    def replace(self, matrix: np.ndarray) -> None:
        """Overwrite every vector, as a re-index would."""
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        revision, removed, *_ = self.vector_version
        self.vector_version = VectorVersion(revision + 1, removed + len(matrix))

    def add(self, rows: np.ndarray) -> None:
        """Commit one batch of new photos."""
        self.added.append((self.vector_version.revision + 1, len(self.matrix)))
        self.matrix = np.concatenate([self.matrix, rows.astype(np.float32)])
        self.ids = np.arange(1, len(self.matrix) + 1, dtype=np.int64) * 10
        revision, removed, *_ = self.vector_version
        self.vector_version = VectorVersion(revision + 1, removed)

    def vectors(self, model_name: str, **filters: Any) -> tuple[np.ndarray, np.ndarray]:
        assert model_name == self.model_name and not filters
        self.vectors_calls += 1
        self.vectors_read += len(self.ids)
        return self.ids.copy(), self.matrix.copy()

    def vectors_added(self, model_name: str, after: int) -> tuple[np.ndarray, np.ndarray]:
        assert model_name == self.model_name
        first = min((row for revision, row in self.added if revision > after), default=None)
        start = len(self.ids) if first is None else first
        self.vectors_read += len(self.ids) - start
        return self.ids[start:].copy(), self.matrix[start:].copy()

    def photo_ids(self, model_name: str | None = None, **filters: Any) -> np.ndarray:
        return self.ids.copy()

    def vectors_for(self, ids: Any, model_name: str) -> dict[int, np.ndarray]:
        ids = [int(i) for i in ids]
        self.vector_calls += 1
        self.vector_rows += len(ids)
        return {i: self.matrix[i // 10 - 1].copy() for i in ids}

    def records(self, ids: Any) -> list[PhotoRecord]:
        return [
            PhotoRecord(int(i), Path(f"/p/{int(i)}.jpg"), 1, 1, None, None, None, None,
                        "indexed", None, None)
            for i in ids
        ]  # fmt: skip

    def record_for_path(self, path: Any) -> None:
        return None


def _fake_model(dim: int) -> Any:
    return SimpleNamespace(name="fake", embed_dim=dim, logit_scale=100.0, weights=None)


def _random_unit(rows: int, dim: int, seed: int) -> np.ndarray:
    matrix = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@pytest.mark.parametrize("filtered", [False, True], ids=["compact", "exact"])
def test_non_finite_vectors_never_reach_a_result(tmp_path: Path, filtered: bool) -> None:
    matrix = _random_unit(40, 16, seed=5)
    query = matrix[0] + matrix[2]  # rows 1 and 3 would be the best matches
    matrix[0] = np.nan
    matrix[2, 3] = np.inf
    matrix[5, :] = -np.inf
    library = _FakeLibrary(tmp_path / f"nan-{filtered}", matrix)
    folder = tmp_path if filtered else None
    hits = search(library, _fake_model(16), query, top=100, folder=folder)  # type: ignore[arg-type]
    bad = {10, 30, 60}
    assert hits and not bad & {h.photo.id for h in hits}
    assert all(np.isfinite(h.score) and np.isfinite(h.probability) for h in hits)
    assert sum(h.probability for h in hits) == pytest.approx(1.0, abs=1e-9)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))

    library = _FakeLibrary(tmp_path / f"all-nan-{filtered}", np.full((3, 16), np.nan))
    with pytest.raises(NoCandidatesError):
        search(library, _fake_model(16), query, folder=folder)  # type: ignore[arg-type]


def test_compact_search_returns_the_exact_top_and_scores(tmp_path: Path) -> None:
    dim = 64
    matrix = _random_unit(6000, dim, seed=1)
    library = _FakeLibrary(tmp_path / "big", matrix)
    model = _fake_model(dim)
    queries = _random_unit(20, dim, seed=2)
    for query in queries:
        exact = matrix.astype(np.float64) @ query.astype(np.float64)
        order = np.argsort(-exact, kind="stable")[:20]
        hits = search(library, model, query, top=20)
        assert [h.photo.id for h in hits] == [int(library.ids[i]) for i in order]
        np.testing.assert_allclose([h.score for h in hits], exact[order], atol=1e-6)
        logits = 100.0 * exact
        softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose([h.probability for h in hits], softmax[order], rtol=2e-3)
    # quantised once: later searches read only the re-scored rows, in one call each
    assert library.vector_calls == len(queries)
    assert library.vector_rows <= len(queries) * ranking._rescore_count(20)


@pytest.mark.parametrize("subset", [False, True], ids=["all-rows", "some-rows"])
def test_scores_split_over_threads_equal_one_pass(
    monkeypatch: pytest.MonkeyPatch, subset: bool
) -> None:
    matrix = _random_unit(3000, 512, seed=8)
    compact = CompactVectors.build(np.arange(2000, dtype=np.int64), matrix[:2000])
    compact = compact.extended(np.arange(2000, 3000, dtype=np.int64), matrix[2000:])
    rows = np.arange(3, 3000, 7) if subset else None
    query = matrix[11]
    monkeypatch.setattr(compact_mod, "SCORE_WORKERS", 1)
    one_pass = compact.scores(query, rows)
    monkeypatch.setattr(compact_mod, "SCORE_WORKERS", 3)
    monkeypatch.setattr(CompactVectors, "PARALLEL_ROWS", 100)
    split = compact.scores(query, rows)
    # the same sums; the split moves chunk boundaries, so the last bit may differ
    np.testing.assert_allclose(split, one_pass, rtol=1e-6, atol=1e-7)
    expected = matrix if rows is None else matrix[rows]
    np.testing.assert_allclose(split, expected @ query, atol=3e-3)


def test_the_compact_copy_follows_the_library_revision(tmp_path: Path) -> None:
    matrix = _random_unit(50, 16, seed=3)
    library = _FakeLibrary(tmp_path / "revised", matrix)
    model = _fake_model(16)
    assert search(library, model, matrix[7], top=1)[0].photo.id == 80
    assert search(library, model, matrix[9], top=1)[0].photo.id == 100
    assert library.vectors_calls == 1  # read and quantised once
    library.replace(library.matrix[::-1])
    assert search(library, model, matrix[7], top=1)[0].photo.id == 10 * (50 - 7)
    assert library.vectors_calls == 2  # vectors were overwritten: read again
    search(library, model, matrix[7], top=1, since=datetime(2000, 1, 1))
    assert library.vectors_calls == 2  # a filtered search ranks rows of the same copy
    assert library.vectors_read == 100


def test_added_rows_are_appended_to_the_compact_copy(tmp_path: Path) -> None:
    dim = 16
    matrix = _random_unit(300, dim, seed=4)
    library = _FakeLibrary(tmp_path / "growing", matrix[:100])
    model = _fake_model(dim)
    search(library, model, matrix[0], top=5)
    first = vector_cache.compact_vectors(library, "fake")  # type: ignore[arg-type]
    for start in range(100, 300, 40):  # five batches, each one committed between searches
        library.add(matrix[start : start + 40])
        hits = search(library, model, matrix[start + 3], top=3)
        assert hits[0].photo.id == 10 * (start + 4)
        assert hits[0].score == pytest.approx(1.0, abs=1e-6)
    assert (library.vectors_calls, library.vectors_read) == (1, 300)
    compact = vector_cache.compact_vectors(library, "fake")  # type: ignore[arg-type]
    assert len(first) == 100 and len(compact) == 300  # the older copy is left as it was
    np.testing.assert_array_equal(compact.ids, library.ids)
    exact = search(library, model, matrix[150], top=300)
    scores = matrix.astype(np.float64) @ matrix[150].astype(np.float64)
    assert [h.photo.id for h in exact] == [10 * (i + 1) for i in np.argsort(-scores, kind="stable")]


@pytest.mark.parametrize("tail_sorted", [True, False])
def test_rows_of_finds_ids_in_the_sorted_rows_and_in_appended_ones(tail_sorted: bool) -> None:
    rng = np.random.default_rng(6)
    matrix = _random_unit(60, 8, seed=6)
    ids = np.arange(0, 120, 2, dtype=np.int64)  # even ids first, then odd ones appended
    compact = CompactVectors.build(ids[:40], matrix[:40])
    extra = np.sort(rng.choice(np.arange(1, 200, 2), 20, replace=False))
    if tail_sorted:
        extra += 200
    else:
        extra = extra[::-1].copy()
    compact.rows_of(ids[:3])  # sorts the ids once; the extended copy merges into that order
    compact = compact.extended(extra, matrix[40:])
    assert compact.base_rows == 40 and compact.appended_rows == 20
    all_ids = np.concatenate([ids[:40], extra])
    for wanted in (np.array([], np.int64), np.arange(0, 400), rng.choice(400, 50, replace=False)):
        wanted = np.unique(wanted)
        rows = compact.rows_of(wanted)
        assert sorted(compact.ids[rows].tolist()) == sorted(set(all_ids) & set(wanted.tolist()))
    rows = compact.rows_of(np.sort([extra[5], ids[3]]))
    assert rows.tolist() == [3, 45]
    query = matrix[45]
    np.testing.assert_allclose(compact.scores(query, rows), matrix[rows] @ query, atol=2e-2)
    np.testing.assert_allclose(compact.scores(query), matrix @ query, atol=2e-2)


# -- a real library while it is being indexed ------------------------------------------------------

DIM = 16


def _fake_photos(folder: Path, numbers: range) -> None:
    """Files that the scan takes for photos: each has its own content, none can be decoded."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in numbers:
        (folder / f"IMG_{i:04d}.jpg").write_bytes(b"photo number %d" % i)


def _commit(library: Library, album: Path, seed: int, keep: Any = None) -> dict[int, np.ndarray]:
    """Sync the album and commit embeddings for its pending photos (those ``keep`` accepts)."""
    library.add_roots([album])
    library.sync(scan([album]))
    library.use_model("fake", DIM)
    todo = [p for p in library.pending() if keep is None or keep(p)]
    vectors = _random_unit(len(todo), DIM, seed)
    with library.indexing_lock():
        library.save_batch("fake", [p.id for p in todo], vectors, [None] * len(todo))
    return {p.id: v for p, v in zip(todo, vectors, strict=True)}


class _VectorsRead:
    """Counts the embeddings a :class:`Library` hands out, whichever method reads them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = self.rows = 0
        vectors, added = Library.vectors, Library.vectors_added

        def counted_vectors(library: Library, *args: Any, **kwargs: Any) -> Any:
            ids, matrix = vectors(library, *args, **kwargs)
            self.full += 1
            self.rows += len(ids)
            return ids, matrix

        def counted_added(library: Library, *args: Any, **kwargs: Any) -> Any:
            ids, matrix = added(library, *args, **kwargs)
            self.rows += len(ids)
            return ids, matrix

        monkeypatch.setattr(Library, "vectors", counted_vectors)
        monkeypatch.setattr(Library, "vectors_added", counted_added)


def _exact_order(vectors: dict[int, np.ndarray], query: np.ndarray) -> list[int]:
    ids = sorted(vectors)
    scores = np.array([float(vectors[i].astype(np.float64) @ query) for i in ids])
    return [ids[i] for i in np.lexsort((ids, -scores))]


def test_a_search_after_one_more_batch_reads_only_the_new_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    album, model = tmp_path / "album", _fake_model(DIM)
    _fake_photos(album / "old", range(40))
    read = _VectorsRead(monkeypatch)
    with Library.open(tmp_path / "lib.sqlite", thumbnail_dir=tmp_path / "thumbs") as library:
        vectors = _commit(library, album, seed=1)
        search(library, model, vectors[min(vectors)], top=5)
        assert (read.full, read.rows) == (0, 0)  # the vector file holds them already

        _fake_photos(album / "new", range(40, 45))
        added = _commit(library, album, seed=2)
        vectors.update(added)
        query = added[max(added)]
        hits = search(library, model, query, top=10)
        # only the five new rows were read: by the writer for the file, by the search for its copy
        assert (read.full, read.rows) == (0, 10)
        assert [h.photo.id for h in hits] == _exact_order(vectors, query)[:10]
        assert hits[0].score == pytest.approx(1.0, abs=1e-6)

        hits = search(library, model, query, top=50, folder=album / "new")
        assert {h.photo.id for h in hits} == set(added)
        assert (read.full, read.rows) == (0, 10)

        with library.indexing_lock():  # one photo fails on a second try: its vector goes
            library.save_batch("fake", [], np.zeros((0, DIM), np.float32), [], [(min(added), "x")])
        del vectors[min(added)]
        hits = search(library, model, query, top=50)
        # a removal: the writer makes the vector file again, the search maps it
        assert (read.full, read.rows) == (0, 10)
        assert [h.photo.id for h in hits] == _exact_order(vectors, query)


def test_photos_indexed_out_of_id_order_are_found_by_filtered_searches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    album, model = tmp_path / "album", _fake_model(DIM)
    _fake_photos(album / "a", range(0, 30))
    _fake_photos(album / "b", range(30, 60))
    read = _VectorsRead(monkeypatch)
    with Library.open(tmp_path / "lib.sqlite", thumbnail_dir=tmp_path / "thumbs") as library:
        vectors = _commit(library, album, seed=3, keep=lambda p: p.id % 3 == 0)
        search(library, model, vectors[max(vectors)], top=1)
        vectors.update(_commit(library, album, seed=4, keep=lambda p: p.id % 3 == 1))
        vectors.update(_commit(library, album, seed=5))
        assert len(vectors) == 60
        for query_id in (1, 29, 31, 60):
            for folder in (album / "a", album / "b", None):
                hits = search(library, model, vectors[query_id], top=60, folder=folder)
                paths = {h.photo.id: h.photo.path for h in hits}
                expected = {
                    i for i in vectors if folder is None or paths.get(i, folder).parent == folder
                }
                assert set(paths) == expected
                assert len(expected) == (60 if folder is None else 30)
                subset = {i: vectors[i] for i in expected}
                assert [h.photo.id for h in hits] == _exact_order(subset, vectors[query_id])
        # the writer appended two batches of 20 to the file; the search, those 40 to its copy
        assert (read.full, read.rows) == (0, 80)


def test_filtered_searches_rank_the_cached_copy_without_reading_vectors(
    indexed: tuple[Library, Path], tiny_model: ClipModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    library, album = indexed
    search(library, tiny_model, "a house")  # the copy is made, or was already
    read = _VectorsRead(monkeypatch)
    records = library.records(library.photo_ids(tiny_model.name))
    times = sorted(wall_time(r.taken_at) for r in records if r.taken_at is not None)
    since, until = times[1], times[-1]
    query = query_vector(tiny_model, parse_query("a house")).astype(np.float64)
    for kwargs in ({"folder": album / "home"}, {"since": since, "until": until}):
        hits = search(library, tiny_model, "a house", top=100, **kwargs)  # type: ignore[arg-type]
        wanted = library.photo_ids(tiny_model.name, **kwargs)  # type: ignore[arg-type]
        assert {h.photo.id for h in hits} == set(wanted.tolist())
        for hit in hits:
            stored = library.vector_for(hit.photo.id, tiny_model.name)
            assert stored is not None
            assert hit.score == pytest.approx(float(stored.astype(np.float64) @ query), abs=1e-6)
    assert (read.full, read.rows) == (0, 0)


def test_search_pages_scores_once_and_equals_search(
    indexed: tuple[Library, Path], tiny_model: ClipModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    library, _ = indexed
    calls: list[int] = []
    real = CompactVectors.scores

    def counted(self: CompactVectors, query: np.ndarray, rows: np.ndarray | None = None):
        calls.append(1)
        return real(self, query, rows)

    monkeypatch.setattr(CompactVectors, "scores", counted)
    pages = list(search_pages(library, tiny_model, "a red car + night", (2, 5)))
    assert len(calls) == 1  # one scoring pass for both lengths
    for page, top in zip(pages, (2, 5), strict=True):
        alone = search(library, tiny_model, "a red car + night", top=top)
        assert [(h.photo.id, h.rank, h.score, h.probability) for h in page] == [
            (h.photo.id, h.rank, h.score, h.probability) for h in alone
        ]
    with pytest.raises(ValueError, match="at least 1"):
        next(search_pages(library, tiny_model, "x", (0,)))


def test_encoding_many_texts_keeps_one_row_of_each(tiny_model: ClipModel) -> None:
    """A CLIP text tower's output has a row for every position; only the end-of-text row of
    each text is kept while the others are encoded (describe encodes up to a thousand labels)."""
    texts = [f"{'word ' * 70}{number}" for number in range(64)]  # about the whole context
    tokens = tiny_model.tokenize(texts)
    tiny_model.encode_tokens(tokens[:2])  # the network is loaded before the measurement
    width = int(tiny_model.spec.architecture.text["width"])
    every_position = len(texts) * tiny_model.context_length * width * 4
    tracemalloc.start()
    try:
        tiny_model.encode_tokens(tokens)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < every_position / 4, (peak, every_position)
