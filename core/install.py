"""Install, list and remove models.

Installing a model means: get its checkpoint (from the model hub through ``huggingface_hub``, or
from a local file), convert it to ncnn, record hashes in a manifest, and only then move the
finished folder into place::

    models_dir()/
        .install.lock                  held while a folder is being built or removed
        .partial-NAME-xxxx/            a build in progress; removed on failure or Ctrl-C
        NAME/                          a complete model (manifest.json written last)

A build that fails or is interrupted removes its partial folder; one killed outright leaves it
behind, and the next install removes it. An existing installation is replaced only once the new
one is complete.

Besides the built-in registry, models can be described in ``config_dir()/registry.json``: a file
of the same format (``{"models": {NAME: {...}}}``) whose entries are added to the built-in ones and
replace any of the same name.
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import secrets
import shutil
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from core import registry
from core.errors import (
    CheckpointError,
    ClipsearchError,
    DownloadError,
    ManifestError,
    ModelNotInstalledError,
    TokenizerError,
    UnknownModelError,
)
from core.manifest import (
    MANIFEST_NAME,
    clipsearch_version,
    file_sha256,
    read_manifest,
    verify_manifest,
    write_manifest,
)
from core.paths import config_dir, is_model_name, models_dir
from core.registry import ModelSpec

__all__ = [
    "HubFile",
    "InstallCancelledError",
    "ProgressCallback",
    "describe_model",
    "install_model",
    "list_models",
    "remove_model",
]

ProgressCallback = Callable[[str, int, int | None], None]
"""``progress(stage, done, total)``.

``stage`` is ``"download"`` (``done``/``total`` in bytes; ``total`` may be None), ``"hash"``,
``"convert"``, ``"manifest"`` or ``"done"`` (``done`` = step number, ``total`` = number of steps).
"""

USER_REGISTRY_NAME = "registry.json"
PARTIAL_PREFIX = ".partial-"
_LOCK_NAME = ".install.lock"
_OFFLINE_ROUTE = "clipsearch-tui model install {name} --from FILE"
_FOLDER_CHECKPOINTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_STEPS = 3

log = logging.getLogger(__name__)


class InstallCancelledError(ClipsearchError):
    """The caller's cancel event was set; nothing was left half-made."""

    exit_code = 130


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
        :class:`InstallCancelledError`.
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
    _check_cancel(cancel)
    downloaded = False
    extras: dict[str, Path] = {}
    if from_file is None:
        assert spec is not None
        checkpoint, display_name, origin, revision, downloaded = _download(
            spec, progress, cancel, announce
        )
        extras = _download_tokenizer(spec, revision, progress, cancel)
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
    _check_cancel(cancel)
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
        _check_cancel(cancel)
        if spec is None:
            spec = _inferred_spec(target, state_dict, bool(quick_gelu), display_name)
            spec = replace(spec, image_precision=image_precision)
        if _is_intact(models_dir() / target, spec, source):
            folder = _already_installed(target, progress)
        else:
            folder = _build(spec, state_dict, source, progress, cancel, extras)
    if downloaded and not keep_checkpoint:
        _drop_from_hub_cache(checkpoint)
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


def _tokenizer_files(spec: ModelSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tokenizer files ``spec`` needs, and those it reads when the repository has them."""
    if spec.tokenizer.get("kind", "clip") == "clip":
        return (), ()
    required = tuple(spec.tokenizer.get("files") or ())
    optional = tuple(spec.tokenizer.get("optional_files") or ())
    return required, optional


def _local_tokenizer(spec: ModelSpec, folder: Path, given: Path) -> dict[str, Path]:
    """The tokenizer files of ``spec`` beside the checkpoint, by name."""
    required, optional = _tokenizer_files(spec)
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


def _download_tokenizer(
    spec: ModelSpec,
    revision: str | None,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
) -> dict[str, Path]:
    """Fetch the tokenizer files of ``spec`` from its hub repository, at the checkpoint's commit."""
    required, optional = _tokenizer_files(spec)
    if not required:
        return {}
    from huggingface_hub import constants, errors, hf_hub_download

    remote_missing = getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)
    repo, endpoint = spec.hub_repo, constants.ENDPOINT
    assert repo is not None
    bar = _progress_bar_class(progress, cancel)
    found: dict[str, Path] = {}
    for name in (*required, *optional):
        _check_cancel(cancel)
        try:
            found[name] = Path(
                hf_hub_download(
                    repo,
                    name,
                    revision=revision,
                    tqdm_class=bar,
                    library_name="clipsearch-tui",
                )
            )
        except (remote_missing, errors.LocalEntryNotFoundError) as error:
            cause = getattr(error, "__cause__", None)
            missing = isinstance(error, remote_missing) or _http_status(cause) == 404
            if missing and name in optional:
                continue
            if missing:
                raise DownloadError(
                    f"tokenizer file {name} is missing from {repo} on {endpoint} "
                    f"(model {spec.name!r} needs it)"
                ) from None
            raise DownloadError(
                f"cannot download tokenizer file {name} of {repo} from {endpoint} "
                f"({_describe(cause or error)}); run the same command again to retry"
            ) from None
        except errors.HfHubHTTPError as error:
            raise DownloadError(
                f"downloading tokenizer file {name} from {endpoint}/{repo} failed: "
                f"{_describe(error)}; run the same command again to retry"
            ) from None
        except OSError as error:
            raise DownloadError(
                f"downloading tokenizer file {name} from {endpoint}/{repo} failed: "
                f"{_describe(error)}"
            ) from None
        except _transport_errors() as error:
            raise DownloadError(
                f"downloading tokenizer file {name} from {endpoint}/{repo} was cut off "
                f"({_describe(error)}); run the same command again to retry"
            ) from None
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
    specs = _known_specs()
    default = registry.default_model_name()
    installed = _installed_folders()
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
    spec = _known_specs().get(name)
    if spec is None:
        return None
    facts = [spec.description] if spec.description else []
    if spec.license and spec.license != "unknown":
        facts.append(f"licence {spec.license}")
    if spec.hub_repo and spec.hub_files:
        size = registry.checkpoint_bytes(spec.architecture)
        facts.append(f"about {size / 1e6:.0f} MB to download")
    return f"{name}: {', '.join(facts)}" if facts else name


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
    _check_name(name)
    root = models_dir()
    folder = root / name
    if not folder.is_dir():
        if name in _known_specs():
            raise ModelNotInstalledError(f"model {name!r} is not installed")
        raise UnknownModelError(
            f"no installed model named {name!r}; installed models: {_names(_installed_folders())}"
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
        _check_name(as_name)
        if as_name in _known_specs():
            raise ClipsearchError(
                f"{as_name!r} is a registry model; to install it from this file run: "
                f"clipsearch-tui model install {as_name} --from {from_file}"
            )
        return as_name, None

    _check_name(name)
    specs = _known_specs()
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
        _check_name(as_name)
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


@dataclass(frozen=True)
class HubFile:
    """The checkpoint file an install is about to download."""

    url: str
    filename: str
    size: int | None  # bytes, as the hub reports them


def _download(
    spec: ModelSpec,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    announce: Callable[[HubFile], None] | None,
) -> tuple[Path, str, str, str | None, bool]:
    """Fetch the first of ``spec.hub_files`` the hub has, or use a copy in its local cache.

    The hub is probed first (a connection to its host, then one metadata request per file, no
    retries), so that being offline is found out in seconds and a file's size is known before
    its download starts. Returns the local path, the file's name in the repo, the origin, the
    commit, and whether the file was downloaded now (it was not in the cache before).
    """
    route = _OFFLINE_ROUTE.format(name=spec.name)
    if not spec.hub_repo or not spec.hub_files:
        raise DownloadError(
            f"model {spec.name!r} has no download source; install it from a checkpoint file",
            route=route,
        )
    from huggingface_hub import constants, hf_hub_url, try_to_load_from_cache

    repo = spec.hub_repo
    endpoint = constants.ENDPOINT
    urls = tuple(hf_hub_url(repo, filename) for filename in spec.hub_files)
    cached: dict[str, Path] = {}
    for filename in spec.hub_files:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            cached[filename] = Path(found)

    if _hub_offline(constants):
        for filename, path in cached.items():
            log.info("offline mode: using %s of %s from the download cache", filename, repo)
            return path, filename, f"hub:{repo}", _cached_commit(path), False
        raise DownloadError(
            f"offline mode is on (HF_HUB_OFFLINE) and no checkpoint of {repo} is in the "
            f"download cache {constants.HF_HUB_CACHE}",
            urls=urls,
            route=route,
        )

    _check_cancel(cancel)
    unreachable = _connect_problem(endpoint)
    found_file: HubFile | None = None
    if unreachable is None:
        found_file, unreachable = _find_on_hub(spec, urls, route)
    if unreachable is not None:
        for filename, path in cached.items():
            log.info("the model hub cannot be reached; using %s from the download cache", filename)
            return path, filename, f"hub:{repo}", _cached_commit(path), False
        raise DownloadError(
            f"cannot reach the model hub at {endpoint} ({unreachable})", urls=urls, route=route
        )
    assert found_file is not None
    if announce is not None:
        announce(found_file)
    filename = found_file.filename
    path = _fetch(spec, filename, found_file.url, urls, route, progress, cancel)
    commit = _cached_commit(path)
    return path, filename, f"hub:{repo}", commit, filename not in cached


def _find_on_hub(
    spec: ModelSpec, urls: tuple[str, ...], route: str
) -> tuple[HubFile | None, str | None]:
    """The first of the spec's files the hub holds, or why the hub cannot be asked."""
    from huggingface_hub import constants, errors, get_hf_file_metadata

    assert spec.hub_repo is not None
    endpoint = constants.ENDPOINT
    repo = spec.hub_repo
    for filename, url in zip(spec.hub_files, urls, strict=True):
        try:
            with _quiet_hub():
                meta = get_hf_file_metadata(url, library_name="clipsearch-tui")
        except errors.GatedRepoError:
            raise DownloadError(
                f"{repo} on {endpoint} is gated: accept its terms on the hub and log in (HF_TOKEN)",
                urls=urls,
                route=route,
            ) from None
        except errors.RepositoryNotFoundError:
            raise DownloadError(
                f"the model hub at {endpoint} has no repository {repo!r} (or it is private)"
            ) from None
        except _remote_missing():
            continue
        except errors.HfHubHTTPError as error:
            status = _http_status(error)
            if status is not None and (status >= 500 or status == 429):
                return None, f"HTTP {status}"
            raise DownloadError(
                f"asking {endpoint} for {filename} of {repo} failed: {_describe(error)}",
                urls=urls,
                route=route,
            ) from None
        except _transport_errors() + (OSError,) as error:
            return None, _describe(error)
        return HubFile(url, filename, meta.size), None
    raise DownloadError(
        f"the model hub at {endpoint} has none of {', '.join(spec.hub_files)} in {repo}"
    )


def _fetch(
    spec: ModelSpec,
    filename: str,
    url: str,
    urls: tuple[str, ...],
    route: str,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
) -> Path:
    """Download one file into the hub's cache (resuming a cut-off transfer); its local path."""
    from huggingface_hub import constants, errors, hf_hub_download

    assert spec.hub_repo is not None
    bar = _progress_bar_class(progress, cancel)
    log.info("downloading %s", url)
    try:
        with _quiet_hub():
            path = hf_hub_download(
                spec.hub_repo, filename, tqdm_class=bar, library_name="clipsearch-tui"
            )
    except errors.LocalEntryNotFoundError as error:
        cause = error.__cause__
        raise DownloadError(
            f"the model hub at {constants.ENDPOINT} stopped answering while downloading "
            f"{filename} ({_describe(cause or error)}); run the same command again to retry",
            urls=urls,
            route=route,
        ) from None
    except errors.HfHubHTTPError as error:
        raise DownloadError(
            f"downloading {url} failed: {_describe(error)}; run the same command again to retry",
            urls=urls,
            route=route,
        ) from None
    except OSError as error:
        if error.errno in _DISK_FULL:
            raise ClipsearchError(
                f"disk full while writing the download cache {constants.HF_HUB_CACHE}"
            ) from None
        raise DownloadError(
            f"downloading {url} failed: {_describe(error)}", urls=urls, route=route
        ) from None
    except _transport_errors() as error:
        raise DownloadError(
            f"downloading {url} was cut off ({_describe(error)}); run the same command again "
            "to retry",
            urls=urls,
            route=route,
        ) from None
    return Path(path)


def _connect_problem(endpoint: str, timeout_s: float = 3.0) -> str | None:
    """Why no connection to the hub's host can be opened, or None when one can.

    A name lookup and a TCP connection, so that an offline machine is told so in seconds rather
    than after the HTTP client's retries. Skipped (None) behind a proxy, where only the proxy
    can tell.
    """
    if any(
        os.environ.get(key) or os.environ.get(key.lower())
        for key in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")
    ):
        return None
    parts = urlsplit(endpoint)
    host = parts.hostname
    if not host:
        return f"not a web address: {endpoint!r}"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as error:
        return f"cannot look up {host}: {getattr(error, 'strerror', None) or error}"
    problem = "no address"
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout_s)
                sock.connect(address)
            return None
        except TimeoutError:
            problem = f"no answer from {host} within {timeout_s:g} s"
        except OSError as error:
            problem = error.strerror or str(error)
    return problem


@contextmanager
def _quiet_hub() -> Iterator[None]:
    """Within the block, ``huggingface_hub`` logs no retry warnings (our error says it all)."""
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_log.setLevel(level)


def _remote_missing() -> type[BaseException]:
    from huggingface_hub import errors

    return getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)


def _cached_commit(path: Path) -> str | None:
    return path.parent.name if path.parent.parent.name == "snapshots" else None


def _drop_from_hub_cache(path: Path) -> None:
    """Delete a checkpoint downloaded into the hub's cache, and its repo folder once empty.

    The cache keeps ``snapshots/COMMIT/FILE`` as a link to ``blobs/HASH`` (or, where links are
    not allowed, as the file itself); both go.
    """
    try:
        blob = path.resolve()
        path.unlink(missing_ok=True)
        if blob != path:
            blob.unlink(missing_ok=True)
    except OSError as error:
        log.info("could not remove the downloaded checkpoint %s: %s", path, _reason(error))
        return
    if path.parent.parent.name != "snapshots":
        return
    repo_folder = path.parent.parent.parent
    blobs = repo_folder / "blobs"
    if blobs.is_dir() and any(blobs.iterdir()):
        return
    if repo_folder.name.startswith("models--"):
        shutil.rmtree(repo_folder, ignore_errors=True)


def _progress_bar_class(progress: ProgressCallback | None, cancel: threading.Event | None) -> type:
    """A ``huggingface_hub`` tqdm class reporting bytes to ``progress``, honouring ``cancel``."""
    from huggingface_hub.utils.tqdm import tqdm as hub_tqdm

    class _ReportingBar(hub_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if progress is not None:
                kwargs["disable"] = True
            super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # tqdm is untyped
            self._done = int(kwargs.get("initial") or 0)
            self._expected = kwargs.get("total")

        def update(self, n: float | None = 1) -> bool | None:
            _check_cancel(cancel)
            self._done += int(n or 0)
            if progress is not None:
                progress("download", self._done, self._expected)
            shown: bool | None = super().update(n)
            return shown

    return _ReportingBar


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
                _check_cancel(cancel)
                tokenizer_files = _install_tokenizer(extras or {}, partial)
                log.info("converting %s to ncnn", spec.name)
                result = convert_checkpoint(state_dict, spec, partial)
                _report(progress, "manifest", 2, _STEPS)
                _check_cancel(cancel)
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
                _check_cancel(cancel)
                _move_into_place(partial, final)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
    except OSError as error:
        if error.errno in _DISK_FULL:
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


def _known_specs() -> dict[str, ModelSpec]:
    """Built-in registry entries, then those of the user's registry file."""
    specs = {name: registry.get_spec(name) for name in registry.available_models()}
    path = config_dir() / USER_REGISTRY_NAME
    if not path.is_file():
        return specs
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        for name, entry in dict(data["models"]).items():
            _check_name(name)
            specs[name] = ModelSpec.from_dict(name, entry)
    except ClipsearchError as error:
        raise ClipsearchError(f"{path}: {error}") from None
    except json.JSONDecodeError as error:
        raise ClipsearchError(f"{path} is not valid JSON (line {error.lineno})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ClipsearchError(f"cannot read {path}: {_reason(error)}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise ClipsearchError(
            f"{path} does not follow the registry format ({type(error).__name__}: {error})"
        ) from None
    return specs


def _installed_folders() -> dict[str, Path]:
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


@contextmanager
def _install_lock(root: Path) -> Iterator[None]:
    """Serialise builds and removals, so that any partial folder seen under the lock is stale."""
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / _LOCK_NAME)):
        yield


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


def _check_name(name: str) -> None:
    if not is_model_name(name):
        raise ClipsearchError(
            f"invalid model name {name!r}: use letters, digits and . _ + - (not starting with one)"
        )


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise InstallCancelledError("install cancelled")


def _report(progress: ProgressCallback | None, stage: str, done: int, total: int | None) -> None:
    if progress is not None:
        progress(stage, done, total)


def _names(items: Mapping[str, Any]) -> str:
    return ", ".join(sorted(items)) or "none"


def _http_status(error: BaseException | None) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _describe(error: BaseException) -> str:
    status = _http_status(error)
    if status is not None:
        return f"HTTP {status}"
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _reason(error: OSError | UnicodeDecodeError) -> str:
    return getattr(error, "strerror", None) or str(error)


def _hub_offline(constants: Any) -> bool:
    is_offline = getattr(constants, "is_offline_mode", None)
    return bool(
        is_offline() if callable(is_offline) else getattr(constants, "HF_HUB_OFFLINE", False)
    )


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network errors of whichever HTTP client this ``huggingface_hub`` uses."""
    kinds: list[type[BaseException]] = []
    for module, attribute in (
        ("httpx2", "TransportError"),
        ("httpx", "TransportError"),
        ("requests", "RequestException"),
    ):
        try:
            kinds.append(getattr(importlib.import_module(module), attribute))
        except (ImportError, AttributeError):
            pass
    return tuple(kinds)
