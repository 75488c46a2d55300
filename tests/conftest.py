"""Fixtures shared by the tests: a tiny installed model, a throwaway user folder, a real album."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.encoder import ClipModel
from tests.samples import SAMPLES

ALBUM_PHOTOS = (
    "jpg/Canon_40D.jpg",
    "jpg/Nikon_D70.jpg",
    "jpg/corrupted.jpg",
    "jpg/exif-org/kodak-dc240.jpg",
    "jpg/gps/DSCN0010.jpg",
    "jpg/gps/DSCN0012.jpg",
    "jpg/hdr/canon_hdr_NO.jpg",
    "jpg/invalid/image01137.jpg",
    "jpg/orientation/landscape_1.jpg",
    "jpg/orientation/landscape_3.jpg",
    "jpg/orientation/landscape_6.jpg",
    "jpg/orientation/landscape_8.jpg",
    "jpg/orientation/portrait_1.jpg",
    "jpg/orientation/portrait_6.jpg",
    "jpg/tests/30-type_error.jpg",
    "jpg/tests/67-0_length_string.jpg",
    "jpg/xmp/no_exif.jpg",
    "heic/mobile/iphone_13_pro_max.HEIC",
    "heic/samplefilehub.heif",
    "tiff/Arbitro.tiff",
    "tiff/BSG1.tiff",
    "tiff/Crémieux11.tiff",
)
"""Real photos copied into the ``album`` fixture, by their path under :data:`SAMPLES`."""

BROKEN_PHOTOS = ("broken/truncated.jpg", "broken/not-a-photo.jpg")
"""Files of the ``album`` fixture that look like photos but cannot be decoded."""

SKIPPED_FILES = ("broken/empty.jpg", "raw/DSC_0001.NEF")
"""Files of the ``album`` fixture that the scan skips (an empty file, a RAW file)."""


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClipModel]:
    """A tiny random ViT installed through the command line, loaded with draft decoding.

    Installed once per session into its own ``CLIPSEARCH_HOME``; the model stays usable after
    the variable is restored because it is loaded from its folder.
    """
    pytest.importorskip("open_clip")
    from cli.main import main as cli_main
    from core.encoder import load_model
    from tests.reference import TINY_VIT, make_reference, save_checkpoint

    root = tmp_path_factory.mktemp("tiny-model")
    checkpoint = save_checkpoint(make_reference(TINY_VIT, seed=3), root / "tiny.safetensors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLIPSEARCH_HOME", str(root / "home"))
        assert cli_main(["model", "install", "--from", str(checkpoint), "--as", "tiny"]) == 0
        model = load_model("tiny", threads=2, precision="fp32")
    yield model
    model.close()


def link_tiny_model(home: Path, tiny_model: ClipModel) -> Path:
    """Install the session's tiny model in a user folder by linking its models folder.

    ``home/data/models`` becomes a link to the folder the tiny model was installed in, so the
    model is neither copied nor converted again. That folder is shared by every test that links
    it: a test that installs, removes or damages models needs its own copy instead.

    Parameters
    ----------
    home : Path
        The user folder (a ``CLIPSEARCH_HOME``); it is created when missing and must not hold
        a models folder yet.
    tiny_model : ClipModel
        The ``tiny_model`` fixture.

    Returns
    -------
    Path
        ``home``, so that a fixture can return the call.
    """
    (home / "data").mkdir(parents=True, exist_ok=True)
    (home / "data" / "models").symlink_to(tiny_model.model_dir.parent, target_is_directory=True)
    return home


@pytest.fixture
def tiny_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: ClipModel) -> Path:
    """A ``CLIPSEARCH_HOME`` for this test with the tiny model installed (see
    :func:`link_tiny_model`) and no library or settings yet."""
    home = link_tiny_model(tmp_path / "home", tiny_model)
    monkeypatch.setenv("CLIPSEARCH_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Async tests run on asyncio only: Textual needs it, and anyio would otherwise also run
    each of them on trio wherever trio happens to be installed."""
    return "asyncio"


@pytest.fixture
def clipsearch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``CLIPSEARCH_HOME`` for this test: its own library, thumbnails and config."""
    home = tmp_path / "home"
    monkeypatch.setenv("CLIPSEARCH_HOME", str(home))
    return home


def _set_tree_writable(root: Path, writable: bool) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            mode = path.stat().st_mode
            path.chmod(mode | stat.S_IWUSR if writable else mode & ~0o222)
        path = Path(folder)
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~0o222)


@pytest.fixture
def album(tmp_path: Path) -> Iterator[Path]:
    """A read-only copy of real photos, with broken and skipped files among them.

    Holds :data:`ALBUM_PHOTOS` (JPEG with odd EXIF and every orientation, HEIC, TIFF) under their
    sample paths, :data:`BROKEN_PHOTOS` (a truncated JPEG, a text file named ``.jpg``),
    :data:`SKIPPED_FILES` (an empty JPEG, a RAW file) and a text file. Everything is made
    read-only with ``chmod``; use :func:`album_writable` to change it in a test.
    """
    root = tmp_path / "album"
    for name in ALBUM_PHOTOS:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SAMPLES / name, target)
    (root / "broken").mkdir()
    (root / "raw").mkdir()
    whole = (SAMPLES / "jpg/gps/DSCN0021.jpg").read_bytes()
    (root / "broken/truncated.jpg").write_bytes(whole[: len(whole) // 2])  # EXIF kept
    (root / "broken/not-a-photo.jpg").write_text("this is not a JPEG\n")
    (root / "broken/empty.jpg").write_bytes(b"")
    (root / "raw/DSC_0001.NEF").write_bytes(b"II*\x00" + bytes(1000))
    (root / "notes.txt").write_text("not a photo\n")
    _set_tree_writable(root, False)
    yield root
    _set_tree_writable(root, True)


@pytest.fixture
def album_writable() -> Callable[[Path], contextlib.AbstractContextManager[Path]]:
    """``with album_writable(album): ...`` lifts the read-only mode for the block."""

    @contextlib.contextmanager
    def writable(root: Path) -> Iterator[Path]:
        _set_tree_writable(root, True)
        try:
            yield root
        finally:
            _set_tree_writable(root, False)

    return writable
