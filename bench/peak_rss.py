"""Peak memory of ``clipsearch-tui index`` on an awkward album and on 60 large photos.

Each run is the command line itself (``clipsearch-tui index ALBUM --json``) in a fresh child
process with random ViT-B-32-256 weights installed as the registry model; the child reports its
resident high-water mark (``VmHWM`` in ``/proc/self/status``: ``ru_maxrss`` would include the
size of this script's process, which survives ``exec`` on Linux). Albums:

- floor: one ordinary 320x240 JPEG, the memory of the program and the model alone (the reference
  the other rows are compared with);
- awkward: tiny files whose pixels explode when scaled (1x40000, 40000x1, 4x20000, 1x12000 and
  1x3000 strips), a 16-bit greyscale PNG and a half-transparent RGBA PNG of 12 megapixels each, a
  CMYK JPEG, a truncated JPEG and a text file named ``.jpg``;
- large: 60 JPEGs of 12 megapixels (the large JPEGs of ``../shared/photos`` when present, else
  the photos of the tests scaled up to 4000x3000), each with its own content hash.

``--unbounded`` adds the 1x3000 strip alone with the resize bound switched off, which is what
every strip cost before (under a 6 GB address-space limit so that it cannot take the machine).

    python bench/peak_rss.py [--no-write] [--unbounded]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_flags, cpu_model, write_section  # noqa: E402
from bench.indexing import MODEL, SOURCE, install, large_jpegs  # noqa: E402

LARGE_COUNT = 60
LARGE_SIZE = (4000, 3000)
STRIPS = [(1, 40000), (40000, 1), (4, 20000), (1, 12000), (1, 3000)]

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    limit = int(sys.argv.pop(1))
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if sys.argv.pop(1) == "unbounded":
        from core import preprocess
        preprocess.MAX_ASPECT = 10**9
    from cli.main import run
    sys.argv[0] = "clipsearch-tui"
    try:
        code = run()
    except MemoryError:
        code = "MemoryError"
    with open("/proc/self/status") as status:
        hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"code": code, "peak_mb": hwm / 1024}), file=sys.stderr)
    """
)


def _ramp(width: int, height: int) -> np.ndarray:
    return (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)


def make_awkward(root: Path) -> int:
    """Write the awkward album; return the number of files."""
    root.mkdir(parents=True)
    for width, height in STRIPS:
        ramp = _ramp(width, height)
        Image.fromarray(np.stack([ramp, ramp[::-1], 255 - ramp], -1)).save(
            root / f"strip-{width}x{height}.png"
        )
    width, height = LARGE_SIZE
    grey16 = (_ramp(width, height).astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(root / "grey16.png")
    alpha = np.broadcast_to(np.tile([0, 128, 255], width)[:width], (height, width))
    rgba = np.dstack([_ramp(width, height)] * 3 + [alpha.astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "a.png")
    Image.new("CMYK", (1600, 1200), (10, 200, 30, 5)).save(root / "cmyk.jpg")
    whole = (ROOT / "tests" / "photos" / "jpg" / "gps" / "DSCN0010.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "not-a-photo.jpg").write_text("not a photo\n")
    return len(list(root.iterdir()))


def make_large(root: Path) -> str:
    """Write 60 large JPEGs; say where they came from."""
    root.mkdir(parents=True)
    sources = [path for path, _ in large_jpegs(SOURCE)] if SOURCE.is_dir() else []
    origin = f"copies of the {len(sources)} large JPEGs of {SOURCE.name}/"
    if not sources:
        sources = sorted((ROOT / "tests" / "photos" / "jpg").rglob("*.jpg"))[:20]
        origin = "photos of the tests scaled up to 4000x3000"
    for number in range(LARGE_COUNT):
        source = sources[number % len(sources)]
        target = root / f"IMG_{number:03d}.jpg"
        if SOURCE.is_dir() and source.is_relative_to(SOURCE):
            target.write_bytes(source.read_bytes() + b"\0copy %d" % number)
            continue
        with Image.open(source) as image:
            exif = image.info.get("exif", b"")
            big = image.convert("RGB").resize(LARGE_SIZE, Image.Resampling.BICUBIC)
        big.save(target, quality=90, exif=exif)
        with open(target, "ab") as handle:
            handle.write(b"\0copy %d" % number)
    return origin


def peak_of_index(album: Path, home: Path, unbounded: bool = False) -> dict:
    """Run ``clipsearch-tui index album`` in a child; its exit code, peak MB and seconds."""
    for leftover in (home / "data").glob("library*"):
        leftover.unlink()
    env = {**os.environ, "CLIPSEARCH_HOME": str(home), "PYTHONPATH": str(ROOT)}
    limit = str(6 << 30) if unbounded else "0"
    argv = ["index", str(album), "--model", MODEL, "--json"]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, limit, "unbounded" if unbounded else "bounded", *argv],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - start
    try:
        report = json.loads(done.stderr.strip().splitlines()[-1])
    except (ValueError, IndexError):  # killed: no report
        report = {"code": done.returncode, "peak_mb": float("nan")}
    summary = {}
    if done.stdout.strip().startswith("{"):
        summary = json.loads(done.stdout)
    return {**report, "seconds": seconds, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--unbounded", action="store_true", help="add the unbounded 1x3000 run")
    args = parser.parse_args(argv)
    command = "python bench/peak_rss.py " + " ".join(sys.argv[1:] if argv is None else argv)
    flags = ", ".join(cpu_flags()) or "none of note"
    print(f"CPU: {cpu_model()} (flags: {flags}); python {platform.python_version()}")

    with tempfile.TemporaryDirectory(prefix="clipsearch-peak-") as tmp:
        workdir = Path(tmp)
        home = workdir / "home"
        os.environ["CLIPSEARCH_HOME"] = str(home)
        install(workdir)
        floor_album = workdir / "floor"
        floor_album.mkdir()
        (floor_album / "photo.jpg").write_bytes(
            (ROOT / "tests" / "photos" / "jpg" / "gps" / "DSCN0010.jpg").read_bytes()
        )
        awkward_count = make_awkward(workdir / "awkward")
        origin = make_large(workdir / "large")
        runs = [
            ("floor: one 320x240 JPEG", floor_album, False),
            (f"awkward album ({awkward_count} files)", workdir / "awkward", False),
            (f"{LARGE_COUNT} JPEGs of 12 MP ({origin})", workdir / "large", False),
        ]
        if args.unbounded:
            strip = workdir / "strip"
            strip.mkdir()
            (strip / "s.png").write_bytes((workdir / "awkward" / "strip-1x3000.png").read_bytes())
            runs.append(("1x3000 strip, resize bound off (before)", strip, True))
        results = []
        for label, album, unbounded in runs:
            result = peak_of_index(album, home, unbounded)
            summary = result["summary"]
            print(
                f"{label}: exit {result['code']}, peak {result['peak_mb']:.0f} MB, "
                f"{result['seconds']:.1f} s, indexed {summary.get('indexed')}, "
                f"failed {len(summary.get('failed', []))}"
            )
            results.append((label, result))

    floor = results[0][1]["peak_mb"]
    lines = [
        f"`{command}` on {cpu_model()} (flags: {flags}), {MODEL} with random weights, the "
        "command line in a fresh process per row, peak resident memory (VmHWM):",
        "",
        "| album | exit | indexed | failed | peak | vs floor |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, result in results:
        summary = result["summary"]
        lines.append(
            f"| {label} | {result['code']} | {summary.get('indexed', '-')} | "
            f"{len(summary.get('failed', []))} | {result['peak_mb']:.0f} MB | "
            f"{result['peak_mb'] / floor:.2f}x |"
        )
    for line in lines:
        print(line)
    if not args.no_write:
        write_section("## Peak memory of index", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
