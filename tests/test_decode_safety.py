"""Hostile photos: tiny files whose pixels explode when scaled, and images too large to decode.

A 1-pixel-wide strip is scaled until its short side reaches the model size, so its long side
grows by the same factor: a 96-byte 1x3000 PNG took 2 GB in ``index`` before the resize was
bounded by the pixels it produces. The peak memory of each case is measured in a child process
(its resident high-water mark) under an address-space limit, so a regression fails here instead
of exhausting the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import preprocess as pp
from core.encoder import ClipModel
from core.registry import Preprocess
from tests.conftest import link_tiny_model

REPO = Path(__file__).resolve().parents[1]
STRIPS = [(1, 40000), (40000, 1), (4, 20000)]
"""Width x height of the awkward images the issue names."""
PEAK_MB = 250
"""Bound on a child's peak resident memory. The same child takes about 60 MB for a normal photo
(the interpreter, numpy, Pillow, ncnn); the 1x40000 strip alone needed about 26 GB before."""
ADDRESS_LIMIT = 3 << 30
"""Address-space limit of the children, so that a regression fails fast instead of swapping."""

MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    {body}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:  # Linux: the high-water mark of this program alone (see _measure)
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        peak = int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        pass
    print(json.dumps({{"peak_mb": peak, "result": result}}))
    """
)


def _measure(body: str, env: dict[str, str] | None = None) -> dict:
    """Run ``body`` (which sets ``result``) in a child and return its peak memory and result.

    On Linux ``ru_maxrss`` survives ``exec``: a child started from this (large) test process
    reports the parent's resident size. The child therefore reports ``VmHWM`` from
    ``/proc/self/status`` where it exists (the peak of its own address space since ``exec``),
    and ``getrusage`` elsewhere.
    """
    script = MEASURE.format(limit=ADDRESS_LIMIT, body=textwrap.dedent(body).strip())
    child_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _strip(folder: Path, width: int, height: int) -> Path:
    path = folder / f"strip-{width}x{height}.png"
    ramp = np.add.outer(np.arange(height), np.arange(width)) % 256  # compresses to almost nothing
    Image.fromarray(np.stack([ramp, ramp[::-1], 255 - ramp], -1).astype(np.uint8), "RGB").save(path)
    return path


@pytest.mark.parametrize(("width", "height"), STRIPS)
def test_preprocessing_a_strip_stays_small(tmp_path: Path, width: int, height: int) -> None:
    path = _strip(tmp_path, width, height)
    assert path.stat().st_size < 20_000
    report = _measure(
        f"""
        from core.preprocess import load_image, preprocess, resize_for
        from core.registry import Preprocess
        spec = Preprocess(size=256)
        image = load_image({str(path)!r}, min_side=512)
        resized = resize_for(image, spec)
        pixels = preprocess(image, spec)
        result = [list(resized.size), list(pixels.shape)]
        """
    )
    assert report["result"][1] == [3, 256, 256]
    assert max(report["result"][0]) == pp.MAX_ASPECT * 256
    assert report["peak_mb"] < PEAK_MB, report


def test_the_unbounded_resize_was_the_blow_up(tmp_path: Path) -> None:
    """The reproduction: without the bound, a 1x3000 strip takes gigabytes (under a limit)."""
    path = _strip(tmp_path, 1, 3000)
    script = f"""
        from core import preprocess as pp
        from core.registry import Preprocess
        pp.MAX_ASPECT = 10**9
        try:
            pp.preprocess(pp.load_image({str(path)!r}), Preprocess(size=256))
            result = "fit"
        except MemoryError:
            result = "out of memory"
        """
    report = _measure(script)
    assert report["result"] == "out of memory" or report["peak_mb"] > 1000, report


@pytest.mark.parametrize(("width", "height"), [(30, 1500), (1500, 30), (7, 900), (333, 41)])
def test_a_bounded_resize_gives_the_same_crop(width: int, height: int) -> None:
    """The central window gives what the full resize gives, to one level in a few pixels."""
    rng = np.random.default_rng(width + height)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3)).astype(np.uint8), "RGB")
    spec = Preprocess(size=64)
    ours = pp.preprocess(image, spec)
    full = pp.RESAMPLE_FILTERS["bicubic"]
    tall = width <= height
    long = int(64 * max(width, height) / min(width, height))
    reference = image.resize((64, long) if tall else (long, 64), full)
    expected = np.empty_like(ours)
    crop = pp._centre_crop(np.asarray(reference), 64)
    table = pp._normalisation_table(spec.mean, spec.std)
    for channel in range(3):
        expected[channel] = table[channel][crop[..., channel]]
    level = float(max(table[c][1] - table[c][0] for c in range(3)))  # one 8-bit level
    difference = np.abs(ours - expected)
    assert difference.max() <= 1.01 * level
    assert (difference > 1e-6).mean() < 0.01
    if max(width, height) / min(width, height) <= pp.MAX_ASPECT:
        np.testing.assert_array_equal(ours, expected)


def test_too_many_pixels_are_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (300, 200)).save(path)
    monkeypatch.setattr(pp, "MAX_DECODE_PIXELS", 50_000)
    loads: list[object] = []
    monkeypatch.setattr(Image.Image, "load", lambda image: loads.append(image))
    with pytest.raises(pp.ImageDecodeError) as caught:
        pp.load_image(path)
    message = str(caught.value)
    assert "wide.png" in message and "too large to decode (300x200" in message
    assert "\n" not in message and loads == []


# -- the commands, end to end ---------------------------------------------------------------------


@pytest.fixture
def strips_home(tmp_path: Path, tiny_model: ClipModel) -> tuple[Path, Path]:
    """An album of the awkward strips and a user folder where the tiny model is installed."""
    album = tmp_path / "album"
    album.mkdir()
    for width, height in [*STRIPS, (1, 12000)]:
        _strip(album, width, height)
    return album, link_tiny_model(tmp_path / "home", tiny_model)


def _cli_peak(home: Path, *argv: str) -> dict:
    return _measure(
        f"""
        import io, contextlib
        try:
            from cli.main import run as main
        except ImportError:  # before the command line had its own package
            from tui.__main__ import main
        sys.argv[0] = "clipsearch-tui"
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            sys.argv[1:] = {list(argv)!r}
            code = main()
        result = [code, out.getvalue(), err.getvalue()]
        """,
        env={"CLIPSEARCH_HOME": str(home)},
    )


def test_index_describe_and_similar_stay_small(strips_home: tuple[Path, Path]) -> None:
    album, home = strips_home
    report = _cli_peak(home, "index", str(album), "--model", "tiny", "--json")
    code, out, err = report["result"]
    assert code == 0, err
    summary = json.loads(out)
    assert summary["indexed"] == 4 and summary["failed"] == []
    assert report["peak_mb"] < PEAK_MB, report

    strip = album / "strip-1x40000.png"
    report = _cli_peak(home, "describe", str(strip), "--model", "tiny", "--labels", "a", "b")
    assert report["result"][0] == 0, report["result"][2]
    assert report["peak_mb"] < PEAK_MB, report
    report = _cli_peak(home, "search", "--similar", str(album / "strip-40000x1.png"), "--json")
    assert report["result"][0] == 0, report["result"][2]
    assert report["peak_mb"] < PEAK_MB, report


def test_a_refused_photo_is_failed_once_with_its_reason(
    tmp_path: Path, clipsearch_home: Path, tiny_model: ClipModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core import indexer
    from core.library import Library

    album = tmp_path / "album"
    album.mkdir()
    Image.new("RGB", (400, 300), "navy").save(album / "huge.png")
    Image.new("RGB", (40, 30), "teal").save(album / "small.png")
    monkeypatch.setattr(pp, "MAX_DECODE_PIXELS", 100_000)  # 400x300 is over it
    decoded: list[Path] = []
    load = indexer.load_image

    def counting(path: Path, **kwargs: object) -> Image.Image:
        decoded.append(Path(path))
        return load(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(indexer, "load_image", counting)
    with Library.open() as library:
        first = indexer.index(library, tiny_model, [album])
        assert first.indexed == 1
        ((path, reason),) = first.failed
        assert path == album / "huge.png" and "too large to decode (400x300" in reason
        assert [record.path for record in library.failures()] == [album / "huge.png"]
        decoded.clear()
        second = indexer.index(library, tiny_model, [album])
        assert decoded == [] and second.indexed == 0  # not tried again while the file is the same
