"""What each precision costs in accuracy, and what it gains in speed on this CPU.

For each model, random weights (made discriminative as ``tests/reference.py`` does: attention
sharpened in a ViT, BatchNorm statistics measured on real photos in a ResNet) are saved as a
checkpoint and installed with our own ``model install --from`` twice, in float32 and with the
int8 image tower. Our encoders then run in every precision (``load_model(name, precision=...)``)
on the same preprocessed real photos (the JPEGs of ``gallery/`` and ``tests/photos/``, and of
``../shared/photos/exif-samples`` beside the repository when present; each picture once), and
are compared with our float32 and with open_clip's float32 forward pass on the same weights and
pixels:

- image and text cosine, lowest and mean;
- text queries: share of queries whose top-10 photos are the same *set* as the reference's;
- image queries: every photo as a query against the others, the same top-10 set.

Each tower is judged on its own (the other tower's embeddings taken from float32), so that the
verdict can keep one tower in float32. A tower passes in bf16 when its cosine to open_clip is at
least 0.9995 for every photo (or text) and its queries keep the same top-10 set for at least
95 % of queries, against open_clip and against our float32. The passing towers are written to
``models/measured.json``, which ``precision="auto"`` reads (it still uses bf16 only on CPUs with
native bf16 dot products).

Speed: milliseconds per image at batch 8 on ``--threads`` threads, ours in each precision
against ONNX Runtime float32 on the same weights (the engine rclip uses). On a CPU without
native bf16 (no ``avx512_bf16``/``amx_bf16``, no Arm ``bf16``), ncnn emulates bf16 and its
speed says nothing about a CPU that has it; the printed flags say which case was measured.

    python bench/precision.py                                  # ViT-B-32-256 and RN50
    python bench/precision.py --models ViT-B-32-256-datacomp --no-write
    python bench/precision.py --models ViT-B-32-256-datacomp \
        --checkpoint ViT-B-32-256-datacomp=open_clip_model.safetensors   # real weights

Results go to the "## Precision" section of bench/RESULTS.md. Needs the test extra (torch,
open_clip_torch, onnx, onnxruntime).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    cpu_model,
    reference_tokens,
    scratch_folder,
    write_section,
)
from tests.samples import SAMPLES, SHARED_SAMPLES  # noqa: E402

COSINE_TARGET = 0.9995
TOP10_TARGET = 0.95
TOP = 10
REPEAT_PIXEL_DIFFERENCE = 0.08  # mean absolute difference of the pixels, on a 0 to 1 scale
MEASURED = ROOT / "models" / "measured.json"
SIGLIP_CHECKPOINT = "open_clip_model.safetensors"  # its name in a SigLIP 2 hub repository

SUBJECTS = [
    "a cat", "a dog", "a red car", "a bicycle", "a child", "an old man", "a bowl of soup",
    "a mountain", "a lighthouse", "a boat", "a train", "a bird", "flowers", "a birthday cake",
    "a wedding", "a city street", "a forest", "a beach", "snow", "a bridge",
]  # fmt: skip
SETTINGS = ["at night", "in the rain", "at sunset", "from above", "in black and white", ""]


def queries() -> list[str]:
    """120 distinct text queries, the same on every run."""
    return [f"{subject} {setting}".strip() for subject in SUBJECTS for setting in SETTINGS]


def photo_paths(extra: list[Path]) -> list[Path]:
    """JPEGs of the repository (``gallery/``, ``tests/photos/``), and of the folders ``extra``
    that exist."""
    folders = [ROOT / "gallery", SAMPLES, *extra]
    return [
        path
        for folder in folders
        if folder.is_dir()
        for path in sorted(folder.rglob("*"))
        if path.suffix.lower() in (".jpg", ".jpeg")
    ]


def load_pixels(paths: list[Path], spec) -> tuple[list[Path], np.ndarray]:
    """Preprocessed pixels ``[N, 3, S, S]`` of the photos that decode, each picture once.

    Photos that do not decode are left out, and so are repeats: the same picture in another file
    (the samples hold eight EXIF orientations of one photo, which look the same once turned the
    right way up). Repeats would tie in every ranking and make top-10 sets differ by chance.
    """
    from core.errors import ClipsearchError
    from core.preprocess import load_image, preprocess

    kept: list[Path] = []
    pixels: list[np.ndarray] = []
    scale = np.asarray(spec.preprocess.std, np.float32)[:, None, None]  # back to 0 to 1
    for path in paths:
        try:
            candidate = preprocess(load_image(path), spec.preprocess)
        except (ClipsearchError, OSError, ValueError):
            continue
        if any(
            (np.abs(candidate - other) * scale).mean() < REPEAT_PIXEL_DIFFERENCE for other in pixels
        ):
            continue
        kept.append(path)
        pixels.append(candidate)
    return kept, np.stack(pixels)


def top_sets(scores: np.ndarray, exclude_self: bool = False) -> list[frozenset[int]]:
    """The set of the ``TOP`` best columns of each row of ``scores``."""
    scores = np.array(scores, dtype=np.float64)
    if exclude_self:
        np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :TOP]
    return [frozenset(row.tolist()) for row in order]


def cut_margins(scores: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """Per row: the ``TOP``-th best score less the next one (how near the cut is to a tie)."""
    scores = np.array(scores, dtype=np.float64)
    if exclude_self:
        np.fill_diagonal(scores, -np.inf)
    ranked = -np.sort(-scores, axis=1)
    return ranked[:, TOP - 1] - ranked[:, TOP]


def ties(
    scores: np.ndarray,
    reference: np.ndarray,
    ours: list[frozenset[int]],
    theirs: list[frozenset[int]],
) -> dict[str, float]:
    """How near the reference's top-10 cuts are to ties, against how far the scores moved.

    A top-10 set can only change where some score moved by at least half the margin at the
    cut, so margins of the size of the score changes mean the sets change by near-ties.
    """
    margins = cut_margins(reference)
    moved = np.abs(np.asarray(scores, np.float64) - np.asarray(reference, np.float64)).max(axis=1)
    changed = np.array([a != b for a, b in zip(ours, theirs)])
    return {
        "margin_median": float(np.median(margins)),
        "margin_median_changed": float(np.median(margins[changed])) if changed.any() else 0.0,
        "score_moved_median": float(np.median(moved)),
        "margin_below_2x_moved": float(np.mean(margins < 2 * moved)),
    }


def agreement(ours: list[frozenset[int]], reference: list[frozenset[int]]) -> float:
    """Share of queries whose top-10 set is the reference's."""
    return sum(a == b for a, b in zip(ours, reference)) / len(reference)


def overlap(ours: list[frozenset[int]], reference: list[frozenset[int]]) -> float:
    """Mean share of the reference's top 10 that is in ours."""
    return sum(len(a & b) for a, b in zip(ours, reference)) / (TOP * len(reference))


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to length 1, in float64."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(unit(a) * unit(b), axis=1)


def load_weights(reference, checkpoint: Path) -> None:
    """Put the weights of ``checkpoint`` (the hub's ``.safetensors`` or a torch file) into the
    open_clip model ``reference``; every key must match."""
    import torch

    if checkpoint.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(checkpoint))
    else:
        state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    reference.load_state_dict(state, strict=True)
    reference.eval()


def build_reference(
    name: str,
    workdir: Path,
    pixels: np.ndarray,
    attention: float,
    int8: bool = True,
    weights: Path | None = None,
):
    """Random discriminative weights for ``name`` (or the real ones in the checkpoint file
    ``weights``; for SigLIP 2, the folder of its hub repository), installed in float32 and, with
    ``int8`` and where the model can be, with the int8 image tower; returns the spec, the
    reference, the precisions to measure and what was installed from (a SigLIP model's folder
    holds the tokenizer files)."""
    import torch

    from cli.main import main as cli_main
    from core.registry import get_spec
    from tests.reference import build_test_tokenizer, save_checkpoint

    spec = get_spec(name)
    if spec.is_siglip:
        from tests.reference import make_siglip_reference, sharpen_siglip_attention

        arch = spec.architecture
        reference = make_siglip_reference(arch, 0, arch.vision["timm_model_name"])
        if weights is None:
            sharpen_siglip_attention(reference, attention, attention)
    elif spec.architecture.family == "fastvit":
        from tests import reference_mobileclip as mobileclip

        reference = mobileclip.make_reference(spec.architecture, 0, spec.openclip_name)
        if weights is None:
            mobileclip.make_discriminative(
                reference, torch.from_numpy(pixels[:16]), 1, text_attention_factor=attention
            )
    else:
        from tests.reference import make_discriminative, make_reference

        reference = make_reference(spec.architecture, seed=0)
        if weights is None:
            make_discriminative(reference, torch.from_numpy(pixels[:16]), attention)
    if weights is not None:
        load_weights(reference, weights / SIGLIP_CHECKPOINT if spec.is_siglip else weights)
        checkpoint = weights
    elif spec.is_siglip:  # laid out as its hub repository: the checkpoint beside the tokenizer
        checkpoint = workdir / f"{name}-repo"
        build_test_tokenizer(checkpoint)
        save_checkpoint(reference, checkpoint / SIGLIP_CHECKPOINT)
    else:
        checkpoint = save_checkpoint(reference, workdir / f"{name}.safetensors")
    precisions = ["fp32", "bf16"]
    for install in ("fp32", "int8") if int8 else ("fp32",):
        os.environ["CLIPSEARCH_HOME"] = str(workdir / f"home-{install}")
        argv = ["model", "install", name, "--from", str(checkpoint), "--precision", install]
        if cli_main(argv) == 0:
            precisions += ["int8"] if install == "int8" else []
        elif install == "fp32":
            raise SystemExit(f"install of {name} failed")
        else:
            print(f"{name}: no int8 install, int8 left out", flush=True)
    return spec, reference, precisions, checkpoint


def reference_embeddings(reference, pixels: np.ndarray, tokens):
    import torch

    with torch.no_grad():
        images = np.concatenate(
            [
                reference.encode_image(torch.from_numpy(pixels[i : i + 16])).numpy()
                for i in range(0, len(pixels), 16)
            ]
        )
        words = reference.encode_text(tokens).numpy()
    # unit length, as ours: rankings compare directions
    return unit(images), unit(words)


def ours(name: str, workdir: Path, precision: str, threads: int):
    from core.encoder import load_model

    install = "int8" if precision == "int8" else "fp32"
    os.environ["CLIPSEARCH_HOME"] = str(workdir / f"home-{install}")
    return load_model(name, threads=threads, draft=False, precision=precision)


def judge(
    images: dict[str, np.ndarray], texts: dict[str, np.ndarray], against: str
) -> dict[str, dict[str, float]]:
    """Per precision and tower: cosine and top-10 agreement against ``against``'s embeddings.

    The tower under test takes its embeddings from the precision; the other tower stays at
    ``fp32`` (ours), so each tower is judged alone.
    """
    ref_img, ref_txt = images[against], texts[against]
    text_ref = top_sets(ref_txt @ ref_img.T)
    image_ref = top_sets(ref_img @ ref_img.T, exclude_self=True)
    rows: dict[str, dict[str, float]] = {}
    for precision in images:
        if precision == against:
            continue
        img = images[precision]
        cos = cosines(img, ref_img)
        by_text = top_sets(texts["fp32"] @ img.T)
        by_image = top_sets(img @ img.T, exclude_self=True)
        print(
            f"{precision} image against {against}, text queries: "
            + json.dumps(ties(texts["fp32"] @ img.T, ref_txt @ ref_img.T, by_text, text_ref)),
            flush=True,
        )
        rows[f"{precision} image"] = {
            "cos_min": float(cos.min()),
            "cos_mean": float(cos.mean()),
            "text_top10": agreement(by_text, text_ref),
            "image_top10": agreement(by_image, image_ref),
            "overlap": overlap(by_text + by_image, text_ref + image_ref),
        }
        if precision in texts:
            txt = texts[precision]
            cos = cosines(txt, ref_txt)
            by_text = top_sets(txt @ images["fp32"].T)
            rows[f"{precision} text"] = {
                "cos_min": float(cos.min()),
                "cos_mean": float(cos.mean()),
                "text_top10": agreement(by_text, text_ref),
                "overlap": overlap(by_text, text_ref),
            }
    return rows


def passes(row: dict[str, float]) -> bool:
    return row["cos_min"] >= COSINE_TARGET and all(
        row[key] >= TOP10_TARGET for key in ("text_top10", "image_top10") if key in row
    )


def speed(
    name: str, workdir: Path, reference, spec, pixels: np.ndarray, threads: int, seconds, precisions
):
    """Milliseconds per image at batch 8: ours per precision, ONNX Runtime float32."""
    from bench.encoders import onnx_sessions, timeit

    batch = np.ascontiguousarray(pixels[:8])
    image_session, _ = onnx_sessions(reference, spec, workdir, threads)
    ms = {
        "onnxruntime fp32": 1000
        * timeit(lambda: image_session.run(None, {"image": batch}), seconds)
        / 8
    }
    for precision in precisions:
        with ours(name, workdir, precision, threads) as model:
            ms[f"ours {precision}"] = (
                1000 * timeit(lambda m=model: m.encode_pixels(batch), seconds) / 8
            )
    return ms


def bench_model(
    name: str,
    workdir: Path,
    threads: int,
    seconds: float,
    attention: float,
    photos: list[Path],
    weights: Path | None = None,
) -> dict:
    import torch

    from core.registry import get_spec

    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    spec = get_spec(name)
    paths, pixels = load_pixels(photo_paths(photos), spec)
    texts_in = queries()
    spec, reference, precisions, source = build_reference(
        name, workdir, pixels, attention, weights=weights
    )
    tokens = reference_tokens(spec, source, texts_in)
    ref_img, ref_txt = reference_embeddings(reference, pixels, tokens)
    images, texts = {"open_clip": ref_img}, {"open_clip": ref_txt}
    for precision in precisions:
        with ours(name, workdir, precision, threads) as model:
            images[precision] = model.encode_pixels(pixels)
            if precision != "int8":  # an int8 install's text tower is float32
                texts[precision] = model.encode_texts(texts_in)
        print(f"{name}: encoded in {precision}", flush=True)
    # the weights must tell photos apart, or the agreement numbers mean nothing
    off = (ref_img @ ref_img.T)[~np.eye(len(ref_img), dtype=bool)]
    result = {
        "model": name,
        "photos": len(paths),
        "queries": len(texts_in),
        "photo_similarity_max": float(off.max()),
        "photo_similarity_mean": float(off.mean()),
        "vs_open_clip": judge(images, texts, "open_clip"),
        "vs_fp32": judge(
            {k: v for k, v in images.items() if k != "open_clip"},
            {k: v for k, v in texts.items() if k != "open_clip"},
            "fp32",
        ),
        "speed_ms": speed(name, workdir, reference, spec, pixels, threads, seconds, precisions),
    }
    bf16_ok = [
        tower
        for tower in ("image", "text")
        if passes(result["vs_open_clip"][f"bf16 {tower}"])
        and passes(result["vs_fp32"][f"bf16 {tower}"])
    ]
    result["bf16_towers"] = bf16_ok
    print(json.dumps(result, indent=1), flush=True)
    return result


def cpu_line() -> str:
    from core.precision import _cpuinfo_text, cpu_flags, native_bf16

    flags = sorted(
        f
        for f in cpu_flags(_cpuinfo_text())
        if f.startswith(("avx", "amx", "fma", "f16c")) or "bf16" in f or f in ("asimd", "sve")
    )
    native = "native bf16 dot products" if native_bf16() else "no native bf16: bf16 is emulated"
    return f"{cpu_model()} (flags: {', '.join(flags) or 'none of note'}; {native})"


def write(
    results: list[dict],
    threads: int,
    attention: float,
    load: str,
    command: str,
    section: str = "## Precision",
) -> None:
    from core.precision import native_bf16

    lines = [
        f"CPU: {cpu_line()}; {threads} threads; load average {load} at the start; "
        f"{dt.date.today().isoformat()}; `{command}`.",
        "",
        f"Random weights made discriminative (ViT attention sharpened x{attention:g}, ResNet "
        "BatchNorm statistics from the photos; MobileCLIP2 as its parity test does: BatchNorm "
        "scales, shifts and layer scales set apart, statistics from the photos, text attention "
        "sharpened; SigLIP 2 as its parity test does: attention of both towers sharpened "
        f"x{attention:g}, a small tokenizer trained for the test), installed with "
        "`model install --from` in "
        "float32 and with `--precision int8`; the same preprocessed real JPEGs (`gallery/`, "
        "`tests/photos/`, the shared samples; each picture once) and 120 text queries for "
        "every engine. Each tower is judged alone: its embeddings from the precision named, "
        "the other tower's from our float32. *Text top-10*: share of text queries whose 10 "
        "best photos are the same set as the reference's; *image top-10*: the same for every "
        "photo as a query against the others; *top-10 overlap*: the mean share of the "
        "reference's 10 best found in ours, over both kinds of query. Target for `auto`: cosine >= "
        f"{COSINE_TARGET} for every item and top-10 >= {TOP10_TARGET:.0%}, against open_clip "
        "and against our float32.",
        "",
    ]
    for r in results:
        lines += [
            f"### {r['model']}",
            "",
            *(
                [f"Real weights: `{r['weights']}` (not the random ones above).", ""]
                if r.get("weights")
                else []
            ),
            f"{r['photos']} photos, {r['queries']} text queries; photo-to-photo cosine under "
            f"open_clip: mean {r['photo_similarity_mean']:.3f}, max "
            f"{r['photo_similarity_max']:.3f} (the weights tell photos apart).",
            "",
            "| precision, tower | against | cosine min | cosine mean | text top-10 "
            "| image top-10 | top-10 overlap | meets the target |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for against in ("vs_open_clip", "vs_fp32"):
            label = "open_clip" if against == "vs_open_clip" else "ours fp32"
            for key, row in r[against].items():
                image = f"{row['image_top10']:.1%}" if "image_top10" in row else "-"
                lines.append(
                    f"| {key} | {label} | {row['cos_min']:.6f} | {row['cos_mean']:.6f} | "
                    f"{row['text_top10']:.1%} | {image} | {row['overlap']:.1%} | "
                    f"{'yes' if passes(row) else 'no'} |"
                )
        ms = r["speed_ms"]
        base = ms["onnxruntime fp32"]
        lines += [
            "",
            f"Image tower, batch 8, {threads} threads, ms per image (ONNX Runtime float32 time / "
            "ours in brackets): "
            + ", ".join(f"{k} {v:.1f} ({base / v:.2f}x)" for k, v in ms.items())
            + ".",
            "",
            f"`auto` uses bf16 for: {', '.join(r['bf16_towers']) or 'no tower'} "
            "(on CPUs with native bf16 only).",
            "",
        ]
    if float(load.split(",")[0]) > (os.cpu_count() or 1):
        lines += [
            f"The machine was busy (load average {load} on {os.cpu_count()} cores): the times "
            "above are what this run got, and from run to run they move by tens of percent, "
            "enough to reorder the rows. They do not measure what bf16 or int8 gain.",
            "",
        ]
    if not native_bf16():
        lines += [
            "This CPU has no native bf16 dot products, so ncnn emulates bf16 storage here: the "
            "accuracy above is what bf16 storage gives (bf16 weights and activations, float32 "
            "accumulation, as with native instructions), but its speed cannot be timed natively "
            "here and the bf16 times above are not what a CPU with AVX-512 BF16 or AMX gives.",
        ]
    write_section(section, lines)


def write_measured(results: list[dict]) -> None:
    data = json.loads(MEASURED.read_text(encoding="utf-8"))
    for r in results:
        data["bf16"]["models"][r["model"]] = r["bf16_towers"]
    MEASURED.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    from core.registry import UnknownModelError, get_spec

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["ViT-B-32-256-datacomp", "RN50-openai"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="timing budget per case")
    parser.add_argument(
        "--attention",
        type=float,
        default=4.0,
        help="factor on the query and key weights of a ViT image tower and of a MobileCLIP2 text "
        "tower (4, as the full-size parity tests use)",
    )
    parser.add_argument(
        "--photos",
        type=Path,
        nargs="*",
        default=[SHARED_SAMPLES],
        help="more folders of JPEGs (default: the shared samples beside the repository)",
    )
    parser.add_argument(
        "--checkpoint",
        nargs="*",
        default=[],
        metavar="MODEL=FILE",
        help="measure MODEL with the real weights of FILE (the hub's open_clip checkpoint; for "
        "SigLIP 2 the folder of its hub repository, with the tokenizer files) instead of random "
        "ones",
    )
    parser.add_argument("--section", default="## Precision", help="RESULTS.md section to write")
    parser.add_argument("--no-write", action="store_true", help="change no file")
    args = parser.parse_args()
    workdir = scratch_folder("clipsearch-precision-")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(cpu_line(), f"load average {load}", flush=True)
    weights = {}
    for pair in args.checkpoint:
        model, sep, file = pair.partition("=")
        try:
            siglip = bool(sep) and get_spec(model).is_siglip
        except UnknownModelError as error:
            parser.error(f"--checkpoint {pair!r}: {error}")
        if not sep or not (Path(file) / SIGLIP_CHECKPOINT if siglip else Path(file)).is_file():
            wanted = f"a folder holding {SIGLIP_CHECKPOINT}" if siglip else "an existing file"
            parser.error(f"--checkpoint wants MODEL=FILE with {wanted}, not {pair!r}")
        weights[model] = Path(file)
    results = [
        bench_model(
            name,
            workdir,
            args.threads,
            args.seconds,
            args.attention,
            args.photos,
            weights.get(name),
        )
        for name in args.models
    ]
    for r in results:
        r["weights"] = weights[r["model"]].name if r["model"] in weights else None
    if not args.no_write:
        write(
            results,
            args.threads,
            args.attention,
            load,
            "python " + shlex.join(["bench/precision.py", *sys.argv[1:]]),
            args.section,
        )
        write_measured(results)


if __name__ == "__main__":
    main()
