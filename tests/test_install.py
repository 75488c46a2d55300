"""Installing, listing and removing models, through the hub and from files.

Downloads run the real command line in a child process with ``HF_ENDPOINT``, ``HF_HOME`` and
``CLIPSEARCH_HOME`` set, because ``huggingface_hub`` reads its environment once, at import. The
hub is :class:`tests.hub_server.HubServer` on 127.0.0.1, serving tiny random-weight checkpoints.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import core.convert
from cli.main import main
from core.catalog import list_models
from core.errors import (
    CheckpointError,
    ClipsearchError,
    InstallCancelledError,
    ManifestError,
    ModelNotInstalledError,
    UnknownModelError,
)
from core.install import install_model, remove_model
from core.manifest import read_manifest, verify_manifest
from core.paths import models_dir
from core.registry import (
    ModelSpec,
    Preprocess,
    available_models,
    checkpoint_bytes,
    checkpoint_parameters,
    default_model_name,
    get_spec,
)
from tests.hub_server import Fault, HubServer, free_port

SAFETENSORS = "open_clip_model.safetensors"
TORCH_BIN = "open_clip_pytorch_model.bin"
VIT_REPO = "clipsearch-test/tiny-vit"
RESNET_REPO = "clipsearch-test/tiny-resnet"
CHUNK = 10 * 1024 * 1024  # huggingface_hub writes downloads in chunks of this size

# Runs the console entry point; "fast" skips huggingface_hub's waits between retries.
RUNNER = """
import signal, sys, time
# Ctrl-C as at a terminal, even when the tests run as a background job (which starts every
# child with SIGINT ignored, and Python then keeps ignoring it)
signal.signal(signal.SIGINT, signal.default_int_handler)
if sys.argv.pop(1) == "fast":
    time.sleep = lambda seconds: None
from cli.main import run
sys.argv[0] = "clipsearch-tui"
sys.exit(run())
"""


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random-weight checkpoints in the formats the hub serves, plus broken ones."""
    from safetensors.numpy import load_file, save_file

    from tests.reference import TINY_RESNET, TINY_VIT, make_reference, save_checkpoint

    folder = tmp_path_factory.mktemp("checkpoints")
    vit = make_reference(TINY_VIT, seed=1)
    out = {
        "vit.safetensors": save_checkpoint(vit, folder / "vit.safetensors"),
        "vit.bin": save_checkpoint(vit, folder / "vit.bin"),
        "resnet.bin": save_checkpoint(make_reference(TINY_RESNET, seed=2), folder / "resnet.bin"),
    }
    state = load_file(str(out["vit.safetensors"]))
    width, embed_dim = state["visual.proj"].shape
    state["visual.proj"] = np.zeros((width, embed_dim // 2), np.float32)
    save_file(state, str(folder / "wrong-shape.safetensors"))
    out["wrong-shape.safetensors"] = folder / "wrong-shape.safetensors"
    data = out["vit.safetensors"].read_bytes()
    out["truncated.safetensors"] = folder / "truncated.safetensors"
    out["truncated.safetensors"].write_bytes(data[: len(data) // 2])
    out["garbage.bin"] = folder / "garbage.bin"
    out["garbage.bin"].write_bytes(b"this is not a checkpoint\n" * 64)
    return out


def _spec(name: str, arch_name: str, repo: str) -> dict:
    from tests import reference

    arch = getattr(reference, arch_name)
    spec = ModelSpec(
        name=name,
        architecture=arch,
        preprocess=Preprocess(size=arch.vision["image_size"]),
        hub_repo=repo,
        hub_files=(SAFETENSORS, TORCH_BIN),
        description=f"test model {name}",
        license="test-licence",
    )
    return spec.to_dict()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``CLIPSEARCH_HOME`` in a temporary folder, with tiny models in the user registry."""
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    extra = {
        "models": {
            "tiny-vit": _spec("tiny-vit", "TINY_VIT", VIT_REPO),
            "tiny-resnet": _spec("tiny-resnet", "TINY_RESNET", RESNET_REPO),
            "tiny-norepo": _spec("tiny-norepo", "TINY_VIT", "clipsearch-test/no-such-repo"),
        }
    }
    (home / "config" / "registry.json").write_text(json.dumps(extra), encoding="utf-8")
    monkeypatch.setenv("CLIPSEARCH_HOME", str(home))
    return home


@pytest.fixture
def hub(checkpoints: dict[str, Path]) -> HubServer:
    server = HubServer()
    server.add_repo(
        VIT_REPO,
        {
            SAFETENSORS: checkpoints["vit.safetensors"].read_bytes(),
            TORCH_BIN: checkpoints["vit.bin"].read_bytes(),
        },
    )
    server.add_repo(RESNET_REPO, {TORCH_BIN: checkpoints["resnet.bin"].read_bytes()})
    server.add_repo("laion/CLIP-ViT-B-32-laion2B-s34B-b79K")  # exists, but holds neither file
    with server:
        yield server


def _env(home: Path, endpoint: str, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HF_", "HUGGINGFACE_", "CLIPSEARCH_"))
    }
    env.update(
        CLIPSEARCH_HOME=str(home),
        HF_HOME=str(home.parent / "hf-home"),
        HF_ENDPOINT=endpoint,
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _cli(env: dict[str, str], *args: str, fast: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, "fast" if fast else "-", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _leftovers(home: Path) -> list[str]:
    """Everything in the models folder besides complete models and the lock file."""
    root = home / "data" / "models"
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.name != ".install.lock"
        and (p.name.startswith(".") or not (p / "manifest.json").is_file())
    )


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return lines[0]


def _cached_checkpoints(home: Path) -> list[str]:
    """Checkpoint files (links and blobs) in the download cache."""
    cache = home.parent / "hf-home" / "hub"
    names = [p.name for p in cache.rglob("*") if p.name in (SAFETENSORS, TORCH_BIN)]
    blobs = [p for p in cache.rglob("blobs/*") if p.is_file() and p.stat().st_size > 1000]
    assert len(blobs) == len(names), (names, blobs)
    return sorted(names)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- through the hub ---------------------------------------------------------------------------


def test_install_from_hub_prefers_safetensors(
    home: Path, hub: HubServer, checkpoints: dict[str, Path]
) -> None:
    result = _cli(_env(home, hub.endpoint), "model", "install", "tiny-vit")
    assert result.returncode == 0, result.stderr
    assert "installed tiny-vit" in result.stdout
    size = checkpoints["vit.safetensors"].stat().st_size
    url = f"{hub.endpoint}/{VIT_REPO}/resolve/main/{SAFETENSORS}"
    # before the download: what, under which licence, how large, from where
    assert "installing tiny-vit: test model tiny-vit, licence test-licence, about " in result.stderr
    assert f"downloading {SAFETENSORS} ({size / 1e6:.1f} MB) from {url}" in result.stderr

    asked = [(r.server, r.method, r.path) for r in hub.requests]
    sha256 = _sha256(checkpoints["vit.safetensors"])
    # the size is asked for first, then the download itself asks again and fetches
    assert asked == [
        ("hub", "HEAD", f"/{VIT_REPO}/resolve/main/{SAFETENSORS}"),
        ("hub", "HEAD", f"/{VIT_REPO}/resolve/main/{SAFETENSORS}"),
        ("cdn", "GET", f"/blobs/{sha256}/{SAFETENSORS}"),
    ]
    folder = home / "data" / "models" / "tiny-vit"
    manifest = verify_manifest(folder)
    assert manifest["source"] == {
        "file": SAFETENSORS,
        "origin": f"hub:{VIT_REPO}",
        "sha256": _sha256(checkpoints["vit.safetensors"]),
        "size": checkpoints["vit.safetensors"].stat().st_size,
        "revision": hub.commit(VIT_REPO),
    }
    assert {"visual.param", "visual.bin", "text.param", "text.bin", "text_projection.npy"} <= set(
        manifest["files"]
    )
    assert _leftovers(home) == []
    # the checkpoint does not stay behind in the download cache
    assert _cached_checkpoints(home) == []


def test_keep_checkpoint_and_a_checkpoint_cached_before(home: Path, hub: HubServer) -> None:
    env = _env(home, hub.endpoint)
    result = _cli(env, "model", "install", "tiny-vit", "--keep-checkpoint")
    assert result.returncode == 0, result.stderr
    assert _cached_checkpoints(home) == [SAFETENSORS]
    # a checkpoint that was in the cache before the install is not ours to delete
    assert _cli(env, "model", "remove", "tiny-vit").returncode == 0
    assert _cli(env, "model", "install", "tiny-vit").returncode == 0
    assert _cached_checkpoints(home) == [SAFETENSORS]


def test_bare_install_installs_the_default_model(home: Path, hub: HubServer) -> None:
    registry_file = home / "config" / "registry.json"
    extra = json.loads(registry_file.read_text(encoding="utf-8"))
    default = default_model_name()
    extra["models"][default] = _spec(default, "TINY_VIT", VIT_REPO)
    registry_file.write_text(json.dumps(extra), encoding="utf-8")

    result = _cli(_env(home, hub.endpoint), "model", "install")
    assert result.returncode == 0, result.stderr
    assert f"installed {default} " in result.stdout
    verify_manifest(home / "data" / "models" / default)


def test_install_falls_back_to_bin_when_safetensors_is_missing(home: Path, hub: HubServer) -> None:
    result = _cli(_env(home, hub.endpoint), "model", "install", "tiny-resnet")
    assert result.returncode == 0, result.stderr

    heads = [r.path for r in hub.seen("HEAD", "hub")]
    assert heads == [
        f"/{RESNET_REPO}/resolve/main/{SAFETENSORS}",
        f"/{RESNET_REPO}/resolve/main/{TORCH_BIN}",
        f"/{RESNET_REPO}/resolve/main/{TORCH_BIN}",
    ]
    manifest = verify_manifest(home / "data" / "models" / "tiny-resnet")
    assert manifest["source"]["file"] == TORCH_BIN
    assert manifest["spec"]["architecture"]["family"] == "resnet"


def test_download_cut_off_resumes_with_a_range_request(home: Path, hub: HubServer) -> None:
    hub.faults[SAFETENSORS] = Fault(cut_after=CHUNK + 500_000)
    result = _cli(_env(home, hub.endpoint), "model", "install", "tiny-vit", fast=True)
    assert result.returncode == 0, result.stderr

    ranges = [r.range for r in hub.seen("GET", "cdn")]
    assert ranges == [None, f"bytes={CHUNK}-"]
    verify_manifest(home / "data" / "models" / "tiny-vit")


def test_download_cut_off_for_good_leaves_nothing(home: Path, hub: HubServer) -> None:
    hub.faults[SAFETENSORS] = Fault(cut_after=CHUNK + 500_000, range_status=503)
    result = _cli(_env(home, hub.endpoint), "model", "install", "tiny-vit", fast=True)
    assert result.returncode == 1
    line = _one_error_line(result)
    assert SAFETENSORS in line and "HTTP 503" in line
    assert not (home / "data" / "models" / "tiny-vit").exists()
    assert _leftovers(home) == []
    assert not list((home.parent / "hf-home").rglob("*.incomplete"))


def test_ctrl_c_during_download_leaves_nothing_and_a_rerun_works(
    home: Path, hub: HubServer
) -> None:
    hold = threading.Event()
    fault = hub.faults[SAFETENSORS] = Fault(cut_after=CHUNK + 500_000, hold=hold)
    env = _env(home, hub.endpoint)
    child = subprocess.Popen(
        [sys.executable, "-c", RUNNER, "-", "model", "install", "tiny-vit"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert fault.reached.wait(timeout=60)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        hold.set()
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, stderr
    assert "clipsearch-tui: interrupted" in stderr
    assert "Traceback" not in stderr
    assert not (home / "data" / "models" / "tiny-vit").exists()
    assert _leftovers(home) == []
    assert not list((home.parent / "hf-home").rglob("*.incomplete"))

    result = _cli(env, "model", "install", "tiny-vit")
    assert result.returncode == 0, result.stderr
    verify_manifest(home / "data" / "models" / "tiny-vit")


def _assert_way_round(result: subprocess.CompletedProcess, endpoint: str, name: str) -> None:
    """The files to fetch by hand, each once, and the command that installs one, once."""
    for filename in (SAFETENSORS, TORCH_BIN):
        url = f"{endpoint}/{VIT_REPO}/resolve/main/{filename}"
        assert result.stderr.count(url) == 1, result.stderr
    assert result.stderr.count(f"clipsearch-tui model install {name} --from FILE") == 1
    assert "Retry" not in result.stderr and "thrown while" not in result.stderr, result.stderr


def test_hub_unreachable_names_the_endpoint_and_the_offline_route(
    home: Path, hub: HubServer
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = _cli(_env(home, endpoint), "model", "install", "tiny-vit")  # real waits
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    line = _one_error_line(result)
    assert f"cannot reach the model hub at {endpoint} (Connection refused)" in line
    _assert_way_round(result, endpoint, "tiny-vit")
    assert elapsed < 15, elapsed  # no retries with back-off (they took about 24 s)
    assert _leftovers(home) == []

    hub.unavailable = True
    result = _cli(_env(home, hub.endpoint), "model", "install", "tiny-vit")
    assert result.returncode == 1
    line = _one_error_line(result)
    assert f"cannot reach the model hub at {hub.endpoint} (HTTP 503)" in line
    _assert_way_round(result, hub.endpoint, "tiny-vit")
    assert len(hub.seen("HEAD")) == 1  # asked once, not retried


def test_hub_host_that_does_not_resolve_fails_fast(home: Path) -> None:
    endpoint = "https://hub.invalid"  # .invalid never resolves (RFC 2606)
    started = time.monotonic()
    result = _cli(_env(home, endpoint), "model", "install", "tiny-vit")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    line = _one_error_line(result)
    assert f"cannot reach the model hub at {endpoint} (cannot look up hub.invalid" in line
    _assert_way_round(result, endpoint, "tiny-vit")
    assert elapsed < 15, elapsed


def test_offline_mode_with_nothing_cached(home: Path, hub: HubServer) -> None:
    result = _cli(_env(home, hub.endpoint, HF_HUB_OFFLINE="1"), "model", "install", "tiny-vit")
    assert result.returncode == 1
    line = _one_error_line(result)
    assert "offline mode is on (HF_HUB_OFFLINE)" in line
    _assert_way_round(result, hub.endpoint, "tiny-vit")
    assert hub.requests == []


def test_offline_mode_installs_from_the_download_cache(home: Path, hub: HubServer) -> None:
    env = _env(home, hub.endpoint)
    assert _cli(env, "model", "install", "tiny-resnet", "--keep-checkpoint").returncode == 0
    assert _cli(env, "model", "remove", "tiny-resnet").returncode == 0
    before = len(hub.requests)

    result = _cli({**env, "HF_HUB_OFFLINE": "1"}, "model", "install", "tiny-resnet")
    assert result.returncode == 0, result.stderr
    assert len(hub.requests) == before
    assert verify_manifest(home / "data" / "models" / "tiny-resnet")["source"]["file"] == TORCH_BIN


def test_every_file_missing_on_the_hub(home: Path, hub: HubServer) -> None:
    result = _cli(_env(home, hub.endpoint), "model", "install", "ViT-B-32-laion2b")
    assert result.returncode == 1
    line = _one_error_line(result)
    assert f"has none of {SAFETENSORS}, {TORCH_BIN}" in line
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in line

    result = _cli(_env(home, hub.endpoint), "model", "install", "tiny-norepo")
    assert result.returncode == 1
    assert "no repository 'clipsearch-test/no-such-repo'" in _one_error_line(result)
    assert _leftovers(home) == []


# -- from files --------------------------------------------------------------------------------


def test_unknown_model_lists_the_known_ones(home: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["model", "install", "no-such-model"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("clipsearch-tui: error: unknown model 'no-such-model'; known models: ")
    for name in [*available_models(), "tiny-vit", "tiny-resnet"]:
        assert name in err
    assert "\n" not in err


@pytest.mark.parametrize("broken", ["truncated.safetensors", "garbage.bin"])
def test_from_a_broken_file(
    home: Path, checkpoints: dict[str, Path], broken: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(CheckpointError):
        install_model("tiny-vit", checkpoints[broken])
    assert main(["model", "install", "tiny-vit", "--from", str(checkpoints[broken])]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("clipsearch-tui: error: ")
    assert _leftovers(home) == []
    assert not (models_dir() / "tiny-vit").exists()


def test_from_a_file_of_the_wrong_shape(home: Path, checkpoints: dict[str, Path]) -> None:
    with pytest.raises(CheckpointError) as caught:
        install_model("tiny-vit", checkpoints["wrong-shape.safetensors"])
    from tests.reference import TINY_VIT

    expected = (TINY_VIT.vision["width"], TINY_VIT.embed_dim)
    given = (expected[0], expected[1] // 2)
    message = str(caught.value)
    assert "'visual.proj'" in message and str(given) in message and str(expected) in message
    assert _leftovers(home) == []


def test_from_a_file_under_a_new_name(home: Path, checkpoints: dict[str, Path]) -> None:
    folder = install_model(None, checkpoints["vit.bin"], as_name="my-clip", quick_gelu=True)
    manifest = verify_manifest(folder)
    assert manifest["name"] == "my-clip"
    assert manifest["source"]["origin"] == f"file:{checkpoints['vit.bin'].resolve()}"
    architecture = manifest["spec"]["architecture"]
    assert architecture["quick_gelu"] is True
    assert architecture["vision"]["image_size"] == 64
    assert manifest["spec"]["preprocess"]["size"] == 64

    with pytest.raises(ClipsearchError, match="needs --as"):
        install_model(None, checkpoints["vit.bin"])
    with pytest.raises(ClipsearchError, match="is a registry model"):
        install_model(None, checkpoints["vit.bin"], as_name="tiny-vit")


def test_registry_model_from_a_file_then_already_installed(
    home: Path, checkpoints: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    folder = install_model("tiny-vit", checkpoints["vit.safetensors"])
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    assert (
        main(["model", "install", "tiny-vit", "--from", str(checkpoints["vit.safetensors"])]) == 0
    )
    assert "already installed" in capsys.readouterr().err
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp


def test_cli_usage_errors(home: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["model", "install", "--from", "x.bin"]) == 2
    assert main(["model", "install", "tiny-vit", "--from", "no-such.bin"]) == 2
    assert main(["model", "install", "tiny-vit", "--as", "other"]) == 2
    assert main(["model", "install", "--no-such-flag"]) == 2
    assert main(["model", "remove"]) == 2
    capsys.readouterr()


# -- manifest ----------------------------------------------------------------------------------


def test_manifest_catches_tampering(home: Path, checkpoints: dict[str, Path]) -> None:
    folder = install_model("tiny-vit", checkpoints["vit.safetensors"])
    manifest = verify_manifest(folder)
    assert manifest["format"] == 1 and manifest["name"] == "tiny-vit"
    assert manifest["spec"] == ModelSpec.from_dict("tiny-vit", manifest["spec"]).to_dict()

    blob = bytearray((folder / "visual.bin").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (folder / "visual.bin").write_bytes(bytes(blob))
    with pytest.raises(ManifestError, match=r"^visual\.bin of model 'tiny-vit' does not match"):
        verify_manifest(folder)

    (folder / "text.param").unlink()
    with pytest.raises(ManifestError, match=r"missing text\.param"):
        verify_manifest(folder)

    (folder / "manifest.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="no manifest.json"):
        verify_manifest(folder)


def test_a_load_rehashes_only_files_changed_since_they_last_matched(
    home: Path, checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.manifest as manifest_mod

    folder = install_model("tiny-vit", checkpoints["vit.safetensors"])
    hashed: list[str] = []
    real_sha256 = manifest_mod.file_sha256

    def counting_sha256(path: Path) -> str:
        hashed.append(Path(path).name)
        return real_sha256(path)

    monkeypatch.setattr(manifest_mod, "file_sha256", counting_sha256)
    files = sorted(read_manifest(folder)["files"])
    verify_manifest(folder, reuse=True)
    assert sorted(hashed) == files
    hashed.clear()
    verify_manifest(folder, reuse=True)
    assert hashed == []  # nothing changed since: nothing read again
    verify_manifest(folder)
    assert sorted(hashed) == files  # without reuse every file is read
    hashed.clear()

    # damage keeping size and modification time: the change time still moves
    target = folder / "visual.bin"
    before = target.stat()
    blob = bytearray(target.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    time.sleep(0.01)
    target.write_bytes(bytes(blob))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(ManifestError, match=r"^visual\.bin of model 'tiny-vit' does not match"):
        verify_manifest(folder, reuse=True)
    assert hashed == ["visual.bin"]


def test_reinstall_repairs_a_damaged_installation(home: Path, checkpoints: dict[str, Path]) -> None:
    folder = install_model("tiny-vit", checkpoints["vit.safetensors"])
    (folder / "text.bin").write_bytes(b"damaged")
    install_model("tiny-vit", checkpoints["vit.safetensors"])
    verify_manifest(folder)


# -- list and remove ---------------------------------------------------------------------------


def test_list_json(home: Path, checkpoints: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    install_model("tiny-vit", checkpoints["vit.safetensors"])
    install_model(None, checkpoints["resnet.bin"], as_name="custom-rn")
    (models_dir() / ".partial-tiny-resnet-dead").mkdir()
    (models_dir() / "not-a-model").mkdir()

    assert main(["model", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert list(rows)[: len(available_models())] == available_models()
    assert not any(name.startswith(".") for name in rows)

    default = rows[default_model_name()]
    assert default["default"] is True and default["installed"] is False and default["size"] is None
    assert default["download_size"] == checkpoint_bytes(get_spec(default_model_name()).architecture)
    assert sum(row["default"] for row in rows.values()) == 1

    tiny = rows["tiny-vit"]
    folder = models_dir() / "tiny-vit"
    assert tiny["installed"] is True and tiny["in_registry"] is True
    assert tiny["size"] == sum(p.stat().st_size for p in folder.iterdir())
    assert tiny["path"] == str(folder)
    from tests.reference import TINY_VIT

    assert (tiny["family"], tiny["image_size"], tiny["embed_dim"]) == (
        "vit",
        TINY_VIT.vision["image_size"],
        TINY_VIT.embed_dim,
    )
    assert tiny["origin"].startswith("file:") and tiny["problem"] is None

    custom = rows["custom-rn"]
    assert custom["installed"] is True and custom["in_registry"] is False
    assert custom["family"] == "resnet"

    broken = rows["not-a-model"]
    assert broken["installed"] is False and "no manifest.json" in broken["problem"]

    assert main(["model", "list"]) == 0
    table = capsys.readouterr().out
    assert "tiny-vit" in table and "custom-rn" in table and "* default model" in table
    default_line = next(line for line in table.splitlines() if default_model_name() in line)
    assert f"~{default['download_size'] / 1e6:.1f} MB download" in default_line


def test_remove(home: Path, checkpoints: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    folder = install_model("tiny-vit", checkpoints["vit.safetensors"])
    assert main(["model", "remove", "tiny-vit"]) == 0
    assert not folder.exists() and _leftovers(home) == []

    with pytest.raises(ModelNotInstalledError):
        remove_model("tiny-vit")
    with pytest.raises(UnknownModelError):
        remove_model("never-heard-of-it")
    with pytest.raises(ClipsearchError, match="invalid model name"):
        remove_model("../data")
    # a link the user made to a model, or a dangling one: the link goes, never its target
    kept = install_model("tiny-vit", checkpoints["vit.safetensors"])
    (kept.parent / "alias").symlink_to(kept, target_is_directory=True)
    (kept.parent / "dangling").symlink_to(kept.parent / "nowhere", target_is_directory=True)
    for link in ("alias", "dangling"):
        assert main(["model", "remove", link]) == 0
        assert not (kept.parent / link).is_symlink()
    assert (kept / "manifest.json").is_file() and _leftovers(home) == []
    assert main(["model", "remove", "tiny-vit"]) == 0
    with pytest.raises(ClipsearchError, match="use at most 100 letters") as too_long:
        remove_model("x" * 10_000)
    assert len(str(too_long.value)) < 300 and "10,000 characters" in str(too_long.value)
    assert main(["model", "remove", "tiny-vit"]) == 1
    assert capsys.readouterr().err.strip().endswith("model 'tiny-vit' is not installed")


# -- failures in the middle --------------------------------------------------------------------


def _failing_convert(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Make the converter write its files, then fail."""
    real = core.convert.convert_checkpoint

    def convert(state_dict: Any, spec: ModelSpec, out_dir: Path) -> None:
        real(state_dict, spec, out_dir)
        raise error

    monkeypatch.setattr(core.convert, "convert_checkpoint", convert)


def test_interrupted_conversion_leaves_the_old_installation(
    home: Path, checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = install_model("tiny-vit", checkpoints["vit.safetensors"])
    before = verify_manifest(folder)

    _failing_convert(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        install_model("tiny-vit", checkpoints["vit.bin"])
    assert verify_manifest(folder) == before
    assert _leftovers(home) == []

    with pytest.raises(KeyboardInterrupt):
        install_model("tiny-resnet", checkpoints["resnet.bin"])
    assert not (models_dir() / "tiny-resnet").exists()
    assert _leftovers(home) == []


def test_stale_partial_folders_are_cleaned(home: Path, checkpoints: dict[str, Path]) -> None:
    stale = models_dir() / ".partial-tiny-vit-killed"
    stale.mkdir(parents=True)
    (stale / "visual.bin").write_bytes(b"half")
    assert [row["name"] for row in list_models() if row["name"].startswith(".")] == []

    install_model("tiny-resnet", checkpoints["resnet.bin"])
    assert not stale.exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full(
    home: Path,
    checkpoints: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    code: int,
) -> None:
    _failing_convert(monkeypatch, OSError(code, os.strerror(code), "visual.bin"))
    args = ["model", "install", "tiny-vit", "--from", str(checkpoints["vit.safetensors"])]
    assert main(args) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert errors[0].startswith("clipsearch-tui: error: disk full while writing model files in ")
    assert _leftovers(home) == []
    assert not (models_dir() / "tiny-vit").exists()


def test_cancel_between_steps(home: Path, checkpoints: dict[str, Path]) -> None:
    cancel = threading.Event()
    stages: list[str] = []

    def progress(stage: str, done: int, total: int | None) -> None:
        stages.append(stage)
        if stage == "manifest":
            cancel.set()

    with pytest.raises(InstallCancelledError):
        install_model("tiny-vit", checkpoints["vit.bin"], progress=progress, cancel=cancel)
    assert stages == ["hash", "convert", "manifest"]
    assert not (models_dir() / "tiny-vit").exists()
    assert _leftovers(home) == []


def test_download_progress_and_cancel() -> None:
    from core.hub import progress_bar_class

    cancel = threading.Event()
    seen: list[tuple[str, int, int | None]] = []
    bar_class = progress_bar_class(lambda *event: seen.append(event), cancel)
    with bar_class(total=300, initial=100, desc="x", unit="B") as bar:
        bar.update(50)
        bar.update(150)
        assert seen == [("download", 150, 300), ("download", 300, 300)]
        cancel.set()
        with pytest.raises(InstallCancelledError):
            bar.update(1)


# -- the command itself ------------------------------------------------------------------------


def test_version_from_the_console_script() -> None:
    from importlib import metadata

    script = Path(sys.executable).with_name("clipsearch-tui")
    result = subprocess.run(
        [str(script), "--version"], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"clipsearch-tui {metadata.version('clipsearch-tui')}"


def test_no_command_opens_the_app(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    calls: list[tuple[list[Path], str, bool]] = []

    def launch(paths: list[Path], images: str, gpu: bool) -> None:
        calls.append((paths, images, gpu))

    assert main([], launch_app=launch) == 0
    assert main([str(tmp_path)], launch_app=launch) == 0
    assert main(["--images", "halfcell", str(tmp_path)], launch_app=launch) == 0
    assert main(["--gpu", str(tmp_path)], launch_app=launch) == 0
    assert calls == [
        ([], "auto", False),
        ([tmp_path], "auto", False),
        ([tmp_path], "halfcell", False),
        ([tmp_path], "auto", True),
    ]
    assert main(["no-such-folder"], launch_app=launch) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["--images", "jpeg"], launch_app=launch) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main([]) == 0
    assert "model" in capsys.readouterr().out


def test_commands_do_not_load_textual(home: Path) -> None:
    code = (
        "import sys\n"
        "from cli.main import main\n"
        "import core.install, core.manifest\n"
        "assert main(['model', 'list', '--json']) == 0\n"
        "loaded = sorted(m for m in ('textual', 'rich', 'torch') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_download_size_counts_every_tensor_of_the_checkpoint() -> None:
    pytest.importorskip("open_clip")
    from tests.reference import TINY_RESNET, TINY_VIT, make_reference

    for arch in (TINY_VIT, TINY_RESNET):
        state = make_reference(arch, seed=3).state_dict()
        assert checkpoint_parameters(arch) == sum(value.numel() for value in state.values())
    pytest.importorskip("timm")
    from tests.reference import TINY_SIGLIP, make_siglip_reference

    state = make_siglip_reference(TINY_SIGLIP, seed=3).state_dict()
    assert checkpoint_parameters(TINY_SIGLIP) == sum(value.numel() for value in state.values())
    # the default model is the 605 MB download its users know
    default = get_spec(default_model_name()).architecture
    assert round(checkpoint_bytes(default) / 1e6) == 605
