"""Time scanning an album of 10,000 photos, reading their capture times, and rescanning it.

Builds a throwaway album of copies of a few small camera JPEGs in a temporary folder, then times:

1. the first scan (``core.album.scan``),
2. reading the capture time of every photo (``core.album.read_capture_time``),
3. grouping them into a timeline (``core.album.build_timeline``),
4. a rescan after a few photos were touched, added and removed: ``scan`` plus the comparison of
   size and modification time with what the index stored (simulated with a dict), the work an
   index update does before it decodes anything.

The files are in the page cache when they are scanned (they were just written), so the numbers
are for a warm cache. Nothing is written outside the temporary folder.

Usage::

    python bench/rescan.py [--files 10000] [--source FOLDER] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from core.album import FileEntry, build_timeline, read_capture_time, scan

DEFAULT_SOURCE = Path("/work/shared/photos/exif-samples/jpg")
MAX_SOURCE_BYTES = 10_000
FILES_PER_FOLDER = 100
CHANGED, ADDED, REMOVED = 100, 10, 10

T = TypeVar("T")


def _timed(action: Callable[..., T], *args: Any) -> tuple[T, float]:
    start = time.perf_counter()
    value = action(*args)
    return value, time.perf_counter() - start


def _make_album(root: Path, sources: list[Path], count: int) -> None:
    for i in range(count):
        folder = root / f"{2000 + i // 1000}" / f"{i // FILES_PER_FOLDER:04d}"
        if i % FILES_PER_FOLDER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sources[i % len(sources)], folder / f"IMG_{i:05d}.jpg")


def _diff(
    stored: dict[str, tuple[int, int]], files: list[FileEntry]
) -> tuple[list[FileEntry], list[FileEntry], list[str]]:
    """Split a scan into new and changed photos, and list stored paths that are gone."""
    new: list[FileEntry] = []
    changed: list[FileEntry] = []
    seen: set[str] = set()
    for entry in files:
        key = str(entry.path)
        seen.add(key)
        known = stored.get(key)
        if known is None:
            new.append(entry)
        elif known != (entry.size, entry.mtime_ns):
            changed.append(entry)
    gone = [key for key in stored if key not in seen]
    return new, changed, gone


def _change_album(files: list[FileEntry], sources: list[Path]) -> None:
    for entry in files[:CHANGED]:
        stat = entry.path.stat()
        os.utime(entry.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    for entry in files[CHANGED : CHANGED + REMOVED]:
        entry.path.unlink()
    folder = files[0].path.parent.parent / "new"
    folder.mkdir()
    for i in range(ADDED):
        shutil.copyfile(sources[i % len(sources)], folder / f"NEW_{i:02d}.jpg")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="photos in the album")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="JPEGs to copy")
    parser.add_argument("--repeat", type=int, default=3, help="rescans to time (median shown)")
    args = parser.parse_args(argv)

    sources = sorted(
        p
        for p in args.source.glob("*.jpg")
        if p.stat().st_size <= MAX_SOURCE_BYTES and read_capture_time(p).source != "mtime"
    )
    if not sources:
        print(f"no small dated JPEG in {args.source}", file=sys.stderr)
        return 1
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"album: {args.files} copies of {len(sources)} small JPEGs (warm page cache)")

    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-") as tmp:
        root = Path(tmp) / "album"
        _, made = _timed(_make_album, root, sources, args.files)
        print(f"  create album                {made:8.3f} s")

        first, scanned = _timed(scan, [root])
        assert len(first.files) == args.files, len(first.files)
        print(f"  first scan                  {scanned:8.3f} s   {len(first.files)} photos")

        captures, read = _timed(
            lambda: [read_capture_time(e.path, e.mtime_ns) for e in first.files]
        )
        per_photo_us = read / len(captures) * 1e6
        print(f"  read_capture_time, all      {read:8.3f} s   {per_photo_us:.0f} us per photo")
        assert all(c.source != "mtime" for c in captures)

        items = [(c.taken_at, False) for c in captures]
        _, grouped = _timed(build_timeline, items)
        print(f"  build_timeline              {grouped:8.3f} s")
        print(f"  first scan + capture times  {scanned + read:8.3f} s")

        stored = {str(e.path): (e.size, e.mtime_ns) for e in first.files}
        _change_album(first.files, sources)
        scans, diffs = [], []
        for _ in range(args.repeat):
            again, took = _timed(scan, [root])
            (new, changed, gone), compared = _timed(_diff, stored, again.files)
            assert (len(new), len(changed), len(gone)) == (ADDED, CHANGED, REMOVED)
            scans.append(took)
            diffs.append(compared)
        rescan, diff = statistics.median(scans), statistics.median(diffs)
        print(
            f"  rescan: scan                {rescan:8.3f} s   "
            f"({ADDED} new, {CHANGED} changed, {REMOVED} gone found)"
        )
        print(f"  rescan: compare with index  {diff:8.3f} s")
        print(f"  rescan total                {rescan + diff:8.3f} s   median of {args.repeat}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
