"""Convert a CLIP checkpoint (a state dict of numpy arrays) into ncnn models.

Two ncnn networks are written, built from ncnn's documented layers only:

``visual.param`` / ``visual.bin``
    input ``image`` ``[3, S, S]`` float32 (preprocessed), output ``embedding`` ``[D]`` (not yet
    normalised). ViT: patch convolution, class token, positional embedding, pre-norm transformer,
    ``ln_post`` on the class token, projection. Modified ResNet: three-convolution stem,
    bottlenecks with anti-aliasing average pools, attention pooling, projection. BatchNorm is
    folded into the convolutions.

    FastViT "MCi" (MobileCLIP2): see :mod:`core.fastvit`.

``text.param`` / ``text.bin``
    inputs ``x`` ``[L, W]`` (token embeddings plus positional embeddings of the first ``L``
    tokens, ``L`` = position of the end-of-text token + 1) and ``mask`` ``[L, L]`` (causal);
    output ``tokens`` ``[L, W]`` after ``ln_final``.

The token-embedding lookup, the end-of-text gather and the text projection are done on the host
from ``token_embedding.npy``, ``positional_embedding.npy`` and ``text_projection.npy``. Because the
text transformer is causal, the end-of-text token never sees the padding after it, so running only
the first ``L`` tokens gives the same embedding as running all 77.

A text tower without a causal mask (``"causal": false`` in the architecture's ``text``, as
open_clip's ``no_causal_mask``; MobileCLIP2) lets every token see the padding, so it always runs all
``context_length`` tokens: its network has the one input ``x`` ``[77, W]`` and no mask.

Text keys are read bare (``transformer.resblocks.0...``, as ``open_clip.CLIP`` saves them) or under
``text.`` (``open_clip.CustomTextCLIP``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import CheckpointError
from core.ncnn_graph import Graph, ParamValue
from core.registry import OPENAI_MEAN, Architecture, ModelSpec

LN_EPS = 1e-5
BN_EPS = 1e-5
MLP_RATIO = 4

VISUAL_FILES = ("visual.param", "visual.bin")
TEXT_FILES = ("text.param", "text.bin")
HOST_FILES = ("token_embedding.npy", "positional_embedding.npy", "text_projection.npy")


class _Weights:
    """State-dict access that checks every key and shape against the architecture."""

    def __init__(self, state_dict: Mapping[str, np.ndarray]) -> None:
        self._sd = state_dict
        self.used: set[str] = set()

    def __call__(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in self._sd:
            raise CheckpointError(f"checkpoint is missing key {key!r} (expected shape {shape})")
        value = np.asarray(self._sd[key])
        if tuple(value.shape) != tuple(shape):
            raise CheckpointError(
                f"checkpoint key {key!r} has shape {tuple(value.shape)} "
                f"but the model needs {tuple(shape)}"
            )
        self.used.add(key)
        value = value.astype(np.float32, copy=False)
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"checkpoint key {key!r} holds NaN or infinite values")
        return value


# ---------------------------------------------------------------------------------------------
# shared building blocks


def _layer_norm(
    g: Graph, x: str, name: str, w: _Weights, prefix: str, width: int, eps: float = LN_EPS
) -> str:
    return g.layer(
        "LayerNorm",
        name,
        [x],
        {0: width, 1: eps, 2: 1},
        [(w(f"{prefix}.weight", (width,)), False), (w(f"{prefix}.bias", (width,)), False)],
    )


def _linear(g: Graph, x: str, name: str, weight: np.ndarray, bias: np.ndarray | None) -> str:
    """``x @ weight.T + bias`` on a 2-D blob ``[rows, in]`` with ncnn's Gemm (weight ``[out, in]``).

    Gemm is used rather than InnerProduct: on a matrix of tokens its x86 kernel runs about three
    times faster.
    """
    out_features, in_features = weight.shape
    if bias is None:
        bias = np.zeros(out_features, np.float32)
    params: dict[int, ParamValue] = {
        2: 0, 3: 1, 4: 0, 5: 1, 6: 1, 7: 0, 8: out_features, 9: in_features, 10: 4
    }  # fmt: skip
    if g.quantize:
        # ncnn's int8 Gemm takes one scale for the whole weight matrix; inputs are quantized
        # per row at run time.
        scale = _int8_scale(np.abs(weight).max())
        params[18] = 8
        quantized = _quantize(weight, scale)
        weights = [(quantized, True), (bias, True), (np.asarray([scale], np.float32), False)]
        return g.layer("Gemm", name, [x], params, weights)
    return g.layer("Gemm", name, [x], params, [(weight, True), (bias, True)])


def _int8_scale(absmax: np.ndarray | float) -> np.ndarray:
    """ncnn's int8 scale: ``q = round(w * scale)`` with ``|q| <= 127``."""
    return np.float32(127.0) / np.maximum(np.asarray(absmax, np.float32), np.float32(1e-12))


def _quantize(weight: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    quantized: np.ndarray = np.clip(np.round(weight * scale), -127, 127).astype(np.int8)
    return quantized


def _gelu(g: Graph, x: str, name: str, quick: bool, tanh: bool = False) -> str:
    """GELU: exact (erf), ``tanh`` approximation (ncnn's ``fast_gelu``), or QuickGELU."""
    if not quick:
        return g.layer("GELU", name, [x], {0: 1 if tanh else 0})
    # QuickGELU: x * sigmoid(1.702 * x)
    scaled = g.layer("BinaryOp", f"{name}_scale", [x], {0: 2, 1: 1, 2: 1.702})
    gate = g.layer("Sigmoid", f"{name}_sigmoid", [scaled])
    return g.layer("BinaryOp", name, [x, gate], {0: 2})


def _attention(
    g: Graph,
    inputs: list[str],
    name: str,
    q: tuple[np.ndarray, np.ndarray],
    k: tuple[np.ndarray, np.ndarray],
    v: tuple[np.ndarray, np.ndarray],
    out: tuple[np.ndarray, np.ndarray],
    heads: int,
    masked: bool,
) -> str:
    embed_dim, qdim = q[0].shape
    params = {0: embed_dim, 1: heads, 2: embed_dim * qdim, 3: k[0].shape[1], 4: v[0].shape[1]}
    if masked:
        params[5] = 1
    weights = []
    for weight, bias in (q, k, v, out):
        weights += [(weight, True), (bias, False)]
    return g.layer("MultiHeadAttention", name, inputs, params, weights)


def _residual_block(
    g: Graph,
    x: str,
    w: _Weights,
    prefix: str,
    width: int,
    heads: int,
    quick_gelu: bool,
    mask: str | None,
    tag: str,
) -> str:
    h = _layer_norm(g, x, f"{tag}_ln1", w, f"{prefix}.ln_1", width)
    in_w = w(f"{prefix}.attn.in_proj_weight", (3 * width, width))
    in_b = w(f"{prefix}.attn.in_proj_bias", (3 * width,))
    qkv = [(in_w[i * width : (i + 1) * width], in_b[i * width : (i + 1) * width]) for i in range(3)]
    out = (
        w(f"{prefix}.attn.out_proj.weight", (width, width)),
        w(f"{prefix}.attn.out_proj.bias", (width,)),
    )
    inputs = [h, mask] if mask else [h]
    q, k, v = qkv
    h = _attention(g, inputs, f"{tag}_attn", q, k, v, out, heads, masked=mask is not None)
    x = g.layer("BinaryOp", f"{tag}_add1", [x, h], {0: 0})
    h = _layer_norm(g, x, f"{tag}_ln2", w, f"{prefix}.ln_2", width)
    hidden = MLP_RATIO * width
    h = _linear(
        g,
        h,
        f"{tag}_fc",
        w(f"{prefix}.mlp.c_fc.weight", (hidden, width)),
        w(f"{prefix}.mlp.c_fc.bias", (hidden,)),
    )
    h = _gelu(g, h, f"{tag}_gelu", quick_gelu)
    h = _linear(
        g,
        h,
        f"{tag}_proj",
        w(f"{prefix}.mlp.c_proj.weight", (width, hidden)),
        w(f"{prefix}.mlp.c_proj.bias", (width,)),
    )
    return g.layer("BinaryOp", f"{tag}_add2", [x, h], {0: 0})


def _take_rows(g: Graph, x: str, name: str, start: int, stop: int) -> str:
    """Rows ``start:stop`` of a 2-D blob ``[h, w]``."""
    return g.layer("Crop", name, [x], {9: [start], 10: [stop], 11: [0]})


# ---------------------------------------------------------------------------------------------
# vision towers


def _build_vit(g: Graph, w: _Weights, arch: Architecture) -> None:
    v = arch.vision
    width, patch, size = v["width"], v["patch_size"], v["image_size"]
    grid = size // patch
    x = g.input("image")
    x = g.layer(
        "Convolution",
        "patch_embed",
        [x],
        {0: width, 1: patch, 3: patch, 5: 0, 6: width * 3 * patch * patch},
        [(w("visual.conv1.weight", (width, 3, patch, patch)), True)],
    )
    x = g.layer("Reshape", "patch_flatten", [x], {0: grid * grid, 1: width})
    x = g.layer("Permute", "patch_tokens", [x], {0: 1})
    cls = g.layer(
        "MemoryData",
        "class_embedding",
        [],
        {0: width, 1: 1},
        [(w("visual.class_embedding", (width,)), False)],
    )
    x = g.layer("Concat", "with_class", [cls, x], {0: 0})
    pos = g.layer(
        "MemoryData",
        "positional_embedding",
        [],
        {0: width, 1: grid * grid + 1},
        [(w("visual.positional_embedding", (grid * grid + 1, width)), False)],
    )
    x = g.layer("BinaryOp", "add_pos", [x, pos], {0: 0})
    x = _layer_norm(g, x, "ln_pre", w, "visual.ln_pre", width)
    for i in range(v["layers"]):
        x = _residual_block(
            g,
            x,
            w,
            f"visual.transformer.resblocks.{i}",
            width,
            v["heads"],
            arch.quick_gelu,
            None,
            f"block{i}",
        )
    x = _take_rows(g, x, "class_token", 0, 1)
    x = _layer_norm(g, x, "ln_post", w, "visual.ln_post", width)
    proj = w("visual.proj", (width, arch.embed_dim))
    _linear(g, x, "embedding", np.ascontiguousarray(proj.T), None)


def _fold_bn(
    w: _Weights, conv_key: str, bn_prefix: str, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    weight = w(conv_key, shape)
    n = shape[0]
    gamma = w(f"{bn_prefix}.weight", (n,))
    beta = w(f"{bn_prefix}.bias", (n,))
    mean = w(f"{bn_prefix}.running_mean", (n,))
    var = w(f"{bn_prefix}.running_var", (n,))
    scale = gamma / np.sqrt(var.astype(np.float64) + BN_EPS)
    folded = (weight.astype(np.float64) * scale[:, None, None, None]).astype(np.float32)
    bias = (beta - mean * scale).astype(np.float32)
    return folded, bias


def _conv_bn(
    g: Graph,
    x: str,
    name: str,
    w: _Weights,
    conv_key: str,
    bn_prefix: str,
    shape: tuple[int, int, int, int],
    stride: int = 1,
    relu: bool = True,
) -> str:
    weight, bias = _fold_bn(w, conv_key, bn_prefix, shape)
    out_ch, in_ch, k, _ = shape
    params: dict[int, ParamValue] = {
        0: out_ch, 1: k, 3: stride, 4: k // 2, 5: 1, 6: out_ch * in_ch * k * k
    }  # fmt: skip
    if relu:
        params[9] = 1
    return g.layer("Convolution", name, [x], params, [(weight, True), (bias, False)])


def _avg_pool(g: Graph, x: str, name: str, k: int) -> str:
    return g.layer("Pooling", name, [x], {0: 1, 1: k, 2: k, 5: 1})


def _build_resnet(g: Graph, w: _Weights, arch: Architecture) -> None:
    v = arch.vision
    width, size = v["width"], v["image_size"]
    half = width // 2
    x = g.input("image")
    x = _conv_bn(g, x, "stem1", w, "visual.conv1.weight", "visual.bn1", (half, 3, 3, 3), 2)
    x = _conv_bn(g, x, "stem2", w, "visual.conv2.weight", "visual.bn2", (half, half, 3, 3))
    x = _conv_bn(g, x, "stem3", w, "visual.conv3.weight", "visual.bn3", (width, half, 3, 3))
    x = _avg_pool(g, x, "stem_pool", 2)
    inplanes = width
    for li, blocks in enumerate(v["layers"]):
        planes = width * 2**li
        for bi in range(blocks):
            stride = 2 if (li > 0 and bi == 0) else 1
            p = f"visual.layer{li + 1}.{bi}"
            tag = f"layer{li + 1}_{bi}"
            h = _conv_bn(
                g, x, f"{tag}_c1", w, f"{p}.conv1.weight", f"{p}.bn1", (planes, inplanes, 1, 1)
            )
            h = _conv_bn(
                g, h, f"{tag}_c2", w, f"{p}.conv2.weight", f"{p}.bn2", (planes, planes, 3, 3)
            )
            if stride > 1:
                h = _avg_pool(g, h, f"{tag}_pool", stride)
            h = _conv_bn(
                g,
                h,
                f"{tag}_c3",
                w,
                f"{p}.conv3.weight",
                f"{p}.bn3",
                (planes * 4, planes, 1, 1),
                relu=False,
            )
            identity = x
            if stride > 1 or inplanes != planes * 4:
                if stride > 1:
                    identity = _avg_pool(g, identity, f"{tag}_down_pool", stride)
                identity = _conv_bn(
                    g,
                    identity,
                    f"{tag}_down",
                    w,
                    f"{p}.downsample.0.weight",
                    f"{p}.downsample.1",
                    (planes * 4, inplanes, 1, 1),
                    relu=False,
                )
            x = g.layer("BinaryOp", f"{tag}_add", [h, identity], {0: 0})
            x = g.layer("ReLU", f"{tag}_relu", [x])
            inplanes = planes * 4

    # attention pooling over the final feature map
    embed = width * 32
    grid = size // 32
    tokens = grid * grid
    mean = g.layer("Pooling", "attnpool_mean", [x], {0: 1, 4: 1})
    mean = g.layer("Reshape", "attnpool_mean_row", [mean], {0: embed, 1: 1})
    flat = g.layer("Reshape", "attnpool_flatten", [x], {0: tokens, 1: embed})
    flat = g.layer("Permute", "attnpool_tokens", [flat], {0: 1})
    seq = g.layer("Concat", "attnpool_seq", [mean, flat], {0: 0})
    pos = g.layer(
        "MemoryData",
        "attnpool_pos",
        [],
        {0: embed, 1: tokens + 1},
        [(w("visual.attnpool.positional_embedding", (tokens + 1, embed)), False)],
    )
    seq = g.layer("BinaryOp", "attnpool_add_pos", [seq, pos], {0: 0})
    query = _take_rows(g, seq, "attnpool_query", 0, 1)
    proj = {
        name: (
            w(f"visual.attnpool.{name}.weight", (embed, embed)),
            w(f"visual.attnpool.{name}.bias", (embed,)),
        )
        for name in ("q_proj", "k_proj", "v_proj")
    }
    no_output_projection = (np.eye(embed, dtype=np.float32), np.zeros(embed, dtype=np.float32))
    pooled = _attention(
        g,
        [query, seq],
        "attnpool",
        proj["q_proj"],
        proj["k_proj"],
        proj["v_proj"],
        no_output_projection,
        v["heads"],
        masked=False,
    )
    _linear(
        g,
        pooled,
        "embedding",
        w("visual.attnpool.c_proj.weight", (arch.embed_dim, embed)),
        w("visual.attnpool.c_proj.bias", (arch.embed_dim,)),
    )


# ---------------------------------------------------------------------------------------------
# text tower


def _text_prefix(state_dict: Mapping[str, np.ndarray]) -> str:
    """``"text."`` when the text tower is saved as ``CustomTextCLIP`` saves it, else ``""``."""
    return "text." if "text.token_embedding.weight" in state_dict else ""


def _build_text(g: Graph, w: _Weights, arch: Architecture, prefix: str) -> None:
    t = arch.text
    width = t["width"]
    x = g.input("x")
    mask = g.input("mask") if t.get("causal", True) else None
    for i in range(t["layers"]):
        x = _residual_block(
            g,
            x,
            w,
            f"{prefix}transformer.resblocks.{i}",
            width,
            t["heads"],
            arch.quick_gelu,
            mask,
            f"block{i}",
        )
    _layer_norm(g, x, "tokens", w, f"{prefix}ln_final", width)


# ---------------------------------------------------------------------------------------------
# public API


def convert_checkpoint(
    state_dict: Mapping[str, np.ndarray],
    spec: ModelSpec,
    out_dir: Path,
    weight_storage: str = "fp32",
    image_precision: str | None = None,
) -> dict[str, Any]:
    """Write the ncnn image and text encoders of ``spec`` from ``state_dict`` into ``out_dir``.

    Parameters
    ----------
    state_dict
        open_clip / OpenAI key names mapped to numpy arrays.
    spec
        The model's registry entry; its architecture fixes every expected shape.
    out_dir
        An existing folder; the files listed in the result are written there.
    weight_storage
        ``"fp32"`` or ``"fp16"`` for convolution and linear weights in the ``.bin`` files.
    image_precision
        ``"fp32"`` or ``"int8"``; default: the spec's ``image_precision``. int8 runs the image
        tower's MLP and projection matrix products on 8-bit weights and inputs (faster,
        slightly less exact; see ``bench/RESULTS.md``). Attention stays in float32: with int8
        attention projections the embeddings moved far more (cosine 0.957 against 0.998 on the
        test weights). The text tower always stays in float32.

    Returns
    -------
    dict
        ``{"logit_scale": float, "files": [file names written]}``; ``logit_scale`` is the
        exponentiated learned temperature. A SigLIP model (family ``"siglip"``, see
        :mod:`core.convert_siglip`) also gives ``logit_bias``.

    Raises
    ------
    CheckpointError
        A key is missing, has the wrong shape (the message names the key and both shapes), or holds
        NaN/inf.
    """
    arch = spec.architecture
    out_dir = Path(out_dir)
    w = _Weights(state_dict)

    image_precision = image_precision or spec.image_precision
    if image_precision not in ("fp32", "int8"):
        raise ValueError(f"image_precision must be fp32 or int8, not {image_precision!r}")
    if arch.family == "siglip":
        from core.convert_siglip import convert_siglip

        return convert_siglip(state_dict, arch, out_dir, weight_storage, image_precision)
    visual = Graph(weight_storage)
    visual.quantize = image_precision == "int8"
    if arch.family == "vit":
        _build_vit(visual, w, arch)
    elif arch.family == "resnet":
        _build_resnet(visual, w, arch)
    elif arch.family == "fastvit":
        from core import fastvit, fastvit_graph

        folded = fastvit.reparameterize(state_dict, arch.vision, arch.embed_dim)
        fastvit_graph.build_image_tower(visual, folded, arch.vision, arch.embed_dim)
    else:
        raise CheckpointError(f"unsupported model family {arch.family!r}")

    text = Graph(weight_storage)
    prefix = _text_prefix(state_dict)
    _build_text(text, w, arch, prefix)

    t = arch.text
    token_embedding = w(f"{prefix}token_embedding.weight", (t["vocab_size"], t["width"]))
    positional = w(f"{prefix}positional_embedding", (t["context_length"], t["width"]))
    projection = w(f"{prefix}text_projection", (t["width"], arch.embed_dim))
    logit_scale = float(np.exp(w("logit_scale", ()).item()))

    visual.write(out_dir / VISUAL_FILES[0], out_dir / VISUAL_FILES[1])
    text.write(out_dir / TEXT_FILES[0], out_dir / TEXT_FILES[1])
    np.save(out_dir / HOST_FILES[0], token_embedding)
    np.save(out_dir / HOST_FILES[1], positional)
    np.save(out_dir / HOST_FILES[2], projection)
    return {"logit_scale": logit_scale, "files": [*VISUAL_FILES, *TEXT_FILES, *HOST_FILES]}


def _count_blocks(state_dict: Mapping[str, np.ndarray], pattern: str) -> int:
    regex = re.compile(pattern)
    indices = {int(m.group(1)) for key in state_dict if (m := regex.match(key))}
    return max(indices) + 1 if indices else 0


def _shape(state_dict: Mapping[str, np.ndarray], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise CheckpointError(f"checkpoint is missing key {key!r}; is this a CLIP checkpoint?")
    return tuple(np.shape(state_dict[key]))


def infer_architecture(
    state_dict: Mapping[str, np.ndarray], quick_gelu: bool = False
) -> Architecture:
    """Read a CLIP architecture off the shapes of a state dict.

    Attention heads are not stored in a checkpoint; like OpenAI's loader, this assumes 64 channels
    per head. Whether the MLPs use QuickGELU is not visible either and comes from ``quick_gelu``.
    """
    from core import fastvit

    p = _text_prefix(state_dict)
    text: dict[str, Any] = {
        "context_length": _shape(state_dict, f"{p}positional_embedding")[0],
        "vocab_size": _shape(state_dict, f"{p}token_embedding.weight")[0],
        "width": _shape(state_dict, f"{p}ln_final.weight")[0],
        "layers": _count_blocks(state_dict, rf"{re.escape(p)}transformer\.resblocks\.(\d+)\."),
    }
    text["heads"] = max(1, text["width"] // 64)
    embed_dim = _shape(state_dict, f"{p}text_projection")[1]
    if fastvit.is_fastvit(state_dict):
        # every open_clip model with a FastViT MCi tower has a text tower without causal mask
        text["causal"] = False
        return Architecture(
            "fastvit", embed_dim, quick_gelu, fastvit.infer_vision(state_dict), text
        )
    if "visual.proj" in state_dict and "visual.class_embedding" in state_dict:
        width, _, patch, _ = _shape(state_dict, "visual.conv1.weight")
        grid = math.isqrt(_shape(state_dict, "visual.positional_embedding")[0] - 1)
        vision: dict[str, Any] = {
            "image_size": grid * patch,
            "layers": _count_blocks(state_dict, r"visual\.transformer\.resblocks\.(\d+)\."),
            "width": width,
            "heads": max(1, width // 64),
            "patch_size": patch,
        }
        family = "vit"
    elif "visual.layer1.0.conv1.weight" in state_dict:
        layers = [
            _count_blocks(state_dict, rf"visual\.layer{i}\.(\d+)\.conv1\.weight")
            for i in (1, 2, 3, 4)
        ]
        width = _shape(state_dict, "visual.layer1.0.conv1.weight")[0]
        grid = math.isqrt(_shape(state_dict, "visual.attnpool.positional_embedding")[0] - 1)
        vision = {
            "image_size": grid * 32,
            "layers": layers,
            "width": width,
            "heads": max(1, width * 32 // 64),
        }
        family = "resnet"
    else:
        raise CheckpointError(
            "checkpoint has neither a ViT nor a modified-ResNet image tower "
            "(no 'visual.proj' or 'visual.layer1.0.conv1.weight')"
        )
    return Architecture(family, embed_dim, quick_gelu, vision, text)


def spec_for_checkpoint(
    name: str, state_dict: Mapping[str, np.ndarray], quick_gelu: bool = False
) -> ModelSpec:
    """A :class:`ModelSpec` for a checkpoint that is not in the registry (OpenAI mean and std;
    for a FastViT tower, MobileCLIP's: mean 0, std 1, bilinear)."""
    from core import fastvit
    from core.registry import Preprocess

    arch = infer_architecture(state_dict, quick_gelu)
    size = int(arch.vision["image_size"])
    preprocess = Preprocess(size=size, mean=OPENAI_MEAN)
    if arch.family == "fastvit":
        preprocess = Preprocess(
            size,
            fastvit.PREPROCESS_MEAN,
            fastvit.PREPROCESS_STD,
            interpolation=fastvit.PREPROCESS_INTERPOLATION,
        )
    return ModelSpec(
        name=name,
        architecture=arch,
        preprocess=preprocess,
        description="installed from a local checkpoint",
    )
