"""Tests for core.database, core.sync and core.library.

The library database, sync with the album, vectors for a search.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core import sync as sync_module
from core.capture_time import read_capture_time
from core.database import (
    MIGRATIONS,
    PAGE_SIZE,
    SCHEMA_VERSION,
    LibraryBusyError,
    LibraryError,
    ModelMismatchError,
    VectorVersion,
)
from core.library import Library
from core.scan import RAW_REASON, ScanResult, Skipped, scan
from core.sync import HASH_CHUNK, SyncReport, content_hash

DIM = 8


def _unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _synced(library: Library, root: Path) -> SyncReport:
    library.add_roots([root])
    return library.sync(scan([root]))


def _index_all(library: Library, model: str = "fake") -> dict[int, np.ndarray]:
    """Mark every pending photo indexed with a made-up vector, as the indexer would."""
    library.use_model(model, DIM)
    todo = library.pending()
    vectors = _unit_rows(len(todo), seed=len(todo))
    with library.indexing_lock():
        library.save_batch(model, [p.id for p in todo], vectors, [None] * len(todo))
    return {p.id: v for p, v in zip(todo, vectors, strict=True)}


class _Counter:
    """Wraps a function and counts its calls."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.function(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# opening, schema, migrations


def test_open_creates_a_wal_database_in_the_data_folder(clipsearch_home: Path) -> None:
    with Library.open() as library:
        assert library.path == clipsearch_home / "data" / "library.sqlite"
        assert library.thumbnail_dir == clipsearch_home / "cache" / "thumbnails"
        assert library.stats()["schema_version"] == SCHEMA_VERSION
        assert library.model_name is None
        assert library.roots() == []
    db = sqlite3.connect(clipsearch_home / "data" / "library.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_an_older_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO photos (path, size, mtime_ns, content_hash, wall, status) "
        "VALUES ('/a.jpg', 1, 2, 'h', '2020-01-01T00:00:00.000000', 'pending')"
    )
    db.commit()
    db.close()

    with Library.open(path) as library:
        assert library.stats()["schema_version"] == SCHEMA_VERSION == 6
        assert library.record_for_path("/a.jpg") is not None
        assert [p.path for p in library.pending(since=datetime(2019, 1, 1))] == [Path("/a.jpg")]
    db = sqlite3.connect(path)
    indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"photos_wall", "photos_status", "photos_hash", "photos_vector_revision"} <= indexes


ESCAPE = "\ufdd0"  # the character the library escapes paths with; valid in a file name


def test_schema_2_rows_are_converted_and_keep_their_exact_paths(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    db = sqlite3.connect(path)
    MIGRATIONS[0](db)
    MIGRATIONS[1](db)
    db.execute("PRAGMA user_version = 2")
    odd, plain = f"/album/odd{ESCAPE}dce9.jpg", "/album/plain.jpg"
    vector = _unit_rows(1)[0]
    for photo_id, name in ((1, odd), (2, plain)):
        db.execute(
            "INSERT INTO photos (id, path, size, mtime_ns, content_hash, wall, status, model)"
            " VALUES (?, ?, 1, 2, ?, '2020-01-01T00:00:00.000000', 'indexed', 'fake')",
            (photo_id, name, str(photo_id)),
        )
        db.execute("INSERT INTO embeddings VALUES (?, ?)", (photo_id, vector.tobytes()))
    db.execute("INSERT INTO roots VALUES (?, '2020-01-01')", (f"/album{ESCAPE}",))
    db.execute("INSERT INTO skipped VALUES (?, 'empty file')", (f"/album/{ESCAPE}.jpg",))
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("model", "fake"), ("embed_dim", str(DIM))])
    db.execute("INSERT INTO meta VALUES ('revision', '7')")
    db.commit()
    db.close()

    with Library.open(path) as library:
        assert library.stats()["schema_version"] == 6
        record = library.record_for_path(odd)
        assert record is not None and record.id == 1 and str(record.path) == odd
        assert [str(r.path) for r in library.records([1, 2])] == [odd, plain]
        assert library.roots() == [Path(f"/album{ESCAPE}")]
        assert library.skipped() == [(Path(f"/album/{ESCAPE}.jpg"), "empty file")]
        assert library.vector_version[:2] == VectorVersion(7, 0)[:2]
        ids, matrix = library.vectors("fake", folder=Path("/album"))
        assert ids.tolist() == [1, 2]
        np.testing.assert_array_equal(matrix[0], vector)
    raw = sqlite3.connect(path)
    stored = dict(raw.execute("SELECT id, path FROM photos"))
    assert stored == {1: f"/album/odd{ESCAPE}fdd0dce9.jpg", 2: plain}  # escaped where needed


def test_a_newer_or_foreign_database_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(LibraryError, match="newer version of clipsearch-tui"):
        Library.open(newer)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(LibraryError, match="not a SQLite database.*clipsearch-tui library repair"):
        Library.open(garbage)
    assert garbage.read_bytes() == b"not sqlite at all" * 100  # left as it was


def test_a_library_in_a_read_only_folder_says_so(tmp_path: Path, monkeypatch) -> None:
    """SQLite says only "unable to open database file"; the error names the read-only folder."""
    Library.open(tmp_path / "library.sqlite").close()
    import core.database

    class ReadOnly:
        f_flag = os.ST_RDONLY

    def refuse(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(core.database.os, "statvfs", lambda folder: ReadOnly())
    monkeypatch.setattr(core.database.sqlite3, "connect", refuse)
    with pytest.raises(LibraryError, match=re.escape(f"its folder {tmp_path} is on a read-only")):
        Library.open(tmp_path / "library.sqlite")


# --------------------------------------------------------------------------------------------
# content hash


def test_content_hash_reads_both_ends_only(tmp_path: Path) -> None:
    big = bytearray(os.urandom(5 * HASH_CHUNK))
    path = tmp_path / "big.bin"
    path.write_bytes(big)
    original = content_hash(path)
    big[2 * HASH_CHUNK] ^= 0xFF  # the middle is not read
    path.write_bytes(big)
    assert content_hash(path) == original
    big[-1] ^= 0xFF
    path.write_bytes(big)
    assert content_hash(path) != original
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc")
    assert content_hash(small, 3) != content_hash(path)


# --------------------------------------------------------------------------------------------
# sync


def test_sync_adds_every_photo_and_records_skipped_files(tmp_path: Path, album: Path) -> None:
    with Library.open(tmp_path / "lib.sqlite") as library:
        report = _synced(library, album)
        found = scan([album])
        assert report.new == len(found.files) and report.unchanged == 0
        assert {r for _, r in library.skipped()} == {"empty file", RAW_REASON}
        stats = library.stats()
        assert stats["photos"] == stats["pending"] == len(found.files)
        record = library.record_for_path(album / "jpg/gps/DSCN0010.jpg")
        assert record is not None
        assert record.taken_at == datetime(2008, 10, 22, 16, 28, 39)
        assert record.time_source == "DateTimeOriginal"
        with Image.open(album / "jpg/gps/DSCN0010.jpg") as image:
            assert (record.width, record.height) == image.size
        portrait = library.record_for_path(album / "jpg/orientation/portrait_6.jpg")
        assert portrait is not None and portrait.height > portrait.width


def test_rescan_of_an_unchanged_album_reads_no_file(
    tmp_path: Path, album: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Library.open(tmp_path / "lib.sqlite") as library:
        _synced(library, album)
        exif, hashes = _Counter(read_capture_time), _Counter(content_hash)
        monkeypatch.setattr(sync_module, "read_capture_time", exif)
        monkeypatch.setattr(sync_module, "content_hash", hashes)
        report = library.sync(scan([album]))
        assert report.unchanged == library.stats()["photos"]
        assert (report.new, report.changed, report.moved, report.deleted) == (0, 0, 0, 0)
        assert exif.calls == hashes.calls == 0


def test_sync_tells_changed_moved_copied_and_deleted_photos(
    tmp_path: Path, album: Path, album_writable: Callable[..., Any]
) -> None:
    with Library.open(tmp_path / "lib.sqlite") as library:
        _synced(library, album)
        vectors = _index_all(library)
        gps = album / "jpg/gps"
        moved_from, moved_to = gps / "DSCN0010.jpg", album / "renamed/trip.jpg"
        touched, deleted = gps / "DSCN0012.jpg", album / "jpg/Canon_40D.jpg"
        copied = album / "copy-of-landscape.jpg"
        old = library.record_for_path(moved_from)
        victim = library.record_for_path(deleted)
        assert old is not None and victim is not None
        with album_writable(album):
            moved_to.parent.mkdir()
            os.rename(moved_from, moved_to)
            os.utime(touched, ns=(time.time_ns(), time.time_ns()))
            deleted.unlink()
            copied.write_bytes((album / "jpg/orientation/landscape_1.jpg").read_bytes())

        report = library.sync(scan([album]))
        assert (report.moved, report.changed, report.deleted, report.copied) == (1, 1, 1, 1)
        assert report.new == 0

        moved = library.record_for_path(moved_to)
        assert moved is not None and moved.id == old.id and moved.status == "indexed"
        assert moved.taken_at == old.taken_at
        np.testing.assert_array_equal(library.vector_for(moved.id, "fake"), vectors[old.id])
        assert library.record_for_path(moved_from) is None

        changed = library.record_for_path(touched)
        assert changed is not None and changed.status == "pending"
        assert library.vector_for(changed.id, "fake") is None

        assert library.record_for_path(deleted) is None
        assert library.records([victim.id]) == []

        twin = library.record_for_path(copied)
        original = library.record_for_path(album / "jpg/orientation/landscape_1.jpg")
        assert twin is not None and original is not None and twin.status == "indexed"
        np.testing.assert_array_equal(
            library.vector_for(twin.id, "fake"), library.vector_for(original.id, "fake")
        )
        assert [p.path for p in library.pending()] == [touched]


def test_photos_are_kept_when_the_scan_was_cancelled_or_their_folder_failed(
    tmp_path: Path, album: Path
) -> None:
    with Library.open(tmp_path / "lib.sqlite") as library:
        _synced(library, album)
        count = library.stats()["photos"]

        cancelled = ScanResult(cancelled=True)
        report = library.sync(cancelled)
        assert report.cancelled and report.deleted == 0 and report.kept == count

        gps = album / "jpg/gps"
        partial = scan([album])
        partial.files = [f for f in partial.files if gps not in f.path.parents]
        partial.errors = [Skipped(gps, "Permission denied")]
        report = library.sync(partial)
        assert report.deleted == 0 and report.kept == 2
        assert library.stats()["photos"] == count
        assert (gps, "Permission denied") in library.skipped()

        report = library.sync(ScanResult(), roots=[album / "tiff"])
        assert report.deleted == 3
        assert library.stats()["photos"] == count - 3


def test_a_sync_leaves_alone_the_photos_of_another_album_folder_inside_its_own(
    tmp_path: Path,
) -> None:
    nu = tmp_path / "nu"
    photos, link = nu / "phötos", nu / "link"
    photos.mkdir(parents=True)
    for shade in range(2):
        Image.new("RGB", (8, 8), (shade * 90, 40, 40)).save(photos / f"{shade}.jpg")
    try:
        link.symlink_to(photos, target_is_directory=True)
    except OSError:
        pytest.skip("symbolic links not available")

    with Library.open(tmp_path / "lib.sqlite") as library:
        library.add_roots([nu, link])
        assert library.sync(scan([nu, link])).new == 4
        # the scan of nu alone reaches the link's photos under their plain path only
        report = library.sync(scan([nu]), roots=[nu])
        assert (report.deleted, report.unchanged) == (0, 2)
        assert library.stats()["photos"] == 4

        # a nested folder added on its own owns its photos too
        library.add_roots([photos])
        (photos / "0.jpg").unlink()
        assert library.sync(scan([nu]), roots=[nu]).deleted == 0
        assert library.sync(scan([photos]), roots=[photos]).deleted == 1
        assert library.sync(scan([link]), roots=[link]).deleted == 1
        assert library.sync(scan([nu, photos, link])).unchanged == 2


def test_cancel_during_sync_keeps_what_was_read(
    tmp_path: Path, album: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_module, "SYNC_CHUNK", 5)
    cancel = threading.Event()
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if done >= 5:
            cancel.set()

    with Library.open(tmp_path / "lib.sqlite") as library:
        library.add_roots([album])
        found = scan([album])
        report = library.sync(found, cancel=cancel, progress=progress)
        assert report.cancelled and report.new == 5 and report.deleted == 0
        assert seen[0] == (0, len(found.files)) and seen[-1] == (5, len(found.files))
        assert library.sync(scan([album])).new == len(found.files) - 5


def _name(raw: bytes) -> str:
    """A file name from its bytes, as the scan reads it (``surrogateescape`` on POSIX)."""
    return os.fsdecode(raw)


@pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that takes any bytes")
def test_names_that_are_not_utf8_are_stored_and_given_back_exactly(tmp_path: Path) -> None:
    root = tmp_path / "album"
    odd = root / _name(b"caf\xe9")  # a folder whose name is not UTF-8
    near = root / _name(b"caf\xe9x")  # the same bytes and more: not inside ``odd``
    photos = {
        odd / _name(b"photo \xff\xfe.jpg"): b"one",
        odd / f"esc{ESCAPE}ape.jpg": b"two",
        near / "IMG_1.jpg": b"three",
        root / "plain \u00e9\U0001f600.jpg": b"four",
        root / _name(b"\xe9t\xe9.jpg"): b"five",
    }
    raw_file = odd / _name(b"raw\xe9.NEF")
    for path, content in {**photos, raw_file: b"II*\x00"}.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    exact = {os.fsencode(path) for path in photos}

    with Library.open(tmp_path / "lib.sqlite") as library:
        report = _synced(library, root)
        assert report.new == len(photos)
        assert {os.fsencode(p.path) for p in library.pending()} == exact
        assert {os.fsencode(p.path) for p in library.pending(roots=[odd])} == {
            os.fsencode(p) for p in photos if p.parent == odd
        }
        for path in photos:
            record = library.record_for_path(path)
            assert record is not None and os.fsencode(record.path) == os.fsencode(path)
        assert (raw_file, RAW_REASON) in library.skipped()

        _index_all(library)
        for folder in (odd, near, root):
            inside = {os.fsencode(p) for p in photos if folder in p.parents}
            ids = library.photo_ids("fake", folder=folder)
            assert {os.fsencode(r.path) for r in library.records(ids)} == inside
            assert library.vectors("fake", folder=folder)[0].tolist() == ids.tolist()

        report = library.sync(scan([root]))
        assert (report.unchanged, report.new, report.deleted) == (len(photos), 0, 0)
        before = library.record_for_path(odd / _name(b"photo \xff\xfe.jpg"))
        moved_to = root / _name(b"moved \xe9.jpg")
        os.rename(odd / _name(b"photo \xff\xfe.jpg"), moved_to)
        report = library.sync(scan([root]))
        after = library.record_for_path(moved_to)
        assert report.moved == 1 and before is not None and after is not None
        assert after.id == before.id and after.status == "indexed"

        library.add_roots([odd])
        assert library.roots() == sorted([root, odd])


# --------------------------------------------------------------------------------------------
# reading


def test_vectors_come_as_one_normalised_matrix_filtered_by_date_and_folder(
    tmp_path: Path, album: Path
) -> None:
    with Library.open(tmp_path / "lib.sqlite") as library:
        _synced(library, album)
        vectors = _index_all(library)
        ids, matrix = library.vectors("fake")
        assert ids.dtype == np.int64 and matrix.dtype == np.float32
        assert matrix.flags["C_CONTIGUOUS"] and matrix.flags["WRITEABLE"]
        assert list(ids) == sorted(vectors)
        np.testing.assert_array_equal(matrix, np.stack([vectors[i] for i in ids]))
        np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-6)

        ids, _ = library.vectors("fake", folder=album / "jpg/gps")
        assert {r.path.name for r in library.records(ids)} == {"DSCN0010.jpg", "DSCN0012.jpg"}
        ids, _ = library.vectors("fake", folder=album / "jpg/gp")  # not a prefix match
        assert len(ids) == 0

        since, until = datetime(2008, 10, 22, 16, 29), datetime(2008, 10, 22, 16, 30)
        ids, part = library.vectors("fake", since=since, until=until)
        assert [r.path.name for r in library.records(ids)] == ["DSCN0012.jpg"]
        assert part.shape == (1, DIM)

        all_ids, _ = library.vectors("fake")
        records = library.records([int(all_ids[2]), 10**9, int(all_ids[0])])
        assert [r.id for r in records] == [all_ids[2], all_ids[0]]

        with pytest.raises(ModelMismatchError, match="indexed with model 'fake'"):
            library.vectors("other")
        assert library.vector_for(int(all_ids[0]), "other") is None

        # several at once: the same vectors; unknown ids and other models are left out
        wanted = [int(all_ids[2]), 10**9, int(all_ids[0]), int(all_ids[2])]
        found = library.vectors_for(wanted, "fake")
        assert sorted(found) == sorted({int(all_ids[0]), int(all_ids[2])})
        for photo_id, vector in found.items():
            np.testing.assert_array_equal(vector, library.vector_for(photo_id, "fake"))
        assert library.vectors_for(wanted, "other") == {}
        assert library.vectors_for([], "fake") == {}


def test_photo_ids_filter_like_vectors_without_reading_them(tmp_path: Path, album: Path) -> None:
    with Library.open(tmp_path / "lib.sqlite") as library:
        _synced(library, album)
        assert library.photo_ids().tolist() == []  # nothing indexed yet
        everything = library.photo_ids(indexed_only=False)
        assert everything.dtype == np.int64 and len(everything) == library.stats()["photos"]
        assert everything.tolist() == sorted(everything.tolist())
        library.use_model("fake", DIM)
        todo = library.pending()
        with library.indexing_lock():
            library.save_batch(
                "fake",
                [p.id for p in todo[2:]],
                _unit_rows(len(todo) - 2),
                [None] * (len(todo) - 2),
                [(todo[0].id, "broken")],
            )

        ids, _ = library.vectors("fake")
        assert library.photo_ids("fake").tolist() == ids.tolist()
        assert set(everything) - set(ids) == {todo[0].id, todo[1].id}
        gps = album / "jpg/gps"
        assert (
            library.photo_ids(folder=gps).tolist()
            == library.vectors("fake", folder=gps)[0].tolist()
        )
        since, until = datetime(2008, 10, 22, 16, 29), datetime(2008, 10, 22, 16, 30)
        assert (
            library.photo_ids(since=since, until=until).tolist()
            == library.vectors("fake", since=since, until=until)[0].tolist()
        )
        folder = album / "jpg/orientation"
        assert {
            r.path.parent
            for r in library.records(library.photo_ids(folder=folder, indexed_only=False))
        } == {folder}
        assert len(library.photo_ids(folder=folder, indexed_only=False)) == 6
        with pytest.raises(ModelMismatchError):
            library.photo_ids("other")


def test_vectors_reads_in_chunks_into_one_preallocated_matrix(tmp_path: Path) -> None:
    dim, count = 512, 6000
    path = tmp_path / "big.sqlite"
    with Library.open(path) as library:
        library.use_model("fake", dim)
    raw = sqlite3.connect(path)
    raw.executemany(
        "INSERT INTO photos (id, path, size, mtime_ns, content_hash, wall, status)"
        " VALUES (?, ?, 1, 1, ?, '2020-01-01T00:00:00.000000', 'pending')",
        [(i, f"/album/{i}.jpg", str(i)) for i in range(1, count + 1)],
    )
    raw.commit()
    raw.close()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    with Library.open(path) as library:
        with library.indexing_lock():
            library.save_batch("fake", range(1, count + 1), vectors, [None] * count)
        tracemalloc.start()
        try:
            ids, matrix = library.vectors("fake")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        np.testing.assert_array_equal(matrix, vectors)
        assert ids.tolist() == list(range(1, count + 1))
        # the result and one chunk of rows; holding every row first would double it
        assert peak < 1.25 * (matrix.nbytes + ids.nbytes), peak / matrix.nbytes


def test_a_damaged_vector_comes_back_as_nan(tmp_path: Path, album: Path) -> None:
    with Library.open(tmp_path / "lib.sqlite") as library:
        _synced(library, album)
        vectors = _index_all(library)
        victim = sorted(vectors)[3]
        raw = sqlite3.connect(library.path)
        raw.execute("UPDATE embeddings SET vector = x'0000' WHERE photo_id = ?", (victim,))
        raw.commit()
        raw.close()
        ids, matrix = library.vectors("fake")
        assert ids.tolist() == sorted(vectors)
        assert np.isnan(matrix[3]).all()
        np.testing.assert_array_equal(
            np.delete(matrix, 3, axis=0), np.stack([vectors[i] for i in ids if i != victim])
        )


def test_vector_version_counts_every_removal_and_vectors_added_the_rest(
    tmp_path: Path, album: Path, album_writable: Callable[..., Any]
) -> None:
    with Library.open(tmp_path / "lib.sqlite") as library:
        _synced(library, album)
        library.use_model("fake", DIM)
        todo = library.pending()
        start = library.vector_version
        assert start.removed == 0
        half, rest = todo[: len(todo) // 2], todo[len(todo) // 2 :]
        first, second = _unit_rows(len(half), 1), _unit_rows(len(rest), 2)
        with library.indexing_lock():
            library.save_batch("fake", [p.id for p in half], first, [None] * len(half))
        middle = library.vector_version
        assert middle.revision > start.revision and middle.removed == 0
        with library.indexing_lock():
            library.save_batch("fake", [p.id for p in rest], second, [None] * len(rest))
        end = library.vector_version
        assert end.removed == 0

        ids, matrix = library.vectors_added("fake", middle.revision)
        order = np.argsort([p.id for p in rest])
        assert ids.tolist() == sorted(p.id for p in rest)
        np.testing.assert_array_equal(matrix, second[order])
        assert len(library.vectors_added("fake", start.revision)[0]) == len(todo)
        assert len(library.vectors_added("fake", end.revision)[0]) == 0
        with pytest.raises(ModelMismatchError):
            library.vectors_added("other", 0)

        def removed() -> int:
            return library.vector_version.removed

        with library.indexing_lock():  # overwritten
            library.save_batch("fake", [half[0].id], _unit_rows(1, 3), [None])
        assert removed() == 1
        assert library.vectors_added("fake", end.revision)[0].tolist() == [half[0].id]
        with library.indexing_lock():  # failed on a second try
            library.save_batch("fake", [], np.zeros((0, DIM), np.float32), [], [(half[1].id, "x")])
        assert removed() == 2
        gps = album / "jpg/gps"
        with album_writable(album):
            (gps / "DSCN0012.jpg").unlink()  # deleted: the row goes, with its vector
            os.utime(gps / "DSCN0010.jpg", ns=(time.time_ns(), time.time_ns()))  # changed
        library.sync(scan([album]))
        assert removed() == 4
        indexed = library.stats()["indexed"]
        library.use_model("other", DIM, replace=True)
        assert removed() == 4 + indexed


def test_a_snapshot_sees_one_state_of_the_library(tmp_path: Path, album: Path) -> None:
    with (
        Library.open(tmp_path / "lib.sqlite") as library,
        Library.open(tmp_path / "lib.sqlite") as writer,
    ):
        _synced(library, album)
        vectors = _index_all(library)
        with library.snapshot():
            version = library.vector_version
            with writer.indexing_lock():
                writer.save_batch(
                    "fake", [], np.zeros((0, DIM), np.float32), [], [(min(vectors), "x")]
                )
            assert library.vector_version == version
            with library.snapshot():  # nested: the same moment
                assert len(library.vectors("fake")[0]) == len(vectors)
            with pytest.raises(LibraryError):
                library.add_roots([album])  # nothing is written inside a snapshot
        assert library.vector_version.removed == version.removed + 1
        assert len(library.vectors("fake")[0]) == len(vectors) - 1


def test_empty_library_gives_empty_arrays(tmp_path: Path) -> None:
    with Library.open(tmp_path / "lib.sqlite") as library:
        ids, matrix = library.vectors("any")
        assert ids.shape == (0,) and matrix.shape == (0, 0)
        library.use_model("m", DIM)
        assert library.vectors("m")[1].shape == (0, DIM)


def test_failures_timeline_and_stats(tmp_path: Path, album: Path) -> None:
    with Library.open(tmp_path / "lib.sqlite") as library:
        _synced(library, album)
        library.use_model("fake", DIM)
        todo = library.pending()
        bad, good = todo[0], todo[1:]
        with library.indexing_lock():
            library.save_batch(
                "fake",
                [p.id for p in good],
                _unit_rows(len(good)),
                [None] * len(good),
                [(bad.id, "cannot read it: broken")],
            )
        failures = library.failures()
        assert [(f.path, f.error, f.status) for f in failures] == [
            (bad.path, "cannot read it: broken", "failed")
        ]
        stats = library.stats()
        assert stats["indexed"] == len(good) and stats["failed"] == 1 and stats["pending"] == 0
        assert stats["model"] == "fake" and stats["embed_dim"] == DIM

        timeline = library.timeline(now=datetime(2030, 1, 1))
        everything = timeline.find("all")
        assert everything is not None
        assert (everything.count, everything.indexed) == (len(todo), len(good))
        day = timeline.find("2008-10-22")  # two GPS photos and the truncated copy of a third
        assert day is not None and day.count == day.indexed == 3


# --------------------------------------------------------------------------------------------
# models and locking


def test_another_model_needs_an_explicit_reindex(tmp_path: Path, album: Path) -> None:
    with Library.open(tmp_path / "lib.sqlite") as library:
        _synced(library, album)
        _index_all(library, "first")
        with pytest.raises(ModelMismatchError, match="use --model first"):
            library.use_model("second", DIM)
        library.use_model("second", 4, replace=True)
        stats = library.stats()
        assert stats["indexed"] == 0 and stats["pending"] == stats["photos"]
        assert library.model_name == "second" and library.vectors("second")[1].shape == (0, 4)


def test_the_same_model_from_other_weights_needs_an_explicit_reindex(
    tmp_path: Path, album: Path
) -> None:
    with Library.open(tmp_path / "lib.sqlite") as library:
        _synced(library, album)
        _index_all(library, "first")  # a library indexed before it recorded the weights
        library.use_model("first", DIM, weights="a" * 64)  # records them, keeps the vectors
        assert library.model_weights == "a" * 64 and library.stats()["pending"] == 0
        library.check_model("first", "a" * 64)
        library.check_model("first")  # a reader that does not know the weights
        for refused in (
            lambda: library.use_model("first", DIM, weights="b" * 64),
            lambda: library.check_model("first", "b" * 64),
        ):
            with pytest.raises(ModelMismatchError, match="other weights of model 'first'"):
                refused()
        assert library.stats()["pending"] == 0
        library.use_model("first", DIM, weights="b" * 64, replace=True)
        stats = library.stats()
        assert stats["indexed"] == 0 and stats["pending"] == stats["photos"] > 0
        assert library.model_weights == "b" * 64


def test_one_writer_at_a_time_and_readers_never_wait(tmp_path: Path, album: Path) -> None:
    path = tmp_path / "lib.sqlite"
    with Library.open(path) as first, Library.open(path) as second:
        _synced(first, album)
        _index_all(first)
        with first.indexing_lock():
            with pytest.raises(LibraryBusyError, match="another clipsearch-tui process"):
                second.sync(scan([album]))
            with pytest.raises(RuntimeError, match="indexing_lock"):
                second.save_batch("fake", [], np.zeros((0, DIM), np.float32), [])
        second.sync(scan([album]))  # free again

        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM embeddings")
        started = time.monotonic()
        ids, matrix = second.vectors("fake")
        assert time.monotonic() - started < 1.0
        assert len(ids) == len(matrix) == second.stats()["indexed"] > 0
        writer.execute("ROLLBACK")
        writer.close()
