"""The record that makes a folder an installed model.

An installed model is a folder ``models_dir() / NAME`` holding the converted ncnn files and a
``manifest.json`` written last, once every other file is complete::

    {
      "format": 1,
      "name": "ViT-B-32-256-datacomp",
      "spec": {...},                        # ModelSpec.to_dict()
      "logit_scale": 100.0,
      "source": {"file": "open_clip_model.safetensors",
                 "origin": "hub:laion/..." or "file:/abs/path",
                 "sha256": "...", "size": 605206144},
      "files": {"visual.param": "<sha256>", "visual.bin": "<sha256>", ...},
      "installed_at": "2025-01-31T12:00:00+00:00",
      "clipsearch_version": "0.1.0"
    }

:func:`verify_manifest` recomputes every recorded hash, so a file changed or truncated after the
install is caught before the encoder loads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import ManifestError
from core.registry import ModelSpec

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
FORMAT = 1
_CHUNK = 1 << 20
_DISTRIBUTION = "clipsearch-tui"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so that big checkpoints never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(
    model_dir: Path,
    spec: ModelSpec,
    *,
    logit_scale: float,
    source: Mapping[str, Any],
    files: Iterable[str],
    logit_bias: float | None = None,
) -> dict[str, Any]:
    """Hash the model's files and write ``manifest.json`` next to them, durably.

    Parameters
    ----------
    model_dir
        Folder that already holds every file named in ``files``.
    spec
        The model the files were converted for; stored whole, so a custom model needs no
        registry entry to be loaded again.
    logit_scale
        The checkpoint's learned temperature, ``exp(logit_scale)``.
    source
        Where the checkpoint came from: ``file``, ``origin``, ``sha256`` and ``size``.
    files
        Names of the files, relative to ``model_dir``, that make up the model.
    logit_bias
        A SigLIP model's learned bias (recorded as ``"logit_bias"``); None for CLIP models.

    Returns
    -------
    dict
        The manifest as written.
    """
    model_dir = Path(model_dir)
    names = sorted(set(files))
    manifest = {
        "format": FORMAT,
        "name": spec.name,
        "spec": spec.to_dict(),
        "logit_scale": float(logit_scale),
        **({} if logit_bias is None else {"logit_bias": float(logit_bias)}),
        "source": dict(source),
        "files": {name: file_sha256(model_dir / _checked_name(name, model_dir)) for name in names},
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "clipsearch_version": clipsearch_version(),
    }
    target = model_dir / MANIFEST_NAME
    scratch = model_dir / (MANIFEST_NAME + ".tmp")
    with open(scratch, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(scratch, target)
    return manifest


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """Parse ``manifest.json`` of an installed model without checking any file against it.

    Raises
    ------
    ManifestError
        The manifest is missing, is not JSON, or is not a format this version understands.
    """
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"{model_dir} has no {MANIFEST_NAME}: it is not a complete model installation; "
            f"install it again with: clipsearch-tui model install {model_dir.name}"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"cannot read {path}: {_reason(error)}") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}); "
            f"install the model again with: clipsearch-tui model install {model_dir.name}"
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ManifestError(f"{path} is not a clipsearch model manifest")
    if manifest.get("format") != FORMAT:
        raise ManifestError(
            f"{path} has format {manifest.get('format')!r}, this version reads format {FORMAT}; "
            f"install the model again with: clipsearch-tui model install {model_dir.name}"
        )
    return manifest


STAMPS_NAME = ".verified.json"
"""Beside the manifest: what each file's ``stat`` was when it last matched its hash."""


def _stat_stamp(path: Path) -> list[int]:
    """Size, modification and change times, and inode: any write to the file changes the
    change time (ctime), which no ordinary tool can set back."""
    info = os.stat(path)
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def _read_stamps(model_dir: Path) -> dict[str, Any]:
    try:
        stamps = json.loads((model_dir / STAMPS_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return stamps if isinstance(stamps, dict) else {}


def _write_stamps(model_dir: Path, stamps: dict[str, Any]) -> None:
    """Best effort: a model folder that cannot be written is simply hashed every time."""
    scratch = model_dir / f"{STAMPS_NAME}.{os.getpid()}.tmp"
    try:
        scratch.write_text(json.dumps(stamps), encoding="utf-8")
        os.replace(scratch, model_dir / STAMPS_NAME)
    except OSError:
        try:
            scratch.unlink()
        except OSError:
            pass


def verify_manifest(model_dir: Path, *, reuse: bool = False) -> dict[str, Any]:
    """Check every file of an installed model against the sha256 recorded at install time.

    Each file is streamed through the hash, so this costs one read of the model (about a second
    for a 600 MB model) and little memory.

    With ``reuse``, a file whose size, modification time, change time and inode are what they
    were when it last matched the same hash is not read again (the record is
    :data:`STAMPS_NAME` in the model folder); any write to a file changes its change time, so a
    damaged or altered file is still hashed and caught. Loading a model uses this; ``reuse`` off
    always reads every byte.

    Returns
    -------
    dict
        The manifest, as :func:`read_manifest` returns it.

    Raises
    ------
    ManifestError
        The manifest is unreadable, lists no files, or a listed file is missing or does not match
        its hash; the message names the file.
    """
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    files: dict[str, Any] = manifest["files"]
    name = manifest.get("name") or model_dir.name
    reinstall = f"install it again with: clipsearch-tui model install {name}"
    if not files:
        raise ManifestError(f"the manifest of model {name!r} lists no files; {reinstall}")
    known = _read_stamps(model_dir) if reuse else {}
    stamps: dict[str, Any] = {}
    for filename, expected in sorted(files.items()):
        path = model_dir / _checked_name(filename, model_dir)
        try:
            stamp = [expected, *_stat_stamp(path)]
            if known.get(filename) != stamp:
                if filename in known:
                    log.info(
                        "%s of model %r changed on disk since it was last checked; checking it",
                        filename,
                        name,
                    )
                actual = file_sha256(path)
                if actual != expected:
                    raise ManifestError(
                        f"{filename} of model {name!r} does not match the sha256 recorded when "
                        f"it was installed (the file was changed or damaged); {reinstall}"
                    )
        except FileNotFoundError:
            raise ManifestError(
                f"model {name!r} is missing {filename} (in {model_dir}); {reinstall}"
            ) from None
        except OSError as error:
            raise ManifestError(f"cannot read {path}: {_reason(error)}") from None
        stamps[filename] = stamp
    if reuse and stamps != known:
        _write_stamps(model_dir, stamps)
    return manifest


def _checked_name(filename: str, model_dir: Path) -> str:
    """``filename`` if it names a plain file directly inside the model folder."""
    if (
        not isinstance(filename, str)
        or not filename
        or filename in (".", "..", MANIFEST_NAME)
        or "/" in filename
        or "\\" in filename
        or os.sep in filename
    ):
        raise ManifestError(f"the manifest in {model_dir} lists an invalid file name {filename!r}")
    return filename


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error)


def clipsearch_version() -> str:
    """Installed version of clipsearch-tui, or ``"unknown"`` when run from a bare checkout."""
    from importlib import metadata  # here: its import alone costs a command tens of ms

    try:
        return metadata.version(_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"
