"""Encoder speed: our ncnn path against open_clip on PyTorch and against ONNX Runtime.

All three run the same random weights in the same process, on the same number of threads, called
in turn (one call of each per round, medians over the rounds). Each call starts after a pause of
``SETTLE_S``: an engine's worker threads keep spinning for a while after a call (ONNX Runtime's
intra-op pool, PyTorch's OpenMP threads), and without the pause they take a core from the next
engine's call, which a program running one engine never meets (measured: our two-threaded text
query 69 ms alone, 126 to 135 ms right after an ONNX Runtime call, 70 ms after a 200 ms pause).

- ours: the model installed with ``clipsearch-tui model install NAME --from CHECKPOINT`` and
  loaded with ``core.load_model``; images through ``encode_pixels`` (preprocessed pixels, so
  decoding is not timed), texts through ``encode_texts``;
- open_clip on PyTorch (``torch.set_num_threads``), ``encode_image`` / ``encode_text``;
- ONNX Runtime with the image and text towers exported by ``torch.onnx.export`` (the engine rclip
  uses), ``intra_op_num_threads`` threads, ``ORT_ENABLE_ALL``.

Reported: milliseconds per image (or text) at batch 1 and batch 8, and the ratios to ours. Results
go to the "## Encoders" section of bench/RESULTS.md (``--section`` names another).

MobileCLIP2 models run with their image tower reparameterised for inference (timm's
``reparameterize_model``) in open_clip and in the ONNX export, the weights our converter folds to;
they have no int8 install.

    python bench/encoders.py                     # RN50 and ViT-B-32-256, 2 threads
    python bench/encoders.py --models ViT-B-32-256-datacomp --threads 2 --seconds 5
    python bench/encoders.py --models MobileCLIP2-S0 MobileCLIP2-S2 \\
        --section "## Encoders: MobileCLIP2"
    python bench/encoders.py --models ViT-B-32-SigLIP2-256-webli --section "## Encoders: SigLIP 2"

SigLIP models are installed from a folder laid out as their hub repository, with a small
tokenizer trained by ``tests.reference.build_test_tokenizer``; ours tokenizes with
``model.tokenize``, open_clip and ONNX Runtime get the ids of open_clip's HFTokenizer on the same
files.

Needs the test extra (torch, open_clip_torch, onnx, onnxruntime).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    cpu_flags,
    cpu_model,
    export_image_tower,
    reference_tokens,
    scratch_folder,
    write_section,
)

TEXTS = [
    "a red bicycle in the snow",
    "a photo of my cat sleeping on the sofa",
    "sunset over the sea with boats",
    "birthday party",
    "the eiffel tower at night",
    "two children playing football in the park on a sunny afternoon",
    "a bowl of ramen",
    "mountains covered in fog",
]


SETTLE_S = 0.2
"""Pause before each timed call of :func:`timeit_interleaved`, in seconds."""


def timeit(fn: Callable[[], object], seconds: float, min_runs: int = 3) -> float:
    """Median wall time of ``fn`` in seconds, after one warm-up call."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timeit_interleaved(
    cases: dict[Any, Callable[[], object]],
    seconds: float,
    min_rounds: int = 3,
    settle: float = SETTLE_S,
) -> dict[Any, float]:
    """Median wall time of each case in seconds, the cases called in turn, one call each per round
    (after one warm-up round), so that a change in the machine's load falls on all of them alike;
    each call after a pause of ``settle`` seconds, so that no engine's spinning threads are left
    over from the call before. ``seconds`` counts the calls, not the pauses."""
    for fn in cases.values():
        fn()
    times: dict[Any, list[float]] = {key: [] for key in cases}
    rounds = 0
    while rounds < min_rounds or sum(map(sum, times.values())) < seconds:
        for key, fn in cases.items():
            time.sleep(settle)
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
        rounds += 1
    return {key: statistics.median(values) for key, values in times.items()}


def install(name: str, workdir: Path, precision: str = "fp32"):
    """Random weights for ``name`` saved as a checkpoint and installed with our own command."""
    import torch

    from cli.main import main as cli_main
    from core.registry import get_spec
    from tests import reference_mobileclip
    from tests.reference import (
        build_test_tokenizer,
        make_reference,
        make_siglip_reference,
        save_checkpoint,
    )

    os.environ["CLIPSEARCH_HOME"] = str(workdir / f"home-{precision}")
    spec = get_spec(name)
    arch = spec.architecture
    if arch.family == "fastvit":
        reference = reference_mobileclip.make_reference(arch, 0, spec.openclip_name)
    elif spec.is_siglip:
        reference = make_siglip_reference(arch, 0, arch.vision["timm_model_name"])
    else:
        reference = make_reference(arch, seed=0)
    checkpoint = workdir / f"{name}.safetensors"
    source = checkpoint
    if spec.is_siglip:  # the hub repository's layout: the checkpoint beside its tokenizer
        source = workdir / f"{name}-repo"
        checkpoint = source / "open_clip_model.safetensors"
        if not checkpoint.exists():
            build_test_tokenizer(source)
    if not checkpoint.exists():
        save_checkpoint(reference, checkpoint)
    argv = ["model", "install", name, "--from", str(source), "--precision", precision]
    if cli_main(argv) != 0:
        raise SystemExit(f"install of {name} failed")
    torch.set_grad_enabled(False)
    return spec, reference


def onnx_sessions(reference, spec, workdir: Path, threads: int):
    import onnxruntime as ort
    import torch

    size = spec.preprocess.size
    image_path = workdir / f"{spec.name}-image.onnx"
    text_path = workdir / f"{spec.name}-text.onnx"

    class TextTower(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, tokens):
            return self.model.encode_text(tokens)

    # the fused attention kernel of eval mode has no ONNX export; the exported graph is the same
    torch.backends.mha.set_fastpath_enabled(False)
    if not image_path.exists():
        export_image_tower(reference, image_path, size)
    if not text_path.exists():
        torch.onnx.export(
            TextTower(reference),
            torch.zeros(1, int(spec.architecture.text["context_length"]), dtype=torch.int64),
            str(text_path),
            input_names=["tokens"],
            output_names=["embedding"],
            dynamic_axes={"tokens": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    torch.backends.mha.set_fastpath_enabled(True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    return (
        ort.InferenceSession(str(image_path), options, providers=providers),
        ort.InferenceSession(str(text_path), options, providers=providers),
    )


def bench_model(name: str, threads: int, seconds: float, workdir: Path) -> list[dict]:
    import torch

    from core.encoder import load_model
    from core.registry import get_spec

    torch.set_num_threads(threads)
    ours_int8 = None
    accuracy: dict = {}
    if get_spec(name).architecture.family != "fastvit":
        spec, reference = install(name, workdir, "int8")
        ours_int8 = load_model(name, threads=threads)
    spec, reference = install(name, workdir)
    ours = load_model(name, threads=threads)
    if ours_int8 is not None:
        accuracy = int8_accuracy(reference, spec, ours_int8)
    if spec.architecture.family == "fastvit":
        from timm.utils.model import reparameterize_model

        reference = reparameterize_model(reference)
    image_session, text_session = onnx_sessions(reference, spec, workdir, threads)

    size = spec.preprocess.size
    rng = np.random.default_rng(0)
    rows = []
    for batch in (1, 8):
        pixels = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        tensor = torch.from_numpy(pixels)
        tokens = reference_tokens(spec, workdir / f"{name}-repo", (TEXTS * 2)[:batch])
        ids64 = tokens.numpy().astype(np.int64)
        texts = (TEXTS * 2)[:batch]
        cases = {
            ("image", "ours"): lambda p=pixels: ours.encode_pixels(p),
            ("image", "open_clip"): lambda t=tensor: reference.encode_image(t),
            ("image", "onnxruntime"): lambda p=pixels: image_session.run(None, {"image": p}),
            ("text", "ours"): lambda t=texts: ours.encode_texts(t),
            ("text", "open_clip"): lambda t=tokens: reference.encode_text(t),
            ("text", "onnxruntime"): lambda i=ids64: text_session.run(None, {"tokens": i}),
        }
        if ours_int8 is not None:
            cases[("image", "ours_int8")] = lambda p=pixels: ours_int8.encode_pixels(p)
        timings = timeit_interleaved(cases, seconds * len(cases))
        for tower in ("image", "text"):
            ms = {
                engine: 1000 * timings[(tower, engine)] / batch
                for engine in ("ours", "ours_int8", "open_clip", "onnxruntime")
                if (tower, engine) in timings
            }
            rows.append({"model": name, "tower": tower, "batch": batch, **ms, **accuracy})
            print(
                f"{name:24} {tower:5} batch {batch}: ours {ms['ours']:7.1f} ms  "
                f"int8 {ms.get('ours_int8', float('nan')):7.1f} ms  "
                f"open_clip {ms['open_clip']:7.1f} ms  onnxruntime {ms['onnxruntime']:7.1f} ms  "
                f"(open_clip/ours {ms['open_clip'] / ms['ours']:.2f}x, "
                f"onnxruntime/ours {ms['onnxruntime'] / ms['ours']:.2f}x)",
                flush=True,
            )
    ours.close()
    if ours_int8 is not None:
        ours_int8.close()
    return rows


def int8_accuracy(reference, spec, ours_int8) -> dict:
    """Cosine between int8 image embeddings and open_clip's on real photos (no draft decoding)."""
    import torch

    from core.preprocess import load_image, preprocess
    from tests.samples import SAMPLES

    photos = sorted((SAMPLES / "jpg").glob("*/*.jpg"))  # kept in the repository
    pixels = []
    for path in photos[:24]:
        try:
            pixels.append(preprocess(load_image(path), spec.preprocess))
        except Exception:  # noqa: BLE001 - a broken sample photo is simply left out
            continue
    batch = np.stack(pixels)
    expected = reference.encode_image(torch.from_numpy(batch)).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    cosine = np.sum(ours_int8.encode_pixels(batch) * expected, axis=1)
    print(
        f"{spec.name}: int8 image embeddings vs open_clip on {len(batch)} photos: "
        f"cosine min {cosine.min():.5f}, mean {cosine.mean():.5f}"
    )
    return {"int8_cos_min": float(cosine.min()), "int8_cos_mean": float(cosine.mean())}


def write_results(
    rows: list[dict], threads: int, command: str, section: str = "## Encoders"
) -> None:
    flags = ", ".join(cpu_flags()) or "no AVX-512, AMX or AVX-VNNI"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"CPU: {cpu_model()} ({flags}; load average {load} at the end), {threads} threads; "
        f"{dt.date.today().isoformat()}; "
        f"`{command}`. Milliseconds per image or text (median), same random weights for all "
        "engines. A ratio above 1 means ours is faster. `ours int8` is the optional "
        "`--precision int8` install (image tower only); its accuracy is the cosine between its "
        "image embeddings and open_clip's on real photos.",
        "",
        "| model | tower | batch | ours | ours int8 | open_clip (PyTorch) | ONNX Runtime "
        "| open_clip / ours | ONNX Runtime / ours | ONNX Runtime / ours int8 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        int8 = r.get("ours_int8")
        int8_ms = f"{int8:.1f}" if int8 else "-"
        int8_ratio = f"{r['onnxruntime'] / int8:.2f}x" if int8 else "-"
        lines.append(
            f"| {r['model']} | {r['tower']} | {r['batch']} | {r['ours']:.1f} | {int8_ms} | "
            f"{r['open_clip']:.1f} | {r['onnxruntime']:.1f} | "
            f"{r['open_clip'] / r['ours']:.2f}x | {r['onnxruntime'] / r['ours']:.2f}x | "
            f"{int8_ratio} |"
        )
    lines.append("")
    for model in dict.fromkeys(r["model"] for r in rows):
        r = next(x for x in rows if x["model"] == model)
        if "int8_cos_min" not in r:
            continue
        lines.append(
            f"- {model} int8 image embeddings vs open_clip: cosine min {r['int8_cos_min']:.5f}, "
            f"mean {r['int8_cos_mean']:.5f}"
        )
    write_section(section, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["RN50-openai", "ViT-B-32-256-datacomp"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="timing budget per case")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse checkpoints here")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--section", default="## Encoders", help="RESULTS.md section to write")
    args = parser.parse_args()
    workdir = scratch_folder("clipsearch-bench-", args.workdir)
    rows = []
    for name in args.models:
        rows += bench_model(name, args.threads, args.seconds, workdir)
    if not args.no_write:
        command = "python " + shlex.join(["bench/encoders.py", *sys.argv[1:]])
        write_results(rows, args.threads, command, args.section)


if __name__ == "__main__":
    main()
