"""The ``duplicates`` and ``serve`` commands: output, exit codes, and what they refuse."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from cli import output
from tests.test_cli import _one_error, _run, home  # noqa: F401 - a fixture

GALLERY = Path(__file__).resolve().parents[1] / "gallery"


@pytest.fixture
def album_with_a_copy(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:  # noqa: F811
    """Three gallery photos and a second copy of the first, indexed."""
    album = tmp_path / "album"
    (album / "again").mkdir(parents=True)
    names = sorted(p.name for p in GALLERY.glob("*.jpg"))[:3]
    for name in names:
        shutil.copy2(GALLERY / name, album / name)
    shutil.copy2(GALLERY / names[0], album / "again" / names[0])
    code, _, err = _run(capsys, "index", str(album), "--model", "tiny")
    assert code == 0, err
    return album


def test_duplicates_json_pipe_and_terminal(
    album_with_a_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    album = album_with_a_copy
    first = sorted(p.name for p in album.glob("*.jpg"))[0]
    copy_pair = [str(album / first), str(album / "again" / first)]

    code, out, _ = _run(capsys, "duplicates", "--threshold", "0.9999", "--json")
    assert code == 0
    groups = json.loads(out)
    assert [[p["path"] for p in g["photos"]] for g in groups] == [copy_pair]
    photo = groups[0]["photos"][0]
    assert photo["size"] == (album / first).stat().st_size and photo["width"] > 0
    assert groups[0]["similarity"] >= 0.9999

    code, out, _ = _run(capsys, "duplicates", str(album / "again"), "--threshold", "0.9999")
    assert code == 0 and out == ""  # only one photo there

    monkeypatch.setattr(output, "isatty", lambda stream: False)
    code, out, _ = _run(capsys, "duplicates", "--threshold", "0.9999")
    assert out.splitlines() == copy_pair  # through a pipe: one path per line

    monkeypatch.setattr(output, "isatty", lambda stream: True)
    import cli.duplicates

    monkeypatch.setattr(cli.duplicates, "isatty", lambda stream: True)
    code, out, err = _run(capsys, "duplicates", "--threshold", "0.9999")
    lines = out.splitlines()
    assert lines[0].startswith("group 1: 2 photos, similarity at least ")
    assert all(path in out for path in copy_pair)
    assert "nothing was moved or deleted" in err and "1 group;" in err

    # a folder never indexed: no answer about photos never looked at
    elsewhere = album.parent / "not-indexed"
    elsewhere.mkdir()
    shutil.copy2(album / first, elsewhere / first)
    shutil.copy2(album / first, elsewhere / f"copy-{first}")
    code, out, err = _run(capsys, "duplicates", str(elsewhere), "--json")
    assert code == 1 and out == ""
    assert f"no indexed photos in {elsewhere}; index it first" in _one_error(out, err)


@pytest.mark.parametrize("threshold", ["0", "1.5", "-1", "many"])
def test_duplicates_refuses_a_bad_threshold_with_exit_2(
    home: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    threshold: str,
) -> None:
    code, out, err = _run(capsys, "duplicates", "--threshold", threshold)
    assert code == 2 and out == "" and "--threshold" in err


def test_duplicates_of_a_missing_folder(
    home: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _run(capsys, "duplicates", str(tmp_path / "nowhere"))
    assert code == 1 and "folder not found" in _one_error(out, err)


def test_serve_binds_locally_and_a_remote_host_needs_a_flag(
    home: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from textual_serve import server

    served: list[tuple[str, int, str]] = []

    def fake_serve(self, debug: bool = False) -> None:  # type: ignore[no-untyped-def]
        served.append((self.host, self.port, self.command))

    monkeypatch.setattr(server.Server, "serve", fake_serve)
    port = _free_port()
    code, _, err = _run(capsys, "serve", "--port", str(port))
    assert code == 0 and served[-1][:2] == ("127.0.0.1", port)
    assert "-m cli --images halfcell" in served[-1][2]
    assert f"http://127.0.0.1:{port}" in err and "warning" not in err

    code, out, err = _run(capsys, "serve", "--host", "0.0.0.0", "--port", str(port))
    assert code == 2 and "--allow-remote" in err and len(served) == 1

    code, _, err = _run(capsys, "serve", "--host", "0.0.0.0", "--port", str(port), "--allow-remote")
    assert code == 0 and served[-1][0] == "0.0.0.0"
    assert "warning: serving on 0.0.0.0" in err

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        code, out, err = _run(capsys, "serve", "--port", str(busy))
    assert code == 1 and f"cannot serve on 127.0.0.1 port {busy}" in _one_error(out, err)
    assert len(served) == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
