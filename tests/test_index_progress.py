"""Pause, stop and progress of an indexing run, photo by photo (core.indexer, core.progress).

A pause or a stop takes effect between photos: the photos being encoded are finished and
committed, nothing else is started, and the next run encodes only the rest, to the same vectors
as an uninterrupted run. The rate leaves paused time out and there is no ETA while paused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core import indexer
from core.encoder import ClipModel
from core.indexer import IndexProgress, encode_photo, index
from core.library import Library
from core.progress import StageClock
from core.scan import scan

STOP_AFTER = 3
"""The photo after which the tests pause or stop a run (the batch holds more than that)."""


@pytest.fixture
def library(clipsearch_home: Path) -> Iterator[Library]:
    with Library.open() as opened:
        yield opened


@pytest.fixture
def one_thread_model(tiny_model: ClipModel) -> Iterator[ClipModel]:
    """The tiny model with one encoder thread: one photo in flight, so a stop is exact."""
    model = ClipModel(tiny_model.model_dir, threads=1, precision="fp32")
    yield model
    model.close()


@pytest.fixture
def every_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """Report every photo (the run otherwise reports at most every 0.1 s)."""
    monkeypatch.setattr(indexer, "PROGRESS_INTERVAL_S", 0.0)


def _handled(library: Library) -> int:
    """Photos indexed or failed, read through a connection of its own."""
    with Library.open(library.path) as reader:
        stats = reader.stats()
    return int(stats["indexed"]) + int(stats["failed"])


def _vectors(library: Library, name: str) -> dict[Path, np.ndarray]:
    ids, _ = library.vectors(name)
    out = {}
    for record in library.records(ids):
        vector = library.vector_for(record.id, name)
        assert vector is not None
        out[record.path] = vector
    return out


def test_a_photo_alone_gives_its_row_of_a_batch_bit_for_bit(
    tiny_model: ClipModel, album: Path
) -> None:
    paths = sorted(album.glob("jpg/*.jpg"))[:6]
    pixels = np.stack([tiny_model.preprocess(path) for path in paths])
    batch = tiny_model.encode_pixels(pixels)
    for row, one in zip(batch, pixels, strict=True):
        vector, error = encode_photo(tiny_model, one)
        assert error == "" and vector is not None
        assert np.array_equal(vector, row)


def test_stop_after_photo_k_of_a_batch_commits_k_and_the_next_run_the_rest(
    library: Library,
    one_thread_model: ClipModel,
    tiny_model: ClipModel,
    album: Path,
    every_report: None,
    tmp_path: Path,
) -> None:
    cancel = threading.Event()
    reports: list[IndexProgress] = []

    def progress(report: IndexProgress) -> None:
        reports.append(report)
        if report.stage == "encoding" and report.done == STOP_AFTER:
            cancel.set()

    first = index(
        library, one_thread_model, [album], progress=progress, cancel=cancel, batch_size=16
    )
    assert first.cancelled and first.new > 16 > STOP_AFTER
    # one photo in flight: the run stops exactly after the photo it was stopped at, with it
    # committed although its batch of 16 was not full
    assert _handled(library) == STOP_AFTER
    assert first.remaining == first.new - STOP_AFTER
    assert reports[-1].done == STOP_AFTER and not reports[-1].paused

    decoded: list[Path] = []
    real_load = indexer.load_image

    def counting_load(path: Path, **kwargs: object) -> object:
        decoded.append(Path(path))
        return real_load(path, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(indexer, "load_image", counting_load)
        rest = index(library, tiny_model, batch_size=5)
    assert not rest.cancelled and rest.remaining == 0
    assert len(decoded) == first.new - STOP_AFTER  # nothing decoded or encoded twice

    # the same vectors as one run without a stop, and without batches
    with Library.open(tmp_path / "whole.sqlite", thumbnail_dir=tmp_path / "thumbs") as whole:
        index(whole, tiny_model, [album], batch_size=1000)
        expected = _vectors(whole, tiny_model.name)
    got = _vectors(library, tiny_model.name)
    assert got.keys() == expected.keys() and len(got) == first.new - 2  # two broken photos
    for path, vector in expected.items():
        assert np.array_equal(got[path], vector), path


def test_stop_with_several_threads_keeps_the_photos_in_flight(
    library: Library, tiny_model: ClipModel, album: Path, every_report: None
) -> None:
    cancel = threading.Event()

    def progress(report: IndexProgress) -> None:
        if report.stage == "encoding" and report.done == STOP_AFTER:
            cancel.set()

    summary = index(library, tiny_model, [album], progress=progress, cancel=cancel, batch_size=16)
    assert summary.cancelled
    # the photos already being encoded when the stop came (at most model.threads) are kept
    assert STOP_AFTER <= _handled(library) <= STOP_AFTER + tiny_model.threads
    assert summary.remaining == summary.new - _handled(library)


def test_pause_between_photos_commits_and_leaves_paused_time_out_of_the_rate(
    library: Library, one_thread_model: ClipModel, album: Path, every_report: None
) -> None:
    pause = threading.Event()
    reports: list[tuple[float, IndexProgress]] = []
    seen_while_paused: list[int] = []
    paused_for = 1.0

    def progress(report: IndexProgress) -> None:
        reports.append((time.monotonic(), report))
        if report.stage == "encoding" and report.done == STOP_AFTER and not seen_while_paused:
            pause.set()
        if report.paused:
            seen_while_paused.append(_handled(library))
            time.sleep(paused_for)  # the run is paused now: this time must not count
            pause.clear()

    summary = index(library, one_thread_model, [album], progress=progress, pause=pause)
    assert not summary.cancelled and summary.remaining == 0

    encoding = [(at, r) for at, r in reports if r.stage == "encoding"]
    paused = [r for _, r in encoding if r.paused]
    assert len(paused) == 1 and paused[0].done == STOP_AFTER and paused[0].eta_s is None
    assert seen_while_paused == [STOP_AFTER]  # everything encoded was committed, nothing more
    after = encoding[[r for _, r in encoding].index(paused[0]) + 1][1]
    assert not after.paused and after.done == STOP_AFTER and after.eta_s is not None

    last_at, last = encoding[-1]
    assert last.done == last.total == summary.new
    wall = last_at - encoding[0][0]
    active = last.done / last.rate_per_s
    assert active <= wall - 0.9 * paused_for, (active, wall)


def test_rate_and_eta_are_known_from_the_first_photo(
    library: Library, tiny_model: ClipModel, album: Path
) -> None:
    reports: list[IndexProgress] = []
    total = len(scan([album]).files)
    index(library, tiny_model, [album], progress=reports.append, batch_size=total)
    stages = [r.stage for r in reports]
    assert stages.index("loading") < stages.index("encoding")
    encoding = [r for r in reports if r.stage == "encoding"]
    assert encoding[0].done == 0 and encoding[0].rate_per_s == 0 and encoding[0].eta_s is None
    first = encoding[1]
    assert first.done == 1 and first.rate_per_s > 0
    assert first.eta_s is not None and first.eta_s > 0
    # counted as each photo is done, not when the batch (here: all of them) is committed
    assert any(0 < r.done < total for r in encoding)
    assert encoding[-1].done == total and encoding[-1].eta_s == 0


def test_the_count_is_shown_while_the_run_waits_for_a_slow_photo(
    library: Library, one_thread_model: ClipModel, album: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    phase = ["before"]
    real = one_thread_model.encode_pixels
    calls = [0]

    def slow_after_a_few(pixels: np.ndarray) -> np.ndarray:
        calls[0] += 1
        if calls[0] == STOP_AFTER + 1:  # photos 2 to 4 may come quickly: reports held back
            phase[0] = "blocked"
            time.sleep(1.0)
            phase[0] = "after"
        return real(pixels)

    monkeypatch.setattr(one_thread_model, "encode_pixels", slow_after_a_few)
    shown: list[IndexProgress] = []

    def progress(report: IndexProgress) -> None:
        if report.stage == "encoding" and phase[0] != "after":
            shown.append(report)

    index(library, one_thread_model, [album], progress=progress)
    # while the slow photo is encoded, the screen shows every photo done before it (encoded,
    # or failed to decode), not the count of the last report the interval let through
    assert shown[-1].done - shown[-1].errors == STOP_AFTER


def test_a_pause_holds_the_scan_and_the_sync_too(library: Library, album: Path) -> None:
    from core.indexer import sync_album

    pause = threading.Event()
    pause.set()  # paused before the scan begins
    paused_in: list[str] = []

    def progress(report: IndexProgress) -> None:
        if report.paused:
            paused_in.append(report.stage)
            assert report.eta_s is None
            pause.clear()  # resume

    synced, found = sync_album(library, [album], progress=progress, pause=pause)
    assert paused_in == ["scanning"] and found == len(scan([album]).files)
    assert synced.new == found and not synced.cancelled


def test_stage_clock_leaves_paused_time_out() -> None:
    now = [100.0]
    clock = StageClock(lambda: now[0])
    assert clock.rate(0) == 0.0 and clock.eta(0, 10) is None
    now[0] = 102.0
    assert clock.rate(4) == 2.0 and clock.eta(4, 10) == 3.0
    clock.pause()
    now[0] = 1000.0  # a long pause
    assert clock.paused and clock.eta(4, 10) is None and clock.rate(4) == 2.0
    clock.resume()
    assert not clock.paused and clock.active_s() == 2.0
    now[0] = 1001.0
    assert clock.rate(6) == 2.0 and clock.eta(6, 10) == 2.0
    clock.pause()
    clock.pause()  # twice is once
    now[0] = 1005.0
    clock.resume()
    clock.resume()
    assert clock.active_s() == 3.0
    assert clock.eta(6, 0) is None  # total not known
