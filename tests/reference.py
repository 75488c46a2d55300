"""open_clip as the reference implementation, for tests and benchmarks only.

Builds open_clip models from our :class:`core.registry.Architecture`, gives them reproducible
random weights, and saves them as checkpoints in the formats the model hub serves. Importing this
module needs the ``test`` extra (torch, torchvision, open_clip_torch).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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

TINY_VIT_QUICKGELU = Architecture(
    family="vit",
    embed_dim=64,
    quick_gelu=True,
    vision={"image_size": 64, "layers": 2, "width": 128, "heads": 2, "patch_size": 16},
    text=TINY_TEXT,
)

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
    paths: Iterable[Path], size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """open_clip's own evaluation transform of photo files (EXIF orientation applied, RGB):
    ``[N, 3, size, size] float32``."""
    from PIL import Image, ImageOps

    transform = open_clip.image_transform(size, is_train=False, mean=mean, std=std)
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
