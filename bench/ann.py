"""Beyond a million photos: an approximate index (faiss IVF, int8 lists) against exact search.

For each size N (default 1M and 2M), N synthetic unit vectors (D = 512) are made to look like
image embeddings rather than uniform noise: ``--clusters`` random centres, each vector a centre
plus Gaussian noise (``--noise`` times the centre's spread), normalised. Queries are vectors of
the set moved by more noise, normalised. For every query:

- **exact**: what :func:`core.ranking.search` does today without filters: one pass over the
  int8 compact copy (:class:`core.compact.CompactVectors`, all cores), the best
  ``max(4 * top, top + 100)`` by ``np.argpartition``, re-scored with the float32 vectors;
- **ivf-sq8**: ``faiss.IndexIVFScalarQuantizer`` (inner product, ``--nlist`` lists, vectors as
  8-bit codes in the lists) trained on ``--train`` vectors; ``--nprobe`` lists searched for the
  same number of candidates, re-scored with the float32 vectors.

Reported: the time to build (train + add), the index's size, the median latency of one query
(as the app sends them), and recall@``top`` against the exact float32 top ``top``.

Usage::

    python bench/ann.py [--sizes 1000000 2000000] [--queries 50] [--nlist 1024]
                        [--nprobe 16 32 64] [--hnsw N] [--no-write]

``--hnsw N`` also builds usearch's HNSW graph over N vectors of the same kind, for its build
time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_model, write_section  # noqa: E402

DIM = 512
CHUNK = 65_536


def synthetic(count: int, clusters: int, noise: float, seed: int = 0) -> np.ndarray:
    """``[count, DIM] float32`` unit vectors around ``clusters`` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM), dtype=np.float32)
    matrix = np.empty((count, DIM), np.float32)
    for start in range(0, count, CHUNK):
        stop = min(start + CHUNK, count)
        block = centres[rng.integers(0, clusters, stop - start)]
        block += noise * rng.standard_normal(block.shape, dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        matrix[start:stop] = block
    return matrix


def exact_top(matrix: np.ndarray, query: np.ndarray, top: int) -> np.ndarray:
    """Positions of the float32 top ``top`` (ties by position)."""
    scores = matrix @ query
    best = np.argpartition(scores, len(scores) - top)[len(scores) - top :]
    return best[np.lexsort((best, -scores[best]))]


def rescored(matrix: np.ndarray, query: np.ndarray, candidates: np.ndarray, top: int) -> np.ndarray:
    candidates = candidates[candidates >= 0]
    scores = matrix[candidates] @ query
    order = np.lexsort((candidates, -scores))
    return candidates[order][:top]


def measure(count: int, args: argparse.Namespace) -> dict[str, Any]:
    import faiss

    from core.compact import CompactVectors
    from core.ranking import _rescore_count

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    matrix = synthetic(count, args.clusters, args.noise)
    rng = np.random.default_rng(1)
    queries = matrix[rng.integers(0, count, args.queries)].copy()
    queries += (
        args.noise * 0.5 * rng.standard_normal(queries.shape, dtype=np.float32) / np.sqrt(DIM)
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    print(f"{count:,}: data made in {time.perf_counter() - started:.1f} s", flush=True)
    truth = [exact_top(matrix, q, args.top) for q in queries]
    candidates = _rescore_count(args.top)

    compact = CompactVectors.build(np.arange(count, dtype=np.int64), matrix)
    exact_times, exact_recall = [], []
    for query, best in zip(queries, truth, strict=True):
        t = time.perf_counter()
        scores = compact.scores(query)
        picked = np.argpartition(scores, count - candidates)[count - candidates :]
        found = rescored(matrix, query, picked, args.top)
        exact_times.append(time.perf_counter() - t)
        exact_recall.append(len(set(found.tolist()) & set(best.tolist())) / args.top)
    del compact
    result: dict[str, Any] = {
        "count": count,
        "exact_ms": statistics.median(exact_times) * 1000,
        "exact_recall": float(np.mean(exact_recall)),
        "load": ", ".join(f"{x:.1f}" for x in os.getloadavg()),
    }

    quantizer = faiss.IndexFlatIP(DIM)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, DIM, args.nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    t = time.perf_counter()
    sample = matrix[rng.choice(count, min(count, args.train), replace=False)]
    index.train(sample)
    result["train_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for start in range(0, count, CHUNK):
        index.add(matrix[start : start + CHUNK])
    result["add_s"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        faiss.write_index(index, str(Path(tmp) / "ivf.index"))
        result["index_bytes"] = (Path(tmp) / "ivf.index").stat().st_size
    result["probes"] = {}
    for nprobe in args.nprobe:
        index.nprobe = nprobe
        times, recall = [], []
        for query, best in zip(queries, truth, strict=True):
            t = time.perf_counter()
            _, found_ids = index.search(query[None], candidates)
            found = rescored(matrix, query, found_ids[0], args.top)
            times.append(time.perf_counter() - t)
            recall.append(len(set(found.tolist()) & set(best.tolist())) / args.top)
        result["probes"][nprobe] = {
            "ms": statistics.median(times) * 1000,
            "recall": float(np.mean(recall)),
        }
    print(result, flush=True)
    return result


def measure_hnsw(count: int, args: argparse.Namespace) -> dict[str, Any]:
    """Build time and recall of usearch's HNSW graph (its default settings) on the same data."""
    from usearch.index import Index

    matrix = synthetic(count, args.clusters, args.noise)
    rng = np.random.default_rng(1)
    queries = matrix[rng.integers(0, count, args.queries)]
    index = Index(ndim=DIM, metric="ip")
    started = time.perf_counter()
    index.add(np.arange(count), matrix, threads=os.cpu_count() or 1)
    build_s = time.perf_counter() - started
    recall, times = [], []
    for query in queries:
        t = time.perf_counter()
        found = index.search(query, args.top).keys
        times.append(time.perf_counter() - t)
        best = exact_top(matrix, query, args.top)
        recall.append(len(set(found.tolist()) & set(best.tolist())) / args.top)
    result = {
        "count": count,
        "build_s": build_s,
        "ms": statistics.median(times) * 1000,
        "recall": float(np.mean(recall)),
        "dtype": str(index.dtype),
        "load": ", ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    print(result, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--clusters", type=int, default=5000)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--train", type=int, default=65_536)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--hnsw", type=int, default=0, help="also build usearch's HNSW at N")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    command = "python bench/ann.py " + " ".join(sys.argv[1:] if argv is None else argv)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    header = (
        f"CPU: {cpu_model()} ({os.cpu_count()} cores, load average {load} at the start); "
        f"python {platform.python_version()}"
    )
    print(header, flush=True)
    results = [measure(count, args) for count in args.sizes]
    hnsw = measure_hnsw(args.hnsw, args) if args.hnsw else None
    lines = [
        f"{header}; {dt.date.today().isoformat()}; `{command.strip()}`",
        "",
        f"Synthetic unit vectors (D = {DIM}) around {args.clusters} random centres (noise "
        f"{args.noise} times the centres' spread); {args.queries} queries, each a vector of the "
        f"set moved by noise; one query at a time, top {args.top}. *exact*: today's search (int8 "
        "pass over every row on all cores, best candidates re-scored in float32). *ivf-sq8*: "
        f"faiss `IndexIVFScalarQuantizer` with {args.nlist} lists and 8-bit codes, trained on "
        f"{args.train:,} vectors, the same number of candidates re-scored in float32. Recall@"
        f"{args.top} is against the exact float32 top {args.top}.",
        "",
        "| vectors | search | median latency | recall@20 | build | index size | load |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['count']:,} | exact (int8 pass) | {r['exact_ms']:.1f} ms | "
            f"{r['exact_recall']:.3f} | - | {r['count'] * (DIM + 12) / 1e6:.0f} MB | {r['load']} |"
        )
        for nprobe, found in r["probes"].items():
            lines.append(
                f"| {r['count']:,} | ivf-sq8, nprobe {nprobe} | {found['ms']:.1f} ms | "
                f"{found['recall']:.3f} | {r['train_s']:.0f} s train + {r['add_s']:.0f} s add | "
                f"{r['index_bytes'] / 1e6:.0f} MB | {r['load']} |"
            )
    if hnsw is not None:
        lines += [
            "",
            f"usearch's HNSW graph on the same kind of data ({hnsw['count']:,} vectors, its "
            f"default settings, {hnsw['dtype']} storage, all cores): built in "
            f"{hnsw['build_s']:.0f} s, {hnsw['ms']:.1f} ms a query, recall@{args.top} "
            f"{hnsw['recall']:.3f} (load average {hnsw['load']}).",
        ]
    for line in lines:
        print(line)
    if not args.no_write:
        write_section("## Beyond a million", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
