"""A model installed again from other weights: the library's embeddings are not mixed with them.

The library records the sha256 of the checkpoint its embeddings came from. Indexing or searching
with the same model name installed from another checkpoint is refused with one line that says
how to encode again; ``index --reindex`` does it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import main

ERROR = "clipsearch-tui: error: "


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip("open_clip")
    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _install(tmp_path: Path, seed: int) -> None:
    from tests.reference import TINY_VIT, make_reference, save_checkpoint

    checkpoint = save_checkpoint(
        make_reference(TINY_VIT, seed), tmp_path / f"tiny-{seed}.safetensors"
    )
    assert main(["model", "install", "--from", str(checkpoint), "--as", "tiny"]) == 0


def _album(tmp_path: Path) -> Path:
    root = tmp_path / "my album"
    root.mkdir()
    rng = np.random.default_rng(0)
    for number in range(4):
        pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(root / f"IMG_{number}.png")
    return root


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(ERROR)]
    assert len(lines) == 1, lines
    return lines[0]


def test_reinstalled_weights_need_a_reindex(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    album = _album(tmp_path)
    _install(tmp_path, seed=3)
    assert main(["index", str(album), "--model", "tiny", "--json"]) == 0
    capsys.readouterr()
    _install(tmp_path, seed=3)  # the same checkpoint again: nothing to encode
    capsys.readouterr()
    assert main(["index", str(album), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["indexed"] == 0

    _install(tmp_path, seed=4)
    capsys.readouterr()
    for argv in (["index", str(album)], ["search", "a photo"]):
        assert main(argv) == 1
        line = _one_error(capsys)
        assert "other weights of model 'tiny'" in line and "--reindex" in line, line

    # the command the error suggests runs as it is: it names the album folder
    suggested = shlex.split(line.split("installed now: ", 1)[1])
    assert suggested == ["clipsearch-tui", "index", str(album), "--model", "tiny", "--reindex"]
    assert main([*suggested[1:], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["indexed"] == 4
    assert main(["search", "a photo", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4


def test_the_one_model_installed_is_used_when_none_is_named(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model installed from a checkpoint under a name of its own, and no other: index and
    search use it without --model or a model setting."""
    album = _album(tmp_path)
    _install(tmp_path, seed=3)
    capsys.readouterr()
    assert main(["index", str(album), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["indexed"] == 4
    assert "encoding with tiny" in captured.err


def test_default_model_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.encoder import default_model
    from core.registry import default_model_name

    monkeypatch.setenv("CLIPSEARCH_HOME", str(tmp_path / "home"))
    models = tmp_path / "home" / "data" / "models"
    assert default_model() == default_model_name()  # no models folder yet

    def install(name: str) -> None:
        (models / name).mkdir(parents=True)
        (models / name / "manifest.json").write_text("{}")

    (models / ".partial-mine-0000").mkdir(parents=True)  # a build in progress is no model
    (models / "empty").mkdir()  # nor a folder without a manifest
    assert default_model() == default_model_name()
    install("mine")
    assert default_model() == "mine"
    install("other")  # two: which one is not guessed
    assert default_model() == default_model_name()
    install(default_model_name())
    assert default_model() == default_model_name()
