"""Installing a model that brings its own tokenizer files (SigLIP 2).

The hub is :class:`tests.hub_server.HubServer` on 127.0.0.1, serving a tiny random SigLIP
checkpoint beside tokenizer files trained here; a folder install reads the same files from disk.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("open_clip")
pytest.importorskip("timm")

from core.manifest import read_manifest
from core.registry import get_spec
from tests.hub_server import HubServer
from tests.reference import (
    TINY_SIGLIP,
    build_test_tokenizer,
    make_siglip_reference,
    save_checkpoint,
)
from tests.samples import SAMPLES
from tests.test_install import _cli, _env, _leftovers, _one_error_line

REPO = "clipsearch-test/tiny-siglip"
NAME = "tiny-siglip"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="module")
def repo_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hub repository's files: checkpoint and tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-siglip-repo")
    build_test_tokenizer(folder)
    save_checkpoint(
        make_siglip_reference(TINY_SIGLIP, seed=4), folder / "open_clip_model.safetensors"
    )
    return folder


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    spec = replace(get_spec("ViT-B-32-SigLIP2-256-webli"), name=NAME, architecture=TINY_SIGLIP)
    data = spec.to_dict()
    data["preprocess"]["size"] = TINY_SIGLIP.vision["image_size"]
    data["source"]["hub_repo"] = REPO
    (home / "config" / "registry.json").write_text(json.dumps({"models": {NAME: data}}))
    monkeypatch.setenv("CLIPSEARCH_HOME", str(home))
    return home


def _copy(repo_files: Path, target: Path, **changes: bytes | None) -> Path:
    """A copy of the repository's files, with some replaced (bytes) or left out (None)."""
    target.mkdir(parents=True)
    for path in repo_files.iterdir():
        content = changes.get(path.name, path.read_bytes())
        if content is not None:
            (target / path.name).write_bytes(content)
    return target


def test_hub_install_downloads_and_records_the_tokenizer(home: Path, repo_files: Path) -> None:
    server = HubServer()
    server.add_repo(REPO, {p.name: p.read_bytes() for p in repo_files.iterdir()})
    with server:
        result = _cli(_env(home, server.endpoint), "model", "install", NAME)
    assert result.returncode == 0, result.stderr
    folder = home / "data" / "models" / NAME
    manifest = read_manifest(folder)
    for name in TOKENIZER_FILES:
        assert (folder / name).read_bytes() == (repo_files / name).read_bytes()
        assert name in manifest["files"]
        assert name in manifest["source"]["tokenizer"]
    assert manifest["logit_bias"] == pytest.approx(-8.25)


def test_hub_without_the_tokenizer_names_the_file(home: Path, repo_files: Path) -> None:
    server = HubServer()
    files = {p.name: p.read_bytes() for p in repo_files.iterdir() if p.name != "tokenizer.json"}
    server.add_repo(REPO, files)
    with server:
        result = _cli(_env(home, server.endpoint), "model", "install", NAME)
    assert result.returncode != 0
    line = _one_error_line(result)
    assert "tokenizer.json" in line
    assert _leftovers(home) == [] and not (home / "data" / "models" / NAME).exists()


@pytest.mark.parametrize(
    "changes,named",
    [
        ({"tokenizer.json": None}, "tokenizer.json"),
        ({"tokenizer_config.json": None}, "tokenizer_config.json"),
        ({"tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE", '}, "tokenizer.json"),
        ({"tokenizer_config.json": b"\x00\x01 not json"}, "tokenizer_config.json"),
    ],
    ids=["missing", "config-missing", "truncated", "config-corrupt"],
)
def test_bad_tokenizer_in_a_folder(
    home: Path, repo_files: Path, tmp_path: Path, changes: dict, named: str
) -> None:
    folder = _copy(repo_files, tmp_path / "repo", **changes)
    result = _cli(_env(home, "http://127.0.0.1:9"), "model", "install", NAME, "--from", str(folder))
    assert result.returncode != 0
    assert named in _one_error_line(result)
    assert _leftovers(home) == [] and not (home / "data" / "models" / NAME).exists()


def test_tokenizer_that_does_not_fit_the_checkpoint(
    home: Path, repo_files: Path, tmp_path: Path
) -> None:
    """A tokenizer whose ids run past the checkpoint's vocabulary is refused before converting."""
    data = json.loads((repo_files / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["vocab"]["▁bigger"] = TINY_SIGLIP.text["vocab_size"] + 10
    folder = _copy(repo_files, tmp_path / "repo", **{"tokenizer.json": json.dumps(data).encode()})
    result = _cli(_env(home, "http://127.0.0.1:9"), "model", "install", NAME, "--from", str(folder))
    assert result.returncode != 0
    line = _one_error_line(result)
    assert "tokenizer.json" in line and "does not match" in line
    assert _leftovers(home) == [] and not (home / "data" / "models" / NAME).exists()


def test_a_lone_checkpoint_file_still_installs_clip_models(home: Path, tmp_path: Path) -> None:
    """A model that needs no tokenizer files installs from a single checkpoint file."""
    from tests.reference import TINY_VIT, make_reference

    checkpoint = save_checkpoint(make_reference(TINY_VIT, seed=5), tmp_path / "tiny.safetensors")
    env = _env(home, "http://127.0.0.1:9")
    result = _cli(env, "model", "install", "--from", str(checkpoint), "--as", "tiny-clip")
    assert result.returncode == 0, result.stderr


def test_search_json_gives_sigmoid_probabilities(
    home: Path, repo_files: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A SigLIP model's probability for each photo is sigmoid(scale x cosine + bias), on its own;
    a CLIP model's are a softmax over the candidates (tests/test_search.py)."""
    import shutil

    import numpy as np

    from cli.main import main

    album = tmp_path / "album"
    album.mkdir()
    for photo in sorted((SAMPLES / "jpg" / "exif-org").glob("*.jpg"))[:4]:
        shutil.copy2(photo, album / photo.name)
    assert main(["model", "install", NAME, "--from", str(repo_files)]) == 0
    assert main(["index", str(album), "--model", NAME]) == 0
    capsys.readouterr()
    assert main(["search", "собака в снегу", "--model", NAME, "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 4
    manifest = read_manifest(home / "data" / "models" / NAME)
    scale, bias = manifest["logit_scale"], manifest["logit_bias"]
    for hit in hits:
        expected = 1.0 / (1.0 + np.exp(-(scale * hit["score"] + bias)))
        assert hit["probability"] == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert sum(hit["probability"] for hit in hits) < 0.5  # not shared out like a softmax
