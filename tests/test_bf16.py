"""bf16 storage: its error layer by layer, and layers kept in float32 (bench/bf16_layers.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.bf16_layers import keep_float32
from core.ncnn_graph import Graph

ncnn = pytest.importorskip("ncnn")

WIDTH = 64


def _network(folder: Path) -> tuple[str, Path]:
    """``relu(x) @ w.T + b``, with weights that bf16 cannot hold exactly."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((WIDTH, WIDTH)).astype(np.float32) / 8
    bias = rng.standard_normal(WIDTH).astype(np.float32)
    g = Graph()
    x = g.input("x")
    x = g.layer("ReLU", "relu", [x])
    params = {2: 0, 3: 1, 4: 0, 5: 1, 6: 1, 7: 0, 8: WIDTH, 9: WIDTH, 10: 4}
    g.layer("Gemm", "out", [x], params, [(weight, True), (bias, True)])
    g.write(folder / "net.param", folder / "net.bin")
    return (folder / "net.param").read_text(encoding="ascii"), folder / "net.bin"


def _run(param_text: str, bin_path: Path, x: np.ndarray, bf16: bool) -> np.ndarray:
    net = ncnn.Net()
    net.opt.num_threads = 1
    net.opt.use_bf16_storage = bf16
    net.opt.use_bf16_packed = bf16
    assert net.load_param_mem(param_text) == 0
    assert net.load_model(str(bin_path)) == 0
    ex = net.create_extractor()
    ex.input("x", ncnn.Mat(np.ascontiguousarray(x)).clone())
    rc, out = ex.extract("out")
    assert rc == 0
    return np.array(out, dtype=np.float32).copy()


def _bf16_exact(shape: tuple[int, ...]) -> np.ndarray:
    """Random float32 values that bf16 holds exactly (the low 16 bits are zero)."""
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    return (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)


def test_a_kept_layer_computes_in_float32_under_bf16_storage(tmp_path: Path) -> None:
    param_text, bin_path = _network(tmp_path)
    x = _bf16_exact((5, WIDTH))  # the bf16 ReLU before the Gemm passes these on unchanged
    exact = _run(param_text, bin_path, x, bf16=False)
    kept = keep_float32(param_text, types={"Gemm"})
    # the kept Gemm reads the bf16 blob converted back to float32 and multiplies by the float32
    # weights: the same numbers as the float32 network, not garbage and not rounded
    np.testing.assert_array_equal(_run(kept, bin_path, x, bf16=True), exact)
    # without it the Gemm runs in bf16: the weights and the output are rounded
    rounded = _run(param_text, bin_path, x, bf16=True)
    assert not np.array_equal(rounded, exact)
    np.testing.assert_allclose(rounded, exact, rtol=0.05, atol=0.05)
    # in float32 the rewritten network is the same computation
    np.testing.assert_array_equal(_run(kept, bin_path, x, bf16=False), exact)


def test_keep_float32_rewrites_only_the_chosen_layers() -> None:
    text = (
        "7767517\n"
        "4 4\n"
        "Input in 0 1 x\n"
        "LayerNorm ln 1 1 x a 0=8 1=1.0e-05 2=1 31=1\n"
        "BinaryOp add 2 1 a x2 b 0=0\n"
        "MemoryData x2_data 0 1 x2 0=8\n"
    )
    out = keep_float32(text, types={"LayerNorm"}, names={"add"}).splitlines()
    assert out[:2] == ["7767517", "7 7"]
    assert out[2] == "Input in 0 1 x"
    assert out[3] == "Cast ln.to_fp32_0 1 1 x ln.fp32_in0 0=1 1=1"
    assert out[4] == "LayerNorm ln 1 1 ln.fp32_in0 a 0=8 1=1.0e-05 2=1 31=5"  # bit 2 added
    assert out[5:7] == [
        "Cast add.to_fp32_0 1 1 a add.fp32_in0 0=1 1=1",
        "Cast add.to_fp32_1 1 1 x2 add.fp32_in1 0=1 1=1",
    ]
    assert out[7] == "BinaryOp add 2 1 add.fp32_in0 add.fp32_in1 b 0=0 31=4"
    assert out[8] == "MemoryData x2_data 0 1 x2 0=8"
    assert keep_float32(text) == text


def test_keep_float32_refuses_what_is_not_a_param_text() -> None:
    with pytest.raises(ValueError, match="magic"):
        keep_float32("7767518\n1 1\nInput in 0 1 x\n", types={"Gemm"})
    with pytest.raises(ValueError, match="declares 2 layers"):
        keep_float32("7767517\n2 1\nInput in 0 1 x\n", types={"Gemm"})


def test_bf16_error_stays_at_the_rounding_level_layer_by_layer(tiny_model) -> None:
    """On the tiny ViT, every blob of the image tower in bf16 stays within a few times the error
    of rounding that blob once to bf16 (4.4x at most when measured), and the embeddings lose no
    more than open_clip's own bfloat16 forward pass on the same weights (1.4x when measured)."""
    torch = pytest.importorskip("torch")
    import copy

    from bench.bf16_layers import round_bf16, run_blobs
    from bench.common import param_layers
    from core.encoder import ClipModel
    from tests.reference import TINY_VIT, make_reference
    from tests.reference_mobileclip import photos

    pixels = np.stack([tiny_model.preprocess(path) for path in photos()[:3]])
    param_text = (tiny_model.model_dir / "visual.param").read_text(encoding="ascii")
    bin_path = tiny_model.model_dir / "visual.bin"
    layers = param_layers(param_text)
    blobs = [blob for layer in layers for blob in layer.outputs]
    for image in pixels:
        exact = run_blobs(param_text, bin_path, {"image": image}, False, blobs)
        bf16 = run_blobs(param_text, bin_path, {"image": image}, True, blobs)
        for blob in blobs:
            f = exact[blob].astype(np.float64)
            norm = np.linalg.norm(f)
            if norm == 0:
                continue
            error = np.linalg.norm(bf16[blob] - f) / norm
            rounding = np.linalg.norm(round_bf16(exact[blob]) - f) / norm
            assert error <= 8 * rounding, (blob, error, rounding)

    def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        return np.sum(a * b, axis=1)

    with ClipModel(tiny_model.model_dir, threads=1, draft=False, precision="bf16") as model:
        ours = cosines(model.encode_pixels(pixels), tiny_model.encode_pixels(pixels))
    reference = make_reference(TINY_VIT, seed=3)  # the weights of the tiny_model fixture
    with torch.no_grad():
        batch = torch.from_numpy(pixels)
        exact = reference.encode_image(batch).double().numpy()
        low = copy.deepcopy(reference).to(torch.bfloat16)
        theirs = cosines(low.encode_image(batch.to(torch.bfloat16)).double().numpy(), exact)
    assert 1 - ours.min() <= 3 * (1 - theirs.min()), (ours, theirs)
    assert ours.min() > 0.9999
