"""Which model files a command may load, and what it says when they changed or were left behind.

Models load only from the models folder, by a registry or installed name; every command that
loads one checks its files cheaply (a file whose size and times are unchanged is not hashed
again) and says when a file changed; what an interrupted replacement left is cleared, or put
back, by the next install.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from cli import main as cli
from cli import output
from core.encoder import ClipModel
from core.install import PARTIAL_PREFIX
from core.manifest import verify_manifest

ERROR = f"{output.PROG}: error: "


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: ClipModel) -> Path:
    """A user folder holding its own copy of the tiny model (so a test may damage it)."""
    folder = tmp_path / "home"
    models = folder / "data" / "models"
    models.mkdir(parents=True)
    shutil.copytree(tiny_model.model_dir, models / "tiny", symlinks=False)
    monkeypatch.setenv("CLIPSEARCH_HOME", str(folder))
    return folder


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "album" / "photo.jpg"
    path.parent.mkdir()
    Image.new("RGB", (80, 60), "olive").save(path)
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(ERROR)]
    assert len(lines) == 1, err
    return lines[0][len(ERROR) :]


@pytest.mark.parametrize("form", ["relative", "absolute", "dot-dot"])
def test_model_must_be_a_name_not_a_path(
    home: Path, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    elsewhere = tmp_path / "elsewhere" / "x"
    shutil.copytree(home / "data" / "models" / "tiny", elsewhere)  # a whole, valid model
    name = {
        "relative": os.path.relpath(elsewhere, home / "data" / "models"),
        "absolute": str(elsewhere),
        "dot-dot": "..",
    }[form]
    for argv in (
        ("describe", str(photo), "--labels", "a", "b", "--model", name),
        ("index", str(photo.parent), "--model", name),
    ):
        code, out, err = _run(capsys, *argv)
        assert code == 1 and out == ""
        assert "is not a model name" in _one_error(err), argv


def test_a_changed_model_file_is_noticed_by_describe_and_search(
    home: Path, photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = home / "data" / "models" / "tiny"
    assert _run(capsys, "index", str(photo.parent), "--model", "tiny")[0] == 0
    code, _, err = _run(capsys, "describe", str(photo), "--labels", "a", "b", "--model", "tiny")
    assert code == 0 and "changed on disk" not in err

    weights = next(model_dir.glob("*visual*.bin"))
    os.utime(weights, (1, 1))  # touched: same bytes, so it is hashed again, with a note
    code, out, err = _run(capsys, "search", "a photo", "--top", "1")
    assert code == 0 and out.strip() == str(photo)
    assert f"{weights.name} of model 'tiny' changed on disk" in err

    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # damaged: one byte
    weights.write_bytes(bytes(data))
    for argv in (
        ("search", "a photo"),
        ("search", "--similar", str(photo)),
        ("describe", str(photo), "--labels", "a", "b"),
    ):
        code, out, err = _run(capsys, *argv)
        assert code == 1 and out == "", argv
        assert "does not match the sha256 recorded when it was installed" in _one_error(err)


def test_the_next_install_clears_or_puts_back_what_a_replacement_left(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.reference import TINY_VIT, make_reference, save_checkpoint

    models = home / "data" / "models"
    checkpoint = save_checkpoint(make_reference(TINY_VIT, seed=3), tmp_path / "tiny.safetensors")
    # killed after the new installation took the name: the old one is left aside
    stale = models / f"{PARTIAL_PREFIX}replaced-tiny-0a1b2c3d"
    shutil.copytree(models / "tiny", stale)
    # killed between the two renames: the only copy of "other" is set aside
    aside = models / f"{PARTIAL_PREFIX}replaced-other-4e5f6a7b"
    shutil.copytree(models / "tiny", aside)
    half_built = models / f"{PARTIAL_PREFIX}tiny-99887766"
    half_built.mkdir()
    (half_built / "visual.bin").write_bytes(b"\0" * 1000)

    code, _, err = _run(capsys, "model", "install", "--from", str(checkpoint), "--as", "tiny")
    assert code == 0, err
    left = sorted(p.name for p in models.iterdir() if p.name.startswith("."))
    assert [name for name in left if name.startswith(PARTIAL_PREFIX)] == []
    assert (models / "other" / "manifest.json").is_file()
    verify_manifest(models / "other")
    verify_manifest(models / "tiny")
