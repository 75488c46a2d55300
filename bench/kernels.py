"""Why the float32 image tower is as fast as it is: one transformer matrix product, three ways.

ViT-B-32-256 spends most of its time in products of 65 tokens x 768 channels with 768 x 3072
weights (the MLP) and 768 x 768 ones (attention). This times that product alone, single-threaded
and on 2 threads, in:

- ncnn's Gemm layer with float32 weights (what the image tower uses by default),
- ncnn's Gemm with bf16 storage (``opt.use_bf16_storage``),
- ncnn's Gemm with int8 weights and inputs (``model install --precision int8``),
- ONNX Runtime's MatMul + Add (MLAS), the engine of the comparison in "## Encoders".

It also prints which vector extensions the CPU has, since bf16 arithmetic needs AVX-512 BF16 and
int8 speed comes from AVX-512 VNNI. Then, single-threaded and in float32: the same product with
65 to 520 rows in ncnn, PyTorch and ONNX Runtime (does a bigger batch help?), and ncnn's Gemm
with other tile sizes (its params 20-22). Results go to the "## Kernels" section of
bench/RESULTS.md.

    python bench/kernels.py [--rows 65] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    best_of,
    cpu_flags,
    cpu_model,
    scratch_folder,
    write_section,
)
from core.ncnn_graph import INT8_TAG, Graph  # noqa: E402

IN_FEATURES = 768
OUT_FEATURES = 3072


def ncnn_gemm(
    folder: Path, weight: np.ndarray, bias: np.ndarray, mode: str, tiles: tuple[int, ...] = ()
) -> Path:
    """Write a one-layer ncnn network ``x @ weight.T + bias``; ``mode`` is fp32 or int8.

    ``tiles``: the Gemm's tile sizes M, N, K (its params 20-22); empty lets ncnn choose.
    """
    graph = Graph()
    x = graph.input("x")
    params = {2: 0, 3: 1, 4: 0, 5: 1, 6: 1, 7: 0, 8: OUT_FEATURES, 9: IN_FEATURES, 10: 4}
    params.update(zip((20, 21, 22), tiles, strict=False))
    if mode == "int8":
        params[18] = 8
    graph.layer(
        "Gemm", "out", [x], params, [] if mode == "int8" else [(weight, True), (bias, True)]
    )
    stem = "-".join([mode, *map(str, tiles)])
    param, binary = folder / f"{stem}.param", folder / f"{stem}.bin"
    graph.write(param, binary)
    if mode == "int8":
        scale = np.float32(127.0 / np.abs(weight).max())
        quantized = np.clip(np.round(weight * scale), -127, 127).astype(np.int8).tobytes()
        with open(binary, "wb") as fh:
            fh.write(struct.pack("<I", INT8_TAG) + quantized + b"\0" * (-len(quantized) % 4))
            fh.write(b"\0\0\0\0" + bias.astype("<f4").tobytes())
            fh.write(np.float32(scale).tobytes())
    return param


def time_ncnn(param: Path, x: np.ndarray, threads: int, bf16: bool) -> tuple[float, np.ndarray]:
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = threads
    net.opt.use_bf16_storage = bf16
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_packed = False
    net.opt.use_fp16_arithmetic = False
    assert net.load_param(str(param)) == 0
    assert net.load_model(str(param.with_suffix(".bin"))) == 0

    def run() -> np.ndarray:
        ex = net.create_extractor()
        ex.input("x", ncnn.Mat(x).clone())
        return np.array(ex.extract("out")[1])

    return best_of(run, 30, warm_up=True), run()


def time_onnxruntime(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, threads: int) -> float:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["y0"]),
            helper.make_node("Add", ["y0", "b"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [x.shape[0], OUT_FEATURES])],
        [
            numpy_helper.from_array(np.ascontiguousarray(weight.T), "w"),
            numpy_helper.from_array(bias, "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return best_of(lambda: session.run(None, {"x": x}), 30, warm_up=True)


def time_torch(weight: np.ndarray, bias: np.ndarray, x: np.ndarray) -> float:
    """``torch.nn.functional.linear`` single-threaded, as open_clip's ``nn.Linear`` runs it."""
    import torch

    torch.set_num_threads(1)
    w, b, t = torch.from_numpy(weight), torch.from_numpy(bias), torch.from_numpy(x)
    with torch.no_grad():
        return best_of(lambda: torch.nn.functional.linear(t, w, b), 30, warm_up=True)


def vit_gflop(name: str = "ViT-B-32-256-datacomp") -> float:
    """Floating-point operations (multiply and add counted apart) of one image through the
    image tower's matrix products: patch embedding, and per block the q/k/v and output
    projections, the two attention products and the MLP."""
    from core.registry import get_spec

    vision = get_spec(name).architecture.vision
    width, layers = vision["width"], vision["layers"]
    patches = (vision["image_size"] // vision["patch_size"]) ** 2
    tokens = patches + 1
    macs = patches * 3 * vision["patch_size"] ** 2 * width
    per_block = tokens * width * (4 * width + 8 * width) + 2 * tokens * tokens * width
    macs += layers * per_block
    return 2 * macs / 1e9


def scaling_lines(
    weight: np.ndarray, bias: np.ndarray, rng: np.random.Generator, folder: Path, fp32: Path
) -> list[str]:
    """Single-thread float32 speed of the MLP product as the number of rows grows, and ncnn's
    Gemm with other tile sizes (written into ``folder``); ``fp32`` is the float32 network of
    :func:`ncnn_gemm` with ncnn's own tiles."""
    lines = [
        "",
        "Single thread, float32, the same product with more rows (65 rows is one image, 520 is "
        "eight), GFLOP/s:",
        "",
        "| rows | ncnn Gemm | PyTorch `linear` | ONNX Runtime MatMul |",
        "| --- | --- | --- | --- |",
    ]
    ncnn_65, best = 0.0, 0.0
    for rows in (65, 130, 260, 520):
        x = rng.standard_normal((rows, IN_FEATURES)).astype(np.float32)
        flops = 2 * rows * IN_FEATURES * OUT_FEATURES
        speeds = [
            flops / time_ncnn(fp32, x, 1, bf16=False)[0],
            flops / time_torch(weight, bias, x),
            flops / time_onnxruntime(weight, bias, x, 1),
        ]
        ncnn_65 = ncnn_65 or speeds[0]
        best = max(best, *speeds)
        lines.append(f"| {rows} | " + " | ".join(f"{v / 1e9:.0f}" for v in speeds) + " |")
    x = rng.standard_normal((65, IN_FEATURES)).astype(np.float32)
    flops = 2 * 65 * IN_FEATURES * OUT_FEATURES
    lines += [
        "",
        "ncnn Gemm tile sizes (params 20, 21, 22), 65 rows, single thread, GFLOP/s:",
        "",
        "| tiles M, N, K | GFLOP/s |",
        "| --- | --- |",
    ]
    for tiles in ((), (48, 384, 128), (80, 192, 128), (32, 768, 256), (64, 96, 768)):
        seconds = time_ncnn(ncnn_gemm(folder, weight, bias, "fp32", tiles), x, 1, bf16=False)[0]
        label = ", ".join(map(str, tiles)) if tiles else "default (ncnn chooses)"
        lines.append(f"| {label} | {flops / seconds / 1e9:.0f} |")
    gflop = vit_gflop()
    lines += [
        "",
        f"The ViT-B-32-256 image tower does {gflop:.1f} GFLOP of matrix products per image. "
        "With both cores busy at a single-thread speed from the table, an image takes "
        f"{gflop / (2 * ncnn_65) * 1e12:.0f} ms at ncnn's speed on 65 rows and "
        f"{gflop / (2 * best) * 1e12:.0f} ms at the best speed measured here.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=65, help="tokens (65 for ViT-B-32 at 256 px)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((OUT_FEATURES, IN_FEATURES)) * 0.02).astype(np.float32)
    bias = rng.standard_normal(OUT_FEATURES).astype(np.float32)
    x = rng.standard_normal((args.rows, IN_FEATURES)).astype(np.float32)
    expected = x @ weight.T + bias
    folder = scratch_folder("clipsearch-kernels-")
    fp32 = ncnn_gemm(folder, weight, bias, "fp32")
    int8 = ncnn_gemm(folder, weight, bias, "int8")

    rows = []
    for threads in (1, 2):
        cases = {
            "ncnn Gemm float32": time_ncnn(fp32, x, threads, bf16=False),
            "ncnn Gemm bf16 storage": time_ncnn(fp32, x, threads, bf16=True),
            "ncnn Gemm int8": time_ncnn(int8, x, threads, bf16=False),
        }
        ort_s = time_onnxruntime(weight, bias, x, threads)
        for name, (seconds, out) in cases.items():
            error = float(np.abs(out - expected).max() / np.abs(expected).max())
            rows.append((threads, name, seconds * 1000, ort_s / seconds, error))
        rows.append((threads, "ONNX Runtime MatMul float32", ort_s * 1000, 1.0, 0.0))
    flops = 2 * args.rows * IN_FEATURES * OUT_FEATURES

    lines = [
        f"CPU: {cpu_model()} (flags: {', '.join(cpu_flags()) or 'none of note'}); "
        f"{dt.date.today().isoformat()}; `python bench/kernels.py --rows {args.rows}`. "
        f"One {args.rows} x {IN_FEATURES} by {IN_FEATURES} x {OUT_FEATURES} matrix product "
        "with bias (the ViT-B-32-256 MLP), best of 30.",
        "",
        "| threads | kernel | ms | GFLOP/s | ONNX Runtime time / this | largest error (relative) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for threads, name, ms, ratio, error in rows:
        gflops = flops / ms / 1e6
        row = [str(threads), name, f"{ms:.2f}", f"{gflops:.0f}", f"{ratio:.2f}x", f"{error:.1e}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += scaling_lines(weight, bias, rng, folder, fp32)
    print("\n".join(lines))
    if not args.no_write:
        write_section("## Kernels", lines)


if __name__ == "__main__":
    main()
