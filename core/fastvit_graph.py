"""The ncnn network of a FastViT "MCi" image tower, from the folded weights.

The weights come from :func:`core.fastvit.reparameterize` (either checkpoint layout, folded).
:func:`build_image_tower` writes the inference network (input ``image`` ``[3, S, S]``,
output ``embedding`` ``[D]``):

1. stem: three MobileOne convolutions (3x3 stride 2, depthwise 3x3 stride 2, 1x1), each + GELU;
2. four stages; a stage that changes width starts with a patch embedding (grouped 7x7 stride 2
   convolution, squeeze-excite in stages 3 and 4, GELU, 1x1 MobileOne convolution, GELU); the
   last stage adds the conditional positional encoding (depthwise 7x7, identity folded in);
3. blocks: RepMixer blocks (depthwise 3x3 token mixer, then a convolutional MLP: depthwise 7x7
   with its BatchNorm folded, 1x1 expansion, GELU, 1x1 projection scaled by the layer scale, added
   back) or attention blocks (BatchNorm folded into the query, key and value projections,
   multi-head attention of 32-channel heads over the ``H*W`` positions, output projection scaled by
   the layer scale, added back; then the same convolutional MLP);
4. head: grouped 3x3 MobileOne convolution to twice the width, squeeze-excite, GELU, global
   average pooling, and the linear projection to the embedding.

Every BatchNorm and layer scale is folded into the weights of its neighbouring convolution or
projection, so the network holds only convolutions, GELU, attention and a few element-wise adds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from core.errors import CheckpointError
from core.fastvit import (
    BN_EPS,
    CLS_RATIO,
    DOWN_PATCH,
    DOWN_STRIDE,
    HEAD_DIM,
    MLP_CONV_KERNEL,
    POS_KERNEL,
    REPMIXER_KERNEL,
    Conv,
    has_downsample,
    stem_convs,
)
from core.ncnn_graph import Graph

__all__ = ["build_image_tower"]


def _convolution(
    g: Graph, x: str, name: str, conv: Conv, kernel: np.ndarray, bias: np.ndarray
) -> str:
    """A convolution of ``conv``'s shape on ``x``: dense (one group) or depthwise (one output per
    input channel); :func:`_multiplied` makes the grouped ones with more outputs per channel."""
    params: dict[int, Any] = {
        0: conv.out_chs,
        1: conv.kernel,
        3: conv.stride,
        4: conv.padding,
        5: 1,
        6: int(kernel.size),
    }
    weights = [(np.asarray(kernel, np.float32), True), (np.asarray(bias, np.float32), False)]
    if conv.groups == 1:
        return g.layer("Convolution", name, [x], params, weights)
    assert conv.groups == conv.in_chs == conv.out_chs, conv
    params[7] = conv.groups
    return g.layer("ConvolutionDepthWise", name, [x], params, weights)


def _multiplied(
    g: Graph, x: str, name: str, conv: Conv, kernel: np.ndarray, bias: np.ndarray
) -> tuple[str, np.ndarray]:
    """A grouped convolution with one input channel and ``m`` outputs per group (the patch
    embeddings and the final convolution), as ``m`` depthwise convolutions of ``x`` whose outputs
    are concatenated: ncnn has fast depthwise kernels and none for this grouping.

    Returns the output blob and ``order``: output channel ``k`` of the blob is channel
    ``order[k]`` of the convolution (``j * C + c`` holds ``c * m + j``), so the layers that read
    it take their per-channel weights in that order. Concatenating the outputs moves ``m`` times
    fewer values than repeating the input channels would (the convolutions have stride 2, or
    the final one a small map); the copies took about 4 % of MobileCLIP2-S0's time
    (``bench/layer_profile.py``).
    """
    channels = conv.in_chs
    multiplier = conv.out_chs // channels
    assert conv.groups == channels and conv.out_chs == multiplier * channels, conv
    single = Conv(channels, channels, conv.kernel, conv.stride, channels)
    parts, order = [], []
    for j in range(multiplier):
        outputs = np.arange(channels) * multiplier + j
        parts.append(_convolution(g, x, f"{name}_{j}", single, kernel[outputs], bias[outputs]))
        order.append(outputs)
    return g.layer("Concat", name, parts, {0: 0}), np.concatenate(order)


def _reorder_channels(
    f: dict[str, np.ndarray], order: np.ndarray, inputs: list[str], outputs: list[str]
) -> None:
    """Make the weights in ``f`` read channels in ``order``: ``inputs`` are weights whose
    second axis runs over the channels, ``outputs`` weights and biases whose first axis does."""
    for key in inputs:
        f[key] = np.ascontiguousarray(f[key][:, order])
    for key in outputs:
        f[key] = np.ascontiguousarray(f[key][order])


def _gelu(g: Graph, x: str, name: str) -> str:
    return g.layer("GELU", name, [x], {0: 0})


def _squeeze_excite(
    g: Graph, x: str, name: str, f: Mapping[str, np.ndarray], path: str, channels: int
) -> str:
    """``x * sigmoid(fc2(relu(fc1(mean(x)))))`` per channel."""
    pooled = g.layer("Pooling", f"{name}_pool", [x], {0: 1, 4: 1})
    w1 = f[f"{path}.fc1.weight"]
    rd = w1.shape[0]
    h = g.layer(
        "InnerProduct",
        f"{name}_fc1",
        [pooled],
        {0: rd, 1: 1, 2: int(w1.size), 9: 1},
        [(w1.reshape(rd, channels), True), (f[f"{path}.fc1.bias"], False)],
    )
    gate = g.layer(
        "InnerProduct",
        f"{name}_fc2",
        [h],
        {0: channels, 1: 1, 2: channels * rd, 9: 4},
        [(f[f"{path}.fc2.weight"].reshape(channels, rd), True), (f[f"{path}.fc2.bias"], False)],
    )
    gate = g.layer("Reshape", f"{name}_gate", [gate], {0: 1, 1: 1, 2: channels})
    return g.layer("BinaryOp", name, [x, gate], {0: 2})


def _bn_affine(f: Mapping[str, np.ndarray], path: str) -> tuple[np.ndarray, np.ndarray]:
    gamma = f[f"{path}.weight"].astype(np.float64)
    var = f[f"{path}.running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + BN_EPS)
    return scale, f[f"{path}.bias"] - f[f"{path}.running_mean"] * scale


def _conv_mlp(
    g: Graph, x: str, tag: str, f: Mapping[str, np.ndarray], path: str, gamma_key: str, dim: int
) -> str:
    """``x + gamma * fc2(gelu(fc1(bn(dwconv7(x)))))``, BatchNorm and ``gamma`` folded."""
    scale, shift = _bn_affine(f, f"{path}.conv.bn")
    dw = Conv(dim, dim, MLP_CONV_KERNEL, 1, dim)
    kernel = f[f"{path}.conv.conv.weight"] * scale[:, None, None, None]
    h = _convolution(g, x, f"{tag}_mlp_dw", dw, kernel, shift)
    w1 = f[f"{path}.fc1.weight"]
    hidden = w1.shape[0]
    h = _convolution(g, h, f"{tag}_mlp_fc1", Conv(dim, hidden, 1), w1, f[f"{path}.fc1.bias"])
    h = _gelu(g, h, f"{tag}_mlp_gelu")
    gamma = f[gamma_key].reshape(dim).astype(np.float64)
    w2 = f[f"{path}.fc2.weight"] * gamma[:, None, None, None]
    b2 = f[f"{path}.fc2.bias"] * gamma
    h = _convolution(g, h, f"{tag}_mlp_fc2", Conv(hidden, dim, 1), w2, b2)
    return g.layer("BinaryOp", f"{tag}_mlp_add", [x, h], {0: 0})


def _attention_block(
    g: Graph, x: str, tag: str, f: Mapping[str, np.ndarray], path: str, dim: int, size: int
) -> str:
    """``x + gamma1 * attention(bn(x))``, as tokens ``[H*W, C]``, then the convolutional MLP."""
    tokens = size * size
    h = g.layer("Reshape", f"{tag}_flatten", [x], {0: tokens, 1: dim})
    h = g.layer("Permute", f"{tag}_tokens", [h], {0: 1})
    scale, shift = _bn_affine(f, f"{path}.norm")
    qkv = f[f"{path}.token_mixer.qkv.weight"].astype(np.float64)
    projections = []
    for i in range(3):
        weight = qkv[i * dim : (i + 1) * dim]
        projections += [(weight * scale[None, :], True), (weight @ shift, False)]
    gamma = f[f"{path}.layer_scale_1.gamma"].reshape(dim).astype(np.float64)
    out_w = f[f"{path}.token_mixer.proj.weight"] * gamma[:, None]
    out_b = f[f"{path}.token_mixer.proj.bias"] * gamma
    projections += [(out_w, True), (out_b, False)]
    projections = [(np.asarray(a, np.float32), t) for a, t in projections]
    h = g.layer(
        "MultiHeadAttention",
        f"{tag}_attn",
        [h],
        {0: dim, 1: dim // HEAD_DIM, 2: dim * dim, 3: dim, 4: dim},
        projections,
    )
    h = g.layer("Permute", f"{tag}_channels", [h], {0: 1})
    h = g.layer("Reshape", f"{tag}_unflatten", [h], {0: size, 1: size, 2: dim})
    x = g.layer("BinaryOp", f"{tag}_attn_add", [x, h], {0: 0})
    return _conv_mlp(g, x, tag, f, f"{path}.mlp", f"{path}.layer_scale_2.gamma", dim)


def build_image_tower(
    g: Graph, folded: Mapping[str, np.ndarray], vision: Mapping[str, Any], embed_dim: int
) -> None:
    """Write the image tower into ``g`` from :func:`reparameterize`'s output."""
    if g.quantize:
        raise CheckpointError("int8 is not available for FastViT image towers; use fp32")
    f = dict(folded)  # the layers after a multiplied convolution get reordered copies

    def conv(x: str, name: str, path: str, spec: Conv) -> str:
        weight, bias = f[f"{path}.reparam_conv.weight"], f[f"{path}.reparam_conv.bias"]
        return _convolution(g, x, name, spec, weight, bias)

    def grouped(x: str, name: str, path: str, spec: Conv) -> tuple[str, np.ndarray | None]:
        """``conv``, for a grouped convolution that may have several outputs per channel."""
        if spec.out_chs == spec.in_chs:
            return conv(x, name, path, spec), None
        weight, bias = f[f"{path}.reparam_conv.weight"], f[f"{path}.reparam_conv.bias"]
        return _multiplied(g, x, name, spec, weight, bias)

    def se_keys(path: str) -> tuple[list[str], list[str]]:
        return [f"{path}.fc1.weight"], [f"{path}.fc2.weight", f"{path}.fc2.bias"]

    dims = list(vision["embed_dims"])
    size = int(vision["image_size"])
    x = g.input("image")
    for index, spec in enumerate(stem_convs(dims)):
        x = _gelu(g, conv(x, f"stem{index}", f"stem.{index}", spec), f"stem{index}_gelu")
        size = (size + 2 * spec.padding - spec.kernel) // spec.stride + 1
    prev = dims[0]
    for i, depth in enumerate(vision["layers"]):
        dim = dims[i]
        stage = f"stages.{i}"
        if has_downsample(vision, i, prev):
            down = f"{stage}.downsample.proj"
            spec = Conv(prev, dim, DOWN_PATCH, DOWN_STRIDE, prev)
            x, order = grouped(x, f"stage{i}_down", f"{down}.0", spec)
            size = (size + 2 * spec.padding - spec.kernel) // spec.stride + 1
            se = vision["se_downsamples"][i]
            if order is not None:
                inputs, outputs = se_keys(f"{down}.0.se") if se else ([], [])
                _reorder_channels(f, order, [*inputs, f"{down}.1.reparam_conv.weight"], outputs)
            if se:
                x = _squeeze_excite(g, x, f"stage{i}_down_se", f, f"{down}.0.se", dim)
            x = _gelu(g, x, f"stage{i}_down_gelu")
            x = conv(x, f"stage{i}_down_pw", f"{down}.1", Conv(dim, dim, 1))
            x = _gelu(g, x, f"stage{i}_down_pw_gelu")
        if vision["pos_embs"][i]:
            x = conv(x, f"stage{i}_pos", f"{stage}.pos_emb", Conv(dim, dim, POS_KERNEL, 1, dim))
        for j in range(depth):
            block = f"{stage}.blocks.{j}"
            tag = f"stage{i}_block{j}"
            if vision["token_mixers"][i] == "repmixer":
                mixer = Conv(dim, dim, REPMIXER_KERNEL, 1, dim)
                x = conv(x, f"{tag}_mixer", f"{block}.token_mixer", mixer)
                x = _conv_mlp(g, x, tag, f, f"{block}.mlp", f"{block}.layer_scale.gamma", dim)
            else:
                x = _attention_block(g, x, tag, f, block, dim, size)
        prev = dim
    final = CLS_RATIO * prev
    x, order = grouped(x, "final_conv", "final_conv", Conv(prev, final, 3, 1, prev))
    if order is not None:
        inputs, outputs = se_keys("final_conv.se")
        _reorder_channels(f, order, [*inputs, "head.fc.weight"], outputs)
    x = _squeeze_excite(g, x, "final_se", f, "final_conv.se", final)
    x = _gelu(g, x, "final_gelu")
    x = g.layer("Pooling", "global_pool", [x], {0: 1, 4: 1})
    weight = f["head.fc.weight"]
    g.layer(
        "InnerProduct",
        "embedding",
        [x],
        {0: embed_dim, 1: 1, 2: int(weight.size)},
        [(weight, True), (f["head.fc.bias"], False)],
    )
