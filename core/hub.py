"""Downloads from the model hub: a model's checkpoint and tokenizer files.

Through ``huggingface_hub`` (``HF_ENDPOINT``, ``HF_HOME`` and ``HF_HUB_OFFLINE`` apply), into its
download cache. The hub is probed before a download starts (a connection to its host, then one
metadata request per file, no retries), so that an offline machine is told so in seconds, with
the exact file addresses to fetch elsewhere and the command that installs from the file
(:class:`core.errors.DownloadError`). A copy already in the cache is used when the hub cannot be
reached. :mod:`core.install` calls this module; nothing here converts or installs.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.errors import ClipsearchError, DownloadError, InstallCancelledError, is_disk_full
from core.registry import ModelSpec

__all__ = [
    "HubFile",
    "ProgressCallback",
    "cached_commit",
    "check_cancel",
    "download_checkpoint",
    "download_tokenizer",
    "drop_from_hub_cache",
    "progress_bar_class",
    "tokenizer_files",
]

ProgressCallback = Callable[[str, int, int | None], None]
"""``progress(stage, done, total)``.

``stage`` is ``"download"`` (``done``/``total`` in bytes; ``total`` may be None), ``"hash"``,
``"convert"``, ``"manifest"`` or ``"done"`` (``done`` = step number, ``total`` = number of steps).
"""

OFFLINE_ROUTE = "clipsearch-tui model install {name} --from FILE"

log = logging.getLogger(__name__)


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise :class:`InstallCancelledError` when ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise InstallCancelledError("install cancelled")


def tokenizer_files(spec: ModelSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tokenizer files ``spec`` needs, and those it reads when the repository has them."""
    if spec.tokenizer.get("kind", "clip") == "clip":
        return (), ()
    required = tuple(spec.tokenizer.get("files") or ())
    optional = tuple(spec.tokenizer.get("optional_files") or ())
    return required, optional


@dataclass(frozen=True)
class HubFile:
    """The checkpoint file an install is about to download."""

    url: str
    filename: str
    size: int | None  # bytes, as the hub reports them


def download_checkpoint(
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
    route = OFFLINE_ROUTE.format(name=spec.name)
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
            return path, filename, f"hub:{repo}", cached_commit(path), False
        raise DownloadError(
            f"offline mode is on (HF_HUB_OFFLINE) and no checkpoint of {repo} is in the "
            f"download cache {constants.HF_HUB_CACHE}",
            urls=urls,
            route=route,
        )

    check_cancel(cancel)
    unreachable = _connect_problem(endpoint)
    found_file: HubFile | None = None
    if unreachable is None:
        found_file, unreachable = _find_on_hub(spec, urls, route)
    if unreachable is not None:
        for filename, path in cached.items():
            log.info("the model hub cannot be reached; using %s from the download cache", filename)
            return path, filename, f"hub:{repo}", cached_commit(path), False
        raise DownloadError(
            f"cannot reach the model hub at {endpoint} ({unreachable})", urls=urls, route=route
        )
    assert found_file is not None
    if announce is not None:
        announce(found_file)
    filename = found_file.filename
    path = _fetch(spec, filename, found_file.url, urls, route, progress, cancel)
    commit = cached_commit(path)
    return path, filename, f"hub:{repo}", commit, filename not in cached


def download_tokenizer(
    spec: ModelSpec,
    revision: str | None,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
) -> dict[str, Path]:
    """Fetch the tokenizer files of ``spec`` from its hub repository, at the checkpoint's commit."""
    required, optional = tokenizer_files(spec)
    if not required:
        return {}
    from huggingface_hub import constants, errors, hf_hub_download

    remote_missing = getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)
    repo, endpoint = spec.hub_repo, constants.ENDPOINT
    assert repo is not None
    bar = progress_bar_class(progress, cancel)
    found: dict[str, Path] = {}
    for name in (*required, *optional):
        check_cancel(cancel)
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
    bar = progress_bar_class(progress, cancel)
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
        if is_disk_full(error):
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


def cached_commit(path: Path) -> str | None:
    return path.parent.name if path.parent.parent.name == "snapshots" else None


def drop_from_hub_cache(path: Path) -> None:
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
        log.info("could not remove the downloaded checkpoint %s: %s", path, error.strerror or error)
        return
    if path.parent.parent.name != "snapshots":
        return
    repo_folder = path.parent.parent.parent
    blobs = repo_folder / "blobs"
    if blobs.is_dir() and any(blobs.iterdir()):
        return
    if repo_folder.name.startswith("models--"):
        shutil.rmtree(repo_folder, ignore_errors=True)


def progress_bar_class(progress: ProgressCallback | None, cancel: threading.Event | None) -> type:
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
            check_cancel(cancel)
            self._done += int(n or 0)
            if progress is not None:
                progress("download", self._done, self._expected)
            shown: bool | None = super().update(n)
            return shown

    return _ReportingBar


def _http_status(error: BaseException | None) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _describe(error: BaseException) -> str:
    status = _http_status(error)
    if status is not None:
        return f"HTTP {status}"
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


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
