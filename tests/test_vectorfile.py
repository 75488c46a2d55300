"""The vector file beside the database: kept current, and never trusted when it is not."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from core import vectorfile
from core.compact import quantise
from core.library import Library
from core.ranking import search
from core.scan import scan
from core.vector_cache import _cache

DIM = 32


def _unit(rows: int, seed: int) -> np.ndarray:
    matrix = np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def _model() -> Any:
    return SimpleNamespace(name="fake", embed_dim=DIM, logit_scale=100.0, weights=None)


class _Album:
    """A library over files that the scan takes for photos, with random embeddings."""

    def __init__(self, tmp_path: Path) -> None:
        self.folder = tmp_path / "album"
        self.library = Library.open(tmp_path / "lib.sqlite", thumbnail_dir=tmp_path / "thumbs")
        self.vectors: dict[int, np.ndarray] = {}
        self.made = 0

    def commit(self, count: int, seed: int) -> dict[int, np.ndarray]:
        """Add ``count`` photos and commit their embeddings in one batch."""
        self.folder.mkdir(exist_ok=True)
        for i in range(self.made, self.made + count):
            (self.folder / f"IMG_{i:04d}.jpg").write_bytes(b"photo %d" % i)
        self.made += count
        library = self.library
        library.add_roots([self.folder])
        library.use_model("fake", DIM)
        library.sync(scan([self.folder]))
        todo = library.pending()
        matrix = _unit(len(todo), seed)
        with library.indexing_lock():
            library.save_batch("fake", [p.id for p in todo], matrix, [None] * len(todo))
        added = {p.id: v for p, v in zip(todo, matrix, strict=True)}
        self.vectors.update(added)
        return added

    def fail(self, photo_id: int) -> None:
        """Record a photo as failed: its embedding is removed."""
        with self.library.indexing_lock():
            self.library.save_batch(
                "fake", [], np.zeros((0, DIM), np.float32), [], [(photo_id, "x")]
            )
        del self.vectors[photo_id]

    def assert_exact(self, query: np.ndarray | None = None, top: int = 5) -> None:
        """Searches in a new process (no cached copy) rank the photos exactly.

        Without a query, ten photos' own vectors are the queries. With ``top`` far below the
        photo count, only some candidates are re-scored: wrong codes or ids would show.
        """
        _cache.clear()
        ids = sorted(self.vectors)
        matrix = np.stack([self.vectors[i] for i in ids]).astype(np.float64)
        queries = (
            [query] if query is not None else [self.vectors[i] for i in ids[:: len(ids) // 10]]
        )
        for vector in queries:
            hits = search(self.library, _model(), vector, top=top)
            scores = matrix @ vector.astype(np.float64)
            assert [h.photo.id for h in hits] == [ids[i] for i in np.lexsort((ids, -scores))][:top]

    def assert_file_matches(self) -> None:
        """The file is current and holds exactly the quantised vectors of the database."""
        assert self.header_is_current()
        rows = np.fromfile(self.path, vectorfile.row_dtype(DIM), offset=vectorfile.HEADER_BYTES)
        ids = rows["id"].tolist()
        assert sorted(ids) == sorted(self.vectors)
        _, codes, scales = quantise(np.stack([self.vectors[i] for i in ids]))
        np.testing.assert_array_equal(rows["codes"], codes)
        np.testing.assert_array_equal(rows["scale"], scales)

    @property
    def path(self) -> Path:
        path = self.library.vector_file_path
        assert path is not None
        return path

    def header_is_current(self) -> bool:
        header = vectorfile.read_header(self.path)
        return header is not None and header.names(self.library.vector_version)


@pytest.fixture
def photos(tmp_path: Path) -> Any:
    album = _Album(tmp_path)
    yield album
    album.library.close()


def _no_full_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the searches that had to quantise every vector in memory."""
    calls: list[int] = []
    vectors = Library.vectors

    def counted(library: Library, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return vectors(library, *args, **kwargs)

    monkeypatch.setattr(Library, "vectors", counted)
    return calls


def test_a_search_after_each_committed_batch_sees_the_new_photos(
    photos: _Album, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = _no_full_reads(monkeypatch)
    for batch in range(5):
        added = photos.commit(7, seed=batch)
        assert photos.header_is_current()  # the writer appended the batch
        header = vectorfile.read_header(photos.path)
        assert header is not None and header.count == len(photos.vectors)
        newest = max(added)
        hits = search(photos.library, _model(), photos.vectors[newest], top=1)  # cached copy
        assert hits[0].photo.id == newest and hits[0].score == pytest.approx(1.0, abs=1e-6)
        photos.assert_exact(photos.vectors[newest])  # fresh process: maps the file
    assert full == []  # no search read every float32 vector


@pytest.mark.parametrize("change", ["added", "removed"])
def test_a_stale_file_is_brought_up_to_date(
    photos: _Album, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    photos.commit(300, seed=1)
    old = photos.path.read_bytes()  # as after a crash right after the next commit
    if change == "added":
        photos.commit(5, seed=2)
    else:
        photos.fail(min(photos.vectors))
    photos.path.write_bytes(old)
    assert not photos.header_is_current()
    full = _no_full_reads(monkeypatch)
    photos.assert_exact()
    photos.assert_file_matches()  # a search with the writer lock free repaired it
    assert full == []


def test_a_file_from_another_library_is_made_again(tmp_path: Path, photos: _Album) -> None:
    photos.commit(200, seed=1)
    other = _Album(tmp_path / "other")
    other.commit(200, seed=9)  # same size, same count, other vectors
    shutil.copyfile(other.path, photos.path)
    other.library.close()
    assert not photos.header_is_current()
    photos.assert_exact()
    photos.assert_file_matches()


def test_a_file_ahead_of_the_database_is_made_again(tmp_path: Path, photos: _Album) -> None:
    """A database restored from a backup, with the file of a later state beside it."""
    photos.commit(200, seed=1)
    backup = tmp_path / "backup.sqlite"
    photos.library.close()
    shutil.copyfile(tmp_path / "lib.sqlite", backup)
    photos.library = Library.open(tmp_path / "lib.sqlite", thumbnail_dir=tmp_path / "thumbs")
    kept = dict(photos.vectors)
    photos.commit(6, seed=2)
    photos.library.close()
    shutil.copyfile(backup, tmp_path / "lib.sqlite")
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"lib.sqlite{suffix}").unlink(missing_ok=True)
    photos.library = Library.open(tmp_path / "lib.sqlite", thumbnail_dir=tmp_path / "thumbs")
    photos.vectors = kept
    assert not photos.header_is_current()
    photos.assert_exact()
    photos.assert_file_matches()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def _bad_codes(path: Path) -> None:
    """Header and CRCs intact, the codes of every row overwritten."""
    header = vectorfile.read_header(path)
    assert header is not None
    rows = np.fromfile(path, vectorfile.row_dtype(DIM), offset=vectorfile.HEADER_BYTES)
    rows["codes"] = np.random.default_rng(1).integers(-127, 128, rows["codes"].shape)
    with open(path, "r+b") as handle:
        handle.seek(vectorfile.HEADER_BYTES)
        handle.write(rows.tobytes())


def _bad_ids(path: Path) -> None:
    rows = np.fromfile(path, vectorfile.row_dtype(DIM), offset=vectorfile.HEADER_BYTES)
    rows["id"] = rows["id"][::-1]
    with open(path, "r+b") as handle:
        handle.seek(vectorfile.HEADER_BYTES)
        handle.write(rows.tobytes())


@pytest.mark.parametrize("damage", [_truncate, _garbage, _bad_codes, _bad_ids])
def test_a_damaged_file_is_made_again(photos: _Album, damage: Any) -> None:
    photos.commit(300, seed=4)
    damage(photos.path)
    photos.assert_exact()
    photos.assert_file_matches()


@pytest.mark.parametrize("damage", [None, _garbage, _bad_codes])
def test_while_another_process_writes_a_bad_file_is_not_used(
    tmp_path: Path, photos: _Album, damage: Any
) -> None:
    """The writer lock is taken: the search cannot repair the file and works from memory."""
    photos.commit(300, seed=5)
    old = photos.path.read_bytes()
    photos.commit(4, seed=6)
    photos.path.write_bytes(old)  # stale: four rows missing
    if damage is not None:
        damage(photos.path)
    before = photos.path.read_bytes()
    with Library.open(tmp_path / "lib.sqlite") as writer, writer.indexing_lock():
        photos.assert_exact()
        photos.assert_exact(photos.vectors[max(photos.vectors)])
    assert photos.path.read_bytes() == before  # left for the writer


def test_a_folder_that_cannot_be_written_still_searches(
    photos: _Album, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos.commit(200, seed=7)
    photos.path.unlink()

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "read-only file system")

    monkeypatch.setattr(vectorfile, "_build", refuse)
    photos.assert_exact()
    assert not photos.path.exists()
