"""The GPU path: our encoders on ncnn's Vulkan backend, checked against open_clip and timed.

For each model, random weights are made discriminative (as in ``tests/test_parity.py``), saved as
a checkpoint and installed with our own ``model install --from``. Then, on real photos and texts:

- correctness: cosine between our Vulkan embeddings and open_clip's float32 forward pass (and,
  for comparison, our CPU embeddings), and whether the text x photo similarity matrix keeps the
  same top-1 photo for every text;
- speed at batch 1 and 8, milliseconds per image (and per text): ours on Vulkan, ours on the CPU,
  open_clip on CUDA when PyTorch sees a GPU, and open_clip on the CPU, same process, same weights.

Nothing here runs without a Vulkan GPU except the report that there is none. Results go to the
"## GPU (Vulkan)" section of bench/RESULTS.md and, with ``--json FILE``, to a JSON file.

    python bench/vulkan.py --photos ../shared/photos/exif-samples/jpg
    python bench/vulkan.py --models ViT-B-32-256-datacomp --seconds 3 --json out.json

Needs the test extra (torch, open_clip_torch) and a Vulkan driver.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_model, write_section  # noqa: E402
from bench.encoders import TEXTS as BENCH_TEXTS  # noqa: E402
from bench.encoders import timeit  # noqa: E402

EXTRA_TEXTS = [
    "a dog running on the beach",
    "city skyline at dusk",
    "graffiti on a brick wall",
    "a train crossing a bridge",
    "flowers in a vase on the table",
    "fireworks over the river",
    "a plate of sushi 🍣",
    "東京の夜景",
    "кошка на диване",
    "a long caption " + "with many repeated words " * 20,
    "",
    "horse in a field",
]
TEXTS = BENCH_TEXTS + EXTRA_TEXTS
SUFFIXES = {".jpg", ".jpeg", ".png"}


def gpu_report() -> dict:
    """What ncnn and PyTorch see of the GPU."""
    import ncnn

    from core.encoder import gpu_count

    report: dict = {"ncnn": getattr(ncnn, "__version__", "?"), "vulkan_gpus": gpu_count()}
    if report["vulkan_gpus"]:
        try:
            report["vulkan_device"] = ncnn.get_gpu_info(0).device_name()
        except Exception as error:  # the name is a nicety; older wheels lack the binding
            report["vulkan_device"] = f"? ({error})"
    try:
        import torch

        report["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception as error:
        report["cuda"] = f"? ({error})"
    return report


def photo_paths(folder: Path, limit: int) -> list[Path]:
    """Up to ``limit`` photos under ``folder`` that Pillow opens, in a stable order."""
    from PIL import Image

    found = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES):
        try:
            with Image.open(path) as image:
                image.convert("RGB").load()
        except Exception:
            continue
        found.append(path)
        if len(found) == limit:
            break
    return found


def reference_embeddings(reference, spec, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """open_clip's float32 image and text embeddings (CPU), L2-normalised, as float64."""
    import open_clip
    import torch

    from tests.reference import reference_pixels

    pre = spec.preprocess
    pixels = reference_pixels(paths, pre.size, pre.mean, pre.std)
    with torch.no_grad():
        images = reference.encode_image(pixels)
        texts = reference.encode_text(open_clip.tokenize(TEXTS))
    out = []
    for x in (images, texts):
        x = x / x.norm(dim=-1, keepdim=True)
        out.append(x.numpy().astype(np.float64))
    return out[0], out[1]


def agreement(ref_img, ref_txt, img, txt) -> dict:
    """Cosines to the reference and top-1 agreement of the text x photo similarity matrix."""
    img = img.astype(np.float64)
    txt = txt.astype(np.float64)
    ref_sim = ref_txt @ ref_img.T
    sim = txt @ img.T
    return {
        "image_cos_min": float(np.sum(img * ref_img, axis=1).min()),
        "text_cos_min": float(np.sum(txt * ref_txt, axis=1).min()),
        "same_top1": int(np.sum(ref_sim.argmax(1) == sim.argmax(1))),
        "texts": len(txt),
        "similarity_max_abs_error": float(np.abs(ref_sim - sim).max()),
    }


def install_discriminative(name: str, photos: list[Path], workdir: Path):
    """Random weights for ``name``, made discriminative on ``photos``, installed with our command.

    Returns the registry spec and the open_clip reference holding the same weights.
    """
    import torch

    from cli.main import main as cli_main
    from core.registry import get_spec
    from tests.reference import (
        make_discriminative,
        make_reference,
        reference_pixels,
        save_checkpoint,
    )

    os.environ["CLIPSEARCH_HOME"] = str(workdir / "home")
    spec = get_spec(name)
    reference = make_reference(spec.architecture, seed=0)
    pre = spec.preprocess
    pixels = reference_pixels(photos[:8], pre.size, pre.mean, pre.std)
    make_discriminative(reference, pixels, 4.0)
    checkpoint = save_checkpoint(reference, workdir / f"{name}.safetensors")
    if cli_main(["model", "install", name, "--from", str(checkpoint)]) != 0:
        raise SystemExit(f"install of {name} failed")
    torch.set_grad_enabled(False)
    return spec, reference


def check_model(name: str, photos: list[Path], seconds: float, workdir: Path) -> dict:
    import torch

    from core.encoder import load_model

    spec, reference = install_discriminative(name, photos, workdir)
    ref_img, ref_txt = reference_embeddings(reference, spec, photos)
    cpu_threads = os.cpu_count() or 1
    result: dict = {"model": name, "photos": len(photos), "texts": len(TEXTS)}
    gpu = load_model(name, vulkan=True, draft=False)
    cpu = load_model(name, threads=cpu_threads, draft=False)
    result["vulkan_active"] = gpu.vulkan
    for label, model in (("vulkan", gpu), ("cpu", cpu)):
        t0 = time.perf_counter()
        img = model.encode_images(photos)
        txt = model.encode_texts(TEXTS)
        result[f"{label}_first_call_s"] = round(time.perf_counter() - t0, 2)
        result[label] = agreement(ref_img, ref_txt, img, txt)
        print(name, label, result[label], flush=True)

    # speed: preprocessed pixels, so decoding is not timed
    pixels = np.stack([cpu.preprocess(p) for p in photos[:8]])
    while len(pixels) < 8:
        pixels = np.concatenate([pixels, pixels])[:8]
    timings: dict = {}
    cuda = torch.cuda.is_available()
    ref_gpu = reference.to("cuda") if cuda else None
    for batch in (1, 8):
        px = pixels[:batch]
        tokens_texts = TEXTS[:batch]
        runs = {
            ("image", "ours_vulkan"): lambda px=px: gpu.encode_pixels(px),
            ("image", "ours_cpu"): lambda px=px: cpu.encode_pixels(px),
            ("text", "ours_vulkan"): lambda t=tokens_texts: gpu.encode_texts(t),
            ("text", "ours_cpu"): lambda t=tokens_texts: cpu.encode_texts(t),
        }
        if cuda:
            import open_clip

            tensor = torch.from_numpy(px).to("cuda")
            tokens = open_clip.tokenize(tokens_texts).to("cuda")

            def on_cuda(fn, arg):
                def run():
                    fn(arg)
                    torch.cuda.synchronize()

                return run

            runs[("image", "open_clip_cuda")] = on_cuda(ref_gpu.encode_image, tensor)
            runs[("text", "open_clip_cuda")] = on_cuda(ref_gpu.encode_text, tokens)
        for (kind, engine), fn in runs.items():
            ms = 1000 * timeit(fn, seconds) / batch
            timings[f"{kind}_b{batch}_{engine}"] = round(ms, 3)
            print(f"{name} {kind} batch {batch} {engine}: {ms:.2f} ms each", flush=True)
    result["ms"] = timings
    result["cpu_threads"] = cpu_threads
    gpu.close()
    cpu.close()
    return result


def write_results(report: dict, rows: list[dict], extras: dict, command: str) -> None:
    lines = [
        f"Measured {dt.date.today().isoformat()} on {report.get('vulkan_device')} "
        f"(Vulkan, ncnn {report.get('ncnn')}); host CPU: {cpu_model()}; PyTorch CUDA device: "
        f"{report.get('cuda')}.",
        "",
        f"Command: `{command}`",
        "",
        "Correctness against open_clip's float32 forward pass on the same (discriminative) "
        "random weights, real photos, no draft decoding:",
        "",
        "| model | path | photos | image cosine min | text cosine min | same top-1 |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        for label in ("vulkan", "cpu"):
            a = row[label]
            lines.append(
                f"| {row['model']} | {label} | {row['photos']} | {a['image_cos_min']:.7f} | "
                f"{a['text_cos_min']:.7f} | {a['same_top1']}/{a['texts']} |"
            )
    lines += [
        "",
        "Milliseconds per item (median), ours on Vulkan against ours on the CPU "
        f"({rows[0]['cpu_threads'] if rows else '?'} threads) and open_clip on CUDA:",
        "",
        "| model | tower | batch | ours Vulkan | ours CPU | open_clip CUDA | CPU / Vulkan |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ms = row["ms"]
        for kind in ("image", "text"):
            for batch in (1, 8):
                vk = ms[f"{kind}_b{batch}_ours_vulkan"]
                cpu = ms[f"{kind}_b{batch}_ours_cpu"]
                oc = ms.get(f"{kind}_b{batch}_open_clip_cuda")
                oc_text = f"{oc:.2f}" if oc is not None else "n/a"
                lines.append(
                    f"| {row['model']} | {kind} | {batch} | {vk:.2f} | {cpu:.2f} | {oc_text} | "
                    f"{cpu / vk:.2f}x |"
                )
    for probe in extras.get("probe", []):
        lines += [
            "",
            f"{probe['model']}, batch 8 on Vulkan: one extractor at a time "
            f"{probe['one_at_a_time_ms']:.2f} ms per image, {probe['threads']} extractors at once "
            f"(as `encode_images` does) {probe['threaded_ms']:.2f} ms "
            f"({probe['one_at_a_time_ms'] / probe['threaded_ms']:.2f}x); cosine between the two "
            f"paths {probe['cosine_min']:.7f}.",
        ]
    index = extras.get("index")
    if index:
        g, c = index["gpu"], index["cpu"]
        lines += [
            "",
            f"End to end: `clipsearch-tui index ALBUM --json` from an empty library, "
            f"{index['model']}, {g['indexed']} photos: {g['elapsed_s']:.2f} s with `--gpu` "
            f"({g['indexed'] / g['elapsed_s']:.1f} photos/s) against {c['elapsed_s']:.2f} s on "
            f"the CPU ({c['indexed'] / c['elapsed_s']:.1f} photos/s, default encoder threads): "
            f"{c['elapsed_s'] / g['elapsed_s']:.2f}x.",
        ]
    write_section("## GPU (Vulkan)", lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_photos = ROOT.parent / "shared" / "photos" / "exif-samples" / "jpg"
    parser.add_argument("--photos", type=Path, default=default_photos)
    parser.add_argument("--limit", type=int, default=18, help="photos to compare (default 18)")
    parser.add_argument(
        "--models", default="ViT-B-32-256-datacomp,RN50-openai", help="comma-separated"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--no-write", action="store_true", help="leave bench/RESULTS.md alone")
    parser.add_argument(
        "--probe-threads", type=int, default=0, help="also time N threads on one Vulkan network"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="run without a GPU (the Vulkan rows then are CPU runs) to check the script; "
        "RESULTS.md is left alone",
    )
    parser.add_argument(
        "--album", type=Path, help="also index this folder end to end, with --gpu and without"
    )
    args = parser.parse_args()

    report = gpu_report()
    print(json.dumps(report), flush=True)
    if args.dry_run:
        args.no_write = True
    elif not report["vulkan_gpus"]:
        raise SystemExit("no Vulkan GPU: ncnn sees none (is a Vulkan driver installed?)")
    photos = photo_paths(args.photos, args.limit)
    if len(photos) < 2:
        raise SystemExit(f"too few readable photos under {args.photos}")
    rows = []
    extras: dict = {}
    command = "python bench/vulkan.py " + " ".join(sys.argv[1:])

    def save() -> None:
        if args.json:
            data = {"gpu": report, "models": rows, **extras}
            args.json.write_text(json.dumps(data, indent=1))
        if not args.no_write:
            write_results(report, rows, extras, command)

    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows.append(check_model(name.strip(), photos, args.seconds, Path(tmp)))
            save()
        if args.album:
            extras["index"] = index_both_ways(rows[0]["model"], args.album, Path(tmp))
            save()
        if args.probe_threads:
            # last, after the results are saved: several threads on one Vulkan network
            extras["probe"] = [
                probe_threads(row["model"], photos, args.seconds, args.probe_threads)
                for row in rows
            ]
            save()


def index_both_ways(name: str, album: Path, workdir: Path) -> dict:
    """``clipsearch-tui index ALBUM --json``, from an empty library, with ``--gpu`` and without."""
    import shutil
    import subprocess

    home = workdir / "home"
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "CLIPSEARCH_HOME": str(home), "PYTHONPATH": path}
    out: dict = {"model": name, "album": str(album)}
    for label, extra in (("gpu", ["--gpu"]), ("cpu", [])):
        for leftover in (home / "data").glob("library*"):
            leftover.unlink()
        shutil.rmtree(home / "cache", ignore_errors=True)
        argv = [sys.executable, "-m", "cli", "index", str(album), "--model", name, "--json"]
        done = subprocess.run(argv + extra, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"index {label} failed: {done.stderr[-2000:]}")
        summary = json.loads(done.stdout)
        out[label] = {"indexed": summary["indexed"], "elapsed_s": summary["elapsed_s"]}
        print(f"index {label}: {out[label]}", flush=True)
    return out


def probe_threads(name: str, photos: list[Path], seconds: float, threads: int) -> None:
    """Batch 8 on Vulkan with ``threads`` concurrent extractors, against one after the other."""
    from concurrent.futures import ThreadPoolExecutor

    from core.encoder import load_model

    with load_model(name, vulkan=True, draft=False) as gpu:
        pixels = list(np.stack([gpu.preprocess(p) for p in photos[:8]]))

        def one_at_a_time():
            return np.stack([gpu._run_visual(p) for p in pixels])

        with ThreadPoolExecutor(threads) as pool:

            def threaded():
                return np.stack(list(pool.map(gpu._run_visual, pixels)))

            a, b = one_at_a_time(), threaded()
            cosine = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            one = 1000 * timeit(one_at_a_time, seconds) / len(pixels)
            many = 1000 * timeit(threaded, seconds) / len(pixels)
        print(
            f"{name} Vulkan batch 8: one extractor at a time {one:.2f} ms each, "
            f"{threads} threads {many:.2f} ms each, cosine min {cosine.min():.7f}",
            flush=True,
        )
    return {
        "model": name,
        "threads": threads,
        "one_at_a_time_ms": round(one, 3),
        "threaded_ms": round(many, 3),
        "cosine_min": float(cosine.min()),
    }


if __name__ == "__main__":
    main()
