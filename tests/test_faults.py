"""Faults in storage, tried on real files: damaged pages, empty and foreign library files, a full
disk, and a model replacement killed half-way.

Every case runs the command line in a child process, as a user would, and asserts one clear line
on stderr, no traceback, and that nothing committed is lost.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import vectorfile
from core.encoder import ClipModel
from core.install import PARTIAL_PREFIX
from core.manifest import verify_manifest
from tests.conftest import link_tiny_model

REPO = Path(__file__).resolve().parents[1]
ERROR = "clipsearch-tui: error: "
PHOTOS = 120
"""Photos in the test album: enough for the embeddings and photos tables to span many pages."""

RUNNER = textwrap.dedent(
    """
    import sys
    from cli.main import run
    sys.argv[0] = "clipsearch-tui"
    sys.exit(run())
    """
)


def _cli(home: Path, *argv: str, file_limit: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLIPSEARCH_HOME": str(home), "PYTHONPATH": str(REPO)}

    def limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run(
        [sys.executable, "-c", RUNNER, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit if file_limit is not None else None,  # noqa: PLW1509 - no threads yet
        check=False,
    )


def _one_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith(ERROR)]
    assert len(lines) == 1, done.stderr
    return lines[0][len(ERROR) :]


@pytest.fixture
def home(tmp_path: Path, tiny_model: ClipModel) -> Path:
    """A user folder where the tiny model is installed; the commands get it through their
    environment (see ``_cli``)."""
    return link_tiny_model(tmp_path / "home", tiny_model)


@pytest.fixture
def album(tmp_path: Path) -> Path:
    """Small distinct PNG photos, quick to decode and encode."""
    root = tmp_path / "album"
    rng = np.random.default_rng(0)
    for number in range(PHOTOS):
        folder = root / f"{2000 + number % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"IMG_{number:04d}.png")
    return root


def _library(home: Path) -> Path:
    return home / "data" / "library.sqlite"


def _moved_aside(home: Path) -> list[Path]:
    """The damaged library files a repair moved aside (without their -wal and -shm)."""
    found = (home / "data").glob("library.sqlite.damaged-*")
    return [path for path in found if not path.name.endswith(("-wal", "-shm"))]


def _counts(home: Path) -> tuple[int, int]:
    """``(photos, embeddings)`` in the library, read directly."""
    with sqlite3.connect(_library(home)) as db:
        photos = db.execute("SELECT count(*) FROM photos").fetchone()[0]
        vectors = db.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    return photos, vectors


def _pages_of(home: Path, name: str) -> list[int]:
    """Page numbers of the b-tree ``name`` (a table or an index), leaves first."""
    with sqlite3.connect(_library(home)) as db:
        rows = db.execute(
            "SELECT pageno, pagetype FROM dbstat WHERE name = ? ORDER BY pagetype = 'internal', "
            "pageno",
            (name,),
        ).fetchall()
        size = db.execute("PRAGMA page_size").fetchone()[0]
    assert rows, name
    return [page for page, _ in rows], size  # type: ignore[return-value]


def _garble(home: Path, page: int, page_size: int) -> None:
    """Write 16 KiB of garbage over one page of the library (as a failing disk would)."""
    garbage = np.random.default_rng(page).integers(0, 256, page_size, dtype=np.uint8).tobytes()
    with open(_library(home), "r+b") as handle:
        handle.seek((page - 1) * page_size)
        handle.write(garbage)


def _indexed(home: Path, album: Path) -> None:
    done = _cli(home, "index", str(album), "--model", "tiny", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["indexed"] == PHOTOS
    for leftover in ("library.sqlite-wal", "library.sqlite-shm"):
        assert not (home / "data" / leftover).exists()  # closed cleanly: all in the main file


def test_a_damaged_table_page_says_so_and_repair_keeps_every_sound_vector(
    home: Path, album: Path
) -> None:
    _indexed(home, album)
    pages, size = _pages_of(home, "embeddings")
    assert len(pages) >= 3
    page = pages[len(pages) // 2]  # a leaf in the middle
    with sqlite3.connect(_library(home)) as db:
        (on_page,) = db.execute("SELECT ncell FROM dbstat WHERE pageno = ?", (page,)).fetchone()
    _garble(home, page, size)
    _library(home).with_name("library.sqlite.vectors").unlink(missing_ok=True)

    line = _one_error(_cli(home, "search", "a photo", "--json"))
    assert "is damaged" in line and "clipsearch-tui library repair" in line

    done = _cli(home, "library", "repair")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    photos, vectors = _counts(home)
    lost = PHOTOS - vectors
    # the vectors on that page (and at most one beside it, reached only through it), no photo row
    assert photos == PHOTOS and on_page <= lost <= on_page + 1 and on_page > 0
    assert len(_moved_aside(home)) == 1  # the damaged file is kept, moved aside

    done = _cli(home, "search", "a photo", "--top", "3")
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 3, done.stderr
    done = _cli(home, "index", str(album), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["indexed"] == lost  # only what lost its vector
    assert _counts(home) == (PHOTOS, PHOTOS)


def test_after_a_repair_the_vector_file_holds_each_photo_once(home: Path, album: Path) -> None:
    """The vectors a repair kept are not added to the vector file again by the next index."""
    _indexed(home, album)
    before = _library_id(home)
    pages, size = _pages_of(home, "embeddings")
    _garble(home, pages[len(pages) // 2], size)
    assert _cli(home, "library", "repair").returncode == 0
    # a new name: caches of the old vectors (the approximate index) are foreign to it
    assert _library_id(home) != before
    for argv in (("search", "a photo"), ("index", str(album))):
        done = _cli(home, *argv, "--json")
        assert done.returncode == 0, done.stderr
        assert _counts(home)[1] == _vector_file_rows(home), argv
    done = _cli(home, "search", "a photo", "--top", str(2 * PHOTOS), "--json")
    paths = [hit["path"] for hit in json.loads(done.stdout)]
    assert len(paths) == len(set(paths)) == PHOTOS


def _library_id(home: Path) -> str:
    with sqlite3.connect(_library(home)) as db:
        return db.execute("SELECT value FROM meta WHERE key = 'library_id'").fetchone()[0]


def _vector_file_rows(home: Path) -> int:
    header = vectorfile.read_header(_library(home).with_name("library.sqlite.vectors"))
    assert header is not None
    return header.count


@pytest.mark.parametrize("why", ["schedule", "unclean"])
def test_damage_in_an_index_page_is_found_by_the_quick_check(
    home: Path, album: Path, why: str
) -> None:
    _indexed(home, album)
    pages, size = _pages_of(home, "sqlite_autoindex_photos_1")  # the unique index on path
    _garble(home, pages[0], size)
    key, value = ("quick_check_at", "0") if why == "schedule" else ("writer_open", "12345")
    with sqlite3.connect(_library(home)) as db:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    line = _one_error(_cli(home, "search", "a photo"))
    assert "is damaged (quick_check:" in line and "clipsearch-tui library repair" in line
    done = _cli(home, "library", "repair")
    assert done.returncode == 0, done.stderr
    assert _counts(home) == (PHOTOS, PHOTOS)  # an index holds no data: nothing was lost
    assert _cli(home, "search", "a photo", "--top", "1").returncode == 0


@pytest.mark.parametrize("kind", ["empty", "foreign"])
def test_an_empty_or_foreign_library_file_is_not_replaced(
    home: Path, album: Path, kind: str
) -> None:
    library = _library(home)
    if kind == "empty":
        library.write_bytes(b"")
    else:
        with sqlite3.connect(library) as db:
            db.execute("CREATE TABLE notes (text TEXT)")
            db.execute("INSERT INTO notes VALUES ('my notes')")
    before = library.read_bytes()
    for argv in (("index", str(album), "--model", "tiny"), ("search", "x"), ("timeline",)):
        line = _one_error(_cli(home, *argv))
        said = "is damaged" if kind == "empty" else "is not a clipsearch-tui library"
        assert said in line and "clipsearch-tui library repair" in line, argv
        assert library.read_bytes() == before

    done = _cli(home, "library", "repair")
    assert done.returncode == 0, done.stderr
    (aside,) = _moved_aside(home)
    assert aside.read_bytes() == before  # kept, under another name
    assert not list((home / "data").glob("*.repair-*"))  # nothing of the new file is left over
    assert _cli(home, "index", str(album), "--model", "tiny").returncode == 0


def test_repair_without_a_library_says_there_is_none(home: Path) -> None:
    assert not _library(home).exists()
    line = _one_error(_cli(home, "library", "repair"))
    assert "there is no library at" in line and "nothing to repair" in line
    assert not _library(home).exists()


def test_a_full_disk_stops_with_one_line_keeps_every_batch_and_resumes(
    home: Path, album: Path
) -> None:
    assert _cli(home, "index", str(album / "2000"), "--model", "tiny").returncode == 0
    start = _library(home).stat().st_size
    done = _cli(home, "index", str(album), "--json", file_limit=start + 48 * 1024)
    line = _one_error(done)
    assert "cannot write the library" in line and "every batch committed before is kept" in line
    photos, kept = _counts(home)
    assert kept < PHOTOS

    done = _cli(home, "index", str(album), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["indexed"] == PHOTOS - kept  # resumed: nothing committed is encoded again
    assert _counts(home) == (PHOTOS, PHOTOS)


KILL_DURING_REPLACE = textwrap.dedent(
    """
    import os, signal, sys
    from core import install
    real = install.os.replace

    def replace(source, target):
        real(source, target)
        if ".partial-replaced-" in str(target):  # the old installation is set aside
            os.kill(os.getpid(), signal.SIGKILL)

    install.os.replace = replace
    from cli.main import run
    sys.argv[0] = "clipsearch-tui"
    sys.exit(run())
    """
)


def test_a_model_replacement_killed_half_way_loses_nothing(tmp_path: Path) -> None:
    from tests.reference import TINY_VIT, make_reference, save_checkpoint

    home = tmp_path / "home"
    first = save_checkpoint(make_reference(TINY_VIT, seed=3), tmp_path / "first.safetensors")
    second = save_checkpoint(make_reference(TINY_VIT, seed=4), tmp_path / "second.safetensors")
    assert _cli(home, "model", "install", "--from", str(first), "--as", "tiny").returncode == 0
    models = home / "data" / "models"
    env = {**os.environ, "CLIPSEARCH_HOME": str(home), "PYTHONPATH": str(REPO)}
    argv = ["model", "install", "--from", str(second), "--as", "tiny"]
    command = [sys.executable, "-c", KILL_DURING_REPLACE, *argv]
    killed = subprocess.run(command, env=env, capture_output=True, timeout=300, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert not (models / "tiny").exists()  # the moment between the two renames
    assert [p.name.startswith(f"{PARTIAL_PREFIX}replaced-tiny-") for p in models.iterdir()].count(
        True
    ) == 1

    # any next install puts the old installation back before doing its own work
    other = _cli(home, "model", "install", "--from", str(first), "--as", "other")
    assert other.returncode == 0, other.stderr
    verify_manifest(models / "tiny")
    assert not [p for p in models.iterdir() if p.name.startswith(PARTIAL_PREFIX)]
    done = _cli(home, "model", "install", "--from", str(second), "--as", "tiny")
    assert done.returncode == 0, done.stderr
    assert not [p for p in models.iterdir() if p.name.startswith(PARTIAL_PREFIX)]
    shutil.rmtree(models / "other")
