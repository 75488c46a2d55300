"""FastViT "MCi" image towers (MobileCLIP2-S0 and -S2) for the ncnn converter.

open_clip builds these towers with timm (``fastvit_mci0``, ``fastvit_mci2``) and stores them under
``visual.trunk.``. Their checkpoints come in two layouts, and both are read:

* training layout: MobileOne blocks, large-kernel convolutions, RepMixers and conditional
  positional encodings with their separate branches and BatchNorms;
* folded layout: the same blocks after timm's ``reparameterize_model``, one ``reparam_conv`` each.

:func:`reparameterize` turns either into the folded layout, computing exactly what timm's
reparameterisation computes (``MobileOneBlock._get_kernel_bias``,
``ReparamLargeKernelConv.get_kernel_bias``, ``RepMixer.reparameterize``,
``RepConditionalPosEnc.reparameterize``), under the same key names. A block present in both
layouts at once, a key that belongs to neither, or a missing key is refused with a
:class:`~core.errors.CheckpointError` that names the key.

The inference network built from the folded layout is :mod:`core.fastvit_graph`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import CheckpointError

__all__ = [
    "TRUNK_PREFIX",
    "Conv",
    "checkpoint_parameters",
    "has_downsample",
    "reparameterize",
    "stem_convs",
]

TRUNK_PREFIX = "visual.trunk."
VISUAL_PREFIX = "visual."
BN_EPS = 1e-5
DOWNSAMPLES = (False, True, True, True)  # timm's FastVit default, kept by fastvit_mci0/2
STEM_KERNEL = 3
REPMIXER_KERNEL = 3
DOWN_PATCH = 7
DOWN_STRIDE = 2
SMALL_KERNEL = 3
POS_KERNEL = 7
MLP_CONV_KERNEL = 7
HEAD_DIM = 32
CLS_RATIO = 2
SE_DOWN = (0.25, 8)  # rd_ratio, rd_divisor of the patch embedding's squeeze-excite
SE_FINAL = (1.0 / 16, 1)  # of the final convolution's squeeze-excite
IGNORED_SUFFIX = ".num_batches_tracked"


@dataclass(frozen=True)
class Conv:
    """One convolution of the tower: shapes and stride, as timm creates it."""

    in_chs: int
    out_chs: int
    kernel: int
    stride: int = 1
    groups: int = 1

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.out_chs, self.in_chs // self.groups, self.kernel, self.kernel)

    @property
    def padding(self) -> int:
        # timm's default symmetric padding, ((stride - 1) + (kernel - 1)) // 2
        return ((self.stride - 1) + (self.kernel - 1)) // 2


def _se_channels(channels: int, ratio: float, divisor: int) -> int:
    """Reduced width of a squeeze-excite, rounded as timm's ``make_divisible`` does."""
    value = channels * ratio
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded


class _Reader:
    """Shape- and value-checked access to the tower's keys, remembering which were read."""

    def __init__(self, state_dict: Mapping[str, np.ndarray], prefix: str) -> None:
        self._sd = state_dict
        self.prefix = prefix
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return self.prefix + key in self._sd

    def under(self, path: str) -> list[str]:
        """Keys below ``path`` (relative names), learned-state keys only."""
        start = f"{self.prefix}{path}."
        return [
            k[len(self.prefix) :]
            for k in self._sd
            if k.startswith(start) and not k.endswith(IGNORED_SUFFIX)
        ]

    def __call__(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        full = self.prefix + key
        if full not in self._sd:
            raise CheckpointError(f"checkpoint is missing key {full!r} (expected shape {shape})")
        value = np.asarray(self._sd[full])
        if tuple(value.shape) != tuple(shape):
            raise CheckpointError(
                f"checkpoint key {full!r} has shape {tuple(value.shape)} "
                f"but the model needs {tuple(shape)}"
            )
        value = value.astype(np.float64)
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"checkpoint key {full!r} holds NaN or infinite values")
        self.used.add(full)
        return value


IMAGE_SIZE = 256  # every open_clip MobileCLIP and MobileCLIP2 config with an MCi tower
PREPROCESS_MEAN = (0.0, 0.0, 0.0)  # open_clip's pretrained config of those models (_mccfg)
PREPROCESS_STD = (1.0, 1.0, 1.0)
PREPROCESS_INTERPOLATION = "bilinear"


def is_fastvit(state_dict: Mapping[str, np.ndarray]) -> bool:
    """Whether a checkpoint's image tower is a FastViT trunk (either layout)."""
    stem = f"{TRUNK_PREFIX}stem.0."
    return any(k.startswith(stem) for k in state_dict)


def infer_vision(state_dict: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The ``vision`` entry of a FastViT MCi tower, read off a checkpoint's keys and shapes.

    The input size is not stored; it is taken as 256, as every open_clip config of these towers
    has it.
    """
    prefix = f"{TRUNK_PREFIX}stages."
    stages = sorted(
        {int(k[len(prefix) :].split(".", 1)[0]) for k in state_dict if k.startswith(prefix)}
    )
    if stages != list(range(len(DOWNSAMPLES))):
        raise CheckpointError(
            f"FastViT image tower with stages {stages}: only the four-stage MCi towers "
            "(MobileCLIP2-S0, -S2 and alike) are supported"
        )
    vision: dict[str, Any] = {"image_size": IMAGE_SIZE}
    for field in ("layers", "embed_dims", "token_mixers", "se_downsamples", "pos_embs"):
        vision[field] = []
    for i in stages:
        stage = f"{prefix}{i}."
        blocks = {
            int(k[len(stage) + 7 :].split(".", 1)[0])
            for k in state_dict
            if k.startswith(f"{stage}blocks.")
        }
        fc2 = f"{stage}blocks.0.mlp.fc2.weight"
        if not blocks or fc2 not in state_dict:
            raise CheckpointError(f"checkpoint is missing key {fc2!r}")
        dim = int(np.shape(state_dict[fc2])[0])
        if i == 0:
            hidden = int(np.shape(state_dict[f"{stage}blocks.0.mlp.fc1.weight"])[0])
            vision["mlp_ratio"] = hidden // dim
        vision["layers"].append(max(blocks) + 1)
        vision["embed_dims"].append(dim)
        attention = f"{stage}blocks.0.token_mixer.qkv.weight" in state_dict
        vision["token_mixers"].append("attention" if attention else "repmixer")
        vision["se_downsamples"].append(f"{stage}downsample.proj.0.se.fc1.weight" in state_dict)
        vision["pos_embs"].append(any(k.startswith(f"{stage}pos_emb.") for k in state_dict))
    return vision


# ---------------------------------------------------------------------------------------------
# folding (timm's reparameterisation, in numpy)


def _bn_scale_shift(r: _Reader, path: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """A BatchNorm in eval mode as ``x * scale + shift`` per channel."""
    gamma = r(f"{path}.weight", (channels,))
    beta = r(f"{path}.bias", (channels,))
    mean = r(f"{path}.running_mean", (channels,))
    var = r(f"{path}.running_var", (channels,))
    scale = gamma / np.sqrt(var + BN_EPS)
    return scale, beta - mean * scale


def _conv_bn(r: _Reader, path: str, conv: Conv) -> tuple[np.ndarray, np.ndarray]:
    """A ``ConvNormAct`` branch (``path.conv`` without bias, ``path.bn``) as one kernel and bias."""
    kernel = r(f"{path}.conv.weight", conv.shape)
    scale, shift = _bn_scale_shift(r, f"{path}.bn", conv.out_chs)
    return kernel * scale[:, None, None, None], shift


def _identity_kernel(channels: int, groups: int, kernel: int) -> np.ndarray:
    """The kernel of ``x -> x`` for a grouped convolution, as timm builds its ``id_tensor``."""
    per_group = channels // groups
    identity = np.zeros((channels, per_group, kernel, kernel))
    identity[np.arange(channels), np.arange(channels) % per_group, kernel // 2, kernel // 2] = 1
    return identity


def _pad_to(kernel: np.ndarray, size: int) -> np.ndarray:
    pad = (size - kernel.shape[-1]) // 2
    return np.pad(kernel, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def _folded_or_branches(r: _Reader, path: str, branch_names: tuple[str, ...]) -> bool:
    """Whether block ``path`` is stored folded (True) or as training branches (False)."""
    branches = [k for k in r.under(path) if k[len(path) + 1 :].split(".", 1)[0] in branch_names]
    if r.has(f"{path}.reparam_conv.weight"):
        if branches:
            raise CheckpointError(
                f"checkpoint key {r.prefix + branches[0]!r} is a training branch of a block the "
                f"checkpoint also holds folded ({r.prefix}{path}.reparam_conv.weight); "
                "a block must be stored one way"
            )
        return True
    if not branches:
        raise CheckpointError(
            f"checkpoint is missing key {r.prefix}{path}.reparam_conv.weight "
            f"(or the training branches of {r.prefix}{path})"
        )
    return False


def _mobileone(
    r: _Reader, path: str, conv: Conv, *, conv_branches: int = 1, scale_branch: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``MobileOneBlock`` -> (kernel, bias) of its ``reparam_conv``."""
    if _folded_or_branches(r, path, ("conv_kxk", "conv_scale", "identity")):
        return _folded(r, path, conv)
    kernel = np.zeros(conv.shape)
    bias = np.zeros(conv.out_chs)
    for index in range(conv_branches):
        k, b = _conv_bn(r, f"{path}.conv_kxk.{index}", conv)
        kernel += k
        bias += b
    if scale_branch and conv.kernel > 1:
        k, b = _conv_bn(r, f"{path}.conv_scale", Conv(conv.in_chs, conv.out_chs, 1, 1, conv.groups))
        kernel += _pad_to(k, conv.kernel)
        bias += b
    if conv.in_chs == conv.out_chs and conv.stride == 1:
        scale, shift = _bn_scale_shift(r, f"{path}.identity", conv.in_chs)
        kernel += (
            _identity_kernel(conv.in_chs, conv.groups, conv.kernel) * scale[:, None, None, None]
        )
        bias += shift
    return kernel, bias


def _folded(r: _Reader, path: str, conv: Conv) -> tuple[np.ndarray, np.ndarray]:
    return r(f"{path}.reparam_conv.weight", conv.shape), r(
        f"{path}.reparam_conv.bias", (conv.out_chs,)
    )


def _large_kernel(r: _Reader, path: str, conv: Conv) -> tuple[np.ndarray, np.ndarray]:
    """``ReparamLargeKernelConv`` (large and small kernel branches) -> its ``reparam_conv``."""
    if _folded_or_branches(r, path, ("large_conv", "small_conv")):
        return _folded(r, path, conv)
    kernel, bias = _conv_bn(r, f"{path}.large_conv", conv)
    small = Conv(conv.in_chs, conv.out_chs, SMALL_KERNEL, conv.stride, conv.groups)
    k, b = _conv_bn(r, f"{path}.small_conv", small)
    return kernel + _pad_to(k, conv.kernel), bias + b


def _repmixer(r: _Reader, path: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``RepMixer``: ``x + gamma * (mixer(x) - norm(x))`` -> one depthwise kernel and bias."""
    conv = Conv(dim, dim, REPMIXER_KERNEL, 1, dim)
    if _folded_or_branches(r, path, ("mixer", "norm", "layer_scale")):
        return _folded(r, path, conv)
    mixer_k, mixer_b = _mobileone(r, f"{path}.mixer", conv)
    norm_k, norm_b = _mobileone(r, f"{path}.norm", conv, conv_branches=0, scale_branch=False)
    gamma = r(f"{path}.layer_scale.gamma", (dim, 1, 1)).reshape(dim)
    identity = _identity_kernel(dim, dim, REPMIXER_KERNEL)
    kernel = identity + gamma[:, None, None, None] * (mixer_k - norm_k)
    return kernel, gamma * (mixer_b - norm_b)


def _pos_enc(r: _Reader, path: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``RepConditionalPosEnc``: ``x + dwconv(x)`` -> one depthwise kernel and bias."""
    conv = Conv(dim, dim, POS_KERNEL, 1, dim)
    if _folded_or_branches(r, path, ("pos_enc",)):
        return _folded(r, path, conv)
    kernel = r(f"{path}.pos_enc.weight", conv.shape) + _identity_kernel(dim, dim, POS_KERNEL)
    return kernel, r(f"{path}.pos_enc.bias", (dim,))


def _plain(r: _Reader, out: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> None:
    out[key] = r(key, shape)


def _copy_bn(r: _Reader, out: dict[str, np.ndarray], path: str, channels: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        _plain(r, out, f"{path}.{name}", (channels,))


def _copy_se(r: _Reader, out: dict[str, np.ndarray], path: str, channels: int, rd: int) -> None:
    _plain(r, out, f"{path}.fc1.weight", (rd, channels, 1, 1))
    _plain(r, out, f"{path}.fc1.bias", (rd,))
    _plain(r, out, f"{path}.fc2.weight", (channels, rd, 1, 1))
    _plain(r, out, f"{path}.fc2.bias", (channels,))


def _copy_mlp(r: _Reader, out: dict[str, np.ndarray], path: str, dim: int, hidden: int) -> None:
    conv = Conv(dim, dim, MLP_CONV_KERNEL, 1, dim)
    _plain(r, out, f"{path}.conv.conv.weight", conv.shape)
    _copy_bn(r, out, f"{path}.conv.bn", dim)
    _plain(r, out, f"{path}.fc1.weight", (hidden, dim, 1, 1))
    _plain(r, out, f"{path}.fc1.bias", (hidden,))
    _plain(r, out, f"{path}.fc2.weight", (dim, hidden, 1, 1))
    _plain(r, out, f"{path}.fc2.bias", (dim,))


def stem_convs(dims: list[int]) -> list[Conv]:
    d0 = dims[0]
    return [
        Conv(3, d0, STEM_KERNEL, 2),
        Conv(d0, d0, STEM_KERNEL, 2, d0),
        Conv(d0, d0, 1),
    ]


def has_downsample(vision: Mapping[str, Any], index: int, prev: int) -> bool:
    return DOWNSAMPLES[index] or prev != vision["embed_dims"][index]


def reparameterize(
    state_dict: Mapping[str, np.ndarray], vision: Mapping[str, Any], embed_dim: int
) -> dict[str, np.ndarray]:
    """The image tower's weights in timm's folded layout, from either checkpoint layout.

    Parameters
    ----------
    state_dict
        An open_clip checkpoint; the tower's keys start with ``visual.trunk.``.
    vision
        The registry's ``vision`` entry: ``layers``, ``embed_dims``, ``mlp_ratio``,
        ``token_mixers``, ``se_downsamples`` and ``pos_embs`` (one value per stage).
    embed_dim
        Width of the CLIP embedding (the head's output).

    Returns
    -------
    dict[str, numpy.ndarray]
        float32 arrays named as ``timm.utils.reparameterize_model(trunk).state_dict()`` names them
        (without ``visual.trunk.``; BatchNorm counters left out).

    Raises
    ------
    CheckpointError
        A key is missing, has the wrong shape or non-finite values, a block is stored both folded
        and as training branches, or a ``visual.`` key belongs to no part of this tower.
    """
    r = _Reader(state_dict, TRUNK_PREFIX)
    out: dict[str, np.ndarray] = {}

    def put(path: str, pair: tuple[np.ndarray, np.ndarray]) -> None:
        out[f"{path}.reparam_conv.weight"], out[f"{path}.reparam_conv.bias"] = pair

    dims = list(vision["embed_dims"])
    for index, conv in enumerate(stem_convs(dims)):
        put(f"stem.{index}", _mobileone(r, f"stem.{index}", conv))
    prev = dims[0]
    for i, depth in enumerate(vision["layers"]):
        dim = dims[i]
        stage = f"stages.{i}"
        if has_downsample(vision, i, prev):
            down = f"{stage}.downsample.proj"
            conv = Conv(prev, dim, DOWN_PATCH, DOWN_STRIDE, prev)
            put(f"{down}.0", _large_kernel(r, f"{down}.0", conv))
            if vision["se_downsamples"][i]:
                _copy_se(r, out, f"{down}.0.se", dim, _se_channels(dim, *SE_DOWN))
            put(f"{down}.1", _mobileone(r, f"{down}.1", Conv(dim, dim, 1)))
        if vision["pos_embs"][i]:
            put(f"{stage}.pos_emb", _pos_enc(r, f"{stage}.pos_emb", dim))
        hidden = int(dim * vision["mlp_ratio"])
        for j in range(depth):
            block = f"{stage}.blocks.{j}"
            if vision["token_mixers"][i] == "repmixer":
                put(f"{block}.token_mixer", _repmixer(r, f"{block}.token_mixer", dim))
                _plain(r, out, f"{block}.layer_scale.gamma", (dim, 1, 1))
            else:
                _copy_bn(r, out, f"{block}.norm", dim)
                _plain(r, out, f"{block}.token_mixer.qkv.weight", (3 * dim, dim))
                _plain(r, out, f"{block}.token_mixer.proj.weight", (dim, dim))
                _plain(r, out, f"{block}.token_mixer.proj.bias", (dim,))
                _plain(r, out, f"{block}.layer_scale_1.gamma", (dim, 1, 1))
                _plain(r, out, f"{block}.layer_scale_2.gamma", (dim, 1, 1))
            _copy_mlp(r, out, f"{block}.mlp", dim, hidden)
        prev = dim
    final = CLS_RATIO * prev
    put("final_conv", _mobileone(r, "final_conv", Conv(prev, final, 3, 1, prev)))
    _copy_se(r, out, "final_conv.se", final, _se_channels(final, *SE_FINAL))
    _plain(r, out, "head.fc.weight", (embed_dim, final))
    _plain(r, out, "head.fc.bias", (embed_dim,))

    for key in state_dict:
        if key.startswith(VISUAL_PREFIX) and key not in r.used and not key.endswith(IGNORED_SUFFIX):
            raise CheckpointError(
                f"checkpoint key {key!r} is not part of the FastViT image tower this model expects"
            )
    return {key: value.astype(np.float32) for key, value in out.items()}


def checkpoint_parameters(vision: Mapping[str, Any], embed_dim: int) -> int:
    """Number of values under ``visual.`` in an open_clip checkpoint of this tower.

    Counts the training layout, as open_clip saves a model (and as the hub serves it): every
    branch with its BatchNorm, ``num_batches_tracked`` counters included.
    """

    def norm(channels: int) -> int:
        return 4 * channels + 1

    def conv_bn(conv: Conv) -> int:
        return int(np.prod(conv.shape)) + norm(conv.out_chs)

    def mobileone(conv: Conv, branches: int = 1, scale: bool = True) -> int:
        total = branches * conv_bn(conv)
        if scale and conv.kernel > 1:
            total += conv_bn(Conv(conv.in_chs, conv.out_chs, 1, conv.stride, conv.groups))
        if conv.in_chs == conv.out_chs and conv.stride == 1:
            total += norm(conv.in_chs)
        return total

    def squeeze_excite(channels: int, rd: int) -> int:
        return 2 * rd * channels + rd + channels

    dims = list(vision["embed_dims"])
    total = sum(mobileone(conv) for conv in stem_convs(dims))
    prev = dims[0]
    for i, depth in enumerate(vision["layers"]):
        dim = dims[i]
        if has_downsample(vision, i, prev):
            large = Conv(prev, dim, DOWN_PATCH, DOWN_STRIDE, prev)
            total += conv_bn(large) + conv_bn(Conv(prev, dim, SMALL_KERNEL, DOWN_STRIDE, prev))
            if vision["se_downsamples"][i]:
                total += squeeze_excite(dim, _se_channels(dim, *SE_DOWN))
            total += mobileone(Conv(dim, dim, 1))
        if vision["pos_embs"][i]:
            total += dim * POS_KERNEL * POS_KERNEL + dim
        hidden = int(dim * vision["mlp_ratio"])
        mlp = conv_bn(Conv(dim, dim, MLP_CONV_KERNEL, 1, dim)) + 2 * dim * hidden + hidden + dim
        for _ in range(depth):
            if vision["token_mixers"][i] == "repmixer":
                mixer = Conv(dim, dim, REPMIXER_KERNEL, 1, dim)
                total += mobileone(mixer) + mobileone(mixer, 0, False) + 2 * dim  # + 2 scales
            else:
                total += norm(dim) + 3 * dim * dim + dim * dim + dim + 2 * dim
            total += mlp
        prev = dim
    final = CLS_RATIO * prev
    total += mobileone(Conv(prev, final, 3, 1, prev))
    total += squeeze_excite(final, _se_channels(final, *SE_FINAL))
    return int(total + final * embed_dim + embed_dim)
