"""End-to-end indexing throughput on real multi-megapixel JPEGs: ours against rclip's approach.

An album of copies of the large JPEGs among the shared photos (1.4 to 12 megapixels; each copy
gets a few bytes appended after the JPEG end marker, which decoders ignore, so that every file
has its own content hash and nothing is recognised as a duplicate) is indexed three ways with
the same random ViT-B-32-256 weights, each timed from the first file read to the last commit:

a) ours: :func:`core.indexer.index` (scan, sync with EXIF capture times and content hashes,
   decode pool with JPEG draft decoding, thumbnails, ncnn batches, one commit per batch);
b) ours without draft decoding (full-size JPEG decode, exactly open_clip's preprocessing);
c) rclip's approach: the photos decoded one after the other in full with Pillow (no draft),
   open_clip's preprocessing transform, an ONNX Runtime session of the image tower exported with
   ``torch.onnx.export`` (``intra_op_num_threads`` threads), batches of 8, vectors written to
   SQLite in one transaction.

Every engine gets the same number of threads (``--threads``, default 2): our decode pool and
ncnn each use that many, ONNX Runtime and PyTorch's preprocessing too. Model loading is not
timed. The page cache is warm (the album was just written). The runs are interleaved
(``--repeat`` rounds of a, b, c) and the fastest of each is reported, so that other work on the
machine disturbs the comparison less. ``--int8`` adds a row for ours with the int8 image tower
(``model install --precision int8``), whose embeddings differ slightly from the float32 ones.

``--dask`` adds ours with ``--dask``: the encoding sent to a LocalCluster of two worker
processes on 127.0.0.1, on the same cores, to show the overhead of the cluster per photo.
``--rows LABEL...`` runs only some of the indexers; ``--section`` names the section of
``RESULTS.md`` such a run writes.

``--storage`` adds the measurements behind the vector storage of :mod:`core.library`: reading all
vectors of a library as one matrix (SQLite BLOBs against a memory-mapped float32 file), and how
often float16 storage would change the top 10 of a search.

Results go to the "## Indexing" section of bench/RESULTS.md.

Usage::

    python bench/indexing.py [--copies 12] [--threads 2] [--repeat 2] [--int8] [--storage]
                             [--dask] [--rows LABEL...] [--no-write]

Needs the test extra (torch, open_clip_torch, onnx, onnxruntime).
"""

from __future__ import annotations

import argparse
import datetime as dt
import operator
import os
import platform
import shlex
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import best_of, cpu_model, export_image_tower, write_section  # noqa: E402

MODEL = "ViT-B-32-256-datacomp"
SOURCE = ROOT.parent / "shared" / "photos" / "exif-samples" / "jpg"
"""The sample collection beside the checkout (``--source`` names another folder of JPEGs)."""
MIN_PIXELS = 1_000_000
RCLIP_BATCH = 8
OUR_BATCH = 16
RCLIP_SIZE = 256


def large_jpegs(source: Path) -> list[tuple[Path, int]]:
    """JPEGs of at least :data:`MIN_PIXELS` under ``source`` that Pillow opens, with pixels."""
    from PIL import Image

    found = []
    for path in sorted(source.rglob("*")):
        if path.suffix.lower() not in {".jpg", ".jpeg"}:
            continue
        try:
            with Image.open(path) as image:
                pixels = image.width * image.height
        except OSError:
            continue
        if pixels >= MIN_PIXELS:
            found.append((path, pixels))
    return found


def make_album(root: Path, sources: list[Path], copies: int) -> list[Path]:
    """Write ``copies`` distinct copies of every source into ``root``."""
    made = []
    for copy in range(copies):
        folder = root / f"{2010 + copy}"
        folder.mkdir(parents=True)
        for number, source in enumerate(sources):
            target = folder / f"IMG_{number:03d}_{source.stem}.jpg"
            target.write_bytes(source.read_bytes() + b"\0copy %d" % copy)
            made.append(target)
    return made


def install(workdir: Path, precision: str = "fp32") -> Any:
    """Install random ViT-B-32-256 weights as the registry model; return the open_clip model.

    Goes into ``$CLIPSEARCH_HOME`` as it is set now; the same seed gives the same weights.
    """
    from cli.main import main as cli_main
    from core.registry import get_spec
    from tests.reference import make_reference, save_checkpoint

    reference = make_reference(get_spec(MODEL).architecture, seed=0)
    checkpoint = save_checkpoint(reference, workdir / "weights.safetensors")
    argv = ["model", "install", MODEL, "--from", str(checkpoint), "--precision", precision]
    if cli_main(argv) != 0:
        raise SystemExit("model install failed")
    return reference


def run_ours(album: Path, threads: int, draft: bool, home: Path) -> dict[str, Any]:
    """Index ``album`` into a fresh library with our pipeline, the model installed in ``home``."""
    from core.encoder import load_model

    os.environ["CLIPSEARCH_HOME"] = str(home)
    model = load_model(MODEL, threads=threads, draft=draft)
    size = model.spec.preprocess.size
    model.encode_pixels(np.zeros((1, 3, size, size), np.float32))  # load the network
    encode = model.encode_pixels
    inside = [0.0]

    def timed_encode(pixels: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        try:
            return encode(pixels)
        finally:
            inside[0] += time.perf_counter() - start

    model.encode_pixels = timed_encode  # type: ignore[method-assign]
    run = Path(tempfile.mkdtemp(prefix="ours-", dir=home.parent))
    result = index_new_library(run, model, album, decoders=threads)
    model.close()
    shutil.rmtree(run)
    return {**result, "encoder_share": inside[0] / result["seconds"]}


def index_new_library(run: Path, model: Any, album: Path, **options: Any) -> dict[str, Any]:
    """Index ``album`` into a new library in ``run`` (timed) with :func:`core.indexer.index`
    and ``options``: photos indexed, failed, the seconds it took, and the vectors by path."""
    from core.indexer import index
    from core.library import Library

    with Library.open(run / "library.sqlite", thumbnail_dir=run / "thumbnails") as lib:
        start = time.perf_counter()
        summary = index(lib, model, [album], batch_size=OUR_BATCH, **options)
        elapsed = time.perf_counter() - start
        ids, matrix = lib.vectors(model.name)
        paths = [r.path for r in lib.records(ids)]
    return {
        "photos": summary.indexed,
        "failed": len(summary.failed),
        "seconds": elapsed,
        "vectors": dict(zip(map(str, paths), matrix, strict=True)),
    }


def run_dask(album: Path, threads: int, home: Path) -> dict[str, Any]:
    """Index ``album`` with ``--dask``: a LocalCluster of two worker processes on 127.0.0.1.

    Each worker runs one shard at a time with ``threads // 2`` ncnn threads (at least 1), so
    that the two of them use the cores ours uses. The workers load the model before the clock
    starts, as ours does.
    """
    from distributed import Client, LocalCluster

    from core.distributed import ModelRequest, encode_shard
    from core.encoder import load_model

    os.environ["CLIPSEARCH_HOME"] = str(home)
    model = load_model(MODEL, threads=threads)
    run = Path(tempfile.mkdtemp(prefix="dask-", dir=home.parent))
    worker_env = {"CLIPSEARCH_HOME": str(home), "OMP_NUM_THREADS": str(max(1, threads // 2))}
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            env=worker_env,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        request = ModelRequest.of(model)
        for worker in client.scheduler_info()["workers"]:
            client.submit(encode_shard, request, [], workers=[worker], pure=False).result()
        result = index_new_library(run, model, album, cluster=cluster.scheduler_address)
    model.close()
    shutil.rmtree(run)
    return result


def run_rclip_way(album: Path, onnx_path: Path, threads: int) -> dict[str, Any]:
    """Index ``album`` as rclip does: sequential full decode, open_clip transform, ONNX Runtime."""
    import onnxruntime as ort
    import open_clip
    import torch
    from PIL import Image, ImageFile, ImageOps

    ImageFile.LOAD_TRUNCATED_IMAGES = True  # as rclip sets it
    torch.set_num_threads(threads)
    size = RCLIP_SIZE
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    transform = open_clip.image_transform(size, is_train=False)
    session.run(None, {"image": np.zeros((1, 3, size, size), np.float32)})

    db_path = onnx_path.with_name(f"rclip-way-{time.monotonic_ns()}.sqlite")
    db = sqlite3.connect(db_path)
    db.execute(
        "CREATE TABLE images (id INTEGER PRIMARY KEY, filepath TEXT UNIQUE, modified_at REAL,"
        " size INTEGER, vector BLOB)"
    )
    vectors: dict[str, np.ndarray] = {}
    failed = 0
    start = time.perf_counter()
    files = sorted(
        Path(folder, name)
        for folder, _, names in os.walk(album)
        for name in names
        if name.lower().endswith((".jpg", ".jpeg"))
    )

    def flush(paths: list[Path], images: list[Image.Image]) -> None:
        pixels = torch.stack([transform(image) for image in images]).numpy()
        out = session.run(None, {"image": pixels})[0]
        out = out / np.linalg.norm(out, axis=1, keepdims=True)
        for path, row in zip(paths, out, strict=True):
            st = path.stat()
            db.execute(
                "INSERT INTO images (filepath, modified_at, size, vector) VALUES (?, ?, ?, ?)",
                (str(path), st.st_mtime, st.st_size, row.astype(np.float32).tobytes()),
            )
            vectors[str(path)] = row

    batch_paths: list[Path] = []
    batch_images: list[Image.Image] = []
    for path in files:
        try:
            image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        except Exception:  # noqa: BLE001 - a photo that cannot be read is left out, as rclip does
            failed += 1
            continue
        batch_paths.append(path)
        batch_images.append(image)
        if len(batch_paths) == RCLIP_BATCH:
            flush(batch_paths, batch_images)
            batch_paths, batch_images = [], []
    if batch_paths:
        flush(batch_paths, batch_images)
    db.commit()
    elapsed = time.perf_counter() - start
    db.close()
    db_path.unlink()
    return {"photos": len(vectors), "failed": failed, "seconds": elapsed, "vectors": vectors}


def _agreement(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Lowest cosine between the vectors two runs stored for the same photo."""
    common = sorted(set(a) & set(b))
    return min(float(np.dot(a[key], b[key])) for key in common) if common else float("nan")


# --------------------------------------------------------------------------------------------
# Vector storage


def storage_numbers(workdir: Path, sizes: tuple[int, ...] = (10_000, 100_000)) -> list[str]:
    """Time reading all vectors (BLOBs through ``Library.vectors``, memmap) and float16 effects."""
    from core.library import Library

    dim = 512
    rng = np.random.default_rng(0)
    lines = [
        "| photos | SQLite BLOBs (`Library.vectors`) | memory-mapped float32 file | database |",
        "| --- | --- | --- | --- |",
    ]
    for count in sizes:
        matrix = rng.standard_normal((count, dim)).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        path = workdir / f"storage-{count}.sqlite"
        ids = list(range(1, count + 1))
        with Library.open(path, thumbnail_dir=workdir / "unused") as library:
            library.use_model("bench", dim)
            with sqlite3.connect(path) as raw:  # photo rows in bulk, without files to scan
                raw.executemany(
                    "INSERT INTO photos (id, path, size, mtime_ns, content_hash, wall, status)"
                    " VALUES (?, ?, 1, 1, ?, '2020-01-01T00:00:00.000000', 'pending')",
                    ((i, f"/album/{i}.jpg", str(i)) for i in ids),
                )
            with library.indexing_lock():
                for first in range(0, count, 5000):
                    chunk = ids[first : first + 5000]
                    library.save_batch(
                        "bench", chunk, matrix[first : first + len(chunk)], [None] * len(chunk)
                    )
            blob_s = best_of(lambda library=library: library.vectors("bench"), 3)
        slots_path = workdir / f"storage-{count}.f32"
        matrix.tofile(slots_path)

        def memmap_read(path: Path = path, slots_path: Path = slots_path) -> None:
            with sqlite3.connect(path) as raw:
                found = raw.execute(
                    "SELECT id, id - 1 FROM photos WHERE status = 'indexed'"
                ).fetchall()
            slots = np.fromiter(map(operator.itemgetter(1), found), np.int64, len(found))
            mapped = np.memmap(slots_path, np.float32, "r").reshape(-1, dim)
            np.ascontiguousarray(mapped[slots])

        memmap_s = best_of(memmap_read, 3)
        size_mb = path.stat().st_size / 1e6
        lines.append(
            f"| {count:,} | {blob_s * 1000:.0f} ms | {memmap_s * 1000:.0f} ms | {size_mb:.0f} MB |"
        )

    count, queries = 10_000, 1000
    matrix = rng.standard_normal((count, dim)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    texts = rng.standard_normal((queries, dim)).astype(np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    exact = texts @ matrix.T
    halved = texts @ matrix.astype(np.float16).astype(np.float32).T
    top_exact = np.argsort(-exact, axis=1)[:, :10]
    top_half = np.argsort(-halved, axis=1)[:, :10]
    order = float(np.mean(np.any(top_exact != top_half, axis=1)))
    sets = float(np.mean([set(a) != set(b) for a, b in zip(top_exact, top_half, strict=True)]))
    first = float(np.mean(top_exact[:, 0] != top_half[:, 0]))
    lines += [
        "",
        f"float16 instead of float32 ({count:,} random unit vectors, D = {dim}, {queries:,} random "
        f"queries): scores move by up to {np.abs(exact - halved).max():.1e}; the order of the top "
        f"10 changes for {order:.1%} of queries, the set of the top 10 for {sets:.1%}, the first "
        f"result for {first:.1%}.",
    ]
    return lines


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Build the album, run the three indexers, print and record the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=12, help="copies of each large JPEG")
    parser.add_argument("--threads", type=int, default=2, help="threads for every engine")
    parser.add_argument("--source", type=Path, default=SOURCE, help="folder of JPEGs to copy")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved rounds (best shown)")
    parser.add_argument("--int8", action="store_true", help="add ours with the int8 image tower")
    parser.add_argument("--storage", action="store_true", help="also measure vector storage")
    parser.add_argument(
        "--dask", action="store_true", help="add ours with --dask on 2 local worker processes"
    )
    parser.add_argument(
        "--rows", nargs="+", metavar="LABEL", help="run only these indexers (labels as printed)"
    )
    parser.add_argument(
        "--section", default="Indexing", help="the section of RESULTS.md to write (a heading)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    command = "python bench/indexing.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    sources = large_jpegs(args.source)
    if not sources:
        print(f"no JPEG of {MIN_PIXELS / 1e6:.0f}+ megapixels in {args.source}", file=sys.stderr)
        return 1
    megapixels = [pixels / 1e6 for _, pixels in sources]
    print(f"CPU: {cpu_model()}; {args.threads} threads; python {platform.python_version()}")

    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-") as tmp:
        workdir = Path(tmp)
        os.environ["CLIPSEARCH_HOME"] = str(workdir / "home")
        album = workdir / "album"
        files = make_album(album, [path for path, _ in sources], args.copies)
        total_mb = sum(f.stat().st_size for f in files) / 1e6
        print(
            f"album: {len(files)} JPEGs ({len(sources)} photos x {args.copies} copies), "
            f"{min(megapixels):.1f}-{max(megapixels):.1f} MP, "
            f"mean {np.mean(megapixels):.1f} MP, {total_mb:.0f} MB"
        )
        print(f"installing random {MODEL} weights ...", flush=True)
        fp32_home = workdir / "home"
        reference = install(workdir)
        onnx_path = workdir / "visual.onnx"
        export_image_tower(reference, onnx_path, RCLIP_SIZE)
        runs: dict[str, Callable[[], dict[str, Any]]] = {
            "ours": lambda: run_ours(album, args.threads, True, fp32_home),
            "ours, no draft": lambda: run_ours(album, args.threads, False, fp32_home),
            "rclip's approach": lambda: run_rclip_way(album, onnx_path, args.threads),
        }
        if args.int8:
            int8_home = workdir / "home-int8"
            os.environ["CLIPSEARCH_HOME"] = str(int8_home)
            install(workdir, "int8")
            runs["ours, int8 image tower"] = lambda: run_ours(album, args.threads, True, int8_home)
        if args.dask:
            runs["ours, --dask (2 local workers)"] = lambda: run_dask(
                album, args.threads, fp32_home
            )
        if args.rows:
            runs = {label: run for label, run in runs.items() if label in args.rows}

        results: dict[str, dict[str, Any]] = {}
        loads: list[float] = []
        for round_number in range(args.repeat):
            for label, run in runs.items():
                print(f"{label} (round {round_number + 1}) ...", flush=True)
                result = run()
                result["rate"] = result["photos"] / result["seconds"]
                loads.append(os.getloadavg()[0])
                print(
                    f"  {result['photos']} photos ({result['failed']} unreadable) in "
                    f"{result['seconds']:.1f} s: {result['rate']:.2f} photos/s; load average "
                    f"{loads[-1]:.1f}",
                    flush=True,
                )
                best = results.get(label)
                rates = [*best["rates"], result["rate"]] if best else [result["rate"]]
                if best is None or result["rate"] > best["rate"]:
                    best = result
                best["rates"] = rates
                results[label] = best

        baseline = "rclip's approach" if "rclip's approach" in results else next(iter(results))
        rclip_rate = results[baseline]["rate"]
        rclip_vectors = results[baseline]["vectors"]
        cosines = {label: _agreement(r["vectors"], rclip_vectors) for label, r in results.items()}
        for label, result in results.items():
            share = result.get("encoder_share")
            print(
                f"{label:24s} {result['rate']:6.2f} photos/s  {result['rate'] / rclip_rate:.2f}x"
                f"  (lowest cosine to rclip's approach {cosines[label]:.5f}"
                + (f"; {share:.0%} of the run in encode_pixels)" if share is not None else ")")
            )

        lines = [
            f"CPU: {cpu_model()}, {args.threads} threads; {dt.date.today().isoformat()}; "
            f"`{command.strip()}`.",
            "",
            f"{len(files)} JPEGs ({len(sources)} large photos of the shared samples x "
            f"{args.copies} distinct copies), {min(megapixels):.1f}-{max(megapixels):.1f} "
            f"megapixels (mean {np.mean(megapixels):.1f}); random {MODEL} weights; warm page "
            "cache; from the first file read to the last commit, model loading excluded. Ours "
            f"includes scanning, EXIF capture times, content hashes and thumbnails; batch "
            f"{OUR_BATCH}, {args.threads} decode threads and {args.threads} ncnn threads. rclip's "
            f"approach: sequential full Pillow decode, open_clip's transform, ONNX Runtime "
            f"({args.threads} intra-op threads), batch {RCLIP_BATCH}, vectors to SQLite. Load "
            f"average (1 min) after each run: {min(loads):.1f}-{max(loads):.1f} on "
            f"{os.cpu_count()} CPUs (the indexers themselves keep both cores busy). The rounds "
            "are interleaved, so that a slow spell of the machine weighs on every indexer alike; "
            "on this virtual machine rounds of the same indexer differ by up to about 10%.",
            "",
            f"| indexer | photos/s (best) | every round | vs {baseline} "
            f"| time inside `encode_pixels` | lowest cosine to {baseline} |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for label, result in results.items():
            rounds = ", ".join(f"{rate:.2f}" for rate in result["rates"])
            share = result.get("encoder_share")
            lines.append(
                f"| {label} | {result['rate']:.2f} | {rounds} | "
                f"{result['rate'] / rclip_rate:.2f}x | "
                f"{f'{share:.0%}' if share is not None else '-'} | {cosines[label]:.5f} |"
            )
        lines += [
            "",
            "Same weights and photos in every row; the cosine compares the vector each indexer "
            "stored for a photo with the one rclip's approach stored (1 means identical). The "
            "time inside `encode_pixels` is the share of the run the writer thread spent waiting "
            "for the encoder: the rest (scan, capture times, hashes, waiting for the decode pool, "
            "commits) is what the pipeline did not hide behind the encoder.",
        ]
        if "ours" in results and "ours, --dask (2 local workers)" in results:
            ours, dask = results["ours"], results["ours, --dask (2 local workers)"]
            per_photo = (1 / dask["rate"] - 1 / ours["rate"]) * 1000
            same = all(
                np.array_equal(vector, ours["vectors"][key])
                for key, vector in dask["vectors"].items()
            )
            lines += [
                "",
                "*--dask*: the same pipeline with the encoding sent to a `distributed` "
                "LocalCluster of 2 worker processes on 127.0.0.1 (1 task thread each, "
                f"{max(1, args.threads // 2)} ncnn thread each), on the same "
                f"{os.cpu_count()} cores: it shows the cost of the cluster per photo, not a "
                f"speed-up. Overhead: {per_photo:+.0f} ms per photo against ours (best rounds); "
                f"vectors identical to ours: {'yes' if same else 'NO'}.",
            ]
        if args.storage:
            print("vector storage ...", flush=True)
            storage = storage_numbers(workdir)
            print("\n".join(storage))
            lines += ["", "### Vector storage", "", *storage]
    if not args.no_write:
        write_section(f"## {args.section}", lines)
        print(f"wrote the {args.section} section of bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
