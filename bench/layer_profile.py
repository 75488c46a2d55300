"""Where an image tower's time goes, layer by layer: our ncnn network against ONNX Runtime.

The model gets random weights and is installed with our own ``model install --from``; ONNX
Runtime runs open_clip's image tower exported to ONNX (for MobileCLIP2 after timm's
``reparameterize_model``, the same folded weights our converter writes). Both run on one thread,
in interleaved rounds:

- ours: one image through a non-light-mode extractor, each blob extracted in layer order, so
  that each extraction runs exactly the layers that make that blob (timed one by one);
- ONNX Runtime: a batch with its profiler on (the time of every node), divided by the batch;
- both engines' whole forward pass without per-layer timing, for the totals.

Layers and nodes are grouped by where they sit (stem, stage, head) and by kind (dense and
pointwise convolution, depthwise convolution by kernel size, GELU, attention, squeeze-excite,
element-wise, data movement), and each group gets its median time per image on both engines.

    python bench/layer_profile.py --model MobileCLIP2-S0 [--rounds 5] [--batch 8] [--no-write]

Results go to the "## Image tower layer by layer" section of bench/RESULTS.md. Needs the test
extra (torch, open_clip_torch, onnx, onnxruntime).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    ParamLayer,
    best_of,
    cpu_flags,
    cpu_model,
    export_image_tower,
    param_layers,
    scratch_folder,
    write_section,
)

SLOWEST = 15
MOVES = ("Reshape", "Permute", "Concat", "Split", "Crop", "Flatten", "Transpose", "Slice")


def place_of(name: str) -> str:
    """``stem``, ``stage N`` or ``head`` from one of our layer names or an ONNX node name."""
    name = name.removeprefix("split_")
    if m := re.search(r"stages[._/]*(\d+)|^stage(\d+)", name):
        return f"stage {m.group(1) or m.group(2)}"
    if "stem" in name:
        return "stem"
    return "head"


def conv_kind(kernel: int, depthwise: bool) -> str:
    if depthwise:
        return f"depthwise {kernel}x{kernel}"
    return "pointwise 1x1" if kernel == 1 else f"dense {kernel}x{kernel}"


def our_kind(layer: ParamLayer) -> str:
    type_, name, params = layer.type, layer.name, layer.params
    if "_se" in name:
        return "squeeze-excite"
    if re.search(r"_(attn|flatten|tokens|channels|unflatten)$", name):
        return "attention"
    if type_ == "Convolution":
        return conv_kind(int(params.get(1, 1)), False)
    if type_ == "ConvolutionDepthWise":
        return conv_kind(int(params.get(1, 1)), True)
    if type_ == "GELU":
        return "GELU"
    if type_ in MOVES:
        return "data movement"
    if type_ == "BinaryOp":
        return "element-wise"
    return type_.lower()


def ort_kind(node, attributes: dict) -> str:
    name, op = node.name, node.op_type
    if "/se/" in name or ".se/" in name:
        return "squeeze-excite"
    if op == "Conv":
        kernel = int(attributes.get("kernel_shape", [1])[0])
        return conv_kind(kernel, int(attributes.get("group", 1)) > 1)
    if "/token_mixer/" in name:
        return "attention"
    if op in ("Gelu", "Erf", "FastGelu", "BiasGelu"):
        return "GELU"
    if op in MOVES:
        return "data movement"
    if op in ("Add", "Mul", "Div", "Sub", "Sigmoid"):
        return "element-wise"
    if op == "BatchNormalization":
        return "batchnorm"
    return op.lower()


def ours_per_layer(net, layers: list[ParamLayer], pixels: np.ndarray) -> list[float]:
    """Seconds per layer: each output blob extracted in order from one extractor."""
    import ncnn

    ex = net.create_extractor()
    ex.set_light_mode(False)
    ex.input("image", ncnn.Mat(np.ascontiguousarray(pixels)).clone())
    times = []
    for layer in layers:
        start = time.perf_counter()
        for blob in layer.outputs:
            rc, _ = ex.extract(blob, 1)  # 1: as stored, no unpacking or conversion
            assert rc == 0, (layer.name, rc)
        times.append(time.perf_counter() - start)
    return times


def ours_whole(net, pixels: np.ndarray) -> float:
    import ncnn

    start = time.perf_counter()
    ex = net.create_extractor()
    ex.input("image", ncnn.Mat(np.ascontiguousarray(pixels)).clone())
    rc, _ = ex.extract("embedding")
    assert rc == 0
    return time.perf_counter() - start


def ort_session(path: Path, profiled: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profiled:
        options.optimized_model_filepath = str(path.with_suffix(".optimized.onnx"))
        options.enable_profiling = True
        options.profile_file_prefix = str(path.with_suffix(""))
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_node_times(session, path: Path) -> tuple[dict[str, list[float]], list]:
    """Seconds of every run of every node, from the session's profile; the optimised nodes."""
    import onnx

    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    durations: dict[str, list[float]] = defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            durations[event["name"].removesuffix("_kernel_time")].append(event["dur"] / 1e6)
    nodes = list(onnx.load(str(path.with_suffix(".optimized.onnx"))).graph.node)
    return durations, nodes


def with_param(param_text: str, type_: str, extra: str, kernel: int | None = None) -> str:
    """``param_text`` with ``extra`` (``k=v``) added to every layer of ``type_`` (and of kernel
    size ``kernel``, when given)."""
    lines = param_text.splitlines()
    for i, line in enumerate(lines[2:], start=2):
        fields = line.split()
        if not fields or fields[0] != type_:
            continue
        if kernel is not None and f"1={kernel}" not in fields:
            continue
        key = extra.split("=")[0] + "="
        fields = [f for f in fields if not f.startswith(key)] + [extra]
        lines[i] = " ".join(fields)
    return "\n".join(lines) + "\n"


VARIANTS = {
    "as installed": lambda text: text,
    "dense convolutions without im2col-sgemm (featmask bit 5)": lambda text: with_param(
        text, "Convolution", "31=32", kernel=3
    ),
    "1x1 convolutions without im2col-sgemm (featmask bit 5)": lambda text: with_param(
        text, "Convolution", "31=32", kernel=1
    ),
    "tanh GELU instead of erf (not exact: changes the numbers)": lambda text: with_param(
        text, "GELU", "0=1"
    ),
}
"""Ways to run the same weights: ncnn's per-layer switches our converter could write."""


def variant_times(model_dir: Path, batch: np.ndarray, session, rounds: int) -> dict[str, float]:
    """Median seconds per image of each variant, and of ONNX Runtime, interleaved."""
    import ncnn

    text = (model_dir / "visual.param").read_text(encoding="ascii")
    nets = {}
    for name, rewrite in VARIANTS.items():
        net = ncnn.Net()
        net.opt.num_threads = 1
        net.opt.use_fp16_packed = net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = False
        assert net.load_param_mem(rewrite(text)) == 0
        assert net.load_model(str(model_dir / "visual.bin")) == 0
        ours_whole(net, batch[0])
        nets[name] = net
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for name, net in nets.items():
            times[name].append(min(ours_whole(net, batch[i]) for i in range(2)))
        start = time.perf_counter()
        session.run(None, {"image": batch})
        times["ONNX Runtime"].append((time.perf_counter() - start) / len(batch))
    return {name: statistics.median(values) for name, values in times.items()}


ELEMENTWISE_SHAPE = (64, 128, 128)  # the stem's GELU in MobileCLIP2-S0, its largest


def _layer_blobs(line: str) -> list[str]:
    """The input and output blob names of one line of an ncnn ``.param`` file."""
    fields = line.split()
    inputs, outputs = int(fields[2]), int(fields[3])
    return fields[4 : 4 + inputs + outputs]


def elementwise_times(rounds: int, workdir: Path) -> dict[str, float]:
    """Seconds for one element-wise layer alone on ``ELEMENTWISE_SHAPE`` values, one thread,
    best of ``rounds``: ncnn's exact and tanh GELU, the exact GELU composed of ncnn's Erf and
    BinaryOp layers (which keep the packed layout; ncnn's exact GELU on x86 does not, and runs
    scalar ``erfcf``), a multiply by a constant (a pass over the memory and nothing more), and
    ONNX Runtime's own Gelu and Mul nodes on the same values."""
    import ncnn
    import onnx
    from onnx import TensorProto, helper

    x = np.random.default_rng(0).standard_normal(ELEMENTWISE_SHAPE).astype(np.float32)
    layers = {
        "ncnn GELU, exact (erf)": ["GELU op 1 1 x y 0=0"],
        "ncnn GELU, tanh (not exact)": ["GELU op 1 1 x y 0=1"],
        # the exact GELU built from layers that keep the packed layout: x * (1 + erf(x / √2)) / 2
        "ncnn GELU, exact, as Erf and four BinaryOps": [
            "Split s 1 2 x x0 x1",
            f"BinaryOp scale 1 1 x0 t1 0=2 1=1 2={2**-0.5!r}",
            "Erf erf 1 1 t1 t2",
            "BinaryOp plus 1 1 t2 t3 0=0 1=1 2=1.0",
            "BinaryOp times 2 1 x1 t3 t4 0=2",
            "BinaryOp half 1 1 t4 y 0=2 1=1 2=0.5",
        ],
        "ncnn BinaryOp, multiply by a constant": ["BinaryOp op 1 1 x y 0=2 1=1 2=1.5"],
    }
    times: dict[str, float] = {}
    empty = workdir / "no-weights.bin"
    empty.write_bytes(b"")
    for name, lines in layers.items():
        net = ncnn.Net()
        net.opt.num_threads = 1
        blobs = {"x"} | {blob for line in lines for blob in _layer_blobs(line)}
        param = f"7767517\n{len(lines) + 1} {len(blobs)}\nInput x 0 1 x\n" + "\n".join(lines)
        assert net.load_param_mem(param + "\n") == 0
        assert net.load_model(str(empty)) == 0

        def run(net=net) -> None:
            ex = net.create_extractor()
            ex.input("x", ncnn.Mat(x).clone())
            ex.extract("y")

        times[name] = best_of(run, rounds, warm_up=True)
    value = helper.make_tensor_value_info
    nodes = {
        "ONNX Runtime Gelu (com.microsoft, exact)": helper.make_node(
            "Gelu", ["x"], ["y"], domain="com.microsoft"
        ),
        "ONNX Runtime Mul, multiply by a constant": helper.make_node("Mul", ["x", "c"], ["y"]),
    }
    for index, (name, node) in enumerate(nodes.items()):
        graph = helper.make_graph(
            [node],
            "one",
            [value("x", TensorProto.FLOAT, list(ELEMENTWISE_SHAPE))],
            [value("y", TensorProto.FLOAT, list(ELEMENTWISE_SHAPE))],
            [helper.make_tensor("c", TensorProto.FLOAT, [], [1.5])],
        )
        opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
        path = workdir / f"elementwise-{index}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
        session = ort_session(path, profiled=False)
        times[name] = best_of(lambda s=session: s.run(None, {"x": x}), rounds, warm_up=True)
    return times


def group(rows, key) -> dict:
    out: dict = defaultdict(float)
    for row in rows:
        out[key(row)] += row["s"]
    return out


def profile(name: str, rounds: int, batch_size: int, workdir: Path) -> dict:
    import ncnn
    import onnx
    import torch

    from bench.encoders import install
    from core.encoder import load_model

    torch.set_num_threads(1)
    spec, reference = install(name, workdir)
    if spec.architecture.family == "fastvit":
        from timm.utils.model import reparameterize_model

        reference = reparameterize_model(reference)
    size = spec.preprocess.size
    onnx_path = workdir / f"{name}-image.onnx"
    export_image_tower(reference, onnx_path, size)
    model = load_model(name, precision="fp32", draft=False)
    param_text = (model.model_dir / "visual.param").read_text(encoding="ascii")
    layers = param_layers(param_text)
    net = ncnn.Net()
    net.opt.num_threads = 1
    net.opt.use_fp16_packed = net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = False
    net.load_param(str(model.model_dir / "visual.param"))
    net.load_model(str(model.model_dir / "visual.bin"))

    rng = np.random.default_rng(0)
    batch = rng.standard_normal((batch_size, 3, size, size)).astype(np.float32)
    plain = ort_session(onnx_path, profiled=False)
    profiled = ort_session(onnx_path, profiled=True)

    per_layer: list[list[float]] = []
    ours_total, ort_total = [], []
    ours_whole(net, batch[0])
    plain.run(None, {"image": batch})
    profiled.run(None, {"image": batch})  # warm-up: its node times are left out below
    for _ in range(rounds):  # interleaved: a change of load falls on both engines
        per_layer.append(ours_per_layer(net, layers, batch[0]))
        ours_total.append(min(ours_whole(net, batch[i]) for i in range(min(3, batch_size))))
        start = time.perf_counter()
        plain.run(None, {"image": batch})
        ort_total.append((time.perf_counter() - start) / batch_size)
        profiled.run(None, {"image": batch})
    durations, nodes = ort_node_times(profiled, onnx_path)
    variants = variant_times(model.model_dir, batch, plain, rounds)
    ort_nodes = {node: [v / batch_size for v in values[1:]] for node, values in durations.items()}
    model.close()

    ours_rows = [
        {
            "name": f"{layer.type} {layer.name}",
            "place": place_of(layer.name),
            "kind": our_kind(layer),
            "s": statistics.median(run[i] for run in per_layer),
        }
        for i, layer in enumerate(layers)
        if layer.type != "Input"
    ]
    by_name = {node.name: node for node in nodes}
    ort_rows = []
    for node_name, values in ort_nodes.items():
        node = by_name.get(node_name)
        attributes = {}
        if node is not None:
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        kind = ort_kind(node, attributes) if node is not None else "other"
        if values:
            ort_rows.append(
                {
                    "name": f"{node.op_type if node is not None else '?'} {node_name}",
                    "place": place_of(node_name),
                    "kind": kind,
                    "s": statistics.median(values),
                }
            )
    return {
        "model": name,
        "batch": batch_size,
        "rounds": rounds,
        "ours_total": statistics.median(ours_total),
        "ort_total": statistics.median(ort_total),
        "ours_layers_sum": sum(r["s"] for r in ours_rows),
        "ort_nodes_sum": sum(r["s"] for r in ort_rows),
        "ours": ours_rows,
        "ort": ort_rows,
        "variants": variants,
        "elementwise": elementwise_times(max(rounds, 15), workdir),
    }


def table(result: dict, key) -> list[str]:
    ours = group(result["ours"], key)
    theirs = group(result["ort"], key)
    keys = sorted(set(ours) | set(theirs), key=lambda k: -(ours.get(k, 0) + theirs.get(k, 0)))
    lines = [
        "| group | ours (ms) | ONNX Runtime (ms) | ONNX Runtime / ours |",
        "| --- | --- | --- | --- |",
    ]
    for k in keys:
        a, b = 1000 * ours.get(k, 0.0), 1000 * theirs.get(k, 0.0)
        ratio = f"{b / a:.2f}x" if a > 0.05 and b > 0.05 else "-"
        label = " / ".join(k) if isinstance(k, tuple) else k
        lines.append(f"| {label} | {a:.1f} | {b:.1f} | {ratio} |")
    return lines


def report(result: dict, load: str, command: str) -> list[str]:
    r = result
    flags = ", ".join(cpu_flags()) or "no AVX-512, AMX or AVX-VNNI"
    return [
        f"CPU: {cpu_model()} ({flags}); load average {load} at the start; "
        f"{dt.date.today().isoformat()}; `{command}`.",
        "",
        f"{r['model']} image tower, random weights, one thread for both engines; ours one image "
        f"per extractor, ONNX Runtime batches of {r['batch']} (times divided by the batch); "
        f"median of {r['rounds']} interleaved rounds, milliseconds per image. Whole forward "
        f"pass: ours {1000 * r['ours_total']:.1f}, ONNX Runtime {1000 * r['ort_total']:.1f} "
        f"(ONNX Runtime / ours {r['ort_total'] / r['ours_total']:.2f}x); the per-layer "
        f"times add up to {1000 * r['ours_layers_sum']:.1f} (ours) and "
        f"{1000 * r['ort_nodes_sum']:.1f} (ONNX Runtime's profiler).",
        "",
        "ncnn's per-layer switches on the same weights (whole forward pass, one thread, "
        f"median of {r['rounds']} interleaved rounds with ONNX Runtime):",
        "",
        "| ours | ms per image | vs as installed | ONNX Runtime / this |",
        "| --- | --- | --- | --- |",
        *[
            f"| {name} | {1000 * t:.1f} | {r['variants']['as installed'] / t:.2f}x | "
            f"{r['variants']['ONNX Runtime'] / t:.2f}x |"
            for name, t in r["variants"].items()
        ],
        "",
        "One element-wise layer alone on "
        f"{' x '.join(map(str, ELEMENTWISE_SHAPE))} values (the stem's GELU), one thread, best "
        f"of {max(r['rounds'], 15)}. The multiply by a constant is what a run of one pass over the "
        "values costs on that engine (for ncnn, with copying the input in and out of its packed "
        "layout):",
        "",
        "| layer | ms | vs the engine's multiply |",
        "| --- | --- | --- |",
        *[
            f"| {name} | {1000 * t:.2f} | {t / _multiply(r['elementwise'], name):.1f}x |"
            for name, t in r["elementwise"].items()
        ],
        "",
        "By kind of layer:",
        "",
        *table(r, lambda row: row["kind"]),
        "",
        "By place in the tower:",
        "",
        *table(r, lambda row: row["place"]),
        "",
        "Slowest layers, ours and ONNX Runtime's (ms per image):",
        "",
        "| ours | ms | ONNX Runtime | ms |",
        "| --- | --- | --- | --- |",
        *[
            f"| {a['name']} | {1000 * a['s']:.1f} | {b['name']} | {1000 * b['s']:.1f} |"
            for a, b in zip(
                sorted(r["ours"], key=lambda row: -row["s"])[:SLOWEST],
                sorted(r["ort"], key=lambda row: -row["s"])[:SLOWEST],
                strict=False,
            )
        ],
        "",
        "By place and kind (groups of at least 1 ms on either engine):",
        "",
        *[
            line
            for line in table(r, lambda row: (row["place"], row["kind"]))
            if not line.startswith("| ") or line.startswith("| group") or _big(line)
        ],
    ]


def _multiply(times: dict[str, float], name: str) -> float:
    """The time of the multiply by a constant on the engine of layer ``name``."""
    engine = name.split()[0]
    return next(t for key, t in times.items() if key.startswith(engine) and "ultipl" in key)


def _big(line: str) -> bool:
    cells = [c.strip() for c in line.strip("|").split("|")]
    try:
        return max(float(cells[1]), float(cells[2])) >= 1.0
    except ValueError:
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="MobileCLIP2-S0")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="ONNX Runtime's batch")
    parser.add_argument("--section", default="## Image tower layer by layer")
    parser.add_argument("--no-write", action="store_true", help="change no file")
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{cpu_model()} ({', '.join(cpu_flags()) or 'no AVX-512'}); load {load}", flush=True)
    workdir = scratch_folder("clipsearch-profile-")
    result = profile(args.model, args.rounds, args.batch, workdir)
    command = "python " + shlex.join(["bench/layer_profile.py", *sys.argv[1:]])
    lines = report(result, load, command)
    print("\n".join(lines), flush=True)
    if not args.no_write:
        write_section(args.section, lines)


if __name__ == "__main__":
    main()
