"""Everyday command line: dates as timeline prints them, terminal columns, a mistyped command."""

from __future__ import annotations

import errno
import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from cli import main as cli
from cli import photos
from core import thumbnails
from core.encoder import ClipModel
from core.timeline import parse_date
from tests.conftest import link_tiny_model
from tests.samples import SAMPLES
from tests.test_cli import (  # noqa: F401 - fixtures
    PHOTOS,
    _run,
    album_in_library,
    home,
    indexed_home,
)

NOW = datetime(2026, 12, 3, 10, 30)


@pytest.mark.parametrize(
    "text, start, end",
    [
        ("today", datetime(2026, 12, 3), datetime(2026, 12, 4)),
        ("yesterday", datetime(2026, 12, 2), datetime(2026, 12, 3)),
        ("last-7-days", datetime(2026, 11, 27), datetime(2026, 12, 4)),
        ("last-30-days", datetime(2026, 11, 4), datetime(2026, 12, 4)),
        ("last-12-months", datetime(2026, 1, 1), datetime(2026, 12, 4)),
        ("7d", datetime(2026, 11, 27), datetime(2026, 11, 27)),
        ("2w", datetime(2026, 11, 20), datetime(2026, 11, 20)),
        ("3m", datetime(2026, 9, 4), datetime(2026, 9, 4)),
        ("1Y", datetime(2025, 12, 4), datetime(2025, 12, 4)),
        ("2019", datetime(2019, 1, 1), datetime(2020, 1, 1)),
        ("2019-08", datetime(2019, 8, 1), datetime(2019, 9, 1)),
    ],
)
def test_dates_as_timeline_prints_them_and_relative_ones(
    text: str, start: datetime, end: datetime
) -> None:
    assert parse_date(text, now=NOW) == start
    assert parse_date(text, end=True, now=NOW) == end


def test_every_key_timeline_prints_is_a_date_the_commands_take(
    album_in_library: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(capsys, "timeline", "--json")
    timeline = json.loads(out)
    keys = [b["key"] for b in timeline["relative"]]
    for year in timeline["years"]:
        keys.append(year["key"])
        keys.extend(month["key"] for month in year["children"])
    assert "last-7-days" in keys and len(keys) > 5
    for key in keys:
        code, out, err = _run(capsys, "search", "a photo", "--since", key, "--json")
        assert code in (0, 1), (key, err)  # 1: no photo in that period
        assert "bad date" not in err, key
    for text in ("yesterday", "7d", "3m"):
        code, _, err = _run(capsys, "search", "a photo", "--until", text, "--json")
        assert code == 0, (text, err)


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "cat", "--since", "2019-13"],
        ["search", "cat", "--since", "someday"],
        ["search", "cat", "--until", "7x"],
        ["index", ".", "--since", "last-week"],
        ["search", "cat", "--since", "2020", "--until", "2019"],
    ],
)
def test_bad_dates_are_usage_errors(
    home: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == "" and "bad date" in err


def test_search_prints_aligned_columns_on_a_terminal_and_paths_through_a_pipe(
    album_in_library: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, _ = _run(capsys, "search", "a photo", "--json")
    hits = json.loads(out)
    monkeypatch.setattr(photos, "isatty", lambda stream: False)
    code, out, _ = _run(capsys, "search", "a photo")
    assert out.splitlines() == [hit["path"] for hit in hits]

    monkeypatch.setattr(photos, "isatty", lambda stream: True)
    code, out, _ = _run(capsys, "search", "a photo")
    lines = out.splitlines()
    assert len(lines) == len(hits)
    starts = {line.index(hit["path"]) for line, hit in zip(lines, hits, strict=True)}
    assert len(starts) == 1  # every path starts in the same column
    for line, hit in zip(lines, hits, strict=True):
        rank, probability, *_ = line.split()
        assert int(rank) == hit["rank"]
        assert probability == f"{hit['probability']:.1%}"
        date = hit["taken_at"][:10] if hit["taken_at"] else "no date"
        assert date in line


def test_a_mistyped_command_gets_a_suggestion(
    home: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _run(capsys, "serch", "cat")
    assert code == 2 and "did you mean 'search'?" in err
    code, out, err = _run(capsys, "duplicats")
    assert code == 2 and "did you mean 'duplicates'?" in err


@pytest.mark.parametrize(
    ("argv", "argument"),
    [
        (["index", ""], "PATH"),
        (["search", "cat", "--in", ""], "--in"),
        (["search", "--similar", ""], "--similar"),
        (["describe", "", "--labels", "cat"], "IMAGE"),
        (["timeline", ""], "PATH"),
        (["duplicates", ""], "PATH"),
        (["model", "install", "--from", "", "--as", "mine"], "--from"),
        ([""], "PATH"),
    ],
)
def test_an_empty_path_is_a_usage_error_not_the_current_folder(
    home: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    argument: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code = cli.main(argv, launch_app=lambda paths, images, gpu: 0)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.splitlines()[-1].endswith(f"error: argument {argument}: empty path")


@pytest.mark.parametrize(
    ("argv", "argument"),
    [
        (["model", "install", ""], "NAME"),
        (["model", "install", " "], "NAME"),
        (["model", "install", "--from", "model.bin", "--as", ""], "--as"),
        (["model", "remove", ""], "NAME"),
        (["search", "cat", "--model", ""], "--model"),
        (["index", ".", "--model", ""], "--model"),
        (["describe", "photo.jpg", "--labels", "cat", "--model", ""], "--model"),
    ],
)
def test_an_empty_model_name_is_a_usage_error_not_the_default_model(
    home: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    argument: str,
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.splitlines()[-1].endswith(f"error: argument {argument}: empty model name")
    assert "installing" not in err


def test_a_query_that_starts_with_a_slash_is_text_unless_it_names_a_photo() -> None:
    from core.query import parse_query

    assert [t.kind for t in parse_query("/a red car on the road")] == ["text"]
    assert [t.kind for t in parse_query("./missing.jpg + cat")] == ["image", "text"]
    here = Path(__file__)
    assert [t.kind for t in parse_query(str(here))] == ["image"]


def test_the_command_line_takes_the_shared_settings_from_config_toml(
    tmp_path: Path, tiny_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    album = tmp_path / "album"
    album.mkdir()
    gallery = Path(__file__).resolve().parents[1] / "gallery"
    for photo in sorted(gallery.glob("*.jpg"))[:2]:
        shutil.copy2(photo, album / photo.name)

    # the model setting wins over the one model installed: here it names one not installed
    from core.registry import default_model_name

    (tiny_home / "config").mkdir(exist_ok=True)
    (tiny_home / "config" / "config.toml").write_text(f'[tui]\nmodel = "{default_model_name()}"\n')
    code, _, err = _run(capsys, "index", str(album))
    assert code == 1 and f"model '{default_model_name()}' is not installed" in err
    (tiny_home / "config" / "config.toml").write_text(
        '[tui]\nmodel = "tiny"\nbatch_size = 1\nprecision = "fp32"\n'
    )
    code, out, err = _run(capsys, "index", str(album), "--json")
    assert code == 0, err
    assert "encoding with tiny in fp32" in err and json.loads(out)["indexed"] == 2
    code, out, err = _run(capsys, "search", "a photo", "--json")
    assert code == 0 and len(json.loads(out)) == 2

    (tiny_home / "config" / "config.toml").write_text("[tui]\nbatch_size = 0\n")
    code, out, err = _run(capsys, "search", "a photo", "--model", "tiny", "--json")
    assert code == 0 and "using the default settings" in err


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_know_every_command(
    shell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "completion", shell)
    assert code == 0
    for command in ("model", "index", "search", "duplicates", "serve", "timeline"):
        assert command in out, command


def test_bash_completes_a_command_and_its_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil
    import subprocess

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    code, out, _ = _run(capsys, "completion", "bash")
    script = tmp_path / "clipsearch-tui.bash"
    script.write_text(out)

    def complete(line: str) -> list[str]:
        words = line.split() + ([""] if line.endswith(" ") else [])
        program = f"""
            source {script}
            COMP_WORDS=({" ".join(repr(w) for w in words)})
            COMP_CWORD={len(words) - 1}
            COMP_LINE={line!r}
            COMP_POINT=${{#COMP_LINE}}
            _shtab_clipsearch_tui
            printf '%s\\n' "${{COMPREPLY[@]}}"
        """
        done = subprocess.run([bash, "-c", program], capture_output=True, text=True, timeout=30)
        return done.stdout.split()

    assert complete("clipsearch-tui dupl") == ["duplicates"]
    assert "--threshold" in complete("clipsearch-tui duplicates --th")
    assert "install" in complete("clipsearch-tui model ")


def _two_trip_photos(folder: Path) -> None:
    """Copy the first two trip photos into ``folder``, made with its parents."""
    folder.mkdir(parents=True)
    for name in PHOTOS["trips"][:2]:
        shutil.copy2(SAMPLES / "jpg" / name, folder / Path(name).name)


def test_indexing_an_album_that_holds_the_programs_folders_leaves_them_out(
    tmp_path: Path,
    tiny_model: ClipModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    album = tmp_path / "album3"
    _two_trip_photos(album / "trip")
    monkeypatch.setenv("CLIPSEARCH_HOME", str(link_tiny_model(album / "cliphome", tiny_model)))

    runs = []
    for _ in range(3):
        code, out, err = _run(capsys, "index", str(album), "--model", "tiny", "--json")
        assert code == 0, err
        runs.append(json.loads(out))
    assert [(run["new"], run["unchanged"]) for run in runs] == [(2, 0), (0, 2), (0, 2)]
    code, out, err = _run(capsys, "search", "cat", "--json")
    assert code == 0, err
    assert sorted(Path(hit["path"]).parent for hit in json.loads(out)) == [album / "trip"] * 2


def test_an_album_folder_linked_inside_another_is_stable_whichever_is_indexed(
    tmp_path: Path,
    tiny_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    nu = tmp_path / "nu"
    _two_trip_photos(nu / "phötos")
    link = nu / "link"
    try:
        link.symlink_to(nu / "phötos", target_is_directory=True)
    except OSError:
        pytest.skip("symbolic links not available")

    def index(*folders: Path) -> tuple[int, int, int, int]:
        code, out, err = _run(capsys, "index", *map(str, folders), "--model", "tiny", "--json")
        assert code == 0, err
        run = json.loads(out)
        return run["new"], run["copied"], run["deleted"], run["unchanged"]

    assert index(nu) == (2, 0, 0, 0)
    assert index(link) == (0, 2, 0, 0)
    for _ in range(2):
        assert index(nu) == (0, 0, 0, 4)  # the link folder is indexed with its parent
        assert index(link) == (0, 0, 0, 2)
        assert index(nu, link) == (0, 0, 0, 4)
    code, out, err = _run(capsys, "search", "cat", "--in", str(link), "--json")
    assert code == 0, err
    assert sorted(Path(hit["path"]).parent for hit in json.loads(out)) == [link] * 2

    # a photo deleted from the linked folder leaves both, whichever folder is indexed
    (nu / "phötos" / Path(PHOTOS["trips"][0]).name).unlink()
    assert index(nu) == (0, 0, 2, 2)


def test_a_full_disk_is_one_warning_for_the_thumbnails_not_one_per_photo(
    home: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    album = tmp_path / "more"
    album.mkdir()
    for number in range(12):
        Image.new("RGB", (64, 48), (number * 20, 90, 160)).save(album / f"{number}.jpg")

    def no_room(image: Image.Image) -> bytes:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(thumbnails, "thumbnail_jpeg", no_room)
    code, out, err = _run(capsys, "index", str(album), "--model", "tiny", "--json")
    assert code == 0, err
    assert json.loads(out)["indexed"] == 12
    warnings = [line for line in err.splitlines() if "cannot write" in line]
    assert len(warnings) == 1, err
    assert "No space left on device" in warnings[0] and "without them" in warnings[0]


def test_index_retry_failed_tries_photos_whose_files_did_not_change(
    tmp_path: Path,
    tiny_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A photo failed for a reason fixed since (here: a decoder that was missing), its file
    unchanged: a plain index leaves it failed, --retry-failed encodes it."""
    from core import indexer

    album = tmp_path / "album"
    _two_trip_photos(album)
    unlucky = sorted(album.iterdir())[0]
    real_load = indexer.load_image

    def no_decoder(path: Path, **options: object) -> object:
        if path == unlucky:
            raise RuntimeError("no decoder for this photo")
        return real_load(path, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(indexer, "load_image", no_decoder)
    code, out, _ = _run(capsys, "index", str(album), "--model", "tiny", "--json")
    first = json.loads(out)
    assert code == 0 and first["indexed"] == 1
    assert [item["path"] for item in first["failed"]] == [str(unlucky)]
    monkeypatch.setattr(indexer, "load_image", real_load)  # the decoder is there now

    code, out, _ = _run(capsys, "index", str(album), "--json")
    again = json.loads(out)
    assert code == 0 and again["indexed"] == 0 and len(again["failed"]) == 1
    code, out, _ = _run(capsys, "index", str(album), "--retry-failed", "--json")
    retried = json.loads(out)
    assert code == 0 and retried["indexed"] == 1 and retried["failed"] == []
    assert retried["unchanged"] == 1
