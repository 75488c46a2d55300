"""The models clipsearch knows how to install.

The registry itself is data (``models/registry.json``, shipped inside the wheel). Each entry gives
the architecture the converter builds, the preprocessing the encoder applies, where the checkpoint
comes from on the model hub, and its licence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, cast

from core.errors import UnknownModelError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preprocess:
    """How a photo becomes the model's input tensor (see :mod:`core.preprocess`)."""

    size: int
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    resize: str = "shortest"
    interpolation: str = "bicubic"


@dataclass(frozen=True)
class Architecture:
    """Shape of a CLIP model, as open_clip's model configs describe it.

    ``vision`` holds ``image_size``, ``layers`` (an int for a ViT, four ints for a ResNet),
    ``width``, ``heads`` and, for a ViT, ``patch_size``. ``text`` holds ``context_length``,
    ``vocab_size``, ``width``, ``heads`` and ``layers``.

    Family ``"siglip"`` is open_clip's ``CustomTextCLIP`` with a timm image tower: a ViT with no
    class token and an attention-pooling (``map``) head, and a bidirectional text transformer
    pooled at its last position. Both towers also give ``mlp_ratio``, ``norm_eps`` (LayerNorm
    epsilon) and ``act`` (``"gelu"`` exact or ``"gelu_tanh"``), as the model's config sets them;
    the text tower gives ``pool`` (``"last"``), ``causal`` (false) and ``proj_bias`` (true).
    """

    family: str  # "vit", "resnet", "siglip" or "fastvit" (MobileCLIP2, see core.fastvit)
    embed_dim: int
    quick_gelu: bool
    vision: dict[str, Any]
    text: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "embed_dim": self.embed_dim,
            "quick_gelu": self.quick_gelu,
            "vision": dict(self.vision),
            "text": dict(self.text),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        return cls(
            family=data["family"],
            embed_dim=int(data["embed_dim"]),
            quick_gelu=bool(data["quick_gelu"]),
            vision=dict(data["vision"]),
            text=dict(data["text"]),
        )


@dataclass(frozen=True)
class ModelSpec:
    """One installable model: architecture, preprocessing, source and licence."""

    name: str
    architecture: Architecture
    preprocess: Preprocess
    hub_repo: str | None = None
    hub_files: tuple[str, ...] = ()
    license: str = "unknown"
    description: str = ""
    openclip_name: str | None = None
    openclip_pretrained: str | None = None
    image_precision: str = "fp32"  # "fp32", or "int8" for the image tower's matrix products
    extra: dict[str, Any] = field(default_factory=dict)
    tokenizer: dict[str, Any] = field(default_factory=dict)
    """How texts become token ids. Empty: CLIP's byte-level BPE (:mod:`core.tokenizer`).
    ``{"kind": "hf", "clean": "canonicalize", "files": [...], "optional_files": [...]}``: a Hugging
    Face ``tokenizer.json`` and its config files, from the hub repository (see
    :mod:`core.hf_tokenizer`)."""
    languages: str = ""
    """The languages the model reads, as its model card states them."""

    def to_dict(self) -> dict[str, Any]:
        data = {
            "name": self.name,
            "description": self.description,
            "openclip_name": self.openclip_name,
            "openclip_pretrained": self.openclip_pretrained,
            "architecture": self.architecture.to_dict(),
            "preprocess": {
                "size": self.preprocess.size,
                "mean": list(self.preprocess.mean),
                "std": list(self.preprocess.std),
                "resize": self.preprocess.resize,
                "interpolation": self.preprocess.interpolation,
            },
            "source": {"hub_repo": self.hub_repo, "files": list(self.hub_files)},
            "license": self.license,
            "image_precision": self.image_precision,
        }
        # written only when set, so that the records of CLIP models stay as they were
        if self.tokenizer:
            data["tokenizer"] = dict(self.tokenizer)
        if self.languages:
            data["languages"] = self.languages
        return data

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> ModelSpec:
        pre = data["preprocess"]
        source = data.get("source") or {}
        return cls(
            name=name,
            architecture=Architecture.from_dict(data["architecture"]),
            preprocess=Preprocess(
                size=int(pre["size"]),
                mean=cast(tuple[float, float, float], tuple(float(v) for v in pre["mean"])),
                std=cast(tuple[float, float, float], tuple(float(v) for v in pre["std"])),
                resize=pre.get("resize", "shortest"),
                interpolation=pre.get("interpolation", "bicubic"),
            ),
            hub_repo=source.get("hub_repo"),
            hub_files=tuple(source.get("files") or ()),
            license=data.get("license", "unknown"),
            description=data.get("description", ""),
            openclip_name=data.get("openclip_name"),
            openclip_pretrained=data.get("openclip_pretrained"),
            image_precision=data.get("image_precision", "fp32"),
            tokenizer=dict(data.get("tokenizer") or {}),
            languages=data.get("languages", ""),
        )

    @property
    def is_siglip(self) -> bool:
        """Whether the model was trained with SigLIP's sigmoid loss (scores need ``logit_bias``)."""
        return self.architecture.family == "siglip"

    @property
    def multilingual(self) -> bool:
        """Whether the model reads more than English (``languages`` says more than English)."""
        text = self.languages.strip().lower()
        return bool(text) and text not in ("english", "en")


def checkpoint_parameters(arch: Architecture) -> int:
    """Number of values in an open_clip state dict of this architecture.

    Counts every tensor open_clip saves: both towers, the projections, ``logit_scale`` and, for a
    ResNet, the BatchNorm running statistics (``num_batches_tracked`` included). A ViT block's MLP
    is four times its width, as in every registry model.
    """
    text = arch.text
    tw = int(text["width"])
    total = int(text["vocab_size"]) * tw + int(text["context_length"]) * tw
    total += int(text["layers"]) * _block_parameters(tw) + 2 * tw + tw * arch.embed_dim + 1
    vision = arch.vision
    image_size = int(vision["image_size"])
    if arch.family == "siglip":
        total += arch.embed_dim + 1  # the projection's bias, logit_bias
        width, patch = int(vision["width"]), int(vision["patch_size"])
        grid = image_size // patch
        total += width * 3 * patch * patch + width + grid * grid * width  # patches, positions
        total += int(vision["layers"]) * _block_parameters(width) + 2 * width  # blocks, norm
        # attention-pooling head: latent, q, kv, proj, norm, MLP
        total += width + 4 * (width * width + width) + 2 * width
        total += 8 * width * width + 5 * width
        return total
    if arch.family == "vit":
        width, patch = int(vision["width"]), int(vision["patch_size"])
        grid = image_size // patch
        total += width + (grid * grid + 1) * width + width * arch.embed_dim
        total += width * 3 * patch * patch + 4 * width  # conv1, ln_pre, ln_post
        total += int(vision["layers"]) * _block_parameters(width)
        return total
    if arch.family == "fastvit":
        from core.fastvit import checkpoint_parameters as fastvit_parameters

        return total + fastvit_parameters(vision, arch.embed_dim)
    width = int(vision["width"])
    half = width // 2
    total += half * 3 * 9 + half * half * 9 + width * half * 9  # the three stem convolutions
    total += 2 * _batch_norm_parameters(half) + _batch_norm_parameters(width)
    inplanes = width
    for stage, blocks in enumerate(vision["layers"]):
        planes = width * 2**stage
        for block in range(int(blocks)):
            total += inplanes * planes + planes * planes * 9 + planes * 4 * planes
            total += 2 * _batch_norm_parameters(planes) + _batch_norm_parameters(planes * 4)
            if block == 0 and (stage > 0 or inplanes != planes * 4):
                total += inplanes * planes * 4 + _batch_norm_parameters(planes * 4)
            inplanes = planes * 4
    pooled = width * 32
    spatial = image_size // 32
    total += (spatial * spatial + 1) * pooled + 3 * (pooled * pooled + pooled)
    total += arch.embed_dim * pooled + arch.embed_dim
    return total


def checkpoint_bytes(arch: Architecture) -> int:
    """About how large a float32 checkpoint of this architecture is (tensor data only)."""
    return 4 * checkpoint_parameters(arch)


def _block_parameters(width: int) -> int:
    """A transformer block: two layer norms, attention (in and out projections), a 4x MLP."""
    norms = 2 * 2 * width
    attention = 3 * width * width + 3 * width + width * width + width
    mlp = 4 * width * width + 4 * width + 4 * width * width + width
    return norms + attention + mlp


def _batch_norm_parameters(channels: int) -> int:
    """Weight, bias, running mean and variance, and the ``num_batches_tracked`` counter."""
    return 4 * channels + 1


def _load(file: str = "registry.json") -> dict[str, Any]:
    text = resources.files("models").joinpath(file).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def measurements() -> dict[str, Any]:
    """``models/measured.json``: what the bench scripts measured per model (bf16 verdicts,
    image-tower speed)."""
    return _load("measured.json")


def bf16_towers(name: str) -> frozenset[str]:
    """Towers of model ``name`` whose bf16 embeddings met the target (none when unmeasured)."""
    return frozenset(measurements()["bf16"]["models"].get(name, ()))


SPEED_CLASSES = ("fastest", "balanced", "best")
"""The dial offered to users, from the fastest model to the most accurate one."""


@dataclass(frozen=True)
class DialFacts:
    """What a user weighs when choosing a model.

    Attributes
    ----------
    speed_class
        ``"fastest"``, ``"balanced"`` or ``"best"`` for the models of the dial; else None.
    imagenet_top1
        Published ImageNet-1k zero-shot top-1 accuracy in percent (None when not published),
        and ``accuracy_source`` where it was published.
    images_per_s
        Photos indexed per second, end to end, measured by ``bench/rclip_e2e.py`` at the
        default precision, and ``measured_on``: the CPU and album of that measurement.
    """

    speed_class: str | None = None
    imagenet_top1: float | None = None
    accuracy_source: str | None = None
    images_per_s: float | None = None
    measured_on: str | None = None


def short_licence(licence: str | None) -> str:
    """A licence name short enough for a table: ``MIT (OpenAI CLIP)`` gives ``MIT``; a long
    name with a short identifier in brackets gives the identifier (``apple-amlr``)."""
    if not licence or licence == "unknown":
        return "-"
    name, _, rest = licence.partition(" (")
    identifier = rest.split(")", 1)[0]
    if len(name) > 24 and identifier and len(identifier) <= 24:
        return identifier
    return name.split(",", 1)[0]


def dial_facts(name: str) -> DialFacts:
    """The :class:`DialFacts` of a built-in model (all None for another name)."""
    entry = _load()["models"].get(name) or {}
    zero_shot = entry.get("zero_shot") or {}
    speed = measurements().get("speed") or {}
    measured = (speed.get("models") or {}).get(name) or {}
    top1 = zero_shot.get("imagenet_top1")
    rate = measured.get("images_per_s")
    return DialFacts(
        speed_class=entry.get("speed_class"),
        imagenet_top1=float(top1) if top1 is not None else None,
        accuracy_source=zero_shot.get("source"),
        images_per_s=float(rate) if rate is not None else None,
        measured_on=speed.get("measured_on") if rate is not None else None,
    )


def default_model_name() -> str:
    """Name of the model used when none is given."""
    return str(_load()["default"])


def available_models() -> list[str]:
    """Names of every model in the registry."""
    return sorted(_load()["models"])


def registry_order() -> list[str]:
    """Names of every model in the registry, in the registry's own order (cheapest first within
    a family)."""
    return list(_load()["models"])


def get_spec(name: str) -> ModelSpec:
    """Registry entry for ``name``; raises :class:`UnknownModelError` with the known names."""
    models = _load()["models"]
    if name not in models:
        known = ", ".join(sorted(models))
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}")
    return ModelSpec.from_dict(name, models[name])
