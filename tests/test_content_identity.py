"""Content identity: a stored embedding is reused for a moved or copied photo only when the
whole file is the same, not merely its size and first and last 64 KiB (the content hash)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.encoder import ClipModel
from core.indexer import index
from core.library import Library
from core.scan import scan
from core.sync import HASH_CHUNK, SyncReport, content_hash, file_digest

DIM = 8
SIDE = 256  # 256 x 256 RGB BMP: 192 KiB of pixels, rows of 768 bytes


def _bmp(path: Path, seed: int) -> Path:
    """An uncompressed BMP whose first and last 64 KiB do not depend on ``seed``."""
    pixels = np.full((SIDE, SIDE, 3), 128, np.uint8)
    pixels[: SIDE // 2 - 40] = np.arange(SIDE, dtype=np.uint8)[None, :, None]
    band = np.random.default_rng(seed).integers(0, 256, (80, SIDE, 3), dtype=np.uint8)
    pixels[SIDE // 2 - 40 : SIDE // 2 + 40] = band  # only middle rows differ
    Image.fromarray(pixels).save(path, format="BMP")
    return path


def _twins(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    a, b = _bmp(folder / "a.bmp", 1), _bmp(folder / "b.bmp", 2)
    assert a.stat().st_size == b.stat().st_size > 2 * HASH_CHUNK
    data_a, data_b = a.read_bytes(), b.read_bytes()
    assert data_a[:HASH_CHUNK] == data_b[:HASH_CHUNK]
    assert data_a[-HASH_CHUNK:] == data_b[-HASH_CHUNK:]
    assert data_a != data_b
    assert content_hash(a) == content_hash(b)  # the collision
    return a, b


@pytest.fixture
def library(clipsearch_home: Path) -> Iterator[Library]:
    with Library.open() as opened:
        yield opened


def _index_all(library: Library) -> None:
    library.use_model("fake", DIM)
    todo = library.pending()
    rows = np.random.default_rng(len(todo)).standard_normal((len(todo), DIM)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    with library.indexing_lock():
        library.save_batch("fake", [p.id for p in todo], rows, [None] * len(todo))


def _album_of(tmp_path: Path, *names: str) -> Path:
    """An album folder holding a BMP per name, the ``i``-th made with seed ``i + 1``."""
    root = tmp_path / "album"
    root.mkdir()
    for seed, name in enumerate(names, start=1):
        _bmp(root / name, seed)
    return root


def _sync(library: Library, root: Path) -> SyncReport:
    return library.sync(scan([root]), roots=[root])


def _add_and_index(library: Library, root: Path) -> None:
    """Add ``root`` as an album folder, sync it and give every photo in it a vector."""
    library.add_roots([root])
    _sync(library, root)
    _index_all(library)


def _one_twin_indexed(library: Library, tmp_path: Path) -> tuple[Path, Path]:
    """An album (returned) holding ``a.bmp``, indexed, and its twin ``b.bmp``, not yet in it."""
    root = tmp_path / "album"
    a, b = _twins(tmp_path / "made")
    root.mkdir()
    a.rename(root / "a.bmp")
    _add_and_index(library, root)
    return root, b


def test_a_different_file_with_the_same_content_hash_is_not_a_copy(
    library: Library, tmp_path: Path
) -> None:
    root, b = _one_twin_indexed(library, tmp_path)
    b.rename(root / "b.bmp")
    report = _sync(library, root)
    assert (report.new, report.copied, report.moved) == (1, 0, 0)
    assert [p.path for p in library.pending()] == [root / "b.bmp"]


def test_a_different_file_with_the_same_content_hash_is_not_a_move(
    library: Library, tmp_path: Path
) -> None:
    root, b = _one_twin_indexed(library, tmp_path)
    (root / "a.bmp").unlink()
    b.rename(root / "b.bmp")
    report = _sync(library, root)
    assert (report.new, report.moved, report.deleted) == (1, 0, 1)
    assert [p.path for p in library.pending()] == [root / "b.bmp"]


def test_a_real_move_and_copy_keep_the_vector(library: Library, tmp_path: Path) -> None:
    root = _album_of(tmp_path, "a.bmp")
    _add_and_index(library, root)
    ids, before = library.vectors("fake")
    (root / "a.bmp").rename(root / "moved.bmp")
    report = _sync(library, root)
    assert (report.new, report.moved) == (0, 1)
    assert library.pending() == []
    ids_after, after = library.vectors("fake")
    assert list(ids_after) == list(ids) and np.array_equal(after, before)
    (root / "copy.bmp").write_bytes((root / "moved.bmp").read_bytes())
    report = _sync(library, root)
    assert (report.new, report.copied) == (0, 1)
    assert library.pending() == []


def test_a_library_without_digests_reads_the_old_file_or_treats_the_photo_as_new(
    library: Library, tmp_path: Path
) -> None:
    root = _album_of(tmp_path, "a.bmp", "c.bmp")
    _add_and_index(library, root)
    with sqlite3.connect(library.path) as db:  # as a library made before digests were kept
        db.execute("UPDATE photos SET file_digest = NULL")
    (root / "same.bmp").write_bytes((root / "a.bmp").read_bytes())
    report = _sync(library, root)
    assert report.copied == 1  # the old file is there: read and compared
    (root / "c.bmp").rename(root / "c-moved.bmp")
    with sqlite3.connect(library.path) as db:
        db.execute("UPDATE photos SET file_digest = NULL")
    report = _sync(library, root)
    assert (report.moved, report.new, report.deleted) == (0, 1, 1)  # cannot confirm: new


def test_colliding_photos_get_their_own_vectors(
    library: Library, tiny_model: ClipModel, tmp_path: Path
) -> None:
    root = tmp_path / "album"
    a, b = _twins(tmp_path / "made")
    root.mkdir()
    os.replace(a, root / "a.bmp")
    index(library, tiny_model, [root], batch_size=2, decoders=1)
    os.replace(b, root / "b.bmp")
    summary = index(library, tiny_model, [root], batch_size=2, decoders=1)
    assert summary.indexed == 1
    ids, vectors = library.vectors(tiny_model.name)
    assert len(ids) == 2
    assert not np.allclose(vectors[0], vectors[1], atol=1e-4)
    thumbnails = [record.thumbnail for record in library.records(list(ids))]
    assert None not in thumbnails and thumbnails[0] != thumbnails[1]


def test_a_first_sync_reads_only_the_ends_of_new_photos_and_indexing_keeps_the_digests(
    library: Library,
    tiny_model: ClipModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core import sync as sync_module

    root = _album_of(tmp_path, "0.bmp", "1.bmp", "2.bmp")
    read_whole: list[str] = []

    def counted(path: str | os.PathLike[str]) -> str:
        read_whole.append(Path(path).name)
        return file_digest(path)

    monkeypatch.setattr(sync_module, "file_digest", counted)
    library.add_roots([root])
    report = _sync(library, root)
    assert report.new == 3 and read_whole == []  # no photo is read whole before indexing
    with sqlite3.connect(library.path) as db:
        assert db.execute("SELECT COUNT(*) FROM photos WHERE file_digest IS NULL").fetchone() == (
            3,
        )

    summary = index(library, tiny_model, [root], batch_size=2, decoders=1)
    assert summary.indexed == 3
    with sqlite3.connect(library.path) as db:
        stored = dict(db.execute("SELECT path, file_digest FROM photos").fetchall())
    assert stored == {
        str(root / f"{seed}.bmp"): file_digest(root / f"{seed}.bmp") for seed in range(3)
    }

    # the digest the indexer kept is what proves a later move: the vector stays, nothing is read
    # again from the file that is gone
    ids, before = library.vectors(tiny_model.name)
    (root / "1.bmp").rename(root / "one.bmp")
    read_whole.clear()
    moved = index(library, tiny_model, [root])
    assert (moved.moved, moved.new, moved.indexed) == (1, 0, 0)
    assert read_whole == ["one.bmp"]  # the new name only: its content hash matched
    ids_after, after = library.vectors(tiny_model.name)
    assert list(ids_after) == list(ids) and np.array_equal(after, before)


def test_a_batch_saved_without_digests_reads_them_from_the_files(
    library: Library, tmp_path: Path
) -> None:
    root = _album_of(tmp_path, "a.bmp")
    _add_and_index(library, root)  # save_batch without digests, as imports and tools call it
    with sqlite3.connect(library.path) as db:
        assert db.execute("SELECT file_digest FROM photos").fetchall() == [
            (file_digest(root / "a.bmp"),)
        ]
