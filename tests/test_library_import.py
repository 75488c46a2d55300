"""Library.add_encoded: photos with their embeddings, added without an album (imports, bench)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core import vectorfile
from core.database import ModelMismatchError
from core.errors import ClipsearchError
from core.library import EncodedPhoto, Library
from core.ranking import search

DIM = 32
MODEL = "import-test"


def unit_rows(rng: np.random.Generator, count: int) -> np.ndarray:
    matrix = rng.standard_normal((count, DIM), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix


def photos(first: int, count: int) -> list[EncodedPhoto]:
    start = dt.datetime(2020, 1, 1, 8, 0)
    return [
        EncodedPhoto(
            Path(f"/album/{i // 100:02d}/IMG_{i:05d}.jpg"),
            f"{i:040x}",
            start + dt.timedelta(hours=i),
            size=1000 + i,
            width=40,
            height=30,
            time_source="DateTimeOriginal",
        )
        for i in range(first, first + count)
    ]


@pytest.fixture
def library(tmp_path: Path):
    with Library.open(tmp_path / "library.db", thumbnail_dir=tmp_path / "thumbnails") as opened:
        opened.use_model(MODEL, DIM)
        yield opened


def test_added_photos_are_indexed_records_with_their_vectors(library: Library) -> None:
    rng = np.random.default_rng(3)
    matrix = unit_rows(rng, 300)
    given = photos(0, 300)
    with library.indexing_lock():
        ids = library.add_encoded(MODEL, given, matrix)
    assert ids.dtype == np.int64 and list(ids) == list(range(1, 301))
    assert library.stats()["indexed"] == 300
    stored_ids, stored = library.vectors(MODEL)
    assert np.array_equal(stored_ids, ids) and np.array_equal(stored, matrix)
    records = library.records([int(ids[7]), int(ids[250])])
    assert [r.path for r in records] == [given[7].path, given[250].path]
    assert records[0].taken_at is not None
    assert records[0].taken_at.replace(tzinfo=None) == given[7].taken_at
    assert (records[0].size, records[0].width, records[0].time_source) == (
        1007,
        40,
        "DateTimeOriginal",
    )
    # the date filter sees the capture times: the first 16 photos (08:00 to 23:00) are on 1 January
    day = library.photo_ids(MODEL, since=dt.datetime(2020, 1, 1), until=dt.datetime(2020, 1, 2))
    assert list(day) == list(ids[:16])
    # and the vector file was brought up to date with them
    header = vectorfile.read_header(library.vector_file_path)
    assert header is not None and header.count == 300
    assert header.names(library.vector_version)


def test_vector_file_can_be_left_for_one_refresh(library: Library) -> None:
    rng = np.random.default_rng(4)
    first, second = unit_rows(rng, 200), unit_rows(rng, 100)
    with library.indexing_lock():
        library.add_encoded(MODEL, photos(0, 200), first, update_vector_file=False)
        ids = library.add_encoded(MODEL, photos(200, 100), second, update_vector_file=False)
        assert list(ids) == list(range(201, 301))
        assert vectorfile.read_header(library.vector_file_path) is None
        library.refresh_vector_file()
    header = vectorfile.read_header(library.vector_file_path)
    assert header is not None and header.count == 300
    assert header.names(library.vector_version)
    model = SimpleNamespace(name=MODEL, embed_dim=DIM, logit_scale=100.0, weights=None)
    hits = search(library, model, second[42], top=3)  # type: ignore[arg-type]
    assert hits[0].photo.id == 243 and hits[0].rank == 1


def test_ids_stay_above_deleted_ones_and_photos_are_added_after_a_sync_row(
    library: Library,
) -> None:
    rng = np.random.default_rng(5)
    with library.indexing_lock():
        ids = library.add_encoded(MODEL, photos(0, 10), unit_rows(rng, 10))
        with library._transaction() as db:  # a photo that left the album
            db.execute("DELETE FROM photos WHERE id = ?", (int(ids[-1]),))
        more = library.add_encoded(MODEL, photos(10, 5), unit_rows(rng, 5))
    assert list(more) == [11, 12, 13, 14, 15]
    assert library.stats()["indexed"] == 14


def test_bad_calls_write_nothing(library: Library) -> None:
    rng = np.random.default_rng(6)
    with pytest.raises(RuntimeError, match="indexing_lock"):
        library.add_encoded(MODEL, photos(0, 3), unit_rows(rng, 3))
    with library.indexing_lock():
        with pytest.raises(ModelMismatchError):
            library.add_encoded("other", photos(0, 3), unit_rows(rng, 3))
        with pytest.raises(ValueError, match="expected 3 vectors of 32"):
            library.add_encoded(MODEL, photos(0, 3), unit_rows(rng, 2))
        with pytest.raises(ValueError):
            library.add_encoded(MODEL, photos(0, 3), unit_rows(rng, 3)[:, :16])
        library.add_encoded(MODEL, photos(0, 3), unit_rows(rng, 3))
        revision = library.revision
        # one path already there: the whole call is rolled back
        with pytest.raises(ClipsearchError):
            library.add_encoded(MODEL, photos(1, 4), unit_rows(rng, 4))
    assert library.stats()["indexed"] == 3
    assert library.revision == revision
