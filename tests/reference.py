"""open_clip as the reference implementation, for tests and benchmarks only.

Builds open_clip models from our :class:`core.registry.Architecture`, gives them reproducible
random weights, and saves them as checkpoints in the formats the model hub serves. Importing this
module needs the ``test`` extra (torch, torchvision, open_clip_torch).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import open_clip
import torch

from core.registry import Architecture

# Tiny architectures for fast tests. Their heads are 64 channels wide, as in every published
# CLIP model, so that ``infer_architecture`` reads them back exactly from a checkpoint.
TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2}

TINY_VIT = Architecture(
    family="vit",
    embed_dim=64,
    quick_gelu=False,
    vision={"image_size": 64, "layers": 2, "width": 128, "heads": 2, "patch_size": 16},
    text=TINY_TEXT,
)

TINY_VIT_QUICKGELU = replace(TINY_VIT, quick_gelu=True)

TINY_RESNET = Architecture(
    family="resnet",
    embed_dim=64,
    quick_gelu=True,
    vision={"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "heads": 8},
    text=TINY_TEXT,
)

# Narrow heads (16 channels) check the converter's head split where the width is not 64 per head.
TINY_VIT_NARROW_HEADS = Architecture(
    family="vit",
    embed_dim=32,
    quick_gelu=False,
    vision={"image_size": 64, "layers": 2, "width": 64, "heads": 4, "patch_size": 16},
    text={"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
)


def openclip_config(arch: Architecture) -> dict:
    """open_clip's ``CLIP(**cfg)`` keyword arguments for ``arch``."""
    v = arch.vision
    if arch.family == "vit":
        vision = {
            "image_size": v["image_size"],
            "layers": v["layers"],
            "width": v["width"],
            "patch_size": v["patch_size"],
            "head_width": v["width"] // v["heads"],
        }
    elif arch.family == "resnet":
        vision = {
            "image_size": v["image_size"],
            "layers": list(v["layers"]),
            "width": v["width"],
            "head_width": v["width"] * 32 // v["heads"],
        }
    else:
        raise ValueError(arch.family)
    t = arch.text
    text = {k: t[k] for k in ("context_length", "vocab_size", "width", "heads", "layers")}
    return {
        "embed_dim": arch.embed_dim,
        "vision_cfg": vision,
        "text_cfg": text,
        "quick_gelu": arch.quick_gelu,
    }


def make_reference(arch: Architecture, seed: int = 0) -> open_clip.CLIP:
    """An open_clip model of ``arch`` with random weights drawn from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    model = open_clip.CLIP(**openclip_config(arch))
    model.eval()
    return model


def reference_state_dict(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The model's state dict as float32 numpy arrays (int buffers kept as they are)."""
    out = {}
    for key, value in model.state_dict().items():
        array = value.detach().cpu().numpy()
        out[key] = array.astype(np.float32) if array.dtype.kind == "f" else array
    return out


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """Save ``model`` as the hub does: ``.safetensors``, or a torch zip for ``.bin``/``.pt``."""
    path = Path(path)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, str(path))
    return path


def reference_pixels(
    paths: Iterable[Path],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bicubic",
    resize_mode: str = "shortest",
) -> torch.Tensor:
    """open_clip's own evaluation transform of photo files (EXIF orientation applied, RGB):
    ``[N, 3, size, size] float32``."""
    from PIL import Image, ImageOps

    transform = open_clip.image_transform(
        size,
        is_train=False,
        mean=mean,
        std=std,
        resize_mode=resize_mode,
        interpolation=interpolation,
    )
    pixels = []
    for path in paths:
        image = ImageOps.exif_transpose(Image.open(path))
        image.load()
        pixels.append(transform(image.convert("RGB")))
    return torch.stack(pixels)


def calibrate_batchnorm(model: open_clip.CLIP, images: torch.Tensor) -> None:
    """Re-estimate every BatchNorm's running statistics on ``images`` ``[N, 3, S, S]``.

    Freshly initialised BatchNorm layers (mean 0, variance 1) let the activations of a random
    ResNet grow layer after layer until every photo maps to nearly the same embedding. Statistics
    measured on real photos keep the activations normalised, so different photos get different
    embeddings and a parity test can tell a right pipeline from a wrong one.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not norms:
        return
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    model.visual.train()
    with torch.no_grad():
        model.visual(images)
    model.eval()


def sharpen_attention(tower: torch.nn.Module, factor: float) -> None:
    """Scale the query and key projections of every attention block in ``tower`` by ``factor``.

    Random attention is almost uniform, so a random ViT's class token averages the patches and
    different photos end up with nearly the same embedding. Sharper attention makes each photo's
    embedding depend on its own content.
    """
    with torch.no_grad():
        for module in tower.modules():
            if isinstance(module, torch.nn.MultiheadAttention):
                width = module.in_proj_weight.shape[1]
                module.in_proj_weight[: 2 * width].mul_(factor)
                module.in_proj_bias[: 2 * width].mul_(factor)


def make_discriminative(
    model: open_clip.CLIP, pixels: torch.Tensor, attention_factor: float = 8.0
) -> None:
    """Adjust random weights so that different photos get clearly different embeddings.

    ResNets get BatchNorm statistics measured on ``pixels`` (real photos, ``[N, 3, S, S]``);
    ViTs get attention sharpened by ``attention_factor`` in the image tower (tiny models need
    more than full-size ones, which have many more patches to tell apart). Both are ordinary
    weights to the converter.
    """
    if isinstance(model.visual, open_clip.modified_resnet.ModifiedResNet):
        calibrate_batchnorm(model, pixels)
    else:
        sharpen_attention(model.visual, attention_factor)


# ---------------------------------------------------------------------------------------------
# SigLIP: open_clip's CustomTextCLIP with a timm image tower, and a Gemma-style tokenizer


TINY_SIGLIP = Architecture(
    family="siglip",
    embed_dim=128,
    quick_gelu=False,
    vision={
        "image_size": 64,
        "layers": 2,
        "width": 128,
        "heads": 2,
        "patch_size": 16,
        "mlp_ratio": 4,
        "norm_eps": 1e-6,
        "act": "gelu_tanh",
        "pool": "map",
    },
    text={
        "context_length": 64,
        "vocab_size": 2048,
        "width": 128,
        "heads": 2,
        "layers": 2,
        "mlp_ratio": 4,
        "norm_eps": 1e-6,
        "act": "gelu_tanh",
        "pool": "last",
        "causal": False,
        "proj_bias": True,
    },
)

GEMMA_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
"""Gemma's first five ids, in its order."""

TOKENIZER_CORPUS = (
    "a red bicycle in the snow",
    "a photo of a cat sleeping on the sofa",
    "sunset over the sea with boats",
    "a dog running on the beach in summer",
    "café au lait à paris, crème brûlée et œufs",
    "niños jugando al fútbol en el parque",
    "東京の夜景と富士山の写真",
    "一只狗在雪地里奔跑",
    "雪の中を走る犬",
    "собака бежит по снегу",
    "кошка на диване",
    "قطة على الأريكة في المساء",
    "눈 속에서 달리는 강아지",
    "ελληνικά γράμματα και θάλασσα",
    "हिंदी में एक वाक्य",
    "ภาษาไทย ทะเล",
)


def build_test_tokenizer(
    folder: Path, *, vocab_size: int = 1200, post_processor: str | None = "eos", **config: object
) -> Path:
    """Train a small Gemma-style tokenizer and lay it out as the hub repository holds one.

    Gemma's layout: ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3, ``<mask>`` 4, then the 256
    byte-fallback tokens ``<0x00>``..``<0xFF>``; BPE with byte fallback; spaces become ``▁``.
    ``tokenizer.json``'s post-processor appends ``<eos>`` (``post_processor="eos"``), prepends
    ``<bos>`` (``"bos"``) or is absent (None). ``tokenizer_config.json`` has the settings SigLIP 2
    uses (no ``<bos>``, an ``<eos>`` at the end, padding on the right), each replaced by
    ``config`` (a None value removes it); ``special_tokens_map.json`` names the special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tokenizer.normalizer = normalizers.Replace(" ", "\u2581")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[*GEMMA_SPECIALS, *byte_tokens],
        show_progress=False,
    )
    corpus = [line.lower() for line in TOKENIZER_CORPUS] * 3
    tokenizer.train_from_iterator(corpus, trainer)
    if post_processor == "bos":
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)]
        )
    elif post_processor == "eos":
        tokenizer.post_processor = processors.TemplateProcessing(
            single="$A <eos>", pair="$A <eos> $B <eos>", special_tokens=[("<eos>", 1)]
        )
    tokenizer.save(str(folder / "tokenizer.json"))
    added = {
        str(i): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, token in enumerate(GEMMA_SPECIALS)
    }
    settings: dict[str, object] = {
        "add_bos_token": False,
        "add_eos_token": True,
        "added_tokens_decoder": added,
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
        "model_max_length": 64,
        "padding_side": "right",
        "tokenizer_class": "GemmaTokenizer",
    }
    settings.update(config)
    settings = {k: v for k, v in settings.items() if v is not None}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    special_map = {
        name: {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
        }
        for name, token in (
            ("bos_token", "<bos>"),
            ("eos_token", "<eos>"),
            ("pad_token", "<pad>"),
            ("unk_token", "<unk>"),
        )
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special_map), encoding="utf-8")
    return folder


def openclip_tokenizer(folder: Path, context_length: int = 64, clean: str = "canonicalize"):
    """open_clip's own ``HFTokenizer`` over the tokenizer files in ``folder``."""
    from open_clip.tokenizer import HFTokenizer

    return HFTokenizer(str(folder), context_length=context_length, clean=clean)


def siglip_openclip_config(arch: Architecture, timm_model_name: str | None = None) -> dict:
    """open_clip's ``CustomTextCLIP(**cfg)`` keyword arguments for a SigLIP ``arch``."""
    v, t = arch.vision, arch.text
    text = {
        "context_length": t["context_length"],
        "vocab_size": t["vocab_size"],
        "width": t["width"],
        "heads": t["heads"],
        "layers": t["layers"],
        "mlp_ratio": t["mlp_ratio"],
        "no_causal_mask": not t["causal"],
        "proj_bias": t["proj_bias"],
        "pool_type": t["pool"],
        "norm_kwargs": {"eps": t["norm_eps"]},
        "act_kwargs": {"approximate": "tanh"} if t["act"] == "gelu_tanh" else {},
    }
    vision = {
        "image_size": v["image_size"],
        "timm_model_name": timm_model_name or "vit_base_patch16_siglip_256",
        "timm_model_pretrained": False,
        "timm_pool": v["pool"],
        "timm_proj": "none",
    }
    return {
        "embed_dim": arch.embed_dim,
        "vision_cfg": vision,
        "text_cfg": text,
        "init_logit_bias": -10.0,
    }


def make_siglip_reference(arch: Architecture, seed: int = 0, timm_model_name: str | None = None):
    """An open_clip SigLIP model of ``arch`` with random weights from ``seed``, in eval mode.

    With ``timm_model_name`` the image tower is that timm model, as open_clip builds it; without,
    a timm ``VisionTransformer`` of ``arch.vision``'s size (for tiny test models) replaces it.
    """
    import timm.models.vision_transformer as vit

    torch.manual_seed(seed)
    cfg = siglip_openclip_config(arch, timm_model_name)
    model = open_clip.CustomTextCLIP(**cfg)
    v = arch.vision
    if timm_model_name is None:
        model.visual.trunk = vit.VisionTransformer(
            img_size=v["image_size"],
            patch_size=v["patch_size"],
            embed_dim=v["width"],
            depth=v["layers"],
            num_heads=v["heads"],
            mlp_ratio=v["mlp_ratio"],
            class_token=False,
            global_pool="map",
            num_classes=0,
            act_layer="gelu_tanh" if v["act"] == "gelu_tanh" else "gelu",
        )
    with torch.no_grad():
        # random but non-trivial affines and biases, and a logit bias that is not the default
        for name, param in model.named_parameters():
            if name.endswith(
                (
                    "norm1.weight",
                    "norm2.weight",
                    "ln_1.weight",
                    "ln_2.weight",
                    "norm.weight",
                    "ln_final.weight",
                )
            ):
                param.copy_(1.0 + 0.2 * torch.randn_like(param))
            elif name.endswith(".bias") and param.abs().max() == 0:
                param.copy_(0.02 * torch.randn_like(param))
            elif name.endswith("attn_pool.latent"):
                param.copy_(torch.randn_like(param))
        model.logit_bias.fill_(-8.25)
        model.logit_scale.fill_(float(np.log(11.5)))
    model.eval()
    return model


def sharpen_siglip_attention(model: torch.nn.Module, factor: float, text_factor: float) -> None:
    """Scale the query and key projections of the SigLIP image tower's attention by ``factor``
    (the fused ``qkv`` of each timm block and the pooling head's ``q`` and the key half of ``kv``)
    and those of the text tower by ``text_factor``.

    The text tower pools its last position, which for most texts is padding: with random, nearly
    uniform attention every text's last position sees about the same average, and different
    texts end up alike (cosine 0.9998 on the tiny model); sharper attention lets each text's own
    tokens show through (0.89).
    """
    sharpen_attention(model.text, text_factor)
    with torch.no_grad():
        trunk = model.visual.trunk
        for block in trunk.blocks:
            width = block.attn.qkv.in_features
            block.attn.qkv.weight[: 2 * width].mul_(factor)
            block.attn.qkv.bias[: 2 * width].mul_(factor)
        pool = trunk.attn_pool
        width = pool.q.in_features
        pool.q.weight.mul_(factor)
        pool.q.bias.mul_(factor)
        pool.kv.weight[:width].mul_(factor)
        pool.kv.bias[:width].mul_(factor)


def norm_affines_are_nontrivial(model: torch.nn.Module) -> bool:
    """Whether every LayerNorm of ``model`` has a scale that is not all ones and a bias that is
    not all zeros, so that a converter that dropped or swapped them would be caught."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    return bool(norms) and all(
        not torch.allclose(m.weight, torch.ones_like(m.weight))
        and not torch.allclose(m.bias, torch.zeros_like(m.bias))
        for m in norms
    )
