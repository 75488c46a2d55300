"""Search latency and memory over 10k, 100k and 1M synthetic embeddings stored in a real library.

For each size a library database is built in a temporary folder: random unit vectors
(``D = 512``, float32) with photo rows spread over ten years, without scanning any files:
``Library.open`` creates the schema, ``Library.use_model`` records the model, and
:meth:`core.library.Library.add_encoded` adds the photos as indexed with their vectors (float32
BLOBs), in transactions of 10,000 rows, leaving the vector file to be made afterwards.

Each size is then measured in fresh processes, so that memory from building the database (or
from another size) does not count, in two modes: *memory*, the library without its vector file
(``Library.vector_file_path = None``: the first search reads every float32 vector and quantises
it in memory, as before the vector file), and *file*, the vector file beside the database
(:mod:`core.vectorfile`), made once beforehand through ``Library.refresh_vector_file`` (timed:
what an existing library pays once, at its first search or indexing run after the upgrade). In
each mode:

1. ``VmRSS`` from ``/proc/self/status`` once the modules are imported and the library is open:
   the baseline.
2. The first search, which makes (memory) or maps (file) the compact copy that later searches
   use (reported as "first search"). In file mode it is measured twice: in a process that has
   first evicted the vector file and the database from the page cache
   (``posix_fadvise(POSIX_FADV_DONTNEED)`` on those files only, so nothing else on the machine
   is disturbed; *cold*), and then in the process that runs the rest (*warm*). Before every
   other process the library's files are read once (:func:`warm`, in the parent), so that it
   starts with a warm page cache whatever ran before it (the cold process evicts the database
   too, and a search reads its best candidates' float32 vectors and records from it).
3. ``--queries`` searches (default 50) with random unit query vectors through
   :func:`core.ranking.search` with no filter: the whole ranking (scores over the compact matrix,
   ``np.argpartition``, exact re-scoring of the best candidates, softmax probabilities over every
   photo) and fetching the records of the top hits. Encoding a text query is not included: the
   query is a fixed vector, and the model is a stand-in that only has a name, a size and a
   logit scale. Median and 95th percentile are reported.
4. ``VmRSS`` again, and the peak (``VmHWM``, which counts the pages of the mapped file that were
   read), less the baseline, divided by the number of photos.
5. The same queries restricted to photos taken in one year (about a tenth of them, with
   ``since`` and ``until``): the library gives the ids that pass the filter, and the search ranks
   those rows of the same compact copy. Median reported.
6. ``--batches`` times (default 10): one batch of ``--batch`` new photos (default 16) is
   committed with :meth:`core.library.Library.add_encoded` in one transaction, as an indexing run
   commits a batch with ``save_batch`` every second (in file mode that appends them to the file,
   as ``save_batch`` does), then one search is timed; it brings the compact copy up to date
   first. Median reported.

``--repeat N`` runs the memory, cold and file processes N times, interleaved, and keeps the
best of each (the lowest median; the lowest first search for cold), so that a busy spell of a
shared machine weighs on both modes alike.

``--formats N`` (default 100,000; 0 to skip) also compares int8 codes with float16 for the
compact copy, over N random unit vectors in memory: bytes per photo, the time of one scoring
pass, and how often the exact top 20 is inside the candidates a search re-scores.

Results are printed and written to the "## Search" section of ``bench/RESULTS.md``.

Usage::

    python bench/search.py [--sizes 10000 100000 1000000] [--queries 50] [--top 20]
                           [--batches 10] [--batch 16] [--formats 100000] [--repeat 1]
                           [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_model, status_kib, write_section  # noqa: E402

DIM = 512
MODEL_NAME = "bench"
LOGIT_SCALE = 100.0
INSERT_CHUNK = 10_000
TARGET_FIRST_S = 1.0
TARGET_PEAK_BYTES = 1024


def build_library(path: Path, count: int, seed: int = 0) -> float:
    """Write a library of ``count`` random unit vectors at ``path``; returns the seconds taken."""
    from core.library import EncodedPhoto, Library

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    first_day = dt.datetime(2015, 1, 1)
    with Library.open(path, thumbnail_dir=path.parent / "thumbnails") as library:
        library.use_model(MODEL_NAME, DIM)
        with library.indexing_lock():
            for start in range(0, count, INSERT_CHUNK):
                stop = min(start + INSERT_CHUNK, count)
                matrix = rng.standard_normal((stop - start, DIM), dtype=np.float32)
                matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
                minutes = rng.integers(0, 10 * 365 * 24 * 60, stop - start)
                photos = [
                    EncodedPhoto(
                        f"/album/{i // 1000:04d}/IMG_{i:07d}.jpg",
                        f"{i:040x}",
                        first_day + dt.timedelta(minutes=int(minute)),
                        size=1000,
                        width=4000,
                        height=3000,
                        time_source="DateTimeOriginal",
                    )
                    for i, minute in zip(range(start, stop), minutes, strict=True)
                ]
                # the vector file is made afterwards, and timed on its own (make_vector_file)
                library.add_encoded(MODEL_NAME, photos, matrix, update_vector_file=False)
    return time.perf_counter() - started


def add_batch(library: Any, rng: np.random.Generator, size: int) -> None:
    """Commit ``size`` new photos with their embeddings, as one batch of an indexing run does."""
    from core.library import EncodedPhoto

    batch_number = library.revision  # grows with every batch, so the names are new
    taken = dt.datetime(2024, 6, 1, 12, 0)
    photos = [
        EncodedPhoto(
            f"/album/new/{batch_number:06d}/IMG_{k:04d}.jpg", f"new-{batch_number}-{k}", taken
        )
        for k in range(size)
    ]
    matrix = rng.standard_normal((size, DIM), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    # committed and appended to the vector file, as Library.save_batch does for an indexing run
    library.add_encoded(MODEL_NAME, photos, matrix)


def _library_files(path: Path) -> list[Path]:
    names = (path.name, path.name + "-wal", path.name + ".vectors")
    return [path.with_name(name) for name in names if path.with_name(name).exists()]


def evict(path: Path) -> None:
    """Drop the clean pages of the library's files from the page cache (they stay on disk)."""
    for file in _library_files(path):
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(path: Path) -> None:
    """Read the library's files once, so that their pages are in the page cache.

    A warm process must not pay for the cold one before it: that one evicted the database too,
    and a search reads the float32 vectors of its best candidates and their records from it
    (about 1.3 MB of random pages a search at 100,000 photos when they come from the disk).
    """
    for file in _library_files(path):
        with open(file, "rb") as handle:
            while handle.read(1 << 24):
                pass


def measure(
    path: Path, mode: str, queries: int, top: int, batches: int, batch: int, seed: int = 1
) -> dict[str, Any]:
    """Run in a fresh process: baseline memory, first search, timed searches, memory after.

    ``mode`` is ``memory`` (no vector file), ``file``, or ``cold`` (file, evicted from the page
    cache first; only the first search is measured).
    """
    from core.library import Library
    from core.ranking import search

    model = SimpleNamespace(name=MODEL_NAME, embed_dim=DIM, logit_scale=LOGIT_SCALE)
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((queries + 1, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    if mode == "cold":
        evict(path)
    with Library.open(path, thumbnail_dir=path.parent / "thumbnails") as library:
        if mode == "memory":
            library.vector_file_path = None
        count = library.stats()["indexed"]
        baseline = status_kib("VmRSS")
        started = time.perf_counter()
        search(library, model, vectors[0], top=top)  # type: ignore[arg-type]
        first_s = time.perf_counter() - started
        first_peak = status_kib("VmHWM")
        if mode == "cold":
            return {
                "photos": count,
                "first_s": first_s,
                "peak_bytes_per_photo": (first_peak - baseline) * 1024 / count,
            }
        times = []
        before = _usage()
        for vector in vectors[1:]:
            started = time.perf_counter()
            hits = search(library, model, vector, top=top)  # type: ignore[arg-type]
            times.append(time.perf_counter() - started)
            assert len(hits) == min(top, count) and hits[0].rank == 1
        per_search = {k: (v - before[k]) / len(times) for k, v in _usage().items()}
        rss = status_kib("VmRSS")
        peak = status_kib("VmHWM")
        year = {"since": dt.datetime(2019, 1, 1), "until": dt.datetime(2020, 1, 1)}
        filtered = []
        for vector in vectors[1:]:
            started = time.perf_counter()
            hits = search(library, model, vector, top=top, **year)  # type: ignore[arg-type]
            filtered.append(time.perf_counter() - started)
            assert all(year["since"] <= hit.photo.taken_at < year["until"] for hit in hits)
        after_batch = []
        with library.indexing_lock():
            for vector in vectors[1 : batches + 1]:
                add_batch(library, rng, batch)
                started = time.perf_counter()
                search(library, model, vector, top=top)  # type: ignore[arg-type]
                after_batch.append(time.perf_counter() - started)
    times_ms = sorted(t * 1000 for t in times)
    return {
        "photos": count,
        "first_s": first_s,
        "median_ms": statistics.median(times_ms),
        "p95_ms": times_ms[min(len(times_ms) - 1, round(0.95 * (len(times_ms) - 1)))],
        "filtered_ms": statistics.median(filtered) * 1000,
        "after_batch_ms": statistics.median(after_batch) * 1000,
        "bytes_per_photo": (rss - baseline) * 1024 / count,
        "peak_bytes_per_photo": (peak - baseline) * 1024 / count,
        "cpu_ms_per_search": per_search["cpu_s"] * 1000,
        "disk_bytes_per_search": per_search["disk_bytes"],
        "page_faults_per_search": per_search["faults"],
    }


def _usage() -> dict[str, float]:
    """This process's CPU time, bytes read from the disk and page faults so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    disk = 0
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            disk = int(line.split()[1])
    return {
        "cpu_s": time.process_time(),
        "disk_bytes": disk,
        "faults": usage.ru_minflt + usage.ru_majflt,
    }


def make_vector_file(path: Path) -> float:
    """Make the library's vector file through the public surface; returns the seconds taken."""
    from core.library import Library

    started = time.perf_counter()
    with Library.open(path, thumbnail_dir=path.parent / "thumbnails") as library:
        with library.indexing_lock():
            library.refresh_vector_file()
    return time.perf_counter() - started


def compare_formats(count: int, queries: int, top: int) -> dict[str, dict[str, float]]:
    """int8 codes (with a scale per row) against float16 for the compact copy, in memory."""
    from core.compact import CompactVectors, quantise
    from core.ranking import _rescore_count

    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((count, DIM), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    asked = rng.standard_normal((queries, DIM), dtype=np.float32)
    asked /= np.linalg.norm(asked, axis=1, keepdims=True)
    _, codes, scales = quantise(matrix)
    half = matrix.astype(np.float16)
    buffer = np.empty((CompactVectors.CHUNK, DIM), np.float32)

    def one_pass(stored: np.ndarray, query: np.ndarray) -> np.ndarray:
        """The loop of a search's scoring pass, on one thread: convert a block, multiply."""
        out = np.empty(count, np.float32)
        for start in range(0, count, CompactVectors.CHUNK):
            block = stored[start : start + CompactVectors.CHUNK]
            floats = buffer[: len(block)]
            np.copyto(floats, block, casting="unsafe")
            np.dot(floats, query, out=out[start : start + len(block)])
        return out

    def int8_scores(query: np.ndarray) -> np.ndarray:
        return one_pass(codes, query) * scales

    def half_scores(query: np.ndarray) -> np.ndarray:
        return one_pass(half, query)

    candidates = _rescore_count(top)  # the candidates a search re-scores exactly
    found: dict[str, dict[str, float]] = {}
    for name, scorer, size in (
        ("int8 + scale", int8_scores, DIM + 4),
        ("float16", half_scores, 2 * DIM),
    ):
        times, inside, worst = [], 0, 0.0
        for query in asked:
            exact = matrix @ query
            started = time.perf_counter()
            scores = scorer(query)
            times.append(time.perf_counter() - started)
            best = set(np.argpartition(exact, count - top)[count - top :].tolist())
            kept = set(np.argpartition(scores, count - candidates)[count - candidates :].tolist())
            inside += best <= kept
            worst = max(worst, float(np.abs(scores - exact).max()))
        found[name] = {
            "bytes": size,
            "ms": statistics.median(times) * 1000,
            "top_inside": inside / len(asked),
            "worst_error": worst,
            "candidates": candidates,
        }
    return found


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    """Build each library, measure it in a child process, print and record the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=50, help="timed queries per size")
    parser.add_argument("--top", type=int, default=20, help="hits per query")
    parser.add_argument("--batches", type=int, default=10, help="batches committed, then searched")
    parser.add_argument("--batch", type=int, default=16, help="photos per committed batch")
    parser.add_argument(
        "--formats", type=int, default=100_000, help="compare int8 and float16 at N (0: not)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of the memory, cold and file processes"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure is not None:
        found = measure(args.measure, args.mode, args.queries, args.top, args.batches, args.batch)
        print(json.dumps(found))
        return 0

    command = "python bench/search.py " + " ".join(sys.argv[1:] if argv is None else argv)
    header = (
        f"CPU: {cpu_model()} ({os.cpu_count()} cores, load average {_load()} at the start); "
        f"python {platform.python_version()}"
    )
    print(header, flush=True)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-search-") as tmp:
        for count in args.sizes:
            path = Path(tmp) / f"library-{count}.sqlite"
            build_s = build_library(path, count)
            print(f"{count:>9,} photos: database built in {build_s:.1f} s", flush=True)
            row: dict[str, Any] = {"count": count}
            modes = ["memory", "file-make", "cold", "file"]
            modes += ["memory", "file-catch-up", "cold", "file"] * (args.repeat - 1)
            for mode in modes:
                if mode.startswith("file-"):
                    made = make_vector_file(path)  # after a memory run: its batches appended
                    row.setdefault("make_s", made)
                    print(f"{count:>9,} photos: vector file made (or caught up) in {made:.1f} s")
                    continue
                if mode != "cold":
                    warm(path)  # here, so that the child's peak memory does not count it
                result = _child(path, mode, args)
                if result is None:
                    return 1
                result["load"] = _load()
                print(f"{count:>9,} photos, {mode}: {json.dumps(result)}", flush=True)
                key = "first_s" if mode == "cold" else "median_ms"
                if mode not in row or result[key] < row[mode][key]:
                    row[mode] = result
            results.append(row)
            for leftover in Path(tmp).glob(path.name + "*"):
                leftover.unlink()
        formats = compare_formats(args.formats, args.queries, args.top) if args.formats else {}

    lines = [
        f"{header}; {dt.date.today().isoformat()}; `{command.strip()}`",
        "",
        f"Filter-free search over N random unit vectors (D = {DIM}) in a real library, top "
        f"{args.top}, {args.queries} queries with a fixed query vector (text encoding not "
        "included): scores over the compact int8 copy (split over the cores from 16,384 "
        "photos on), `np.argpartition`, exact re-scoring of the best candidates with their "
        "stored float32 vectors (one query), softmax over all N, records of "
        "the hits. *memory*: the library without its vector file, so the first search reads "
        "every float32 vector and quantises it (the behaviour before the vector file); *file*: "
        "the compact copy memory-mapped from the vector file beside the database. Each row is a "
        "fresh process, started after the library's files were read once so that it has a "
        "warm page cache (the cold process before it evicts them); with `--repeat`, the best "
        "of the rounds. *First search* in file mode "
        "is given cold (the database and the vector "
        "file evicted from the page cache with `posix_fadvise(DONTNEED)` first; dropping the "
        "whole cache with `/proc/sys/vm/drop_caches` also works here as root, but would slow "
        "down everything else on this shared machine) / warm. Memory is `VmRSS` after the "
        "queries less `VmRSS` before the first search, per photo; peak is `VmHWM` less the same "
        "baseline (in file mode it counts the mapped pages of the file, 528 B a photo, which "
        "the kernel can drop at any time). *One year*: the same queries restricted with "
        "`since`/`until` to the photos of one year (about a tenth), ranked on rows of the same "
        f"compact copy (median). *After a batch*: one search right after {args.batch} new photos "
        f"were committed in one transaction (`Library.add_encoded`), as an indexing run commits "
        f"a batch every second (median of {args.batches}); in file mode that also appends them "
        "to the file, as `save_batch` does. *Making "
        "the file*: once per library, from its float32 vectors (an existing library pays it at "
        "its first search or indexing run after the upgrade). The load average (1 minute) is "
        "read after each process.",
        "",
        "| photos | mode | median | p95 | first search | one year | after a batch "
        "| resident per photo | peak per photo | load | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results:
        count = row["count"]
        memory, file, cold = row["memory"], row["file"], row["cold"]
        for mode, result in (("memory", memory), ("file", file)):
            goals = []
            if mode == "file":
                ratio = result["median_ms"] / memory["median_ms"]
                goals.append(f"median {ratio:.2f}x memory's: {_verdict(ratio <= 1.05)}")
                goals.append(
                    f"first search <= {TARGET_FIRST_S:.0f} s: "
                    f"{_verdict(max(cold['first_s'], result['first_s']) <= TARGET_FIRST_S)}"
                )
                peak = max(cold["peak_bytes_per_photo"], result["peak_bytes_per_photo"])
                goals.append(
                    f"peak <= {TARGET_PEAK_BYTES} B: {_verdict(peak <= TARGET_PEAK_BYTES)}"
                )
            first = f"{result['first_s']:.2f} s"
            if mode == "file":
                first = f"{cold['first_s']:.2f} s cold / {first} warm"
            lines.append(
                f"| {result['photos']:,} | {mode} | {result['median_ms']:.1f} ms | "
                f"{result['p95_ms']:.1f} ms | {first} | {result['filtered_ms']:.1f} ms | "
                f"{result['after_batch_ms']:.1f} ms | {result['bytes_per_photo']:.0f} B | "
                f"{result['peak_bytes_per_photo']:.0f} B | {result['load']} | "
                f"{'; '.join(goals) or '-'} |"
            )
        lines.append(
            f"| {count:,} | making the file | - | - | {row['make_s']:.2f} s | - | - | - | - | - "
            "| once |"
        )
    lines.append("")
    busiest = max(
        float(row[mode]["load"].split(",")[0])
        for row in results
        for mode in ("memory", "file", "cold")
    )
    lines.append(
        "First search with the file against without it, same run: "
        + "; ".join(
            f"{row['count']:,} photos {row['memory']['first_s'] / row['file']['first_s']:.0f}x "
            f"faster warm, {row['memory']['first_s'] / row['cold']['first_s']:.0f}x cold"
            for row in results
        )
        + "."
        + (
            f" The machine was busy (load average up to {busiest:.1f} on {os.cpu_count()} "
            "cores): every search time is then several times its quiet value and the medians "
            "of two processes differ by their noise; the ratios are the comparison to read."
            if busiest > (os.cpu_count() or 1)
            else ""
        )
    )
    if formats:
        candidates = next(iter(formats.values()))["candidates"]
        lines += [
            "",
            f"Compact copy, int8 against float16 ({args.formats:,} random unit vectors, D = "
            f"{DIM}, in memory, {args.queries} queries, one thread): *top {args.top} inside* is "
            f"how often the exact top {args.top} is among the {candidates} "
            "candidates that a search re-scores with the float32 vectors (when it is, the "
            "results are exact).",
            "",
            "| format | bytes per photo | one scoring pass | top 20 inside | largest score error |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, found in formats.items():
            lines.append(
                f"| {name} | {found['bytes']} | {found['ms']:.1f} ms | "
                f"{100 * found['top_inside']:.0f}% | {found['worst_error']:.1e} |"
            )
    for line in lines:
        print(line)
    if not args.no_write:
        write_section("## Search", lines)
    return 0


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def _child(path: Path, mode: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """Measure one mode in a fresh process."""
    child = subprocess.run(
        [sys.executable, __file__, "--measure", str(path), "--mode", mode]
        + ["--queries", str(args.queries), "--top", str(args.top)]
        + ["--batches", str(args.batches), "--batch", str(args.batch)],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        print(child.stderr, file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(child.stdout)
    return result


if __name__ == "__main__":
    sys.exit(main())
