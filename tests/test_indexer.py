"""Tests for core.indexer: indexing a real album end to end with a tiny model."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core import indexer, thumbnails
from core import sync as sync_module
from core.capture_time import read_capture_time
from core.database import LibraryBusyError, ModelMismatchError
from core.encoder import ClipModel
from core.errors import ClipsearchError
from core.indexer import IndexProgress, index
from core.library import Library
from core.preprocess import load_image
from core.scan import scan
from tests.conftest import BROKEN_PHOTOS, SAMPLES, SKIPPED_FILES

REPO = Path(__file__).resolve().parents[1]


def _listing(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file under ``root``: its SHA-256, mode and modification time."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        out[path.relative_to(root).as_posix()] = (digest, st.st_mode, st.st_mtime_ns)
    return out


@pytest.fixture
def library(clipsearch_home: Path) -> Iterator[Library]:
    with Library.open() as opened:
        yield opened


class _Recorder:
    """Counts the photos a model encodes and the files the indexer decodes."""

    def __init__(self, model: ClipModel, monkeypatch: pytest.MonkeyPatch) -> None:
        self.encoded = 0
        self.decoded: list[Path] = []
        encode = model.encode_pixels

        def counting_encode(pixels: np.ndarray) -> np.ndarray:
            self.encoded += len(pixels)
            return encode(pixels)

        def recording_load(path: Path, **kwargs: Any) -> Image.Image:
            self.decoded.append(Path(path))
            return load_image(path, **kwargs)

        monkeypatch.setattr(model, "encode_pixels", counting_encode)
        monkeypatch.setattr(indexer, "load_image", recording_load)

    def reset(self) -> None:
        self.encoded = 0
        self.decoded.clear()


def test_every_file_is_indexed_or_recorded_and_the_album_is_untouched(
    library: Library, tiny_model: ClipModel, album: Path
) -> None:
    before = _listing(album)
    reports: list[IndexProgress] = []
    summary = index(library, tiny_model, [album], progress=reports.append, batch_size=4)
    assert _listing(album) == before

    scanned = scan([album])
    indexed = {r.path for r in library.records(library.vectors(tiny_model.name)[0])}
    failed = {r.path for r in library.failures()}
    skipped = {path for path, _ in library.skipped()}
    assert failed == {album / name for name in BROKEN_PHOTOS}
    assert skipped == {album / name for name in SKIPPED_FILES}
    assert indexed | failed == {entry.path for entry in scanned.files}
    assert not indexed & failed
    assert all(r.error and str(r.path) in r.error for r in library.failures())
    assert summary.indexed == len(indexed) and not summary.cancelled
    assert {p for p, _ in summary.failed} == failed
    assert {p for p, _ in summary.skipped} == skipped
    assert summary.remaining == 0 and summary.new == len(scanned.files)
    assert summary.to_dict()["failed"][0].keys() == {"path", "reason"}

    encoding = [r for r in reports if r.stage == "encoding"]
    assert encoding[0].done == 0 and encoding[-1].done == encoding[-1].total == len(scanned.files)
    assert [r.done for r in encoding] == sorted(r.done for r in encoding)
    assert all(r.rate_per_s > 0 for r in encoding[1:])
    assert encoding[-1].errors == len(BROKEN_PHOTOS) and encoding[-1].eta_s == 0
    assert encoding[-1].current is not None


def test_indexed_vectors_match_the_model_and_thumbnails_are_small_and_upright(
    library: Library, tiny_model: ClipModel, album: Path
) -> None:
    index(library, tiny_model, [album], batch_size=5, decoders=2)
    for name in ("jpg/gps/DSCN0010.jpg", "heic/mobile/iphone_13_pro_max.HEIC", "tiff/BSG1.tiff"):
        record = library.record_for_path(album / name)
        assert record is not None and record.status == "indexed"
        stored = library.vector_for(record.id, tiny_model.name)
        assert stored is not None
        expected = tiny_model.encode_images([album / name])[0]
        assert float(stored @ expected) > 0.9999

    records = library.records(library.vectors(tiny_model.name)[0])
    assert records and all(r.thumbnail is not None for r in records)
    for record in records:
        assert record.thumbnail is not None and record.thumbnail.parent == library.thumbnail_dir
        with Image.open(record.thumbnail) as thumb:
            assert max(thumb.size) <= thumbnails.THUMBNAIL_MAX_SIDE
            assert thumb.format == "JPEG"

    def pixels(name: str) -> np.ndarray:
        """The thumbnail in grey at 64x48, standardised to mean 0 and deviation 1."""
        record = library.record_for_path(album / "jpg/orientation" / name)
        assert record is not None and record.thumbnail is not None
        with Image.open(record.thumbnail) as thumb:
            grey = np.asarray(thumb.convert("L").resize((64, 48)), dtype=np.float32)
        return (grey - grey.mean()) / grey.std()

    # the eight orientation samples show one scene; exposure differs a little between them
    upright = pixels("landscape_1.jpg")
    for name in ("landscape_3.jpg", "landscape_6.jpg", "landscape_8.jpg"):
        thumb = pixels(name)
        assert np.mean(thumb * upright) > 0.95, name
        assert np.mean(thumb[:, ::-1] * upright) < 0.7, name  # a mirrored one would fail
    portrait = library.record_for_path(album / "jpg/orientation/portrait_6.jpg")
    assert portrait is not None and portrait.thumbnail is not None
    with Image.open(portrait.thumbnail) as thumb:
        assert thumb.height > thumb.width


def test_thumbnails_come_from_the_model_sized_image_and_look_like_the_photo(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    from core.library import PendingPhoto
    from core.preprocess import preprocess
    from core.registry import get_spec
    from core.sync import file_digest

    spec = get_spec("ViT-B-32-256-datacomp").preprocess
    model: Any = SimpleNamespace(spec=SimpleNamespace(preprocess=spec))
    large = SAMPLES / "jpg/mobile/HMD_Nokia_8.3_5G.jpg"  # 1200 x 515
    turned = SAMPLES / "jpg/hdr/canon_hdr_NO.jpg"  # orientation 6
    small = SAMPLES / "jpg/gps/DSCN0010.jpg"  # 320 x 240
    tiny = SAMPLES / "jpg/Nikon_D70.jpg"  # 100 x 66: smaller than the model input
    for number, path in enumerate((large, turned, small, tiny)):
        photo = PendingPhoto(number, path, f"hash{number}")
        decoded = indexer._decode(photo, model, 2 * spec.size, tmp_path)
        image = load_image(path, min_side=2 * spec.size)
        assert decoded.error is None and decoded.pixels is not None
        np.testing.assert_array_equal(decoded.pixels, preprocess(image, spec))
        # named after the whole file's digest, read as the photo was decoded
        assert decoded.digest == file_digest(path)
        assert decoded.thumbnail == f"{decoded.digest}.jpg"
        with Image.open(tmp_path / decoded.thumbnail) as thumb:
            thumb.load()
        direct = image.copy()
        direct.thumbnail((thumbnails.THUMBNAIL_MAX_SIDE,) * 2, Image.Resampling.BICUBIC, 2.0)
        assert thumb.size == direct.size, path.name
        # the same picture as a thumbnail made from the decoded photo (JPEG noise aside)
        ours = np.asarray(thumb.convert("L"), dtype=np.float64).ravel()
        theirs = np.asarray(direct.convert("L"), dtype=np.float64).ravel()
        correlation = np.corrcoef(ours, theirs)[0, 1]
        assert correlation > 0.98, path.name


def test_rescans_encode_only_what_changed(
    library: Library,
    tiny_model: ClipModel,
    album: Path,
    album_writable: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = _Recorder(tiny_model, monkeypatch)
    first = index(library, tiny_model, [album])
    photos = first.indexed + len(first.failed)
    assert recorder.encoded == first.indexed and len(recorder.decoded) == photos

    exif_reads: list[Path] = []
    monkeypatch.setattr(
        sync_module,
        "read_capture_time",
        lambda path, mtime_ns=None: (
            exif_reads.append(Path(path)) or read_capture_time(path, mtime_ns)
        ),
    )
    recorder.reset()
    again = index(library, tiny_model)
    assert (again.indexed, again.unchanged) == (0, first.indexed)
    assert again.failed == first.failed  # still failed, counted as failed, not tried again
    assert recorder.encoded == 0 and recorder.decoded == [] and exif_reads == []

    touched = album / "jpg/gps/DSCN0012.jpg"
    renamed_from, renamed_to = album / "jpg/Nikon_D70.jpg", album / "jpg/nikon-renamed.jpg"
    deleted = album / "tiff/Arbitro.tiff"
    broken = album / BROKEN_PHOTOS[0]
    old = library.record_for_path(renamed_from)
    assert old is not None
    old_vector = library.vector_for(old.id, tiny_model.name)
    with album_writable(album):
        os.utime(touched, ns=(time.time_ns(), time.time_ns()))
        os.rename(renamed_from, renamed_to)
        deleted.unlink()
        os.utime(broken, ns=(time.time_ns(), time.time_ns()))

    recorder.reset()
    exif_reads.clear()
    changed = index(library, tiny_model)
    assert recorder.encoded == 1 and changed.indexed == 1
    assert sorted(recorder.decoded) == sorted([touched, broken])
    assert (changed.changed, changed.moved, changed.deleted) == (2, 1, 1)
    # the broken photo failed again; the other one failed earlier and is still counted
    assert [p for p, _ in changed.failed] == sorted([p for p, _ in first.failed], key=str)
    assert broken in {p for p, _ in first.failed}
    assert sorted(exif_reads) == sorted([touched, broken])

    moved = library.record_for_path(renamed_to)
    assert moved is not None and moved.id == old.id and moved.status == "indexed"
    np.testing.assert_array_equal(library.vector_for(moved.id, tiny_model.name), old_vector)
    assert library.record_for_path(deleted) is None
    assert library.stats()["photos"] == photos - 1


def test_a_failing_batch_only_fails_its_bad_photo(
    library: Library, tiny_model: ClipModel, album: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = tiny_model.preprocess(album / "jpg/gps/DSCN0010.jpg")
    encode = tiny_model.encode_pixels

    def picky(pixels: np.ndarray) -> np.ndarray:
        if any(np.array_equal(p, poison) for p in pixels):
            raise ClipsearchError("ncnn failed to encode an image (code -100)")
        return encode(pixels)

    monkeypatch.setattr(tiny_model, "encode_pixels", picky)
    summary = index(library, tiny_model, [album], batch_size=4)
    failed = dict(summary.failed)
    assert failed[album / "jpg/gps/DSCN0010.jpg"] == "ncnn failed to encode an image (code -100)"
    assert len(failed) == len(BROKEN_PHOTOS) + 1
    assert summary.indexed == len(scan([album]).files) - len(failed)


def test_date_range_encodes_only_photos_taken_then(
    library: Library, tiny_model: ClipModel, album: Path
) -> None:
    summary = index(
        library, tiny_model, [album], since=datetime(2008, 1, 1), until=datetime(2009, 1, 1)
    )
    indexed = {r.path.name for r in library.records(library.vectors(tiny_model.name)[0])}
    assert indexed == {"Canon_40D.jpg", "Nikon_D70.jpg", "DSCN0010.jpg", "DSCN0012.jpg"}
    assert summary.failed == [(album / "broken/truncated.jpg", summary.failed[0][1])]
    assert summary.remaining == library.stats()["pending"] > 0
    timeline = library.timeline()
    assert timeline.relative[-1].count == library.stats()["photos"]


def test_cancel_stops_between_photos_and_the_next_run_resumes(
    library: Library, tiny_model: ClipModel, album: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancel = threading.Event()
    recorder = _Recorder(tiny_model, monkeypatch)

    def progress(report: IndexProgress) -> None:
        if report.stage == "encoding" and report.done >= 3:
            cancel.set()

    summary = index(library, tiny_model, [album], progress=progress, cancel=cancel, batch_size=3)
    assert summary.cancelled
    handled = summary.indexed + len(summary.failed)
    # the third photo is always reported (its batch is committed); the photos being encoded
    # then, one per encoder thread at most, are finished and kept
    assert 3 <= handled <= 3 + tiny_model.threads and recorder.encoded == summary.indexed
    assert summary.remaining == library.stats()["pending"] == summary.new - handled

    recorder.reset()
    rest = index(library, tiny_model, batch_size=3)
    assert not rest.cancelled and rest.remaining == 0
    tried_now = [item for item in rest.failed if item not in summary.failed]
    assert rest.indexed + len(tried_now) == summary.new - handled
    assert len(recorder.decoded) == summary.new - handled
    # unchanged: what was indexed before this run, not the pending photos it encoded
    assert rest.unchanged == summary.indexed


def test_a_library_of_another_model_is_refused(
    library: Library, tiny_model: ClipModel, album: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library.add_roots([album])
    library.use_model("other-model", tiny_model.embed_dim)
    with pytest.raises(ModelMismatchError, match="indexed with model 'other-model'") as refused:
        index(library, tiny_model)
    # the re-index it suggests names the album folder, so that it runs as it is
    command = f"clipsearch-tui index {shlex.quote(str(album))} --model {tiny_model.name} --reindex"
    assert command in str(refused.value)
    with (
        Library.open(library.path.with_name("empty.sqlite")) as empty,
        pytest.raises(ClipsearchError, match="no photo folders"),
    ):
        index(empty, tiny_model)


def test_a_missing_root_is_reported_and_its_photos_kept(
    library: Library, tiny_model: ClipModel, album: Path, tmp_path: Path
) -> None:
    other = tmp_path / "usb-drive"
    other.mkdir()
    (other / "photo.jpg").write_bytes((album / "jpg/Canon_40D.jpg").read_bytes())
    index(library, tiny_model, [album, other])
    other.joinpath("photo.jpg").unlink()
    other.rmdir()
    summary = index(library, tiny_model)
    assert (other, "folder not found") in summary.skipped
    assert summary.deleted == 0
    assert library.record_for_path(other / "photo.jpg") is not None


def test_photos_gone_while_the_run_reads_them_stay_pending_not_failed(
    library: Library, tiny_model: ClipModel, album: Path
) -> None:
    """An album folder unmounted (here: renamed) after the scan: its photos are not failed
    for good, and the run after it comes back encodes them."""
    away = album.with_name("album-unmounted")

    def unmount_when_encoding_starts(progress: IndexProgress) -> None:
        if progress.stage == "encoding" and progress.done == 0 and album.exists():
            album.rename(away)

    summary = index(library, tiny_model, [album], progress=unmount_when_encoding_starts)
    assert not album.exists()
    assert summary.indexed == 0 and summary.failed == []
    assert summary.vanished > len(BROKEN_PHOTOS)
    assert summary.remaining == summary.vanished == library.stats()["pending"]
    assert list(library.failures()) == []

    away.rename(album)
    again = index(library, tiny_model)
    broken = sorted(album / name for name in BROKEN_PHOTOS)
    assert sorted(path for path, _ in again.failed) == broken
    assert again.indexed == summary.vanished - len(broken)
    assert again.vanished == again.remaining == 0


def test_a_folder_named_another_way_is_the_same_album_folder(
    library: Library, tiny_model: ClipModel, album: Path, tmp_path: Path
) -> None:
    """A path through ``..`` or a symbolic link to an album folder names the same photos:
    indexing it adds nothing, and the folder filters read it as the album folder."""
    photos = tmp_path / "photos"
    (photos / "a" / "gps").mkdir(parents=True)
    (photos / "b").mkdir()
    for name in ("jpg/Canon_40D.jpg", "jpg/Nikon_D70.jpg", "jpg/gps/DSCN0010.jpg"):
        shutil.copy(album / name, photos / "a" / Path(name).relative_to("jpg"))
    link = tmp_path / "link"
    link.symlink_to(photos / "a", target_is_directory=True)
    assert index(library, tiny_model, [photos / "a"]).indexed == 3
    for other_name in (photos / "b" / ".." / "a", link, f"{photos}/./a/"):
        again = index(library, tiny_model, [other_name])
        assert (again.new, again.copied, again.moved, again.indexed) == (0, 0, 0, 0), other_name
        assert library.stats()["photos"] == 3 and library.roots() == [photos / "a"]
    for folder, same in (
        (link, photos / "a"),
        (photos / "b" / ".." / "a", photos / "a"),
        (link / "gps", photos / "a" / "gps"),
    ):
        ids = list(library.photo_ids(folder=folder))
        assert ids and ids == list(library.photo_ids(folder=same)), folder
        assert library.timeline(folder=folder) == library.timeline(folder=same)


# --------------------------------------------------------------------------------------------
# several processes


def _child_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, CLIPSEARCH_HOME=str(home), PYTHONPATH=str(REPO))
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def test_a_second_indexer_gets_library_busy(
    library: Library, tiny_model: ClipModel, album: Path, clipsearch_home: Path
) -> None:
    index(library, tiny_model, [album])
    holder = textwrap.dedent(
        """
        import sys
        from core.library import Library
        with Library.open() as library, library.indexing_lock():
            print("locked", flush=True)
            sys.stdin.read()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", holder],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_child_env(clipsearch_home),
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(LibraryBusyError, match="another clipsearch-tui process is indexing"):
            index(library, tiny_model)
        from core.repair import repair_library

        with pytest.raises(LibraryBusyError, match="indexing this library, so the repair cannot"):
            repair_library(library.path)
        ids, matrix = library.vectors(tiny_model.name)  # reading goes on
        assert len(ids) == len(matrix) > 0
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    after = index(library, tiny_model)
    assert (after.unchanged, len(after.failed)) == (len(ids), len(library.failures()))


_KILLED_INDEXER = """
import sys, time
from pathlib import Path
from core import indexer
from core.encoder import ClipModel
from core.library import Library

db, model_dir, album, log = sys.argv[1:5]
model = ClipModel(model_dir, threads=1, verify=False)
encode, load = model.encode_pixels, indexer.load_image

def slow_encode(pixels):
    time.sleep(0.12)
    return encode(pixels)

def logged_load(path, **kwargs):
    with open(log, "a") as out:
        out.write(f"{path}\\n")
    return load(path, **kwargs)

model.encode_pixels = slow_encode
indexer.load_image = logged_load
with Library.open(Path(db)) as library:
    indexer.index(library, model, [album], batch_size=2, decoders=1)
print("finished", flush=True)
"""


def _committed(db: Path) -> set[str]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT path FROM photos WHERE status != 'pending'").fetchall()
    except sqlite3.Error:
        return set()
    return {path for (path,) in rows}


def _check_consistent(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        lost = conn.execute(
            "SELECT count(*) FROM photos AS p LEFT JOIN embeddings AS e ON e.photo_id = p.id "
            "WHERE p.status = 'indexed' AND e.photo_id IS NULL"
        ).fetchone()[0]
        stray = conn.execute(
            "SELECT count(*) FROM embeddings AS e LEFT JOIN photos AS p ON p.id = e.photo_id "
            "WHERE p.id IS NULL OR p.status != 'indexed'"
        ).fetchone()[0]
    assert (lost, stray) == (0, 0)


def test_killed_indexing_leaves_a_consistent_library_that_resumes(
    tiny_model: ClipModel,
    album: Path,
    clipsearch_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "killed.sqlite"
    log = tmp_path / "decoded.log"
    committed: set[str] = set()
    for batches in (1, 3, 5):
        before = set(committed)
        log.write_text("")
        child = subprocess.Popen(
            [sys.executable, "-c", _KILLED_INDEXER, str(db), str(tiny_model.model_dir), str(album)]
            + [str(log)],
            env=_child_env(clipsearch_home),
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while len(_committed(db)) < 2 * batches and time.monotonic() < deadline:
            assert child.poll() is None, "the indexer finished before it was killed"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        _check_consistent(db)
        committed = _committed(db)
        assert len(committed) >= 2 * batches and before <= committed
        decoded = set(log.read_text().split())
        assert not decoded & before, "a committed photo was decoded again"

    recorder = _Recorder(tiny_model, monkeypatch)
    with Library.open(db) as library:
        pending = {p.path for p in library.pending()}
        summary = index(library, tiny_model)
        assert set(recorder.decoded) == pending
        assert not pending & {Path(p) for p in committed}
        assert summary.remaining == 0 and not summary.cancelled
        stats = library.stats()
        assert stats["pending"] == 0
        assert stats["indexed"] + stats["failed"] == len(scan([album]).files)
    _check_consistent(db)


def test_a_failure_stays_with_its_path_and_is_counted_every_run(
    library: Library,
    tiny_model: ClipModel,
    tmp_path: Path,
) -> None:
    """A photo that failed under one name (renamed while it waited) is tried under its new one;
    a photo still failed is counted as failed, not unchanged, on every later run."""
    album = tmp_path / "renames"
    album.mkdir()
    shutil.copyfile(SAMPLES / "jpg/Canon_40D.jpg", album / "good.jpg")
    (album / "bad.jpg").write_text("not a photo")
    first = index(library, tiny_model, [album])
    assert first.indexed == 1 and [p for p, _ in first.failed] == [album / "bad.jpg"]
    again = index(library, tiny_model, [album])
    assert (again.indexed, again.unchanged) == (0, 1)
    assert [p for p, _ in again.failed] == [album / "bad.jpg"]  # still failed, said so

    # the failure was recorded under the old name; the same content under a new name was a
    # "move" that kept the failure for ever. A photo never encoded has no stored digest of its
    # whole file, so the new name cannot be proven the same file: a new photo, the old one gone
    (album / "bad.jpg").rename(album / "renamed.jpg")
    moved = index(library, tiny_model, [album])
    assert (moved.moved, moved.new, moved.deleted) == (0, 1, 1)
    assert [p for p, _ in moved.failed] == [album / "renamed.jpg"]  # tried again, fails again
    assert [r.path for r in library.failures()] == [album / "renamed.jpg"]

    # a failed photo whose file changes is tried again (and now decodes)
    shutil.copyfile(SAMPLES / "jpg/Nikon_D70.jpg", album / "renamed.jpg")
    fixed = index(library, tiny_model, [album])
    assert fixed.indexed == 1 and fixed.failed == [] and library.failures() == []


def test_a_failed_photo_whose_name_is_not_utf8_is_recorded_with_its_reason(
    library: Library, tiny_model: ClipModel, tmp_path: Path
) -> None:
    album = tmp_path / "album"
    album.mkdir()
    broken = album / os.fsdecode(b"caf\xe9.jpg")
    broken.write_text("this is not a JPEG\n")
    shutil.copy2(SAMPLES / "jpg/Canon_40D.jpg", album / "fine.jpg")
    summary = index(library, tiny_model, [album])  # the reason quotes the name: it is stored
    assert summary.indexed == 1 and [path for path, _ in summary.failed] == [broken]
    (record,) = library.failures()
    assert record.path == broken and record.error is not None and str(broken) in record.error
    again = index(library, tiny_model)
    assert again.indexed == 0 and dict(again.failed)[broken] == record.error
