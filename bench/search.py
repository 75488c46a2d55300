"""Search latency and memory over 10k, 100k and 1M synthetic embeddings stored in a real library.

For each size a library database is built in a temporary folder: random unit vectors
(``D = 512``, float32) with photo rows spread over ten years. The rows go straight into the
tables as :mod:`core.store` lays them out, without scanning any files: ``Library.open`` creates
the schema, ``Library.use_model`` records the model, ``photos`` rows are inserted with status
``indexed``, and each vector is a float32 BLOB in ``embeddings``, in transactions of 10,000 rows.

Each size is then measured in a fresh process, so that memory from building the database (or
from another size) does not count:

1. ``VmRSS`` from ``/proc/self/status`` once the modules are imported and the library is open:
   the baseline.
2. The first search, which reads the vectors and builds the compact copy that later searches use
   (reported as "first search").
3. ``--queries`` searches (default 50) with random unit query vectors through
   :func:`core.search.search` with no filter: the whole ranking (scores over the compact matrix,
   ``np.argpartition``, exact re-scoring of the best candidates, softmax probabilities over every
   photo) and fetching the records of the top hits. Encoding a text query is not included: the
   query is a fixed vector, and the model is a stand-in that only has a name, a size and a
   logit scale. Median and 95th percentile are reported.
4. ``VmRSS`` again (and the peak, ``VmHWM``), less the baseline, divided by the number of photos.
5. The same queries restricted to photos taken in one year (about a tenth of them, with
   ``since`` and ``until``): the library gives the ids that pass the filter, and the search ranks
   those rows of the same compact copy. Median reported.
6. ``--batches`` times (default 10): one batch of ``--batch`` new photos (default 16) is
   committed with :meth:`core.store.Library.save_batch`, as an indexing run does every second,
   then one search is timed; it brings the compact copy up to date first. Median reported.

Results are printed and written to the "## Search" section of ``bench/RESULTS.md``.

Usage::

    python bench/search.py [--sizes 10000 100000 1000000] [--queries 50] [--top 20]
                           [--batches 10] [--batch 16] [--no-write]
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

from bench.common import cpu_model, write_section  # noqa: E402

DIM = 512
MODEL_NAME = "bench"
LOGIT_SCALE = 100.0
INSERT_CHUNK = 10_000
TARGETS_MS = {100_000: 30.0, 1_000_000: 300.0}
TARGET_BYTES_PER_PHOTO = 1200


def status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def build_library(path: Path, count: int, seed: int = 0) -> float:
    """Write a library of ``count`` random unit vectors at ``path``; returns the seconds taken."""
    from core.store import Library

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
                rows = []
                for i, minute in zip(range(start, stop), minutes, strict=True):
                    taken = first_day + dt.timedelta(minutes=int(minute))
                    text = taken.isoformat(timespec="microseconds")
                    rows.append(
                        (i + 1, f"/album/{i // 1000:04d}/IMG_{i:07d}.jpg", f"{i:040x}", text, text)
                    )
                with library._transaction() as db:
                    db.executemany(
                        "INSERT INTO photos (id, path, size, mtime_ns, content_hash, taken_at,"
                        " wall, time_source, width, height, status, model) VALUES"
                        f" (?, ?, 1000, 0, ?, ?, ?, 'DateTimeOriginal', 4000, 3000, 'indexed',"
                        f" '{MODEL_NAME}')",
                        rows,
                    )
                    db.executemany(
                        "INSERT INTO embeddings (photo_id, vector) VALUES (?, ?)",
                        ((i + 1, matrix[i - start].tobytes()) for i in range(start, stop)),
                    )
                    db.execute(
                        "INSERT INTO meta (key, value) VALUES ('revision', '1') ON CONFLICT (key)"
                        " DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                    )
    return time.perf_counter() - started


def add_batch(library: Any, rng: np.random.Generator, size: int) -> None:
    """Commit ``size`` new photos with their embeddings, as one batch of an indexing run does."""
    with library._transaction() as db:
        first = db.execute("SELECT coalesce(max(id), 0) + 1 FROM photos").fetchone()[0]
        db.executemany(
            "INSERT INTO photos (id, path, size, mtime_ns, content_hash, wall, status)"
            " VALUES (?, ?, 1000, 0, ?, '2024-06-01T12:00:00.000000', 'pending')",
            [(i, f"/album/new/IMG_{i:07d}.jpg", f"{i:040x}") for i in range(first, first + size)],
        )
    matrix = rng.standard_normal((size, DIM), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    library.save_batch(MODEL_NAME, range(first, first + size), matrix, [None] * size)


def measure(
    path: Path, queries: int, top: int, batches: int, batch: int, seed: int = 1
) -> dict[str, Any]:
    """Run in a fresh process: baseline memory, first search, timed searches, memory after."""
    from core.search import search
    from core.store import Library

    model = SimpleNamespace(name=MODEL_NAME, embed_dim=DIM, logit_scale=LOGIT_SCALE)
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((queries + 1, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with Library.open(path, thumbnail_dir=path.parent / "thumbnails") as library:
        count = library.stats()["indexed"]
        baseline = status_kib("VmRSS")
        started = time.perf_counter()
        search(library, model, vectors[0], top=top)  # type: ignore[arg-type]
        first_s = time.perf_counter() - started
        times = []
        for vector in vectors[1:]:
            started = time.perf_counter()
            hits = search(library, model, vector, top=top)  # type: ignore[arg-type]
            times.append(time.perf_counter() - started)
            assert len(hits) == min(top, count) and hits[0].rank == 1
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
    }


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
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.queries, args.top, args.batches, args.batch)))
        return 0

    command = "python bench/search.py " + " ".join(sys.argv[1:] if argv is None else argv)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    header = (
        f"CPU: {cpu_model()} ({os.cpu_count()} cores, load average {load} at the start); "
        f"python {platform.python_version()}"
    )
    print(header, flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-search-") as tmp:
        for count in args.sizes:
            path = Path(tmp) / f"library-{count}.sqlite"
            build_s = build_library(path, count)
            print(f"{count:>9,} photos: database built in {build_s:.1f} s", flush=True)
            child = subprocess.run(
                [sys.executable, __file__, "--measure", str(path)]
                + ["--queries", str(args.queries), "--top", str(args.top)]
                + ["--batches", str(args.batches), "--batch", str(args.batch)],
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode != 0:
                print(child.stderr, file=sys.stderr)
                return 1
            result = json.loads(child.stdout)
            results.append(result)
            print(
                f"{count:>9,} photos: median {result['median_ms']:.1f} ms, "
                f"p95 {result['p95_ms']:.1f} ms, first search {result['first_s']:.2f} s, "
                f"one year {result['filtered_ms']:.1f} ms, "
                f"after a batch {result['after_batch_ms']:.1f} ms, "
                f"{result['bytes_per_photo']:.0f} B/photo resident "
                f"(peak {result['peak_bytes_per_photo']:.0f} B/photo)",
                flush=True,
            )
            path.unlink()

    lines = [
        f"{header}; {dt.date.today().isoformat()}; `{command.strip()}`",
        "",
        f"Filter-free search over N random unit vectors (D = {DIM}) in a real library, top "
        f"{args.top}, {args.queries} queries with a fixed query vector (text encoding not "
        "included): scores over the compact int8 copy (split over the cores from 32,768 "
        "photos on), `np.argpartition`, exact re-scoring of the best candidates with their "
        "stored float32 vectors (one query), softmax over all N, records of "
        "the hits. Memory is `VmRSS` after the queries less `VmRSS` before the first search, "
        "per photo (peak: `VmHWM`, which includes reading the float32 vectors once). "
        "*One year*: the same queries restricted with `since`/`until` to the photos of one "
        "year (about a tenth), ranked on rows of the same compact copy (median). *After a "
        f"batch*: one search right after {args.batch} new photos were committed with "
        f"`save_batch`, as an indexing run does every second (median of {args.batches}); the "
        "search first appends the new rows to the compact copy.",
        "",
        "| photos | median | p95 | first search | one year | after a batch "
        "| resident per photo | peak per photo | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        count = result["photos"]
        goals = []
        if count in TARGETS_MS:
            goals.append(
                f"median <= {TARGETS_MS[count]:.0f} ms: "
                f"{_verdict(result['median_ms'] <= TARGETS_MS[count])}"
            )
        goals.append(
            f"<= {TARGET_BYTES_PER_PHOTO} B: "
            f"{_verdict(result['bytes_per_photo'] <= TARGET_BYTES_PER_PHOTO)}"
        )
        lines.append(
            f"| {count:,} | {result['median_ms']:.1f} ms | {result['p95_ms']:.1f} ms | "
            f"{result['first_s']:.2f} s | {result['filtered_ms']:.1f} ms | "
            f"{result['after_batch_ms']:.1f} ms | {result['bytes_per_photo']:.0f} B | "
            f"{result['peak_bytes_per_photo']:.0f} B | {'; '.join(goals)} |"
        )
    for line in lines:
        print(line)
    if not args.no_write:
        write_section("## Search", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
