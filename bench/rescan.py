"""Time scanning an album of 10,000 photos, reading their capture times, and rescanning it.

Builds a throwaway album of copies of a few camera JPEGs (small ones unless ``--max-kb`` says
otherwise) in a temporary folder, then times:

1. the first scan (``core.scan.scan``),
2. reading the capture time of every photo (``core.capture_time.read_capture_time``),
3. grouping them into a timeline (``core.timeline.build_timeline``),
4. through a real library (``core.library.Library`` in the temporary folder): the first
   ``Library.sync`` of the whole album (content hashes and capture times of every photo), and a
   rescan of the unchanged album (``scan`` plus ``Library.sync``: no photo opened);
5. a rescan after a few photos were touched, added and removed: ``scan`` alone (median of
   ``--repeat``), then once ``scan`` plus ``Library.sync``, which compares size and modification
   time with what the library stored and reads only the new and changed photos, the work an
   index update does before it decodes anything (once: the sync changes the library).

The files are in the page cache when they are scanned (they were just written), so the numbers
are for a warm cache. Nothing is written outside the temporary folder. Results are printed and
written to the "## Rescan" section of bench/RESULTS.md.

Usage::

    python bench/rescan.py [--files 10000] [--source FOLDER] [--repeat 3] [--max-kb 10]
        [--no-write]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_model, write_section  # noqa: E402
from core.capture_time import read_capture_time  # noqa: E402
from core.scan import FileEntry, scan  # noqa: E402
from core.timeline import build_timeline  # noqa: E402

SHARED_SOURCE = ROOT.parent / "shared" / "photos" / "exif-samples" / "jpg"
DEFAULT_SOURCE = SHARED_SOURCE if SHARED_SOURCE.is_dir() else ROOT / "tests" / "photos" / "jpg"
"""The full sample collection beside the checkout when present, else the photos of the tests."""
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
    parser.add_argument(
        "--max-kb",
        type=int,
        default=MAX_SOURCE_BYTES // 1000,
        help=f"largest source JPEG to copy, in KB (default {MAX_SOURCE_BYTES // 1000}: small "
        "ones, so that 10,000 copies stay small; larger ones show what reading whole files costs)",
    )
    parser.add_argument("--no-write", action="store_true", help="leave bench/RESULTS.md alone")
    args = parser.parse_args(argv)

    sources = sorted(
        p
        for p in args.source.glob("*.jpg")
        if p.stat().st_size <= 1000 * args.max_kb and read_capture_time(p).source != "mtime"
    )
    if not sources:
        print(f"no dated JPEG of at most {args.max_kb} KB in {args.source}", file=sys.stderr)
        return 1
    mean_kb = sum(p.stat().st_size for p in sources) / len(sources) / 1000
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(
        f"album: {args.files} copies of {len(sources)} JPEGs of at most {args.max_kb} KB "
        f"({mean_kb:.0f} KB on average; warm page cache)"
    )

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

        library = _library_timings(Path(tmp), root, args.repeat, args.files, dry=True)
        _change_album(first.files, sources)
        scans = []
        for _ in range(args.repeat):
            again, took = _timed(scan, [root])
            assert len(again.files) == args.files - REMOVED + ADDED, len(again.files)
            scans.append(took)
        print(
            f"  rescan: scan alone          {statistics.median(scans):8.3f} s   median of "
            f"{args.repeat}"
        )
        library.update(_library_timings(Path(tmp), root, args.repeat, args.files, dry=False))
    lines = [
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d')}; `python bench/rescan.py --files {args.files} "
        f"--repeat {args.repeat} --max-kb {args.max_kb}`. An album of {args.files} copies of "
        f"{len(sources)} dated JPEGs of at most {args.max_kb} KB ({mean_kb:.0f} KB on average) "
        f"in {args.files // FILES_PER_FOLDER} folders, warm page cache, a real library "
        "database in a temporary folder.",
        "",
        "| step | seconds |",
        "| --- | --- |",
        f"| first scan of the folders | {scanned:.3f} |",
        f"| first `Library.sync` (content hash and capture time of every photo) | "
        f"{library['first_sync']:.3f} |",
        f"| **rescan of the unchanged album**: scan + `Library.sync`, no photo opened (median "
        f"of {args.repeat}) | **{library['unchanged']:.3f}** |",
        f"| rescan after {CHANGED} photos were touched, {ADDED} added and {REMOVED} removed "
        f"(found: {library['report']}; the photos were never encoded, so an added copy of a "
        "removed photo is new: a move is proven by the whole-file digest that encoding keeps) | "
        f"{library['changed']:.3f} |",
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("## Rescan", lines)
    return 0


def _library_timings(tmp: Path, root: Path, repeat: int, files: int, dry: bool) -> dict[str, Any]:
    """With ``dry``: a new library, its first sync, and unchanged rescans. Without: one rescan
    of the album as changed by :func:`_change_album`."""
    from core.library import Library

    path = tmp / "library" / "library.sqlite"
    path.parent.mkdir(exist_ok=True)
    out: dict[str, Any] = {}
    with Library.open(path, thumbnail_dir=tmp / "thumbnails") as library:
        if dry:
            library.add_roots([root])
            report, out["first_sync"] = _timed(lambda: library.sync(scan([root]), roots=[root]))
            assert report.new == files, report
            times = []
            for _ in range(repeat):
                report, took = _timed(lambda: library.sync(scan([root]), roots=[root]))
                assert report.unchanged == files and not (report.new or report.changed), report
                times.append(took)
            out["unchanged"] = statistics.median(times)
            print(f"  library: first sync         {out['first_sync']:8.3f} s")
            print(f"  library: unchanged rescan   {out['unchanged']:8.3f} s   scan + sync")
        else:
            found, scanned = _timed(scan, [root])
            report, synced = _timed(lambda: library.sync(found, roots=[root]))
            out["changed"] = scanned + synced
            # added copies with the content of removed photos: moved where a digest proves it
            assert report.changed == CHANGED and report.new + report.moved == ADDED, report
            assert report.deleted + report.moved == REMOVED, report
            out["report"] = (
                f"{report.changed} changed, {report.new} new, {report.moved} moved, "
                f"{report.deleted} deleted"
            )
            print(f"  rescan: scan, then          {scanned:8.3f} s")
            print(f"  rescan: Library.sync        {synced:8.3f} s   {out['report']}")
            print(f"  rescan total                {out['changed']:8.3f} s")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
