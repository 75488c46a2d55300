"""Install and remove models.

Installing a model means: get its checkpoint (downloaded from the model hub by :mod:`core.hub`,
or a local file), convert it to ncnn, record hashes in a manifest, and only then move the
finished folder into place::

    models_dir()/
        .install.lock                  held while a folder is being built or removed
        .partial-NAME-xxxx/            a build in progress; removed on failure or Ctrl-C
        NAME/                          a complete model (manifest.json written last)

A build that fails or is interrupted removes its partial folder; one killed outright leaves it
behind, and the next install removes it. An existing installation is replaced only once the new
one is complete. Which models there are (the registry, the user's registry file, the installed
folders) is :mod:`core.catalog`'s.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from core import registry
from core.catalog import check_name, installed_folders, known_specs
from core.errors import (
    CheckpointError,
    ClipsearchError,
    ManifestError,
    ModelNotInstalledError,
    TokenizerError,
    UnknownModelError,
    is_disk_full,
)
from core.hub import (
    HubFile,
    ProgressCallback,
    check_cancel,
    download_checkpoint,
    download_tokenizer,
    drop_from_hub_cache,
    tokenizer_files,
)
from core.manifest import (
    MANIFEST_NAME,
    clipsearch_version,
    file_sha256,
    verify_manifest,
    write_manifest,
)
from core.paths import models_dir
from core.registry import ModelSpec

__all__ = ["PARTIAL_PREFIX", "install_model", "remove_model"]

PARTIAL_PREFIX = ".partial-"
_LOCK_NAME = ".install.lock"
_FOLDER_CHECKPOINTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_STEPS = 3

log = logging.getLogger(__name__)


def install_model(
    name: str | None,
    from_file: Path | None = None,
    *,
    as_name: str | None = None,
    quick_gelu: bool | None = None,
    image_precision: str = "fp32",
    keep_checkpoint: bool = False,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    announce: Callable[[HubFile], None] | None = None,
) -> Path:
    """Download or read a checkpoint, convert it, and install it as a model folder.

    Parameters
    ----------
    name
        A registry model. Without ``from_file`` its checkpoint is downloaded from the model hub
        (``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_OFFLINE`` apply), trying the registry's files in
        order. None means the default model, or with ``from_file`` a new model named
        ``as_name``.
    from_file
        A local ``.safetensors`` or torch ``.bin``/``.pt`` checkpoint. With ``name`` its shapes must
        match that registry entry; without, the architecture is inferred from it.
    as_name
        Name to install under. Required when ``name`` is None.
    quick_gelu
        For an inferred architecture: whether it uses QuickGELU (OpenAI-trained weights do).
        Default False. A registry model fixes this itself.
    image_precision
        ``"fp32"`` (default, exactly the reference) or ``"int8"`` (the image tower's matrix
        products on 8-bit weights: faster indexing, embeddings move slightly; see
        ``bench/RESULTS.md``).
    keep_checkpoint
        Keep a downloaded checkpoint in the hub's download cache after the model is installed.
        By default a checkpoint that this call downloaded is deleted once converted, so the
        model does not take its disk space twice; one that was in the cache before is kept.
    progress
        Called as ``progress(stage, done, total)``. When given, ``huggingface_hub``'s own progress
        bars are not drawn; otherwise they are, as it decides (on a terminal).
    cancel
        When set, the install stops at the next chunk or step with
        :class:`core.errors.InstallCancelledError`.
    announce
        Called once the hub has been asked which file it holds, before the download starts,
        with the file's address and size.

    Returns
    -------
    Path
        The installed model folder.

    Raises
    ------
    ClipsearchError
        With a one-line message, for every failure a user can meet: unknown name, hub
        unreachable or offline, missing files, a broken or mismatched checkpoint, a full disk.
    """
    if image_precision not in ("fp32", "int8"):
        raise ClipsearchError(f"unknown precision {image_precision!r}; use fp32 or int8")
    target, spec = _resolve_target(name, from_file, as_name, quick_gelu)
    if spec is not None:
        if image_precision == "int8" and spec.architecture.family == "fastvit":
            raise ClipsearchError(
                f"{spec.name} has no int8 version (its FastViT image tower runs in fp32 only); "
                f"install it without --precision int8"
            )
        spec = replace(spec, image_precision=image_precision)
    if models_dir().is_dir():
        with _install_lock(models_dir()):
            _remove_partials(models_dir())
    check_cancel(cancel)
    downloaded = False
    extras: dict[str, Path] = {}
    if from_file is None:
        assert spec is not None
        checkpoint, display_name, origin, revision, downloaded = download_checkpoint(
            spec, progress, cancel, announce
        )
        extras = download_tokenizer(spec, revision, progress, cancel)
    else:
        checkpoint = _local_checkpoint(Path(from_file).expanduser(), spec)
        display_name = checkpoint.name
        origin = f"file:{checkpoint.resolve()}"
        revision = None
        if spec is not None:
            extras = _local_tokenizer(spec, checkpoint.parent, Path(from_file).expanduser())
    if spec is not None:
        _check_tokenizer(spec, extras)

    _report(progress, "hash", 0, _STEPS)
    check_cancel(cancel)
    try:
        source: dict[str, Any] = {
            "file": display_name,
            "origin": origin,
            "sha256": file_sha256(checkpoint),
            "size": checkpoint.stat().st_size,
        }
    except OSError as error:
        raise CheckpointError(f"cannot read {checkpoint}: {_reason(error)}") from None
    if revision:
        source["revision"] = revision
    if extras:
        try:
            source["tokenizer"] = {name: file_sha256(path) for name, path in extras.items()}
        except OSError as error:
            raise TokenizerError(f"cannot read tokenizer file: {_reason(error)}") from None

    if spec is not None and _is_intact(models_dir() / target, spec, source):
        folder = _already_installed(target, progress)
    else:
        from core.checkpoint import load_state_dict

        log.info("reading %s", display_name)
        state_dict = load_state_dict(checkpoint)
        check_cancel(cancel)
        if spec is None:
            spec = _inferred_spec(target, state_dict, bool(quick_gelu), display_name)
            spec = replace(spec, image_precision=image_precision)
        if _is_intact(models_dir() / target, spec, source):
            folder = _already_installed(target, progress)
        else:
            folder = _build(spec, state_dict, source, progress, cancel, extras)
    if downloaded and not keep_checkpoint:
        drop_from_hub_cache(checkpoint)
        log.info("removed the downloaded checkpoint from the download cache")
    return folder


def _local_checkpoint(path: Path, spec: ModelSpec | None) -> Path:
    """The checkpoint given by ``--from``: the file itself, or in a folder holding a hub
    repository's files, the first of the model's hub files that is there."""
    if path.is_dir():
        names = spec.hub_files if spec is not None and spec.hub_files else _FOLDER_CHECKPOINTS
        for name in names:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(
            f"the folder {path} holds no checkpoint (looked for {', '.join(names)})"
        )
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint file or folder: {path}")
    return path


def _local_tokenizer(spec: ModelSpec, folder: Path, given: Path) -> dict[str, Path]:
    """The tokenizer files of ``spec`` beside the checkpoint, by name."""
    required, optional = tokenizer_files(spec)
    found: dict[str, Path] = {}
    for name in required:
        if not (folder / name).is_file():
            hint = (
                ""
                if given.is_dir()
                else "; give the folder with every file of the hub repository: --from FOLDER"
            )
            raise TokenizerError(
                f"tokenizer file {name} is missing from {folder} "
                f"(model {spec.name!r} needs it){hint}"
            )
        found[name] = folder / name
    for name in optional:
        if (folder / name).is_file():
            found[name] = folder / name
    return found


def _check_tokenizer(spec: ModelSpec, extras: Mapping[str, Path]) -> None:
    """Load the tokenizer files (they lie in one folder) and check that their ids fit the
    model's vocabulary, before anything is converted."""
    if not extras:
        return
    from core.hf_tokenizer import HFTokenizer

    folders = {path.parent for path in extras.values()}
    assert len(folders) == 1, folders
    text = spec.architecture.text
    clean = spec.tokenizer.get("clean", "whitespace")
    tokenizer = HFTokenizer(folders.pop(), int(text["context_length"]), clean)
    rows = int(text["vocab_size"])
    if tokenizer.max_id >= rows:
        raise TokenizerError(
            f"tokenizer file tokenizer.json does not match the checkpoint of {spec.name!r}: "
            f"its ids go up to {tokenizer.max_id}, the model's vocabulary has {rows} rows"
        )


def _install_tokenizer(extras: Mapping[str, Path], folder: Path) -> list[str]:
    """Copy the tokenizer files into the model ``folder``; returns their names."""
    for name, path in extras.items():
        shutil.copyfile(path, folder / name)
    return list(extras)


def remove_model(name: str) -> Path:
    """Delete an installed model folder.

    The folder is first renamed out of sight, so an interrupted removal never leaves a model that
    looks installed but is not whole.

    Returns
    -------
    Path
        The folder that was removed.

    Raises
    ------
    ModelNotInstalledError
        ``name`` is a registry model that is not installed.
    UnknownModelError
        ``name`` is neither in the registry nor installed.
    """
    check_name(name)
    root = models_dir()
    folder = root / name
    if folder.is_symlink():  # a link the user made (dangling or not): it goes, never its target
        with _install_lock(root):
            try:
                folder.unlink()
            except OSError as error:
                raise ClipsearchError(f"cannot remove {folder}: {_reason(error)}") from None
        return folder
    if not folder.is_dir():
        if name in known_specs():
            raise ModelNotInstalledError(f"model {name!r} is not installed")
        raise UnknownModelError(
            f"no installed model named {name!r}; installed models: {_names(installed_folders())}"
        )
    with _install_lock(root):
        _remove_partials(root)
        doomed = root / f"{PARTIAL_PREFIX}removed-{name}-{secrets.token_hex(4)}"
        try:
            os.replace(folder, doomed)
        except OSError as error:
            raise ClipsearchError(f"cannot remove {folder}: {_reason(error)}") from None
        shutil.rmtree(doomed, ignore_errors=True)
    return folder


def _resolve_target(
    name: str | None, from_file: Path | None, as_name: str | None, quick_gelu: bool | None
) -> tuple[str, ModelSpec | None]:
    """The folder name to install under and, for a registry model, its spec."""
    if name is None and from_file is None:
        name = registry.default_model_name()
    if name is None:
        if as_name is None:
            raise ClipsearchError("--from FILE without a registry model name needs --as NEWNAME")
        check_name(as_name)
        if as_name in known_specs():
            raise ClipsearchError(
                f"{as_name!r} is a registry model; to install it from this file run: "
                f"clipsearch-tui model install {as_name} --from {from_file}"
            )
        return as_name, None

    check_name(name)
    specs = known_specs()
    if name not in specs:
        if (models_dir() / name / MANIFEST_NAME).is_file():
            raise UnknownModelError(
                f"model {name!r} is not in the registry; it was installed from a file, so install "
                f"it again with: clipsearch-tui model install --from FILE --as {name}"
            )
        raise UnknownModelError(f"unknown model {name!r}; known models: {_names(specs)}")
    spec = specs[name]
    if quick_gelu is not None and quick_gelu != spec.architecture.quick_gelu:
        raise ClipsearchError(
            f"model {name!r} is defined {'with' if spec.architecture.quick_gelu else 'without'} "
            "QuickGELU; --quick-gelu only applies to --from FILE --as NEWNAME"
        )
    if as_name is not None and as_name != name:
        check_name(as_name)
        if from_file is None:
            raise ClipsearchError("--as renames a model installed with --from FILE")
        if as_name in specs:
            raise ClipsearchError(f"{as_name!r} is another registry model")
        spec = replace(spec, name=as_name)
    return spec.name, spec


def _inferred_spec(
    name: str, state_dict: Mapping[str, np.ndarray], quick_gelu: bool, file_name: str
) -> ModelSpec:
    from core.convert import spec_for_checkpoint

    spec = spec_for_checkpoint(name, state_dict, quick_gelu)
    return replace(spec, description=f"installed from {file_name}")


def _build(
    spec: ModelSpec,
    state_dict: Mapping[str, np.ndarray],
    source: Mapping[str, Any],
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    extras: Mapping[str, Path] | None = None,
) -> Path:
    """Convert into a partial folder, write the manifest, then move it into place."""
    from core.convert import convert_checkpoint

    root = models_dir()
    final = root / spec.name
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _install_lock(root):
            _remove_partials(root)
            partial = root / f"{PARTIAL_PREFIX}{spec.name}-{secrets.token_hex(4)}"
            partial.mkdir()
            try:
                _report(progress, "convert", 1, _STEPS)
                check_cancel(cancel)
                tokenizer_files = _install_tokenizer(extras or {}, partial)
                log.info("converting %s to ncnn", spec.name)
                result = convert_checkpoint(state_dict, spec, partial)
                _report(progress, "manifest", 2, _STEPS)
                check_cancel(cancel)
                bias = result.get("logit_bias")
                write_manifest(
                    partial,
                    spec,
                    logit_scale=float(result["logit_scale"]),
                    source=source,
                    files=[*result["files"], *tokenizer_files],
                    logit_bias=None if bias is None else float(bias),
                )
                _fsync_folder(partial)
                check_cancel(cancel)
                _move_into_place(partial, final)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
    except OSError as error:
        if is_disk_full(error):
            raise ClipsearchError(f"disk full while writing model files in {root}") from None
        where = error.filename or root
        raise ClipsearchError(f"cannot write {where}: {_reason(error)}") from None
    _report(progress, "done", _STEPS, _STEPS)
    return final


def _move_into_place(partial: Path, final: Path) -> None:
    """Rename ``partial`` to ``final``, replacing an existing installation only now."""
    old = None
    if final.exists():
        old = final.parent / f"{PARTIAL_PREFIX}replaced-{final.name}-{secrets.token_hex(4)}"
        os.replace(final, old)
    try:
        os.replace(partial, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _is_intact(folder: Path, spec: ModelSpec, source: Mapping[str, Any]) -> bool:
    """Whether ``folder`` already holds this checkpoint, converted for ``spec`` by this version."""
    if not (folder / MANIFEST_NAME).is_file():
        return False
    try:
        manifest = verify_manifest(folder)
    except ManifestError as error:
        log.info("replacing the installed copy: %s", error)
        return False
    recorded = manifest.get("source") or {}
    return (
        recorded.get("sha256") == source["sha256"]
        and recorded.get("tokenizer") == source.get("tokenizer")
        and manifest.get("spec") == spec.to_dict()
        and manifest.get("clipsearch_version") == clipsearch_version()
    )


def _already_installed(name: str, progress: ProgressCallback | None) -> Path:
    log.info("%s is already installed from this checkpoint, and intact", name)
    _report(progress, "done", _STEPS, _STEPS)
    return models_dir() / name


@contextmanager
def _install_lock(root: Path) -> Iterator[None]:
    """Serialise builds and removals, so that any partial folder seen under the lock is stale.

    Raises
    ------
    ClipsearchError
        The models folder or its lock file cannot be written (a read-only folder, a full disk).
    """
    from filelock import FileLock

    path = root / _LOCK_NAME
    lock = FileLock(str(path))
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as error:
        raise ClipsearchError(f"cannot write {path}: {_reason(error)}") from None
    try:
        yield
    finally:
        lock.release()


def _remove_partials(root: Path) -> None:
    """Clear what interrupted installs left; call with the install lock held.

    An installation set aside by a replacement that was killed before the new one took its
    place (``.partial-replaced-NAME-xxxx`` with no ``NAME``) is put back; every other partial
    folder, including an old installation that was already replaced, is removed.
    """
    if not root.is_dir():
        return
    replaced = f"{PARTIAL_PREFIX}replaced-"
    for entry in sorted(root.iterdir()):
        if not entry.name.startswith(PARTIAL_PREFIX):
            continue
        if entry.name.startswith(replaced) and entry.is_dir() and not entry.is_symlink():
            name = entry.name[len(replaced) :].rpartition("-")[0]
            if name and not (root / name).exists() and (entry / MANIFEST_NAME).is_file():
                log.info("putting back model %s, set aside by an install that did not finish", name)
                os.replace(entry, root / name)
                continue
        log.info("removing %s, left by an install that did not finish", entry.name)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    mode = "rb" if os.name == "posix" else "r+b"  # Windows flushes only files open for writing
    for entry in folder.iterdir():
        if entry.is_file():
            with open(entry, mode) as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _report(progress: ProgressCallback | None, stage: str, done: int, total: int | None) -> None:
    if progress is not None:
        progress(stage, done, total)


def _names(items: Mapping[str, Any]) -> str:
    return ", ".join(sorted(items)) or "none"


def _reason(error: OSError | UnicodeDecodeError) -> str:
    return getattr(error, "strerror", None) or str(error)
