"""Where bf16 loses accuracy: every blob of a tower in bf16 against float32, layer by layer.

For each model, random discriminative weights are made and installed exactly as
``bench/precision.py`` does; then the installed ncnn network of one tower runs on a few real
photos (or texts) twice, float32 and bf16 storage, and every blob is extracted in layer order.
Per blob: the relative error of bf16 against float32 (``|b - f| / |f|``, worst item), the scale
bias (``<b, f> / <f, f> - 1``: negative when values shrink, as truncation makes them), and how
much larger the error is than that of the layer's inputs. Then the tower's output cosine for
bf16 with chosen layer types kept in float32 (:func:`keep_float32`), and for
open_clip itself run in PyTorch bfloat16 (which rounds to nearest) on the same weights.

It also says how ncnn turns float32 into bf16 on this CPU (truncation or rounding to nearest),
and how large the attention logits of the test weights are.

    python bench/bf16_layers.py --models ViT-B-32-256-datacomp --tower image
    python bench/bf16_layers.py --models MobileCLIP2-S0 --tower text --keep MultiHeadAttention

Prints only; the findings are written up by hand in bench/RESULTS.md ("Precision: where bf16
loses"). Needs the test extra (torch, open_clip_torch).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Collection
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import param_layers, scratch_folder  # noqa: E402
from bench.precision import build_reference, load_pixels, photo_paths, queries  # noqa: E402

# ncnn's bf16 storage stores every blob between layers as bfloat16. A layer may opt out
# through its featmask (layer parameter 31, bit 2) and then runs its float32 kernels; but ncnn does
# not turn a bf16 blob back into float32 in front of it (Net::convert_layout asks the masked
# options, where bf16 is off), so the layer reads bf16 data as float32: garbage. keep_float32
# puts an identity Cast (float32 to float32, a layer without bf16 support) in front of each of
# its inputs, for which ncnn does convert the blob to float32.

FEATMASK_KEY = 31
FEATMASK_NO_BF16 = 1 << 2


def _featmask_with_no_bf16(params: list[str]) -> list[str]:
    """``params`` (``k=v`` fields) with bit 2 of the featmask set."""
    out = []
    found = False
    for field in params:
        key, _, value = field.partition("=")
        if key == str(FEATMASK_KEY):
            field = f"{key}={int(value) | FEATMASK_NO_BF16}"
            found = True
        out.append(field)
    if not found:
        out.append(f"{FEATMASK_KEY}={FEATMASK_NO_BF16}")
    return out


def keep_float32(param_text: str, types: Collection[str] = (), names: Collection[str] = ()) -> str:
    """The ``.param`` text ``param_text`` with every layer of a type in ``types``, or named in
    ``names``, kept in float32 when the network runs with bf16 storage.

    Each kept layer gets featmask bit 2, and each of its inputs an identity ``Cast`` in front of
    it (see the comment above). Blob and layer names of the network are kept, so the same
    blobs can be extracted.

    Raises
    ------
    ValueError
        ``param_text`` is not an ncnn ``.param`` text (magic number, counts).
    """
    lines = param_text.splitlines()
    if len(lines) < 2 or lines[0].strip() != "7767517":
        raise ValueError("not an ncnn .param text (magic number 7767517 missing)")
    layer_count, blob_count = (int(v) for v in lines[1].split())
    body = [line for line in lines[2:] if line.strip()]
    if len(body) != layer_count:
        raise ValueError(f"the .param text declares {layer_count} layers but has {len(body)}")
    out: list[str] = []
    added = 0
    for line in body:
        fields = line.split()
        type_, name = fields[0], fields[1]
        if type_ not in types and name not in names:
            out.append(line)
            continue
        n_in, n_out = int(fields[2]), int(fields[3])
        inputs = fields[4 : 4 + n_in]
        outputs = fields[4 + n_in : 4 + n_in + n_out]
        params = fields[4 + n_in + n_out :]
        converted = []
        for i, blob in enumerate(inputs):
            fp32_blob = f"{name}.fp32_in{i}"
            out.append(f"Cast {name}.to_fp32_{i} 1 1 {blob} {fp32_blob} 0=1 1=1")
            converted.append(fp32_blob)
            added += 1
        fields = [type_, name, str(n_in), str(n_out), *converted, *outputs]
        out.append(" ".join([*fields, *_featmask_with_no_bf16(params)]))
    header = ["7767517", f"{layer_count + added} {blob_count + added}"]
    return "\n".join(header + out) + "\n"


def rounding_mode() -> str:
    """How ncnn's bf16 storage turns float32 into bf16 on this CPU: where a float32 input
    enters a bf16 layer, and where a Gemm stores its float32 sums."""
    import ncnn

    from core.ncnn_graph import Graph

    halfway = 1 + 0.75 * 2**-7  # bf16 has 7 fraction bits: truncation 1, rounding 1 + 2**-7

    def verdict(got: float) -> str:
        return {1.0: "truncates", 1 + 2**-7: "rounds to nearest"}.get(got, f"gives {got!r}")

    with tempfile.TemporaryDirectory() as folder:
        g = Graph()
        x = g.input("x")
        g.layer("ReLU", "relu", [x])
        y = g.input("y")
        params = {2: 0, 3: 1, 4: 0, 5: 1, 6: 1, 7: 0, 8: 8, 9: 2, 10: 4}
        ones = np.ones((8, 2), np.float32)
        g.layer("Gemm", "gemm", [y], params, [(ones, True), (np.zeros(8, np.float32), True)])
        g.write(Path(folder, "t.param"), Path(folder, "t.bin"))
        net = ncnn.Net()
        net.opt.num_threads = 1
        net.opt.use_bf16_storage = True
        net.opt.use_bf16_packed = True
        net.load_param(str(Path(folder, "t.param")))
        net.load_model(str(Path(folder, "t.bin")))
        ex = net.create_extractor()
        ex.input("x", ncnn.Mat(np.full(64, halfway, np.float32)).clone())
        # 1 + 0.75 * 2**-7 as the sum of two numbers that bf16 holds exactly
        pairs = np.tile(np.array([[1.0, 0.75 * 2**-7]], np.float32), (8, 1))
        ex.input("y", ncnn.Mat(pairs).clone())
        _, relu = ex.extract("relu")
        _, gemm = ex.extract("gemm")
        first = verdict(float(np.array(relu).ravel()[0]))
        second = verdict(float(np.array(gemm).ravel()[0]))
    return f"a float32 input entering a bf16 layer: {first}; a Gemm's float32 sum: {second}"


def round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 rounded to the nearest bf16 (ties to even), as float32."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.astype(np.uint32).view(np.float32)


def run_blobs(
    param_text: str, bin_path: Path, inputs: dict[str, np.ndarray], bf16: bool, blobs: list[str]
) -> dict[str, np.ndarray]:
    """Every blob in ``blobs`` of one forward pass (float32 values)."""
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = 1
    net.opt.use_fp16_packed = False
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = bf16
    net.opt.use_bf16_packed = bf16
    assert net.load_param_mem(param_text) == 0
    assert net.load_model(str(bin_path)) == 0
    ex = net.create_extractor()
    ex.set_light_mode(False)
    for name, value in inputs.items():
        ex.input(name, ncnn.Mat(np.ascontiguousarray(value, np.float32)).clone())
    out = {}
    for blob in blobs:
        rc, mat = ex.extract(blob)
        assert rc == 0, (blob, rc)
        out[blob] = np.array(mat, dtype=np.float32).copy()
    return out


def tower_inputs(model, tower: str, pixels: np.ndarray, texts: list[str]):
    """Network inputs per item, and how to read the item's output vector from the last blob."""
    if tower == "image":
        return [{"image": p} for p in pixels], None
    embedding = np.load(model.model_dir / "token_embedding.npy")
    positional = np.load(model.model_dir / "positional_embedding.npy")
    causal = bool(model.spec.architecture.text.get("causal", True))
    items, ends = [], []
    for ids in model.tokenize(texts):
        end = int(np.argmax(ids))
        length = end + 1 if causal else len(ids)
        item = {"x": embedding[ids[:length]] + positional[:length]}
        if causal:
            item["mask"] = np.triu(np.full((length, length), -1e9, np.float32), 1)
        items.append(item)
        ends.append(end)
    return items, ends


def output_vectors(blobs_per_item, last: str, ends) -> np.ndarray:
    rows = []
    for i, blobs in enumerate(blobs_per_item):
        value = blobs[last]
        rows.append(value.reshape(-1) if ends is None else value.reshape(len(value), -1)[ends[i]])
    return np.stack(rows).astype(np.float64)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def attention_logits(reference, tower: str, pixels: np.ndarray, texts: list[str]) -> str:
    """Spread of the attention logits (``q.k / sqrt(d)``) in the reference's
    ``nn.MultiheadAttention`` layers of ``tower``: the largest within-row range, the largest
    absolute value and the mean standard deviation."""
    import open_clip
    import torch

    if tower == "image":
        module = reference.visual
    else:  # open_clip.CLIP keeps its text transformer at the top, CustomTextCLIP under text
        module = getattr(reference, "text", None) or reference.transformer
    stats: list[tuple[float, float, float]] = []

    def hook(layer, args, kwargs, _out):
        x = args[0]
        width = layer.embed_dim
        heads = layer.num_heads
        w, b = layer.in_proj_weight, layer.in_proj_bias
        q = torch.nn.functional.linear(x, w[:width], b[:width])
        k = torch.nn.functional.linear(x, w[width : 2 * width], b[width : 2 * width])
        shape = (*q.shape[:-1], heads, width // heads)
        q, k = q.reshape(shape).transpose(-2, -3), k.reshape(shape).transpose(-2, -3)
        logits = q @ k.transpose(-1, -2) / (width // heads) ** 0.5
        spread = (logits.amax(-1) - logits.amin(-1)).max().item()
        stats.append((spread, logits.abs().max().item(), logits.std(-1).mean().item()))

    handles = [
        m.register_forward_hook(hook, with_kwargs=True)
        for m in module.modules()
        if isinstance(m, torch.nn.MultiheadAttention)
    ]
    if not handles:
        return "no nn.MultiheadAttention layers"
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            if tower == "image":
                reference.encode_image(torch.from_numpy(pixels))
            else:
                reference.encode_text(open_clip.tokenize(texts))
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        for h in handles:
            h.remove()
    spread = max(s[0] for s in stats)
    peak = max(s[1] for s in stats)
    std = float(np.mean([s[2] for s in stats]))
    return (
        f"{len(stats)} attention calls: largest logit range within a row {spread:.1f}, "
        f"largest |logit| {peak:.1f}, mean row std {std:.2f}"
    )


def torch_bf16(reference, tower: str, pixels: np.ndarray, texts: list[str]) -> np.ndarray:
    """Cosine of open_clip in PyTorch bfloat16 against open_clip in float32, per item."""
    import copy

    import open_clip
    import torch

    half = copy.deepcopy(reference).to(torch.bfloat16)
    with torch.no_grad():
        if tower == "image":
            batch = torch.from_numpy(pixels)
            ref = reference.encode_image(batch).double().numpy()
            low = half.encode_image(batch.to(torch.bfloat16)).double().numpy()
        else:
            tokens = open_clip.tokenize(texts)
            ref = reference.encode_text(tokens).double().numpy()
            low = half.encode_text(tokens).double().numpy()
    return cosine(low, ref)


def study(
    name: str, tower: str, items: int, keeps: list[list[str]], workdir: Path, attention: float
) -> None:
    import torch

    from core.encoder import load_model
    from core.registry import get_spec

    torch.set_grad_enabled(False)
    workdir.mkdir(parents=True, exist_ok=True)
    spec = get_spec(name)
    _, pixels = load_pixels(photo_paths([]), spec)
    _, reference, _ = build_reference(name, workdir, pixels, attention, int8=False)
    pixels = pixels[:items]
    texts = queries()[::7][:items]
    model = load_model(name, precision="fp32", draft=False)
    stem = "visual" if tower == "image" else "text"
    param_text = (model.model_dir / f"{stem}.param").read_text(encoding="ascii")
    bin_path = model.model_dir / f"{stem}.bin"
    layers = param_layers(param_text)
    blobs = [b for layer in layers for b in layer.outputs]
    inputs, ends = tower_inputs(model, tower, pixels, texts)
    last = layers[-1].outputs[0]

    print(
        f"\n## {name}, {tower} tower: {len(layers)} layers, {len(inputs)} items, "
        f"attention sharpened x{attention:g}"
    )
    print(attention_logits(reference, tower, pixels, texts))
    stats: dict[str, list[tuple[float, float, float, float]]] = {b: [] for b in blobs}
    f32_last, b16_last = [], []
    for item in inputs:  # one item at a time: a tower's blobs take hundreds of MB
        f32 = run_blobs(param_text, bin_path, item, False, blobs)
        b16 = run_blobs(param_text, bin_path, item, True, blobs)
        for blob in blobs:
            f, b = f32[blob].astype(np.float64), b16[blob].astype(np.float64)
            n2 = max(float(np.dot(f.ravel(), f.ravel())), 1e-60)
            floor = np.linalg.norm(round_bf16(f32[blob]) - f) / n2**0.5
            stats[blob].append(
                (
                    float(np.linalg.norm(b - f)) / n2**0.5,
                    float(np.dot(b.ravel(), f.ravel())) / n2 - 1,
                    float(floor),
                    float(np.abs(f).max(initial=0.0)),
                )
            )
        f32_last.append({last: f32[last]})
        b16_last.append({last: b16[last]})

    err = {blob: max(s[0] for s in rows) for blob, rows in stats.items()}
    print(
        "| # | type | layer | max abs | rel. error | scale bias | x inputs' error "
        "| rounding one blob |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for index, (type_, lname, ins, outs, _) in enumerate(layers):
        if type_ == "Split":
            continue
        for blob in outs:
            rows = stats[blob]
            rel = err[blob]
            bias = float(np.mean([s[1] for s in rows]))
            floor = max(s[2] for s in rows)
            peak = max(s[3] for s in rows)
            before = max((err.get(i, 0.0) for i in ins), default=0.0)
            growth = f"{rel / before:.2f}" if before > 0 else "-"
            print(
                f"| {index} | {type_} | {lname} | {peak:.3g} | {rel:.2e} | {bias:+.2e} | "
                f"{growth} | {floor:.1e} |"
            )
    base = output_vectors(f32_last, last, ends)
    print(f"\noutput cosine to our float32, worst of {len(inputs)} (mean):")
    cos = cosine(output_vectors(b16_last, last, ends), base)
    print(f"- bf16, every layer: {cos.min():.6f} ({cos.mean():.6f})")
    for keep in keeps:
        text = keep_float32(param_text, types=keep)
        kept = [run_blobs(text, bin_path, x, True, [last]) for x in inputs]
        cos = cosine(output_vectors(kept, last, ends), base)
        print(f"- bf16, {', '.join(keep)} in float32: {cos.min():.6f} ({cos.mean():.6f})")
    cos = torch_bf16(reference, tower, pixels, texts)
    print(
        f"- open_clip in PyTorch bfloat16 against open_clip float32: {cos.min():.6f} "
        f"({cos.mean():.6f})"
    )
    model.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["ViT-B-32-256-datacomp"])
    parser.add_argument("--tower", choices=("image", "text"), default="image")
    parser.add_argument("--items", type=int, default=4, help="photos or texts to run")
    parser.add_argument(
        "--attention",
        type=float,
        default=4.0,
        help="factor on a ViT's query and key weights, as bench/precision.py (MobileCLIP2: "
        "its parity test's weights, whatever this says)",
    )
    parser.add_argument(
        "--keep",
        nargs="*",
        action="append",
        default=[],
        help="layer types to keep in float32 (repeat the option for several variants)",
    )
    args = parser.parse_args()
    print(f"ncnn float32 to bf16 on this CPU: {rounding_mode()}", flush=True)
    workdir = scratch_folder("clipsearch-bf16-")
    os.environ["CLIPSEARCH_HOME"] = str(workdir / "home-fp32")
    for name in args.models:
        study(
            name,
            args.tower,
            args.items,
            args.keep,
            workdir / f"x{args.attention:g}",
            args.attention,
        )


if __name__ == "__main__":
    main()
