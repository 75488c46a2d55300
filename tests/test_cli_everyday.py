"""Everyday command line: dates as timeline prints them, terminal columns, a mistyped command."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from cli import photos
from core.timeline import parse_date
from tests.test_cli import _run, album_in_library, home, indexed_home  # noqa: F401 - fixtures

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


def test_a_query_that_starts_with_a_slash_is_text_unless_it_names_a_photo() -> None:
    from core.query import parse_query

    assert [t.kind for t in parse_query("/a red car on the road")] == ["text"]
    assert [t.kind for t in parse_query("./missing.jpg + cat")] == ["image", "text"]
    here = Path(__file__)
    assert [t.kind for t in parse_query(str(here))] == ["image"]
