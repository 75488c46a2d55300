"""The index, search, describe and timeline commands, end to end with a tiny model."""

from __future__ import annotations

import base64
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cli import main as cli
from cli import output, photos
from core.capture_time import wall_time
from core.encoder import DEFAULT_THREADS, ClipModel
from core.indexer import IndexProgress
from core.library import Library
from core.scan import scan
from tests.conftest import ALBUM_PHOTOS, BROKEN_PHOTOS, SKIPPED_FILES, link_tiny_model
from tests.samples import SAMPLES as SAMPLE_ROOT
from tui.text import inert

REPO = Path(__file__).resolve().parents[1]
SAMPLES = SAMPLE_ROOT / "jpg"
PHOTOS = {
    "trips": ("gps/DSCN0010.jpg", "gps/DSCN0029.jpg", "Canon_40D.jpg", "Nikon_D70.jpg"),
    "home": ("orientation/landscape_3.jpg", "Fujifilm_FinePix_E500.jpg", "hdr/canon_hdr_NO.jpg"),
}
ERROR = f"{output.PROG}: error: "


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(out: str, err: str) -> str:
    """The single error line of a failed command (nothing on stdout, no traceback)."""
    assert out == ""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(ERROR)]
    assert len(lines) == 1, err
    return lines[0][len(ERROR) :]


@pytest.fixture
def home(tiny_home: Path) -> Path:
    """An empty user folder where the tiny model is installed."""
    return tiny_home


@pytest.fixture(scope="module")
def indexed_home(
    tiny_model: ClipModel, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A user folder whose library holds seven real photos in two folders (read only)."""
    root = tmp_path_factory.mktemp("cli")
    album = root / "album"
    for folder, names in PHOTOS.items():
        (album / folder).mkdir(parents=True)
        for name in names:
            shutil.copy2(SAMPLES / name, album / folder / Path(name).name)
    folder = root / "home"
    link_tiny_model(folder, tiny_model)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLIPSEARCH_HOME", str(folder))
        assert cli.main(["index", str(album), "--model", "tiny", "--json"]) == 0
    return folder, album


@pytest.fixture
def album_in_library(indexed_home: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    home_folder, album = indexed_home
    monkeypatch.setenv("CLIPSEARCH_HOME", str(home_folder))
    return album


# -- index ---------------------------------------------------------------------------------------


def test_index_prints_a_summary_with_every_skip_and_failure_and_its_reason(
    home: Path, album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "index", str(album), "--model", "tiny")
    assert code == 0, err
    lines = out.splitlines()
    photos = len(ALBUM_PHOTOS)
    assert lines[0].startswith(f"indexed {photos}, unchanged 0, skipped {len(SKIPPED_FILES)}, ")
    assert f"failed {len(BROKEN_PHOTOS)}" in lines[0]
    for name in (*SKIPPED_FILES, *BROKEN_PHOTOS):
        (line,) = [line for line in lines if line.startswith(f"  {album / name}: ")]
        assert len(line) > len(f"  {album / name}: ")  # a reason follows the path
    assert lines.index("skipped:") < lines.index("failed:")
    assert "encoding" in err and "\r" not in err  # progress as plain lines: stderr is no TTY
    assert f"\nscanning {len(scan([album]).files)} photos found\n" in err

    code, out, err = _run(capsys, "index", str(album), "--json")  # the library's model
    summary = json.loads(out)
    assert code == 0 and summary["indexed"] == 0
    assert summary["unchanged"] == photos  # the broken photos are still failed, every run
    assert {item["path"] for item in summary["failed"]} == {str(album / n) for n in BROKEN_PHOTOS}
    assert {item["path"] for item in summary["skipped"]} == {str(album / n) for n in SKIPPED_FILES}
    assert all(item["reason"] for item in summary["skipped"])


def test_index_json_is_one_object_on_stdout(
    home: Path, album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "index", str(album), "--model", "tiny", "--json")
    assert code == 0
    summary = json.loads(out)  # the whole of stdout is one JSON document
    assert summary["indexed"] == len(ALBUM_PHOTOS) and summary["cancelled"] is False
    assert {item["path"] for item in summary["failed"]} == {str(album / n) for n in BROKEN_PHOTOS}
    assert all(item["reason"] for item in summary["failed"])


def test_ctrl_c_cancels_cleanly_and_keeps_the_work_done(
    home: Path, album: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class InterruptAfterFirstPhoto(output.ProgressBar):
        def __call__(self, progress: IndexProgress) -> None:
            super().__call__(progress)
            if progress.stage == "encoding" and progress.done > 0 and not sent:
                sent.append(progress.done)
                os.kill(os.getpid(), signal.SIGINT)  # one Ctrl-C (a second one quits at once)

    sent: list[int] = []
    monkeypatch.setattr(photos, "ProgressBar", InterruptAfterFirstPhoto)
    previous = signal.getsignal(signal.SIGINT)
    code, out, err = _run(capsys, "index", str(album), "--model", "tiny", "--json")
    assert signal.getsignal(signal.SIGINT) is previous  # the handler is put back
    assert code == output.EXIT_INTERRUPTED
    summary = json.loads(out)
    assert summary["cancelled"] is True and summary["remaining"] > 0
    # the photo reported, and those being encoded then (at most one per encoder thread), are kept
    assert sent == [1]
    assert 0 < summary["indexed"] + len(summary["failed"]) <= 1 + DEFAULT_THREADS
    assert "stopping after the photos being encoded" in err and "cancelled" in err
    with Library.open() as library:
        assert library.stats()["indexed"] == summary["indexed"]

    monkeypatch.setattr(photos, "ProgressBar", InterruptAfterFirstPhoto.__mro__[1])
    code, out, _ = _run(capsys, "index", str(album), "--json")
    resumed = json.loads(out)
    assert code == 0 and resumed["remaining"] == 0
    assert summary["indexed"] + resumed["indexed"] == len(ALBUM_PHOTOS)


# -- search --------------------------------------------------------------------------------------


def test_search_in_a_script_the_model_cannot_read_says_so(
    album_in_library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "search", "собака в снегу", "--top", "2")
    assert code == 0 and len(out.splitlines()) == 2  # the results still come, on stdout
    hint = [line for line in err.splitlines() if "reads English only" in line]
    assert len(hint) == 1 and "Cyrillic" in hint[0] and "ViT-B-32-SigLIP2-256-webli" in hint[0]
    code, _, err = _run(capsys, "search", "a dog in the snow", "--top", "2")
    assert code == 0 and "reads English only" not in err


def test_search_prints_one_path_per_line_and_json_objects(
    album_in_library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "search", "a", "red", "car", "--top", "3")
    assert code == 0
    paths = out.splitlines()
    assert len(paths) == 3 and all(Path(p).is_file() for p in paths)
    assert all(Path(p).is_relative_to(album_in_library) for p in paths)

    code, out, _ = _run(capsys, "search", "a red car", "--top", "3", "--json")
    hits = json.loads(out)
    assert code == 0 and [hit["path"] for hit in hits] == paths
    assert [hit["rank"] for hit in hits] == [1, 2, 3]
    for hit in hits:
        assert set(hit) == {"path", "rank", "score", "probability", "taken_at"}
        assert -1 <= hit["score"] <= 1 and 0 < hit["probability"] < 1
        datetime.fromisoformat(hit["taken_at"])

    code, out, _ = _run(capsys, "search", "beach", "+", "2:sunset", "-", '"people"', "--json")
    hits = json.loads(out)
    total = sum(map(len, PHOTOS.values()))
    assert code == 0 and len(hits) == total  # fewer photos than --top: all of them
    assert sum(hit["probability"] for hit in hits) == pytest.approx(1.0, abs=1e-9)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_search_similar_starts_with_the_photo_itself(
    album_in_library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = album_in_library / "home" / "canon_hdr_NO.jpg"
    code, out, _ = _run(capsys, "search", "--similar", str(photo), "--top", "2", "--json")
    hits = json.loads(out)
    assert code == 0 and hits[0]["path"] == str(photo) and len(hits) == 2
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_search_filters_by_folder_and_dates(
    album_in_library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "search", "a house", "--in", str(album_in_library / "trips"))
    assert code == 0
    assert sorted(Path(p).name for p in out.splitlines()) == sorted(
        Path(name).name for name in PHOTOS["trips"]
    )

    code, out, _ = _run(capsys, "search", "a house", "--json")
    everything = json.loads(out)
    years = sorted({hit["taken_at"][:4] for hit in everything})
    assert len(years) > 2
    since, until = years[1], years[-2]  # --until YEAR includes that year
    code, out, _ = _run(capsys, "search", "a house", "--since", since, "--until", until, "--json")
    assert code == 0
    expected = {h["path"] for h in everything if since <= h["taken_at"][:4] <= until}
    assert {hit["path"] for hit in json.loads(out)} == expected
    low, high = datetime(int(since), 1, 1), datetime(int(until) + 1, 1, 1)
    for hit in json.loads(out):
        assert low <= wall_time(datetime.fromisoformat(hit["taken_at"])) < high


def test_describe_ranks_the_labels(
    album_in_library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = album_in_library / "trips" / "Canon_40D.jpg"
    labels = ["a cat", "a dog", "a mountain lake"]
    code, out, _ = _run(capsys, "describe", str(photo), "--labels", *labels, "--json")
    ranked = json.loads(out)
    assert code == 0 and sorted(x["label"] for x in ranked) == sorted(labels)
    assert sum(x["probability"] for x in ranked) == pytest.approx(1.0, abs=1e-12)
    code, out, _ = _run(capsys, "describe", str(photo), "--labels", *labels)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    assert [line.split("  ")[-1] for line in lines] == [x["label"] for x in ranked]


def test_gpu_option_says_when_it_falls_back_to_the_cpu(
    album_in_library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.encoder import gpu_count

    photo = album_in_library / "trips" / "Canon_40D.jpg"
    code, plain, _ = _run(capsys, "search", "--similar", str(photo), "--json")
    code_gpu, on_gpu, err = _run(capsys, "search", "--similar", str(photo), "--json", "--gpu")
    assert code == code_gpu == 0
    fell_back = "no Vulkan GPU found; encoding on the CPU" in err
    assert fell_back == (gpu_count() == 0)
    first = json.loads(plain)[0]
    assert json.loads(on_gpu)[0]["path"] == first["path"] == str(photo)
    code, _, err = _run(capsys, "describe", str(photo), "--labels", "a", "b", "--gpu")
    assert code == 0 and fell_back == ("no Vulkan GPU" in err)


def test_timeline_counts_years_months_days_and_recent_periods(
    album_in_library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "timeline", "--json")
    timeline = json.loads(out)
    assert code == 0
    relative = {bucket["key"]: bucket for bucket in timeline["relative"]}
    assert list(relative) == ["last-7-days", "last-30-days", "last-12-months", "all"]
    total = sum(map(len, PHOTOS.values()))
    assert relative["all"]["count"] == relative["all"]["indexed"] == total
    assert sum(year["count"] for year in timeline["years"]) == total
    for year in timeline["years"]:
        assert year["kind"] == "year" and year["start"] < year["end"]
        assert sum(month["count"] for month in year["children"]) == year["count"]
        for month in year["children"]:
            assert sum(day["count"] for day in month["children"]) == month["count"]
            assert all(day["kind"] == "day" and not day["children"] for day in month["children"])

    code, out, _ = _run(capsys, "timeline", str(album_in_library / "home"), "--json")
    home_only = json.loads(out)
    assert code == 0 and home_only["relative"][-1]["count"] == len(PHOTOS["home"])
    assert home_only["relative"][-1]["indexed"] == len(PHOTOS["home"])

    code, out, _ = _run(capsys, "timeline")
    assert code == 0 and f"All photos {total} photos, {total} indexed" in " ".join(out.split())


def test_timeline_of_a_folder_counts_every_status_without_reading_vectors(
    home: Path, album: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["index", str(album), "--model", "tiny", "--json"]) == 0
    capsys.readouterr()

    def no_vectors(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the timeline read the embeddings")

    monkeypatch.setattr(Library, "vectors", no_vectors)
    code, out, err = _run(capsys, "timeline", str(album / "broken"), "--json")
    assert code == 0, err
    everything = json.loads(out)["relative"][-1]
    assert (everything["count"], everything["indexed"]) == (len(BROKEN_PHOTOS), 0)
    code, out, err = _run(capsys, "timeline", str(album / "jpg"), "--json")
    jpegs = [name for name in ALBUM_PHOTOS if name.startswith("jpg/")]
    everything = json.loads(out)["relative"][-1]
    assert code == 0 and everything["count"] == everything["indexed"] == len(jpegs)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", '"cat'], "bad query: unbalanced quote"),
        (["search", "cat", "+"], "bad query: empty term at the end"),
        (["search", "cat", "--in", "{tmp}/nowhere"], "folder not found: {tmp}/nowhere"),
        (["search", "./missing.jpg + cat"], "image not found: ./missing.jpg"),
        (["search", "--similar", "{tmp}/missing.jpg"], "image not found"),
        (["search", "cat", "--in", "{tmp}"], "no indexed photos match: none in {tmp}"),
        (["search", "cat", "--since", "2100"], "no indexed photos match: none taken on or after"),
        (["search", "cat", "--model", "not-a-model"], "'not-a-model'"),
        (["describe", "{tmp}/missing.jpg", "--labels", "a"], "image not found"),
        (["index", "{tmp}/nowhere", "--model", "tiny"], "photo folder not found: {tmp}/nowhere"),
        (["timeline", "{tmp}/nowhere"], "folder not found: {tmp}/nowhere"),
        (["timeline", "{tmp}"], "the library has no photos in {tmp}"),
    ],
)
def test_errors_are_one_line_and_exit_1(
    album_in_library: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    code, out, err = _run(capsys, *(arg.format(tmp=tmp_path) for arg in argv))
    assert code == 1
    assert message.format(tmp=tmp_path) in _one_error(out, err)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search"], "give a QUERY, or --similar IMAGE"),
        (["search", "cat", "--similar", "x.jpg"], "not both"),
        (["search", "cat", "--top", "0"], "must be at least 1"),
        (["search", "cat", "--top", "-1"], "argument --top: must be at least 1: '-1'"),
        (["search", "cat", "--top", "-2.5"], "argument --top: not a whole number: '-2.5'"),
        (["search", "cat", "--top", "many"], "not a whole number"),
        (["search", "cat", "-0", "--json"], "argument --json: not allowed with argument -0/--null"),
        (["search", "cat", "--json", "--null"], "not allowed with argument --json"),
        (["describe", "x.jpg"], "--labels"),
    ],
)
def test_usage_errors_exit_2(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == "" and message in err


def test_empty_library_and_missing_model(
    home: Path,
    album: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = _run(capsys, "search", "a cat")
    assert code == 1 and "no indexed photos" in _one_error(out, err)
    assert "index a folder first" in err
    code, out, err = _run(capsys, "timeline", "--json")
    assert code == 0 and json.loads(out)["years"] == []

    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path / "bare-home"))  # no model installed
    code, out, err = _run(capsys, "index", str(album))
    assert code == 1 and "is not installed" in _one_error(out, err)
    assert "model install" in err


def test_a_model_name_outside_the_registry_is_unknown_not_to_install(
    album_in_library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["search", "a cat", "--model", "NoSuch"],
        ["describe", str(SAMPLES / "Canon_40D.jpg"), "--labels", "a cat", "--model", "NoSuch"],
    ):
        code, out, err = _run(capsys, *argv)
        message = _one_error(out, err)
        assert code == 1 and message.startswith("unknown model 'NoSuch'")
        assert f"{output.PROG} model list" in message and "model install" not in err

    from core.registry import default_model_name  # known, but not installed: how to install it

    code, out, err = _run(capsys, "search", "a cat", "--model", default_model_name())
    assert code == 1 and "is not installed" in _one_error(out, err)
    assert f"{output.PROG} model install {default_model_name()}" in err


def test_a_read_only_data_folder_is_reported_in_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def read_only_locks(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        # a lock file is the first thing these commands write, as on a read-only mount
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_locks)
    from core.database import default_database_path
    from core.paths import models_dir

    library = default_database_path()
    library.parent.mkdir(parents=True, exist_ok=True)
    library.write_bytes(b"")  # a library to repair (a damaged one)
    for argv, lock in (
        (["model", "install"], models_dir() / ".install.lock"),
        (["model", "remove", "tiny"], models_dir() / ".install.lock"),
        (["library", "repair"], library.with_name(library.name + ".lock")),
    ):
        code, out, err = _run(capsys, *argv)
        assert code == 1 and _one_error(out, err) == f"cannot write {lock}: Read-only file system"
    assert (models_dir() / "tiny").is_dir()


def test_paths_are_checked_before_the_library_or_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path / "bare-home"))  # nothing installed
    for argv, message in (
        (["index", "{tmp}/no/such/folder"], "photo folder not found: {tmp}/no/such/folder"),
        (["search", "--similar", "{tmp}/missing.jpg"], "image not found: {tmp}/missing.jpg"),
        (["search", "./missing.jpg + cat"], "image not found: ./missing.jpg"),
        (["describe", "{tmp}/missing.jpg", "--labels", "a"], "image not found"),
    ):
        code, out, err = _run(capsys, *(arg.format(tmp=tmp_path) for arg in argv))
        assert code == 1 and message.format(tmp=tmp_path) in _one_error(out, err)
        assert "model" not in err and "library" not in err, err


def test_an_image_that_is_not_a_regular_file_is_said_to_be_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path / "bare-home"))  # nothing installed
    os.mkfifo(tmp_path / "fifo.jpg")
    (tmp_path / "dir.jpg").mkdir()
    for image in (tmp_path / "fifo.jpg", tmp_path / "dir.jpg", Path("/dev/zero")):
        for argv in (
            ["describe", str(image), "--labels", "a"],
            ["search", "--similar", str(image)],
            ["search", f"img:{image} + cat"],
        ):
            code, out, err = _run(capsys, *argv)
            assert code == 1
            assert _one_error(out, err) == f"image is not a regular file: {image}"
            assert "model" not in err and "library" not in err, err


def test_a_query_of_too_many_terms_is_one_error_before_the_library_or_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path / "bare-home"))  # nothing installed
    query = " + ".join(f"qq{i}" for i in range(1000))
    code, out, err = _run(capsys, "search", query)
    assert code == 1
    assert _one_error(out, err) == "a query has at most 64 terms (this one has 1000)"
    assert "model" not in err and "library" not in err, err
    code, out, err = _run(capsys, "search", "--help")
    assert code == 0 and "at most 64 terms" in " ".join(out.split())


def test_describe_of_too_many_labels_is_one_error_before_the_library_or_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path / "bare-home"))  # nothing installed
    labels = [f"l{i}" for i in range(1500)]
    code, out, err = _run(capsys, "describe", str(SAMPLES / "Canon_40D.jpg"), "--labels", *labels)
    assert code == 1
    assert _one_error(out, err) == "give at most 1000 labels (these are 1500)"
    assert "model" not in err and "library" not in err, err
    code, out, err = _run(capsys, "describe", "--help")
    assert code == 0 and "at most 1000" in out


# -- terminal safety -----------------------------------------------------------------------------

EVIL = "evil\x1b]0;pwned\x07\x1b[2J\u202egpj.jpg"


def test_file_names_reach_a_terminal_escaped(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    album = tmp_path / "album"
    album.mkdir()
    shutil.copy2(SAMPLES / "Canon_40D.jpg", album / EVIL)
    (album / ("broken\x1b[31m.jpg")).write_text("not a photo")
    for module in (output, photos):
        monkeypatch.setattr(module, "isatty", lambda stream: True)
    code, out, _ = _run(capsys, "index", str(album), "--model", "tiny")
    assert code == 0 and "\x1b" not in out and "broken\\x1b[31m.jpg" in out

    code, out, err = _run(capsys, "search", "anything")  # rank, probability, date, path
    assert code == 0 and out.startswith("1  100.0%  ")
    assert out.endswith(f"  {album}/evil\\x1b]0;pwned\\x07\\x1b[2J\\u202egpj.jpg\n")
    code, out, err = _run(capsys, "search", f"img:{album}/{EVIL}")
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    code, out, err = _run(capsys, "search", "./nope\x1b[2J.jpg")
    assert code == 1 and "\x1b" not in err and "nope\\x1b[2J.jpg" in err

    for module in (output, photos):
        monkeypatch.setattr(module, "isatty", lambda stream: False)
    code, out, _ = _run(capsys, "search", "anything")  # through a pipe (a log): escaped too
    assert out == f"{album}/evil\\x1b]0;pwned\\x07\\x1b[2J\\u202egpj.jpg\n"
    code, out, _ = _run(capsys, "search", "anything", "--json")
    assert "\x1b" not in out and json.loads(out)[0]["path"] == str(album / EVIL)


def test_the_command_line_escapes_by_the_apps_rule() -> None:
    assert output.inert is inert  # one rule for both front ends, tested in test_tui_units


def test_null_and_json_give_exact_names_even_when_not_utf8_or_multiline(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    album = tmp_path / "album"
    album.mkdir()
    name = os.fsdecode(b"caf\xe9.jpg")
    shutil.copy2(SAMPLES / "Canon_40D.jpg", album / name)
    shutil.copy2(SAMPLES / "Nikon_D70.jpg", album / "two\nlines.jpg")
    assert cli.main(["index", str(album), "--model", "tiny"]) == 0
    capsys.readouterr()
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}

    def search(*extra: str) -> bytes:
        done = subprocess.run(
            [sys.executable, "-m", "cli", "search", "a cafe", *extra],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    exact = {os.fsencode(str(album / name)), os.fsencode(str(album / "two\nlines.jpg"))}
    assert set(search("-0").split(b"\0")[:-1]) == exact and search("--null").endswith(b"\0")
    lines = search().decode().splitlines()  # one line per photo, the names escaped
    assert sorted(lines) == sorted([f"{album}/caf\\xe9.jpg", f"{album}/two\\x0alines.jpg"])
    hits = json.loads(search("--json"))
    weird = next(hit for hit in hits if "path_bytes" in hit)
    assert base64.b64decode(weird["path_bytes"]) == os.fsencode(str(album / name))
    assert weird["path"] == f"{album}/caf\ufffd.jpg"
    plain = next(hit for hit in hits if "path_bytes" not in hit)
    assert plain["path"] == str(album / "two\nlines.jpg")


def _indexed_album(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], names: dict[str, str]
) -> Path:
    """An album of sample photos under new names (``{name: sample}``), indexed with tiny."""
    album = tmp_path / "album"
    album.mkdir()
    for name, sample in names.items():
        shutil.copy2(SAMPLES / sample, album / name)
    assert cli.main(["index", str(album), "--model", "tiny"]) == 0
    capsys.readouterr()
    return album


def test_plain_output_tells_a_line_break_from_a_backslash_in_the_name(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    album = _indexed_album(
        tmp_path, capsys, {"new\nline.jpg": "Canon_40D.jpg", "new\\x0aline.jpg": "Nikon_D70.jpg"}
    )

    code, out, _ = _run(capsys, "search", "a photo")
    assert code == 0
    assert sorted(out.splitlines()) == [f"{album}/new\\\\x0aline.jpg", f"{album}/new\\x0aline.jpg"]
    code, out, _ = _run(capsys, "search", "a photo", "--json")  # exact, as before
    assert {hit["path"] for hit in json.loads(out)} == {
        str(album / "new\nline.jpg"),
        str(album / "new\\x0aline.jpg"),
    }


def _command(*argv: str, **streams: Any) -> subprocess.Popen[bytes]:
    """The command line in a process of its own, with these standard streams."""
    return subprocess.Popen([sys.executable, "-m", "cli", *argv], cwd=REPO, **streams)


OUTPUTS = [
    ["search", "a photo", "--top", "100"],
    ["search", "a photo", "--json"],
    ["search", "a photo", "-0"],
    ["model", "list"],
    ["timeline"],
    ["completion", "bash"],
    ["--version"],
    ["--help"],
    ["search", "--help"],
]


def test_output_that_cannot_be_written_is_one_line_and_exit_code_1(
    album_in_library: Path,
) -> None:
    for argv in [*OUTPUTS, ["index", str(album_in_library)]]:
        with open("/dev/full", "wb") as full:
            process = _command(*argv, stdout=full, stderr=subprocess.PIPE)
            _, err = process.communicate(timeout=120)
        lines = err.decode().splitlines()
        assert process.returncode == 1, (argv, lines)
        assert lines[-1] == f"{ERROR}cannot write the output: No space left on device", argv
        assert "Traceback" not in err.decode() and "Exception ignored" not in err.decode()


def test_a_reader_that_stops_early_ends_every_command_quietly(album_in_library: Path) -> None:
    for argv in OUTPUTS:
        process = _command(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # before the command writes: every write meets a broken pipe
        err = process.stderr.read()
        process.stderr.close()
        assert process.wait(timeout=120) == 0, (argv, err)
        assert err == b"", argv


def test_a_closed_stdout_is_one_line_and_exit_code_1(album_in_library: Path) -> None:
    for argv in (["search", "a photo"], ["model", "list"], ["--version"]):
        done = subprocess.run(
            ["sh", "-c", 'exec "$0" "$@" >&-', sys.executable, "-m", "cli", *argv],
            cwd=REPO,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 1, argv
        error = f"{ERROR}cannot write the output: standard output is closed"
        assert done.stderr.decode().splitlines() == [error], argv


def test_an_unforeseen_os_error_is_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.catalog

    def unreadable() -> list[dict[str, Any]]:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/models/x/manifest.json")

    monkeypatch.setattr(core.catalog, "list_models", unreadable)
    code, out, err = _run(capsys, "model", "list")
    assert code == 1 and _one_error(out, err) == "/models/x/manifest.json: Permission denied"


def test_a_name_the_output_encoding_lacks_is_escaped(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    album = _indexed_album(tmp_path, capsys, {"Crémieux11.jpg": "Canon_40D.jpg"})
    done = subprocess.run(
        [sys.executable, "-m", "cli", "search", "a painting", "--in", str(album)],
        cwd=REPO,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode("ascii") == f"{album}/Cr\\xe9mieux11.jpg\n"


def test_index_and_duplicates_json_carry_names_that_are_not_utf8(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    album = tmp_path / "album"
    album.mkdir()
    photo, copy, broken = (os.fsdecode(n) for n in (b"caf\xe9.jpg", b"caf\xe9 2.jpg", b"x\xff.jpg"))
    shutil.copy2(SAMPLES / "Canon_40D.jpg", album / photo)
    shutil.copy2(SAMPLES / "Canon_40D.jpg", album / copy)
    (album / broken).write_text("this is not a JPEG\n")

    code, out, _ = _run(capsys, "index", str(album), "--model", "tiny", "--json")
    assert code == 0 and "\\udc" not in out  # no lone surrogate escapes: valid UTF-8 JSON
    (failed,) = json.loads(out)["failed"]
    assert base64.b64decode(failed["path_bytes"]) == os.fsencode(str(album / broken))
    assert failed["path"] == f"{album}/x\ufffd.jpg" and failed["reason"]

    code, out, _ = _run(capsys, "duplicates", "--threshold", "0.99", "--json")
    assert code == 0 and "\\udc" not in out
    (group,) = json.loads(out)
    names = {base64.b64decode(item["path_bytes"]) for item in group["photos"]}
    assert names == {os.fsencode(str(album / photo)), os.fsencode(str(album / copy))}
    assert {item["path"] for item in group["photos"]} == {
        f"{album}/caf\ufffd.jpg",
        f"{album}/caf\ufffd 2.jpg",
    }


def test_argparse_messages_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "search", "x", "--bogus\x1b]0;pwned\x07")
    assert code == 2 and "\x1b" not in err and "\x07" not in err
    assert "unrecognized arguments: --bogus\\x1b]0;pwned\\x07" in err


# -- progress ------------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress(done: int, total: int, stage: Any = "encoding") -> IndexProgress:
    return IndexProgress(done, total, 12.5, (total - done) / 12.5, None, 1, stage)


def test_progress_bar_redraws_in_place_on_a_terminal_only() -> None:
    terminal = _Terminal()
    bar = output.ProgressBar(terminal)
    bar(_progress(0, 40, "scanning"))
    bar(_progress(10, 40))
    bar(_progress(40, 40))
    bar.close()
    text = terminal.getvalue()
    assert "\n" not in text and text.count("\r") == 4 and text.endswith("\r\x1b[K")
    assert "[######------------------]  10/40   25%  12.5 photos/s  ETA 0:02  1 failed" in text

    log = io.StringIO()
    bar = output.ProgressBar(log)
    bar(_progress(0, 0, "scanning"))
    for done in range(0, 41):
        bar(_progress(done, 40))  # many reports in a moment: only the first and the last show
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()
    assert len(lines) == 3 and lines[1].startswith("encoding") and " 40/40 " in lines[2]


def test_progress_bar_says_loading_starting_and_paused_rather_than_a_rate_of_zero() -> None:
    log = io.StringIO()
    bar = output.ProgressBar(log)
    bar(IndexProgress(0, 0, 0.0, None, None, 0, "scanning"))
    bar(IndexProgress(1, 0, 0.0, None, None, 0, "scanning"))
    bar(IndexProgress(101, 0, 0.0, None, None, 0, "scanning"))
    bar(IndexProgress(0, 40, 0.0, None, None, 0, "loading"))
    bar(IndexProgress(0, 40, 0.0, None, None, 0, "encoding"))
    bar(IndexProgress(10, 40, 2.0, None, None, 0, "encoding", paused=True))
    bar(IndexProgress(10, 40, 2.0, 15.0, None, 0, "encoding"))
    lines = log.getvalue().splitlines()
    assert lines[0] == "scanning..."
    assert lines[1] == "scanning 101 photos found"  # held back by the interval, then written
    assert lines[2] == "loading the model"
    assert lines[3].endswith("0/40    0%  starting...")
    assert lines[4].endswith("10/40   25%  paused")
    assert lines[5].endswith("10/40   25%  2.0 photos/s  ETA 0:15")
    assert "0.0 photos/s" not in log.getvalue() and "ETA" not in "".join(lines[:5])


@pytest.fixture(autouse=True)
def _no_stray_sigint_handler() -> Iterator[None]:
    before = signal.getsignal(signal.SIGINT)
    yield
    assert signal.getsignal(signal.SIGINT) is before


def test_index_summary_says_photos_gone_when_read_are_tried_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from core.indexer import IndexSummary

    summary = IndexSummary(1, 0, [], [], cancelled=False, elapsed_s=0.5, remaining=3, vanished=3)
    photos._print_index_summary(summary)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "3 photos were gone when read (a folder unmounted or moved?); the next run tries again",
        "3 photos are still pending (outside --since/--until, cancelled, or gone when read)",
    ]
    photos._print_index_summary(IndexSummary(1, 0, [], [], False, 0.5, remaining=2))
    assert capsys.readouterr().out.splitlines()[1:] == [
        "2 photos are still pending (outside --since/--until, or cancelled)"
    ]


def test_ctrl_c_while_the_command_line_still_imports_is_one_line(tmp_path: Path) -> None:
    """A real SIGINT while ``cli.main`` is being imported (held there on purpose): one line on
    stderr and exit code 130, not a traceback."""
    script = (
        "import importlib.abc, sys, time\n"
        "class Slow(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'cli.main':\n"
        "            print('importing', flush=True)\n"
        "            time.sleep(30)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Slow())\n"
        "from cli.launch import run\n"
        "sys.exit(run())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), CLIPSEARCH_HOME=str(tmp_path / "home"))
    child = subprocess.Popen(
        [sys.executable, "-c", script, "--version"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "importing\n"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)
    finally:
        child.kill()
    assert child.returncode == 130 and err == f"{output.PROG}: interrupted\n", err
