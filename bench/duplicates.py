"""Near-duplicate search: time and memory at 10k, 100k and 1M vectors, and its accuracy.

The vectors are synthetic, shaped like a photo library's CLIP embeddings (``D = 512``, unit
length): every photo leans on one shared direction and on one of 1,000 topics, so that two
unrelated photos have a cosine similarity of about 0.5, as CLIP image embeddings do. Bursts are
planted: 4% of the photos get one to four near-copies each, ``normalise(photo + s * noise)``
with ``s`` drawn so that a copy's similarity to its photo spreads over about 0.90 to 0.995,
across the threshold (0.95).

Each size and method runs in a fresh process (``--one N --method M``) and reports:

1. the time of the whole search, vectors already in memory: for *ours*,
   :func:`core.duplicates.near_duplicate_pairs` plus :func:`group_pairs`; and of
   :func:`core.duplicates.exact_pairs` (all pairs, the reference) where ``N <= --exact-max``;
2. the peak resident memory the search added (``VmHWM`` reset through
   ``/proc/self/clear_refs`` once the vectors are made, less ``VmRSS`` then), so that what a
   library allocates outside Python (BLAS, faiss) counts too;
3. against the exact answer: pair recall (pairs at or above the threshold that were found; every
   pair found is checked exactly, so pair precision is 1 by construction and checked), and
   group precision and recall (groups identical to an exact group, over ours and over the exact
   ones). Above ``--exact-max`` all pairs would take too long, so pair recall is estimated on
   ``--sample`` random photos: every pair of theirs at or above the threshold (one product of
   the sample with all vectors) against the pairs found.

*faiss-ivf* (``--compare``, at 10k and 100k by default, in the same run) is the ANN library way
to the same answer: faiss ``IndexIVFFlat`` (inner product, ``4 sqrt(N)`` lists trained on 40
vectors a list), every vector added, then one ``range_search`` of every vector for neighbours
above the threshold, probing ``--nprobe`` lists; the pairs it returns are re-checked exactly as
ours are. Its time includes training and adding, which a one-off grouping pays in full.

Results are printed and written to the "## Near-duplicates" section of ``bench/RESULTS.md``.

    python bench/duplicates.py                    # 10k, 100k and 1M, faiss at 10k and 100k
    python bench/duplicates.py --sizes 10000 --no-write
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_flags, cpu_model, status_kib, write_section  # noqa: E402
from core.duplicates import (  # noqa: E402
    DEFAULT_THRESHOLD,
    exact_pairs,
    group_pairs,
    near_duplicate_pairs,
)

DIM = 512
TOPICS = 1000
BURST_SHARE = 0.04
CHUNK = 65536


def synthetic_library(n: int, seed: int = 0) -> np.ndarray:
    """``[n, 512] float32`` unit vectors with planted bursts of near-copies (module docstring)."""
    rng = np.random.default_rng(seed)
    shared = _unit(rng.standard_normal(DIM))
    topics = _unit(rng.standard_normal((TOPICS, DIM)))
    popularity = 1.0 / np.arange(1, TOPICS + 1)
    popularity /= popularity.sum()
    x = np.empty((n, DIM), np.float32)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        topic = rng.choice(TOPICS, size=stop - start, p=popularity)
        own = _unit(rng.standard_normal((stop - start, DIM)))
        x[start:stop] = _unit(0.62 * shared + 0.55 * topics[topic] + 0.55 * own)
    copies = rng.permutation(n)
    leaders = copies[: int(n * BURST_SHARE)]
    free = copies[len(leaders) :]
    used = 0
    for leader in leaders:
        for _ in range(int(rng.integers(1, 5))):
            if used >= len(free):
                break
            spread = rng.uniform(0.10, 0.48)
            noise = _unit(rng.standard_normal(DIM))
            x[free[used]] = _unit(x[leader] + spread * noise)
            used += 1
    return x


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _reset_peak() -> None:
    """Let ``VmHWM`` start again from ``VmRSS`` (Linux: 5 to ``/proc/self/clear_refs``)."""
    Path("/proc/self/clear_refs").write_text("5")


def faiss_pairs(x: np.ndarray, threshold: float, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs at or above ``threshold`` through a faiss IVF index and a range search of every
    vector (see the module docstring); re-checked exactly, as :mod:`core.duplicates` does."""
    import faiss

    n, dim = x.shape
    lists = max(16, int(4 * np.sqrt(n)))
    quantiser = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantiser, dim, lists, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(5)
    index.train(x[np.sort(rng.choice(n, min(n, 40 * lists), replace=False))])
    index.add(x)
    index.nprobe = nprobe
    limits, _, labels = index.range_search(x, threshold - 1e-3)  # exact check below
    rows = np.repeat(np.arange(n), np.diff(limits.astype(np.int64)))
    keep = rows < labels
    pairs = np.stack([rows[keep], labels[keep]], axis=1).astype(np.int64)
    similarity = np.einsum("ij,ij->i", x[pairs[:, 0]], x[pairs[:, 1]])
    kept = similarity >= threshold
    return pairs[kept], similarity[kept].astype(np.float32)


def sampled_truth(x: np.ndarray, threshold: float, sample: int) -> tuple[np.ndarray, int]:
    """Every pair at or above ``threshold`` with one photo among ``sample`` random ones."""
    rng = np.random.default_rng(11)
    chosen = np.sort(rng.choice(len(x), min(sample, len(x)), replace=False))
    found = []
    for start in range(0, len(chosen), 256):
        part = chosen[start : start + 256]
        rows, columns = np.nonzero(x[part] @ x.T >= threshold)
        other = columns != part[rows]
        a, b = part[rows[other]], columns[other]
        found.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
    pairs = np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 2), np.int64)
    return pairs, len(chosen)


def measure(
    n: int, threshold: float, exact_max: int, rounds: int, method: str, nprobe: int, sample: int
) -> dict[str, Any]:
    """One size and method, in this process."""
    x = synthetic_library(n)
    baseline = status_kib("VmRSS")
    _reset_peak()
    started, cpu_started = time.perf_counter(), time.process_time()
    if method == "ours":
        pairs, similarity = near_duplicate_pairs(x, threshold, rounds=rounds)
    else:
        pairs, similarity = faiss_pairs(x, threshold, nprobe)
    groups = group_pairs(pairs, similarity)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak = (status_kib("VmHWM") - baseline) * 1024
    row: dict[str, Any] = {
        "n": n,
        "method": method if method == "ours" else f"{method}, nprobe {nprobe}",
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "peak_bytes": peak,
        "input_bytes": x.nbytes,
        "pairs": len(pairs),
        "groups": len(groups),
        "grouped": sum(len(g.members) for g in groups),
    }
    checked = (x[pairs[:, 0]] * x[pairs[:, 1]]).sum(axis=1)
    row["pair_precision"] = float(np.mean(checked >= threshold - 1e-5)) if len(pairs) else 1.0
    if n > exact_max and sample:
        truth, sampled = sampled_truth(x, threshold, sample)
        ours = np.sort(pairs, axis=1)
        found = {tuple(p) for p in ours.tolist()}
        hits = sum(tuple(p) in found for p in truth.tolist())
        row["sampled_recall"] = hits / len(truth) if len(truth) else 1.0
        row["sampled_pairs"] = len(truth)
        row["sampled"] = sampled
    if n <= exact_max:
        started, cpu_started = time.perf_counter(), time.process_time()
        exact, exact_similarity = exact_pairs(x, threshold)
        exact_groups = group_pairs(exact, exact_similarity)
        row["exact_seconds"] = time.perf_counter() - started
        row["exact_cpu_seconds"] = time.process_time() - cpu_started
        found = {tuple(p) for p in pairs.tolist()}
        truth = {tuple(p) for p in exact.tolist()}
        row["pair_recall"] = len(found & truth) / len(truth) if truth else 1.0
        ours = {g.members for g in groups}
        theirs = {g.members for g in exact_groups}
        row["group_precision"] = len(ours & theirs) / len(ours) if ours else 1.0
        row["group_recall"] = len(ours & theirs) / len(theirs) if theirs else 1.0
        row["exact_groups"] = len(theirs)
    return row


def _comparison(rows: list[dict[str, Any]]) -> list[str]:
    """Why ours and not an ANN library, from this run's rows at the sizes both ran."""
    ours = {row["n"]: row for row in rows if row["method"] == "ours"}
    lines = []
    for row in rows:
        mine = ours.get(row["n"])
        if row["method"] == "ours" or mine is None:
            continue
        recall = "pair_recall" if "pair_recall" in row else "sampled_recall"
        if recall not in row or recall not in mine:
            continue
        lines.append(
            f"at {row['n']:,} vectors, {row['method']} took {row['seconds']:.2f} s "
            f"({row['cpu_seconds']:.2f} s CPU) with pair recall {row[recall]:.4f}, ours "
            f"{mine['seconds']:.2f} s ({mine['cpu_seconds']:.2f} s CPU) with "
            f"{mine[recall]:.4f}: {row['cpu_seconds'] / mine['cpu_seconds']:.1f}x ours in CPU "
            f"time; peak {row['peak_bytes'] / 1e6:.0f} MB against {mine['peak_bytes'] / 1e6:.0f} "
            "MB"
        )
    if not lines:
        return []
    return [
        "Why blocks of matrix products rather than an ANN library (usearch or faiss-cpu): the "
        "question is every pair above a similarity, not the k nearest neighbours of a few "
        "queries, so an index answers it with one range search per photo after a build "
        "(IVF training and adding, or an HNSW graph) that a one-off grouping pays in full; "
        "plain NumPy adds no dependency. Measured in this run: "
        + "; ".join(lines)
        + ". (usearch's HNSW graph was measured for the approximate index of *Beyond a million*: "
        "387 s to build 50,000 vectors on this machine, so it was not tried here.)"
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--exact-max", type=int, default=10_000, help="largest N checked exactly")
    parser.add_argument(
        "--sample", type=int, default=2000, help="photos whose pairs estimate recall above it"
    )
    parser.add_argument(
        "--compare", type=int, nargs="*", default=[10_000, 100_000], help="sizes with faiss too"
    )
    parser.add_argument("--nprobe", type=int, default=16, help="faiss lists probed a query")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--method", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.one:
        found = measure(
            args.one, args.threshold, args.exact_max, args.rounds, args.method, args.nprobe,
            args.sample,
        )  # fmt: skip
        print(json.dumps(found))
        return 0

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    flags = ", ".join(cpu_flags()) or "no AVX-512, AMX or VNNI"
    command = " ".join(["python bench/duplicates.py", *sys.argv[1:]])
    header = (
        f"CPU: {cpu_model()} ({os.cpu_count()} cores, flags: {flags}, load average {load} at "
        f"the start); numpy {np.__version__}; python {platform.python_version()}; "
        f"{dt.date.today()}; `{command}`"
    )
    print(header)
    rows = []
    runs = [(n, "ours") for n in args.sizes]
    runs += [(n, "faiss-ivf") for n in args.sizes if n in (args.compare or [])]
    runs.sort(key=lambda run: run[0])
    for n, method in runs:
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(n), "--method", method]
            + ["--threshold", str(args.threshold), "--rounds", str(args.rounds)]
            + ["--exact-max", str(args.exact_max), "--sample", str(args.sample)]
            + ["--nprobe", str(args.nprobe)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["load"] = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        print(row, flush=True)
        rows.append(row)

    table = [
        "| vectors | method | time (CPU time) | all pairs, the reference (CPU time) | peak memory "
        "| pairs found | groups | pair recall | group precision | group recall | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        exact = (
            f"{row['exact_seconds']:.2f} s ({row['exact_cpu_seconds']:.2f} s; "
            f"{row['exact_cpu_seconds'] / row['cpu_seconds']:.1f}x this row)"
            if "exact_seconds" in row
            else "-"
        )
        if "pair_recall" in row:
            accuracy = [
                f"{row['pair_recall']:.4f}",
                f"{row['group_precision']:.4f}",
                f"{row['group_recall']:.4f} of {row['exact_groups']}",
            ]
        elif "sampled_recall" in row:
            accuracy = [
                f"{row['sampled_recall']:.4f} (sampled: {row['sampled_pairs']} pairs of "
                f"{row['sampled']:,} photos)",
                "-",
                "-",
            ]
        else:
            accuracy = ["-", "-", "-"]
        table.append(
            "| "
            + " | ".join(
                [
                    f"{row['n']:,}",
                    row["method"],
                    f"{row['seconds']:.2f} s ({row['cpu_seconds']:.2f} s)",
                    exact,
                    f"{row['peak_bytes'] / 1e6:.0f} MB (input {row['input_bytes'] / 1e6:.0f} MB)",
                    f"{row['pairs']:,}",
                    f"{row['groups']:,}",
                    *accuracy,
                    row["load"],
                ]
            )
            + " |"
        )
    body = [
        header,
        "",
        "Synthetic CLIP-like library (D = 512; unrelated photos at cosine about 0.5; 4% of the "
        "photos with one to four planted near-copies at 0.90-0.995), threshold "
        f"{args.threshold}, {args.rounds} rounds of recursive spherical k-means splits into "
        "blocks of at most 768 vectors, all pairs inside each block by matrix product "
        "(`core/duplicates.py`). Time: the whole search with the vectors in memory (reading "
        "them from the library is not included); CPU time is that of every thread of the "
        "process, which a loaded machine does not inflate the way it does wall time. Peak "
        "memory: resident memory the search added at its peak (`VmHWM` reset once the vectors "
        "are made), so BLAS and faiss buffers count. Accuracy against every pair compared "
        "(`exact_pairs`): every pair reported is verified exactly, so pair precision is 1; a "
        "group counts when it is identical to an exact group. Above "
        f"{args.exact_max:,} vectors, all pairs would take too long: pair recall is estimated "
        f"from every pair of {args.sample:,} random photos (one product of those with all "
        "vectors). *faiss-ivf*: faiss `IndexIVFFlat` (inner product, 4 sqrt(N) lists trained "
        f"on 40 vectors a list), every vector added, then a `range_search` of every vector "
        f"probing {args.nprobe} lists, its pairs re-checked exactly; its time includes "
        "training and adding. Each row is a fresh process.",
        "",
        *_comparison(rows),
        "",
        *table,
    ]
    for line in body[2:]:
        print(line)
    if not args.no_write:
        write_section("## Near-duplicates", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
