"""The approximate index for very large libraries, on a small library with a low threshold."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from core import ann
from core import ranking as search_mod
from core.compact import CompactVectors
from core.library import Library
from core.ranking import search, search_pages

pytest.importorskip("faiss")

DIM = 32
PHOTOS = 1500


def _model() -> Any:
    return SimpleNamespace(name="fake", embed_dim=DIM, logit_scale=100.0, weights=None)


def _clustered(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM)).astype(np.float32)
    matrix = centres[rng.integers(0, 40, count)] + 0.6 * rng.standard_normal((count, DIM))
    matrix = matrix.astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def _add(library: Library, album: Path, start: int, matrix: np.ndarray) -> dict[int, np.ndarray]:
    from core.scan import scan

    album.mkdir(exist_ok=True)
    for i in range(start, start + len(matrix)):
        (album / f"IMG_{i:05d}.jpg").write_bytes(b"photo %d" % i)
    library.add_roots([album])
    library.use_model("fake", DIM)
    library.sync(scan([album]))
    todo = library.pending()
    with library.indexing_lock():
        library.save_batch("fake", [p.id for p in todo], matrix, [None] * len(todo))
    return {p.id: v for p, v in zip(todo, matrix, strict=True)}


@pytest.fixture
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Approximate from 1000 photos, 16 lists, 4 probed; counts approximate searches."""
    monkeypatch.setattr(ann, "APPROXIMATE_FROM", 1000)
    monkeypatch.setattr(ann, "LISTS", 16)
    monkeypatch.setattr(ann, "PROBES", 4)
    monkeypatch.setattr(ann, "STALE_ROWS", 50)
    used: list[int] = []
    rank = search_mod._rank_approximate

    def counted(*args: Any, **kwargs: Any) -> Any:
        hits = rank(*args, **kwargs)
        used.append(hits is not None)
        return hits

    monkeypatch.setattr(search_mod, "_rank_approximate", counted)
    search_mod._approximate.clear()
    return used


def _exact(vectors: dict[int, np.ndarray], query: np.ndarray, top: int) -> list[int]:
    ids = sorted(vectors)
    scores = np.stack([vectors[i] for i in ids]).astype(np.float64) @ query.astype(np.float64)
    return [ids[i] for i in np.lexsort((ids, -scores))][:top]


def test_a_large_library_searches_with_its_index_and_finds_the_exact_top(
    tmp_path: Path, small_threshold: list[int]
) -> None:
    with Library.open(tmp_path / "lib.sqlite", thumbnail_dir=tmp_path / "t") as library:
        vectors = _add(library, tmp_path / "album", 0, _clustered(PHOTOS, 1))
        with library.indexing_lock():
            assert ann.build_if_due(library, "fake")
            assert not ann.build_if_due(library, "fake")  # current: not built again
        recall = []
        for photo_id in list(vectors)[::150]:
            query = vectors[photo_id]
            hits = search(library, _model(), query, top=10)
            assert hits[0].photo.id == photo_id and hits[0].score == pytest.approx(1.0, abs=1e-6)
            for hit in hits:  # scores are the exact ones
                assert hit.score == pytest.approx(float(vectors[hit.photo.id] @ query), abs=1e-6)
            recall.append(len({h.photo.id for h in hits} & set(_exact(vectors, query, 10))) / 10)
            # the estimated softmax is close to the exact one
            scores = np.array([float(v @ query) for v in vectors.values()])
            exact = np.exp(100 * (scores - scores.max()))
            assert hits[0].probability == pytest.approx(exact.max() / exact.sum(), rel=0.25)
        assert all(small_threshold) and len(small_threshold) == 10
        assert np.mean(recall) >= 0.9

        # photos added since the index was built are found (read and scored exactly)
        added = _add(library, tmp_path / "album", PHOTOS, _clustered(20, 2))
        newest = max(added)
        hits = search(library, _model(), added[newest], top=3)
        assert hits[0].photo.id == newest and small_threshold[-1]

        # a removed embedding: the index no longer describes the library; exact search
        with library.indexing_lock():
            library.save_batch("fake", [], np.zeros((0, DIM), np.float32), [], [(newest, "x")])
        del added[newest]
        vectors.update(added)
        query = vectors[min(vectors)]
        hits = search(library, _model(), query, top=5)
        assert [h.photo.id for h in hits] == _exact(vectors, query, 5)
        assert len(small_threshold) == 11  # the approximate path was not tried


def test_an_index_of_another_library_is_not_used(
    tmp_path: Path, small_threshold: list[int]
) -> None:
    with Library.open(tmp_path / "a.sqlite", thumbnail_dir=tmp_path / "t") as one:
        _add(one, tmp_path / "one", 0, _clustered(PHOTOS, 3))
        with one.indexing_lock():
            ann.build(one, "fake")
    with Library.open(tmp_path / "b.sqlite", thumbnail_dir=tmp_path / "t") as other:
        vectors = _add(other, tmp_path / "other", 0, _clustered(PHOTOS, 4))
        for source, target in zip(ann.paths(tmp_path / "a.sqlite"), ann.paths(other.path)):
            shutil.copyfile(source, target)
        query = vectors[7]
        hits = search(other, _model(), query, top=5)
        assert [h.photo.id for h in hits] == _exact(vectors, query, 5)
        assert small_threshold == []


def test_below_the_threshold_nothing_is_built(tmp_path: Path) -> None:
    with Library.open(tmp_path / "lib.sqlite", thumbnail_dir=tmp_path / "t") as library:
        _add(library, tmp_path / "album", 0, _clustered(300, 5))
        with library.indexing_lock():
            assert not ann.build_if_due(library, "fake")
    assert not any(path.exists() for path in ann.paths(tmp_path / "lib.sqlite"))


def test_the_app_pages_take_the_index_exactly_when_search_does(
    tmp_path: Path, small_threshold: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    full: list[int] = []  # passes over every photo
    filtered: list[int] = []  # passes over the rows that pass a filter
    scores = CompactVectors.scores

    def counted(self: CompactVectors, query: np.ndarray, rows: np.ndarray | None = None) -> Any:
        if rows is None:
            full.append(len(self.ids))
        elif len(rows) == len(self.ids):  # only a filter that every photo passes asks for these
            filtered.append(len(rows))
        return scores(self, query, rows)

    monkeypatch.setattr(CompactVectors, "scores", counted)

    def same(page: list[Any], alone: list[Any]) -> None:
        assert [(h.rank, h.photo.id, h.score) for h in page] == [
            (h.rank, h.photo.id, h.score) for h in alone
        ]

    with Library.open(tmp_path / "lib.sqlite", thumbnail_dir=tmp_path / "t") as library:
        vectors = _add(library, tmp_path / "album", 0, _clustered(PHOTOS, 6))
        with library.indexing_lock():
            assert ann.build_if_due(library, "fake")
        query = vectors[min(vectors) + 11]

        # with the index: both lengths come from it, and no length scores every photo
        pages = list(search_pages(library, _model(), query, (5, 40)))
        assert small_threshold == [True, True] and full == []
        for page, top in zip(pages, (5, 40), strict=True):
            alone = search(library, _model(), query, top=top)
            same(page, alone)
            for mine, theirs in zip(page, alone, strict=True):  # the softmax is estimated
                assert mine.probability == pytest.approx(theirs.probability, rel=0.25)
        assert small_threshold == [True] * 4 and full == []

        # with a filter: neither takes the index; one pass over the filtered photos for both
        folder = tmp_path / "album"
        pages = list(search_pages(library, _model(), query, (5, 40), folder=folder))
        for page, top in zip(pages, (5, 40), strict=True):
            same(page, search(library, _model(), query, top=top, folder=folder))
            assert [h.photo.id for h in page] == _exact(vectors, query, top)
        assert len(small_threshold) == 4 and full == [] and filtered == [PHOTOS] * 3

        # an index that no longer describes the library: neither takes it; the pages score
        # every photo once for both lengths, search once for its one
        with library.indexing_lock():
            gone = max(vectors)
            library.save_batch("fake", [], np.zeros((0, DIM), np.float32), [], [(gone, "x")])
        del vectors[gone]
        pages = list(search_pages(library, _model(), query, (5, 40)))
        assert len(full) == 1
        for page, top in zip(pages, (5, 40), strict=True):
            alone = search(library, _model(), query, top=top)
            assert [(h.photo.id, h.score, h.probability) for h in page] == [
                (h.photo.id, h.score, h.probability) for h in alone
            ]
            assert [h.photo.id for h in page] == _exact(vectors, query, top)
        assert len(small_threshold) == 4 and len(full) == 3
