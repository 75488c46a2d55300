"""Indexing on a Dask cluster: two local worker processes on 127.0.0.1, the tiny model."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.encoder import ClipModel
from core.indexer import IndexProgress, index
from core.library import Library
from core.sync import file_digest
from tests.conftest import link_tiny_model

pytest.importorskip("distributed")

PHOTOS = 14
ROOT = Path(__file__).resolve().parents[1]


def _model_home(model: ClipModel) -> Path:
    """The ``CLIPSEARCH_HOME`` the tiny model is installed in (home/data/models/tiny)."""
    return model.model_dir.parents[2]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small JPEGs of different colours and shapes, and one file that is not a photo."""
    folder = tmp_path_factory.mktemp("cluster-album") / "album"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(PHOTOS):
        pixels = np.zeros((240, 320, 3), np.uint8)
        pixels[..., i % 3] = 40 + 15 * i
        top, left = rng.integers(0, 120, 2)
        pixels[top : top + 100, left : left + 160] = rng.integers(0, 256, 3)
        Image.fromarray(pixels).save(folder / f"IMG_{i:03d}.jpg", quality=90)
    (folder / "broken.jpg").write_bytes(b"not a photo at all")
    return folder


@pytest.fixture(scope="module")
def cluster(tiny_model: ClipModel) -> Iterator[Any]:
    """Two worker processes (one thread each) that load the tiny model from its install."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        env={"CLIPSEARCH_HOME": str(_model_home(tiny_model))},
    ) as local:
        yield local


def _run(
    tmp_path: Path, name: str, model: ClipModel, album: Path, **kwargs: Any
) -> tuple[dict[str, np.ndarray], dict[str, str], Library]:
    library = Library.open(tmp_path / f"{name}.sqlite", thumbnail_dir=tmp_path / f"{name}-thumbs")
    summary = index(library, model, [album], batch_size=2, **kwargs)
    assert summary.indexed == PHOTOS and len(summary.failed) == 1
    return _stored(library, model), _statuses(library), library


def _stored(library: Library, model: ClipModel) -> dict[str, np.ndarray]:
    ids, matrix = library.vectors(model.name)
    paths = {r.id: r.path.name for r in library.records(ids)}
    return {paths[int(i)]: row for i, row in zip(ids, matrix, strict=True)}


def _statuses(library: Library) -> dict[str, str]:
    return {r.path.name: r.status for r in library.records(library.photo_ids(indexed_only=False))}


@pytest.fixture(scope="module")
def local_run(
    tiny_model: ClipModel, photos: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, np.ndarray], dict[str, str], Path]:
    tmp = tmp_path_factory.mktemp("local-run")
    vectors, statuses, library = _run(tmp, "local", tiny_model, photos)
    library.close()
    return vectors, statuses, tmp / "local-thumbs"


def _same_thumbnails(ours: Path, theirs: Path) -> None:
    names = sorted(p.name for p in theirs.iterdir())
    assert sorted(p.name for p in ours.iterdir()) == names and names
    for name in names:
        assert (ours / name).read_bytes() == (theirs / name).read_bytes()


def test_the_cluster_stores_what_a_local_run_stores(
    tmp_path: Path, tiny_model: ClipModel, photos: Path, cluster: Any, local_run: Any
) -> None:
    expected, statuses, thumbs = local_run
    progress: list[IndexProgress] = []
    vectors, found, library = _run(
        tmp_path, "dask", tiny_model, photos, cluster=cluster.scheduler_address,
        progress=progress.append,
    )  # fmt: skip
    with sqlite3.connect(library.path) as db:
        digests = dict(db.execute("SELECT path, file_digest FROM photos WHERE status = 'indexed'"))
    library.close()
    assert digests == {path: file_digest(path) for path in digests}  # read by the workers
    assert found == statuses  # the broken file failed, every photo indexed
    assert sorted(vectors) == sorted(expected)
    for name, vector in expected.items():
        np.testing.assert_array_equal(vectors[name], vector, err_msg=name)
    _same_thumbnails(tmp_path / "dask-thumbs", thumbs)
    encoding = [p for p in progress if p.stage == "encoding"]
    assert encoding[0].done == 0 and encoding[-1].done == encoding[-1].total == PHOTOS + 1
    assert [p.done for p in encoding] == sorted(p.done for p in encoding)


def test_a_pause_on_a_cluster_holds_the_run_at_a_shard_and_it_resumes(
    tmp_path: Path, tiny_model: ClipModel, photos: Path, cluster: Any
) -> None:
    pause = threading.Event()
    reports: list[IndexProgress] = []
    indexed_while_paused: list[int] = []

    def progress(report: IndexProgress) -> None:
        reports.append(report)
        if report.stage == "encoding" and report.done and not indexed_while_paused:
            pause.set()  # after the first shard was committed
        if report.paused:
            for _ in range(5):  # the run stays where it is while the pause lasts
                indexed_while_paused.append(library.stats()["indexed"])
                time.sleep(0.1)
            pause.clear()

    library = Library.open(tmp_path / "paused.sqlite", thumbnail_dir=tmp_path / "thumbs")
    with library:
        summary = index(
            library, tiny_model, [photos], batch_size=2, cluster=cluster.scheduler_address,
            progress=progress, pause=pause,
        )  # fmt: skip
        assert not summary.cancelled and summary.indexed == PHOTOS and summary.remaining == 0
    encoding = [r for r in reports if r.stage == "encoding"]
    paused = [r for r in encoding if r.paused]
    assert len(paused) == 1 and paused[0].eta_s is None
    assert paused[0].done == 2  # at the first shard (batch_size photos), committed
    # that shard's photos are in the library (the broken file may be one of them), no more
    assert indexed_while_paused[0] >= 1 and indexed_while_paused == indexed_while_paused[:1] * 5
    after = encoding[encoding.index(paused[0]) + 1]
    assert not after.paused and after.done == 2  # the resumption is reported
    assert encoding[-1].done == encoding[-1].total == PHOTOS + 1


def test_a_worker_killed_mid_run_changes_nothing(
    tmp_path: Path, tiny_model: ClipModel, photos: Path, cluster: Any, local_run: Any
) -> None:
    from distributed import Client

    expected, statuses, _ = local_run
    killed: list[str] = []
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        client.wait_for_workers(2)

        def kill_one(progress: IndexProgress) -> None:
            if progress.stage != "encoding" or progress.done == 0 or killed:
                return
            busy = [worker for worker, keys in client.processing().items() if keys]
            assert busy, "no shard in flight to lose"
            pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(busy[0])

        vectors, found, library = _run(
            tmp_path, "killed", tiny_model, photos, cluster=cluster.scheduler_address,
            progress=kill_one,
        )  # fmt: skip
        library.close()
        assert killed
        client.wait_for_workers(2)  # the nanny starts the worker again for the next test
    assert found == statuses
    assert sorted(vectors) == sorted(expected)
    for name, vector in expected.items():
        np.testing.assert_array_equal(vectors[name], vector, err_msg=name)


def _exit_on_poison() -> Any:
    """A worker plugin (applied to every worker, restarted ones too) that makes the worker
    process exit at once when it is asked to decode a photo whose name starts with "poison"."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class ExitOnPoison(WorkerPlugin):  # defined here so that the workers receive it by value
        name = "exit-on-poison"

        def setup(self, worker: Any) -> None:
            import core.distributed as remote

            self.decode = decode = remote.decode_photo

            def decode_or_exit(path: Path, *args: Any) -> Any:
                if path.name.startswith("poison"):
                    # not at once: a worker that dies before its nanny has heard that it
                    # started is never started again (the nanny waits for it)
                    time.sleep(0.5)
                    os._exit(3)
                return decode(path, *args)

            remote.decode_photo = decode_or_exit  # type: ignore[assignment]

        def teardown(self, worker: Any) -> None:
            import core.distributed as remote

            remote.decode_photo = self.decode  # type: ignore[assignment]

    return ExitOnPoison()


def _allow_failures(count: int, dask_scheduler: Any) -> int:
    before: int = dask_scheduler.allowed_failures
    dask_scheduler.allowed_failures = count
    return before


def test_a_photo_that_kills_every_worker_fails_alone(
    tmp_path: Path, tiny_model: ClipModel, photos: Path, cluster: Any, local_run: Any
) -> None:
    from distributed import Client

    expected, statuses, _ = local_run
    album = tmp_path / "album"
    shutil.copytree(photos, album)
    pixels = np.full((240, 320, 3), (200, 30, 90), np.uint8)
    Image.fromarray(pixels).save(album / "poison.jpg", quality=90)  # a good JPEG, another hash
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)
        before = client.run_on_scheduler(_allow_failures, 1)  # KilledWorker after 2 deaths
        client.register_plugin(_exit_on_poison())
        try:
            library = Library.open(tmp_path / "poison.sqlite", thumbnail_dir=tmp_path / "thumbs")
            progress: list[IndexProgress] = []
            # batches of 4: the poison shares its shard with 3 photos that must not fail with it
            summary = index(
                library, tiny_model, [album], batch_size=4, cluster=cluster.scheduler_address,
                progress=progress.append,
            )  # fmt: skip
            failed = {path.name: reason for path, reason in summary.failed}
            assert summary.indexed == PHOTOS and sorted(failed) == ["broken.jpg", "poison.jpg"]
            assert (
                "a Dask worker died each time it read this photo (2 times)" in failed["poison.jpg"]
            )
            assert _statuses(library) == {**statuses, "poison.jpg": "failed"}
            vectors = _stored(library, tiny_model)
            assert sorted(vectors) == sorted(expected)
            for name, vector in expected.items():
                np.testing.assert_array_equal(vectors[name], vector, err_msg=name)
            encoding = [p for p in progress if p.stage == "encoding"]
            assert encoding[-1].done == encoding[-1].total == PHOTOS + 2
            assert [p.done for p in encoding] == sorted(p.done for p in encoding)

            # the next run does not send the unchanged failed photo again: no worker dies
            client.wait_for_workers(2, timeout=120)
            pids = client.run(os.getpid)
            again = index(
                library, tiny_model, [album], batch_size=4, cluster=cluster.scheduler_address
            )
            assert again.indexed == 0
            assert {path.name: reason for path, reason in again.failed} == failed
            assert client.run(os.getpid) == pids
            library.close()
        finally:
            client.unregister_worker_plugin("exit-on-poison")
            client.run_on_scheduler(_allow_failures, before)
            client.wait_for_workers(2, timeout=120)  # the nanny starts the last worker killed again


_CLIENT = textwrap.dedent(
    """
    import sys, time
    from core.encoder import load_model
    from core.indexer import index
    from core.library import Library

    database, album, address = sys.argv[1:]
    model = load_model("tiny", threads=2, precision="fp32")
    with Library.open(database) as library:
        # slow commits down, so that the parent can kill this process between two of them
        index(library, model, [album], batch_size=2, cluster=address,
              progress=lambda progress: time.sleep(0.3))
    """
)


def _consistent(database: Path) -> tuple[int, int]:
    """Check what a crash may never leave; return (indexed, pending)."""
    db = sqlite3.connect(database)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        orphans = db.execute(
            "SELECT count(*) FROM embeddings AS e JOIN photos AS p ON p.id = e.photo_id"
            " WHERE p.status != 'indexed'"
        ).fetchone()[0]
        missing = db.execute(
            "SELECT count(*) FROM photos WHERE status = 'indexed'"
            " AND id NOT IN (SELECT photo_id FROM embeddings)"
        ).fetchone()[0]
        assert (orphans, missing) == (0, 0)
        counts = dict(db.execute("SELECT status, count(*) FROM photos GROUP BY status"))
    finally:
        db.close()
    return counts.get("indexed", 0), counts.get("pending", 0)


def test_a_client_killed_mid_run_leaves_a_library_a_local_run_completes(
    tmp_path: Path, tiny_model: ClipModel, photos: Path, cluster: Any, local_run: Any
) -> None:
    expected, statuses, _ = local_run
    database = tmp_path / "crashed.sqlite"
    env = dict(os.environ, PYTHONPATH=str(ROOT), CLIPSEARCH_HOME=str(_model_home(tiny_model)))
    child = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, str(database), str(photos), cluster.scheduler_address],
        env=env,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 120
        indexed = 0
        while time.monotonic() < deadline and child.poll() is None:
            if database.exists():
                try:
                    indexed, _ = _consistent(database)
                except sqlite3.OperationalError:  # the schema is being made
                    indexed = 0
                if indexed >= 2:
                    break
            time.sleep(0.02)
        assert child.poll() is None and 2 <= indexed < PHOTOS, "the client ended too soon"
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    indexed, pending = _consistent(database)
    assert indexed >= 2 and pending > 0
    with Library.open(database, thumbnail_dir=tmp_path / "crashed-thumbs") as library:
        summary = index(library, tiny_model, [photos], batch_size=2)  # local, no cluster
        assert summary.indexed == PHOTOS - indexed
        assert _statuses(library) == statuses
        vectors = _stored(library, tiny_model)
    assert sorted(vectors) == sorted(expected)
    for name, vector in expected.items():
        np.testing.assert_array_equal(vectors[name], vector, err_msg=name)


def test_without_a_cluster_nothing_of_dask_is_imported(
    tmp_path: Path, tiny_model: ClipModel, photos: Path
) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from cli.main import main
        assert main(["index", {str(photos)!r}, "--model", "tiny", "--precision", "fp32"]) == 0
        assert main(["search", "a red square", "--top", "3"]) == 0
        import tui.app
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed"))
        assert not loaded, loaded
        """
    )
    home = link_tiny_model(tmp_path / "home", tiny_model)
    env = dict(os.environ, PYTHONPATH=str(ROOT), CLIPSEARCH_HOME=str(home))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
