"""Which models there are: the registry's, the user's registry file's, and those installed.

:func:`list_models` is what ``model list`` and the app's model picker show, :func:`dial_models`
the three of the speed/accuracy dial, :func:`describe_model` the line shown before an install.
Besides the built-in registry, models can be described in ``config_dir()/registry.json``: a file
of the same format (``{"models": {NAME: {...}}}``) whose entries are added to the built-in ones and
replace any of the same name. Installing and removing are :mod:`core.install`'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core import registry
from core.errors import ClipsearchError, ManifestError
from core.manifest import read_manifest
from core.names import shown
from core.paths import config_dir, is_model_name, models_dir
from core.registry import ModelSpec

__all__ = [
    "USER_REGISTRY_NAME",
    "check_name",
    "describe_model",
    "dial_models",
    "installed_folders",
    "known_specs",
    "list_models",
]

USER_REGISTRY_NAME = "registry.json"


def check_name(name: str) -> None:
    """Refuse a model name that could not be a folder name of its own."""
    if not is_model_name(name):
        raise ClipsearchError(
            f'invalid model name "{shown(name)}": use at most 100 letters, digits and . _ + - '
            "(not starting with one)"
        )


def list_models() -> list[dict[str, Any]]:
    """Every model known or installed, registry order first, then custom installed models.

    Returns
    -------
    list of dict
        One dict per model with ``name``, ``description``, ``in_registry``, ``installed``,
        ``default``, ``size`` (bytes on disk, or None), ``download_size`` (about how many bytes
        the checkpoint download takes, worked out from the architecture, for a model with a hub
        source; else None), ``path`` (or None), ``family``,
        ``image_size``, ``embed_dim``, ``license``, ``origin`` (where an installed model came
        from, or None), ``installed_at`` (or None), ``problem`` (why an installed folder cannot
        be used, or None), and the dial: ``speed_class`` (fastest, balanced, best or None),
        ``imagenet_top1`` (published zero-shot accuracy in percent, or None), ``images_per_s``
        (measured image-tower throughput, or None) and ``speed_measured_on`` (the CPU it was
        measured on). File hashes are not checked here.
    """
    specs = known_specs()
    default = registry.default_model_name()
    installed = installed_folders()
    rows = []
    for name, spec in specs.items():
        rows.append(_row(name, spec, installed.pop(name, None), name == default, True))
    for name, folder in sorted(installed.items()):
        rows.append(_row(name, None, folder, name == default, False))
    return rows


def dial_models() -> list[dict[str, Any]]:
    """The built-in models of the dial, fastest first, then balanced, then best.

    The rows are those of :func:`list_models`, with ``speed_class``, ``images_per_s``,
    ``imagenet_top1``, ``download_size`` and ``license``.
    """
    order = {speed_class: i for i, speed_class in enumerate(registry.SPEED_CLASSES)}
    rows = [row for row in list_models() if row["in_registry"] and row["speed_class"] in order]
    return sorted(rows, key=lambda row: order[row["speed_class"]])


def describe_model(name: str | None) -> str | None:
    """One line for a user about to install ``name`` (default: the default model).

    Its name, description, licence and about how large its download is, e.g. ``"ViT-B-32-256-
    datacomp: OpenCLIP ViT-B/32 ..., licence MIT (OpenCLIP weights), about 605.2 MB to
    download"``; None for a name that is not in the registry.
    """
    name = name or registry.default_model_name()
    spec = known_specs().get(name)
    if spec is None:
        return None
    facts = [spec.description] if spec.description else []
    if spec.license and spec.license != "unknown":
        facts.append(f"licence {spec.license}")
    if spec.hub_repo and spec.hub_files:
        size = registry.checkpoint_bytes(spec.architecture)
        facts.append(f"about {size / 1e6:.0f} MB to download")
    return f"{name}: {', '.join(facts)}" if facts else name


def known_specs() -> dict[str, ModelSpec]:
    """Built-in registry entries, then those of the user's registry file."""
    specs = {name: registry.get_spec(name) for name in registry.available_models()}
    path = config_dir() / USER_REGISTRY_NAME
    if not path.is_file():
        return specs
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        for name, entry in dict(data["models"]).items():
            check_name(name)
            specs[name] = ModelSpec.from_dict(name, entry)
    except ClipsearchError as error:
        raise ClipsearchError(f"{path}: {error}") from None
    except json.JSONDecodeError as error:
        raise ClipsearchError(f"{path} is not valid JSON (line {error.lineno})") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ClipsearchError(f"cannot read {path}: {reason}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise ClipsearchError(
            f"{path} does not follow the registry format ({type(error).__name__}: {error})"
        ) from None
    return specs


def installed_folders() -> dict[str, Path]:
    root = models_dir()
    if not root.is_dir():
        return {}
    return {
        entry.name: entry
        for entry in sorted(root.iterdir())
        if entry.is_dir() and not entry.name.startswith(".")
    }


def _row(
    name: str, spec: ModelSpec | None, folder: Path | None, default: bool, in_registry: bool
) -> dict[str, Any]:
    manifest: dict[str, Any] | None = None
    problem = None
    if folder is not None:
        try:
            manifest = read_manifest(folder)
        except ManifestError as error:
            problem = str(error)
    if spec is None and manifest is not None:
        try:
            spec = ModelSpec.from_dict(name, manifest["spec"])
        except (KeyError, TypeError, ValueError):
            problem = f"the manifest in {folder} does not describe a model"
    architecture = spec.architecture if spec is not None else None
    dial = registry.dial_facts(name) if in_registry else registry.DialFacts()
    return {
        "name": name,
        "description": spec.description if spec is not None else "",
        "in_registry": in_registry,
        "installed": manifest is not None and problem is None,
        "default": default,
        "size": _folder_size(folder) if folder is not None else None,
        "download_size": (
            registry.checkpoint_bytes(spec.architecture)
            if spec is not None and in_registry and spec.hub_repo and spec.hub_files
            else None
        ),
        "path": str(folder) if folder is not None else None,
        "family": architecture.family if architecture else None,
        "image_size": architecture.vision.get("image_size") if architecture else None,
        "embed_dim": architecture.embed_dim if architecture else None,
        "license": spec.license if spec is not None else None,
        "origin": (manifest.get("source") or {}).get("origin") if manifest else None,
        "installed_at": manifest.get("installed_at") if manifest else None,
        "problem": problem,
        "speed_class": dial.speed_class,
        "imagenet_top1": dial.imagenet_top1,
        "images_per_s": dial.images_per_s,
        "speed_measured_on": dial.measured_on,
    }


def _folder_size(folder: Path) -> int:
    total = 0
    for entry in folder.iterdir():
        try:
            if entry.is_file():
                total += entry.stat().st_size
        except OSError:
            pass
    return total
