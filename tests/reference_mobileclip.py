"""open_clip's MobileCLIP2 models as the reference, for tests and benchmarks only.

A registry model is built by open_clip itself (``open_clip.create_model("MobileCLIP2-S0")``); a
tiny one is open_clip's ``CustomTextCLIP`` with a small timm FastViT MCi trunk made from our
:class:`core.registry.Architecture`. :func:`make_discriminative` gives the random weights what
trained ones have and random ones lack: BatchNorm scales and shifts away from 1 and 0, statistics
measured on real photos, and layer scales far from their 1e-5 initial value, so that every branch
the converter folds really contributes.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import open_clip
import torch
from timm.models.fastvit import FastVit, LayerScale2d, RepConditionalPosEnc

from core.registry import Architecture, ModelSpec
from tests.reference import TINY_TEXT, calibrate_batchnorm, reference_pixels, sharpen_attention
from tests.samples import SAMPLES

TINY_FASTVIT = Architecture(
    family="fastvit",
    embed_dim=64,
    quick_gelu=False,
    vision={
        "image_size": 128,
        "layers": [1, 1, 2, 2],
        "embed_dims": [16, 32, 64, 64],
        "mlp_ratio": 3,
        "token_mixers": ["repmixer", "repmixer", "repmixer", "attention"],
        "se_downsamples": [False, False, True, True],
        "pos_embs": [False, False, False, True],
    },
    text={**TINY_TEXT, "causal": False},
)

GALLERY = Path(__file__).resolve().parents[1] / "gallery"

MORE_PHOTOS = (
    "exif-org/ricoh-rdc5300.jpg",
    "exif-org/sanyo-vpcsx550.jpg",
    "hdr/canon_hdr_NO.jpg",
    "mobile/jolla.jpg",
    "orientation/portrait_6.jpg",
    "tests/22-canon_tags.jpg",
    "tests/42_IndexError.jpg",
    "Reconyx_HC500_Hyperfire.jpg",
    "Fujifilm_FinePix_E500.jpg",
)
"""Photos kept in ``tests/photos`` of other scenes than the gallery's."""


def photos(more: bool = False) -> list[Path]:
    """The repository's gallery photos (ten), and with ``more`` nine others of the test photos."""
    found = sorted(GALLERY.glob("*.jpg"))
    if more:
        found += [SAMPLES / "jpg" / name for name in MORE_PHOTOS]
    return found


def fastvit_trunk(arch: Architecture) -> FastVit:
    """timm's FastViT MCi trunk for ``arch``, as ``fastvit_mci0`` / ``fastvit_mci2`` build it."""
    v = arch.vision
    positional = partial(RepConditionalPosEnc, spatial_shape=(7, 7))
    return FastVit(
        layers=tuple(v["layers"]),
        embed_dims=tuple(v["embed_dims"]),
        mlp_ratios=(v["mlp_ratio"],) * 4,
        se_downsamples=tuple(v["se_downsamples"]),
        pos_embs=tuple(positional if p else None for p in v["pos_embs"]),
        token_mixers=tuple(v["token_mixers"]),
        lkc_use_act=True,
        num_classes=arch.embed_dim,
        global_pool="avg",
    )


def make_reference(arch: Architecture, seed: int = 0, openclip_name: str | None = None):
    """An open_clip MobileCLIP2 model in eval mode with random weights drawn from ``seed``.

    With ``openclip_name`` open_clip builds it from its own config (the registry models);
    otherwise the trunk is made from ``arch``.
    """
    torch.manual_seed(seed)
    if openclip_name is not None:
        return open_clip.create_model(openclip_name).eval()
    t = arch.text
    model = open_clip.CustomTextCLIP(
        embed_dim=arch.embed_dim,
        vision_cfg={
            "timm_model_name": "fastvit_t8",  # replaced below by the trunk of ``arch``
            "timm_model_pretrained": False,
            "timm_pool": "avg",
            "timm_proj": None,
            "image_size": arch.vision["image_size"],
        },
        text_cfg={
            **{k: t[k] for k in ("context_length", "vocab_size", "width", "heads", "layers")},
            "no_causal_mask": not t.get("causal", True),
        },
    )
    model.visual.trunk = fastvit_trunk(arch)
    return model.eval()


def make_discriminative(
    model, pixels: torch.Tensor, seed: int = 0, text_attention_factor: float = 4.0
) -> None:
    """Give every BatchNorm a scale in [0.5, 1.5] and a shift in [-0.3, 0.3], every layer scale a
    value in [0.2, 0.6], then measure BatchNorm statistics on ``pixels`` ``[N, 3, S, S]``.

    The text tower's attention is sharpened by ``text_attention_factor``: without a causal mask
    the end-of-text token of a random tower averages over all 77 positions, mostly the same
    padding, so that every text gets nearly the same embedding (pairwise cosine 0.997 on the
    full-size S0; 0.58 after sharpening by 4).
    """
    sharpen_attention(model.text, text_attention_factor)
    randomize_norms(model, seed)
    calibrate_batchnorm(model, pixels)


def randomize_norms(model, seed: int, *, statistics: bool = False) -> None:
    """Draw from ``seed`` a scale in [0.5, 1.5] and a shift in [-0.3, 0.3] for every BatchNorm
    of the image tower (with ``statistics``, also a mean in [-0.3, 0.3] and a variance in
    [0.5, 2.0]: no photos needed), and a value in [0.2, 0.6] for every layer scale."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.visual.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.uniform_(-0.3, 0.3, generator=generator)
                if statistics:
                    module.running_mean.uniform_(-0.3, 0.3, generator=generator)
                    module.running_var.uniform_(0.5, 2.0, generator=generator)
            elif isinstance(module, LayerScale2d):
                module.gamma.uniform_(0.2, 0.6, generator=generator)


def batchnorms_are_nontrivial(model) -> bool:
    """Whether every BatchNorm of the image tower has scale, shift and statistics of its own."""
    norms = [m for m in model.visual.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    return bool(norms) and all(
        not torch.allclose(m.weight, torch.ones_like(m.weight))
        and not torch.allclose(m.bias, torch.zeros_like(m.bias))
        and not torch.allclose(m.running_mean, torch.zeros_like(m.running_mean))
        and not torch.allclose(m.running_var, torch.ones_like(m.running_var))
        for m in norms
    )


def spec_pixels(paths: list[Path], spec: ModelSpec) -> torch.Tensor:
    """open_clip's evaluation transform with the preprocessing of ``spec``."""
    pre = spec.preprocess
    return reference_pixels(paths, pre.size, pre.mean, pre.std, pre.interpolation, pre.resize)
