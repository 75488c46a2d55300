"""Convert a SigLIP checkpoint (open_clip's ``CustomTextCLIP``) into ncnn models.

The checkpoint is the state dict open_clip saves for its SigLIP models (``visual.trunk.*`` for the
timm image tower, ``text.*`` for the text tower, ``logit_scale`` and ``logit_bias``). Every
detail that differs between SigLIP models (LayerNorm epsilon, GELU flavour, MLP width, heads)
comes from the model's :class:`core.registry.Architecture`, which the registry copies from
open_clip's model config and timm's model definition.

``visual.param`` / ``visual.bin``
    input ``image`` ``[3, S, S]`` float32 (preprocessed), output ``embedding`` ``[1, D]`` (not
    yet normalised). timm's ``VisionTransformer`` with no class token: patch convolution (with
    bias), positional embedding, pre-norm blocks (``norm1``, attention, ``norm2``, MLP), the final
    ``norm``, then the attention-pooling ("map") head: a learned latent query attends over every
    patch token, ``proj``, then ``x + mlp(norm(x))``.

``text.param`` / ``text.bin``
    input ``x`` ``[L, W]`` (token embeddings plus positional embeddings of all ``L`` positions,
    padding included), output ``embedding`` ``[1, D]``. open_clip's ``TextTransformer`` with
    ``no_causal_mask``: every position attends to every other one, so the padding changes the
    result and the whole context is run, as open_clip runs it. Pooling takes the last position;
    ``ln_final`` and the projection (a linear layer with bias) follow.

The token-embedding lookup is done on the host from ``token_embedding.npy`` and
``positional_embedding.npy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from core.convert import (
    TEXT_FILES,
    VISUAL_FILES,
    _attention,
    _gelu,
    _layer_norm,
    _linear,
    _take_rows,
    _Weights,
)
from core.errors import CheckpointError
from core.ncnn_graph import Graph
from core.registry import Architecture

HOST_FILES = ("token_embedding.npy", "positional_embedding.npy")
ACTIVATIONS = ("gelu", "gelu_tanh")

VISION_PREFIX = "visual.trunk"
TEXT_PREFIX = "text"


def _act(tower: dict[str, Any], which: str) -> bool:
    """Whether ``tower``'s GELU is the tanh approximation; refuses an unknown activation."""
    act = tower.get("act", "gelu")
    if act not in ACTIVATIONS:
        raise CheckpointError(f"unsupported {which} activation {act!r}; known: {ACTIVATIONS}")
    return bool(act == "gelu_tanh")


def _mlp(
    g: Graph,
    x: str,
    w: _Weights,
    names: tuple[str, str],
    width: int,
    hidden: int,
    tanh: bool,
    tag: str,
) -> str:
    """``fc2(gelu(fc1(x)))`` with the weights ``names`` (``fc1``/``fc2`` or ``c_fc``/``c_proj``)."""
    first, second = names
    h = _linear(
        g, x, f"{tag}_fc1", w(f"{first}.weight", (hidden, width)), w(f"{first}.bias", (hidden,))
    )
    h = _gelu(g, h, f"{tag}_gelu", quick=False, tanh=tanh)
    return _linear(
        g, h, f"{tag}_fc2", w(f"{second}.weight", (width, hidden)), w(f"{second}.bias", (width,))
    )


def _split_rows(
    weight: np.ndarray, bias: np.ndarray, parts: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """A fused projection ``[parts * W, in]`` cut into ``parts`` projections of ``W`` rows."""
    rows = weight.shape[0] // parts
    return [
        (weight[i * rows : (i + 1) * rows], bias[i * rows : (i + 1) * rows]) for i in range(parts)
    ]


# ---------------------------------------------------------------------------------------------
# image tower: timm ViT, no class token, attention-pooling head


class _BlockKeys(NamedTuple):
    """Where one tower keeps the parts of a transformer block, after ``{prefix}.``.

    ``norms`` are the two LayerNorms' keys and the tags their ncnn layers get.
    """

    norms: tuple[tuple[str, str], tuple[str, str]]
    qkv: tuple[str, str]
    out: tuple[str, str]
    mlp: tuple[str, str]


_VISION_KEYS = _BlockKeys(
    norms=(("norm1", "norm1"), ("norm2", "norm2")),
    qkv=("attn.qkv.weight", "attn.qkv.bias"),
    out=("attn.proj.weight", "attn.proj.bias"),
    mlp=("mlp.fc1", "mlp.fc2"),
)
_TEXT_KEYS = _BlockKeys(
    norms=(("ln_1", "ln1"), ("ln_2", "ln2")),
    qkv=("attn.in_proj_weight", "attn.in_proj_bias"),
    out=("attn.out_proj.weight", "attn.out_proj.bias"),
    mlp=("mlp.c_fc", "mlp.c_proj"),
)


def _block(
    g: Graph,
    x: str,
    w: _Weights,
    cfg: dict[str, Any],
    which: str,
    prefix: str,
    keys: _BlockKeys,
    index: int,
) -> str:
    """One pre-norm transformer block without a mask, as both SigLIP towers have it."""
    width, eps, tanh = cfg["width"], float(cfg["norm_eps"]), _act(cfg, which)
    tag = f"block{index}"
    (norm1, norm1_tag), (norm2, norm2_tag) = keys.norms
    h = _layer_norm(g, x, f"{tag}_{norm1_tag}", w, f"{prefix}.{norm1}", width, eps)
    q, k, v_proj = _split_rows(
        w(f"{prefix}.{keys.qkv[0]}", (3 * width, width)),
        w(f"{prefix}.{keys.qkv[1]}", (3 * width,)),
        3,
    )
    out = (
        w(f"{prefix}.{keys.out[0]}", (width, width)),
        w(f"{prefix}.{keys.out[1]}", (width,)),
    )
    h = _attention(g, [h], f"{tag}_attn", q, k, v_proj, out, cfg["heads"], masked=False)
    x = g.layer("BinaryOp", f"{tag}_add1", [x, h], {0: 0})
    h = _layer_norm(g, x, f"{tag}_{norm2_tag}", w, f"{prefix}.{norm2}", width, eps)
    hidden = int(width * cfg.get("mlp_ratio", 4))
    fc1, fc2 = (f"{prefix}.{name}" for name in keys.mlp)
    h = _mlp(g, h, w, (fc1, fc2), width, hidden, tanh, f"{tag}_mlp")
    return g.layer("BinaryOp", f"{tag}_add2", [x, h], {0: 0})


def _vision_block(g: Graph, x: str, w: _Weights, v: dict[str, Any], index: int) -> str:
    prefix = f"{VISION_PREFIX}.blocks.{index}"
    return _block(g, x, w, v, "image tower", prefix, _VISION_KEYS, index)


def _build_vision(g: Graph, w: _Weights, arch: Architecture) -> None:
    v = arch.vision
    width, patch, size = v["width"], v["patch_size"], v["image_size"]
    eps, tanh = float(v["norm_eps"]), _act(v, "image tower")
    grid = size // patch
    tokens = grid * grid
    x = g.input("image")
    x = g.layer(
        "Convolution",
        "patch_embed",
        [x],
        {0: width, 1: patch, 3: patch, 5: 1, 6: width * 3 * patch * patch},
        [
            (w(f"{VISION_PREFIX}.patch_embed.proj.weight", (width, 3, patch, patch)), True),
            (w(f"{VISION_PREFIX}.patch_embed.proj.bias", (width,)), False),
        ],
    )
    x = g.layer("Reshape", "patch_flatten", [x], {0: tokens, 1: width})
    x = g.layer("Permute", "patch_tokens", [x], {0: 1})
    pos = g.layer(
        "MemoryData",
        "pos_embed",
        [],
        {0: width, 1: tokens},
        [(w(f"{VISION_PREFIX}.pos_embed", (1, tokens, width))[0], False)],
    )
    x = g.layer("BinaryOp", "add_pos", [x, pos], {0: 0})
    for i in range(v["layers"]):
        x = _vision_block(g, x, w, v, i)
    x = _layer_norm(g, x, "norm", w, f"{VISION_PREFIX}.norm", width, eps)

    # attention pooling: one learned latent query over every patch token
    pool = f"{VISION_PREFIX}.attn_pool"
    latent = g.layer(
        "MemoryData",
        "pool_latent",
        [],
        {0: width, 1: 1},
        [(w(f"{pool}.latent", (1, 1, width))[0], False)],
    )
    q = (w(f"{pool}.q.weight", (width, width)), w(f"{pool}.q.bias", (width,)))
    k, val = _split_rows(
        w(f"{pool}.kv.weight", (2 * width, width)), w(f"{pool}.kv.bias", (2 * width,)), 2
    )
    out = (w(f"{pool}.proj.weight", (width, width)), w(f"{pool}.proj.bias", (width,)))
    pooled = _attention(g, [latent, x], "pool_attn", q, k, val, out, v["heads"], masked=False)
    h = _layer_norm(g, pooled, "pool_norm", w, f"{pool}.norm", width, eps)
    hidden = int(width * v.get("mlp_ratio", 4))
    h = _mlp(g, h, w, (f"{pool}.mlp.fc1", f"{pool}.mlp.fc2"), width, hidden, tanh, "pool_mlp")
    g.layer("BinaryOp", "embedding", [pooled, h], {0: 0})
    if arch.embed_dim != width:
        raise CheckpointError(
            f"the image tower is {width} wide but the model's embeddings have {arch.embed_dim} "
            "dimensions; a separate image projection is not supported"
        )


# ---------------------------------------------------------------------------------------------
# text tower: bidirectional transformer, last-token pooling, projection with bias


def _text_block(g: Graph, x: str, w: _Weights, t: dict[str, Any], index: int) -> str:
    prefix = f"{TEXT_PREFIX}.transformer.resblocks.{index}"
    return _block(g, x, w, t, "text tower", prefix, _TEXT_KEYS, index)


def _check_text_options(t: dict[str, Any]) -> None:
    if t.get("causal", False):
        raise CheckpointError("a SigLIP text tower with a causal mask is not supported")
    if t.get("pool", "last") != "last":
        raise CheckpointError(f"text pooling {t.get('pool')!r} is not supported; only 'last'")
    if not t.get("proj_bias", True):
        raise CheckpointError("a SigLIP text projection without bias is not supported")


def _build_text(g: Graph, w: _Weights, arch: Architecture) -> None:
    t = arch.text
    _check_text_options(t)
    width, length = t["width"], t["context_length"]
    x = g.input("x")
    for i in range(t["layers"]):
        x = _text_block(g, x, w, t, i)
    x = _take_rows(g, x, "last_token", length - 1, length)
    x = _layer_norm(g, x, "ln_final", w, f"{TEXT_PREFIX}.ln_final", width, float(t["norm_eps"]))
    _linear(
        g,
        x,
        "embedding",
        w(f"{TEXT_PREFIX}.text_projection.weight", (arch.embed_dim, width)),
        w(f"{TEXT_PREFIX}.text_projection.bias", (arch.embed_dim,)),
    )


def convert_siglip(
    state_dict: Mapping[str, np.ndarray],
    arch: Architecture,
    out_dir: Path,
    weight_storage: str = "fp32",
    image_precision: str = "fp32",
) -> dict[str, Any]:
    """Write the ncnn image and text encoders of a SigLIP model into ``out_dir``.

    Same contract as :func:`core.convert.convert_checkpoint`; the result also holds
    ``logit_bias``, the learned bias of the sigmoid loss.
    """
    out_dir = Path(out_dir)
    w = _Weights(state_dict)
    visual = Graph(weight_storage)
    visual.quantize = image_precision == "int8"
    _build_vision(visual, w, arch)
    text = Graph(weight_storage)
    _build_text(text, w, arch)

    t = arch.text
    token_embedding = w(f"{TEXT_PREFIX}.token_embedding.weight", (t["vocab_size"], t["width"]))
    positional = w(f"{TEXT_PREFIX}.positional_embedding", (t["context_length"], t["width"]))
    logit_scale = float(np.exp(np.float64(w("logit_scale", ()).item())))
    logit_bias = float(w("logit_bias", ()).item())

    visual.write(out_dir / VISUAL_FILES[0], out_dir / VISUAL_FILES[1])
    text.write(out_dir / TEXT_FILES[0], out_dir / TEXT_FILES[1])
    np.save(out_dir / HOST_FILES[0], token_embedding)
    np.save(out_dir / HOST_FILES[1], positional)
    return {
        "logit_scale": logit_scale,
        "logit_bias": logit_bias,
        "files": [*VISUAL_FILES, *TEXT_FILES, *HOST_FILES],
    }
