"""Encoding on a Dask cluster: the workers decode and encode, this process commits.

``clipsearch-tui index PATH --dask tcp://scheduler:8786`` scans and syncs the album here as
usual, then cuts the pending photos into shards of one batch each (in the order a local run
encodes them, so the batches, and the vectors, are the same) and submits them to the cluster's
workers through the ``distributed`` client:

- **Each worker** loads the model once (by name, from its own install, in the precision of this
  process's image tower, with ``OMP_NUM_THREADS`` ncnn threads, which a Dask nanny sets to 1;
  a worker whose model files differ refuses the shard), opens the photos
  at the same path as here (the album must be mounted at the same path on every machine, as a
  NAS share is), decodes and encodes them exactly as a local run does (:func:`core.indexer.
  decode_photo`, :func:`core.indexer.encode_batch`), and returns the vectors, the thumbnails as
  JPEG bytes and the errors.
- **This process stays the single writer.** It commits each shard in one transaction as it comes
  back (:func:`core.indexer.save_results`), writes the thumbnails, and reports progress as a
  local run does. A kill at any moment leaves the library as a local run's kill does: every
  photo indexed with its vector, or still pending for the next run.
- **A worker that dies** has its shards run again elsewhere by the scheduler; a shard is
  committed once, when its result arrives, so nothing is encoded twice in the library.
- **A photo that kills every worker that reads it** (one that crashes the decoder): the
  scheduler gives up on its shard once workers died with it more often than its
  ``distributed.scheduler.allowed-failures`` setting allows (3 by default) and raises
  ``KilledWorker``. The photos of such shards (and of any shard that was running on the same
  worker, which the scheduler blames alike) are not failed together: once every other shard is
  done, each is sent again on its own, one at a time, so that a worker that dies then was
  killed by that photo alone. Only that photo is recorded as failed, with the reason; the
  others are encoded. A failed photo is not tried again until its file changes.

At most ``2 * threads + 2`` shards are in flight (``threads``: the workers' threads together),
so memory stays bounded however many photos are pending; a pause or a cancel takes effect when
the next shard comes back (the shards in flight are cancelled on a cancel, and finish on a pause).

This module imports ``distributed``; nothing else imports it unless a cluster is asked for.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client, Future, as_completed
from distributed.scheduler import KilledWorker

from core.encoder import ClipModel, load_model
from core.errors import ClipsearchError
from core.indexer import (
    RunCounters,
    decode_photo,
    encode_batch,
    save_results,
)
from core.library import Library, PendingPhoto
from core.sync import digest_or_none
from core.thumbnails import store_thumbnail, thumbnail_jpeg

__all__ = ["ClusterError", "ModelRequest", "ShardResult", "encode_on_cluster", "encode_shard"]

CONNECT_TIMEOUT_S = 30


class ClusterError(ClipsearchError):
    """The cluster cannot be reached, or its workers cannot encode."""


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """What a worker needs to load the same model as this process.

    Attributes
    ----------
    name
        The installed model's name.
    precision
        The image tower's precision here (``fp32``, ``bf16``, ``int8``).
    draft
        Whether JPEGs are decoded at a reduced scale (:attr:`core.encoder.ClipModel.draft`).
    fingerprint
        SHA-256 of the model's manifest: a worker whose model differs refuses to encode.
    """

    name: str
    precision: str
    draft: bool
    fingerprint: str

    @classmethod
    def of(cls, model: ClipModel) -> ModelRequest:
        return cls(model.name, model.precision.image, model.draft, _fingerprint(model))


@dataclass(slots=True)
class ShardResult:
    """What a worker returns for one shard.

    Attributes
    ----------
    ids
        Photos encoded, ``[K]``.
    vectors
        Their embeddings, ``[K, D] float32``.
    thumbnails
        ``(thumbnail name, JPEG bytes)`` per encoded photo: the name is the whole file's
        digest, or the name the library gave when the file could not be read whole; bytes are
        empty when none could be made.
    failed
        ``(photo id, error text)`` of the photos that could not be read or encoded.
    digests
        The whole file's digest per encoded photo as the worker read it (None where it could
        not), ``[K]``.
    """

    ids: list[int] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    thumbnails: list[tuple[str, bytes]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    digests: list[str | None] = field(default_factory=list)


def _fingerprint(model: ClipModel) -> str:
    text = json.dumps(model.manifest, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


_models: dict[ModelRequest, ClipModel] = {}
_models_lock = threading.Lock()


def _worker_model(request: ModelRequest) -> ClipModel:
    """The model of this worker process, loaded on its first shard."""
    with _models_lock:
        model = _models.get(request)
        if model is None:
            model = load_model(
                request.name, threads=_threads_here(), precision=request.precision,
                draft=request.draft,
            )  # fmt: skip
            if _fingerprint(model) != request.fingerprint:
                model.close()
                raise ClusterError(
                    f"the model {request.name!r} installed on this worker differs from the "
                    "client's: install the same model on every worker"
                )
            _models[request] = model
        return model


def _threads_here() -> int | None:
    """ncnn threads of a worker: ``OMP_NUM_THREADS`` when set (a Dask nanny sets 1 in every
    worker process it starts: one worker process per core), else the encoder's default."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return None


def encode_shard(request: ModelRequest, photos: Sequence[tuple[int, str, str]]) -> ShardResult:
    """Decode and encode one shard on a worker (the function the cluster runs).

    Parameters
    ----------
    request
        The model to use.
    photos
        ``(photo id, path, thumbnail name)`` per photo, in order, as
        :class:`core.library.PendingPhoto` has them.
    """
    model = _worker_model(request)
    min_side = 2 * model.spec.preprocess.size if model.draft else None
    result = ShardResult(vectors=np.zeros((0, model.embed_dim), np.float32))
    good: list[tuple[int, str | None, str, np.ndarray, object]] = []
    for photo_id, path, name in photos:
        digest = digest_or_none(path)
        decoded = decode_photo(Path(path), model, min_side)
        if isinstance(decoded, str):
            result.failed.append((photo_id, decoded))
        else:
            good.append((photo_id, digest, digest or name, *decoded))
    if not good:
        return result
    matrix, errors = encode_batch(model, [pixels for _, _, _, pixels, _ in good])
    keep = []
    for row, ((photo_id, digest, name, _, image), error) in enumerate(
        zip(good, errors, strict=True)
    ):
        if error:
            result.failed.append((photo_id, error))
            continue
        keep.append(row)
        result.ids.append(photo_id)
        result.digests.append(digest)
        try:
            result.thumbnails.append((name, thumbnail_jpeg(image)))  # type: ignore[arg-type]
        except (OSError, ValueError):
            result.thumbnails.append((name, b""))
    result.vectors = matrix[keep]
    return result


def _shards(todo: Sequence[PendingPhoto], size: int) -> Iterator[list[PendingPhoto]]:
    for start in range(0, len(todo), size):
        yield list(todo[start : start + size])


def _connect(address: str) -> Client:
    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {error}") from error


def _threads(client: Client) -> int:
    """The workers' threads together (at least 1, also while no worker has joined yet)."""
    info = client.scheduler_info()
    return max(1, sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values()))


def encode_on_cluster(
    address: str,
    library: Library,
    model: ClipModel,
    todo: Sequence[PendingPhoto],
    run: RunCounters,
    cancel: threading.Event,
    batch_size: int,
) -> bool:
    """Encode ``todo`` on the cluster at ``address``, committing here; True when cancelled.

    Raises
    ------
    ClusterError
        The scheduler cannot be reached, or a worker cannot load the model.
    """
    request = ModelRequest.of(model)
    done = 0
    clock = run.start("encoding", len(todo))

    def commit(shard: list[PendingPhoto], result: ShardResult) -> None:
        nonlocal done
        _commit(library, model, shard, result, run)
        done += len(shard)
        run.report("encoding", done, len(todo), clock, shard[-1].path, force=True)
        if not cancel.is_set():
            run.hold("encoding", done, len(todo), clock, shard[-1].path)

    client = _connect(address)
    try:
        window = 2 * _threads(client) + 2
        suspects: list[PendingPhoto] = []
        _run_shards(client, request, _shards(todo, batch_size), window, cancel, commit, suspects)
        if suspects and not cancel.is_set():
            # alone, one at a time: a worker that dies now was killed by that very photo
            alone = ([photo] for photo in suspects)
            _run_shards(client, request, alone, 1, cancel, commit, None)
    finally:
        client.close()
    return cancel.is_set() and done < len(todo)


def _run_shards(
    client: Client,
    request: ModelRequest,
    shards: Iterator[list[PendingPhoto]],
    window: int,
    cancel: threading.Event,
    commit: Callable[[list[PendingPhoto], ShardResult], None],
    suspects: list[PendingPhoto] | None,
) -> None:
    """Send ``shards`` with at most ``window`` in flight and commit each result as it comes.

    A shard the scheduler gave up on (``KilledWorker``) goes to ``suspects`` when a list is
    given; else (a shard of one photo that was alone on the cluster) its photos are committed
    as failed.
    """
    sent: dict[object, tuple[Future[Any], list[PendingPhoto]]] = {}

    def send() -> list[Future[Any]]:
        futures = []
        while len(sent) < window and not cancel.is_set():
            shard = next(shards, None)
            if shard is None:
                break
            future = client.submit(
                encode_shard,
                request,
                [(p.id, str(p.path), p.content_hash) for p in shard],
                pure=False,
                retries=0,
            )
            sent[future.key] = (future, shard)
            futures.append(future)
        return futures

    try:
        running = as_completed(send(), loop=client.loop)
        for future in running:
            _, shard = sent.pop(future.key)
            result: ShardResult | None
            try:
                result = future.result()
            except KilledWorker as error:
                if suspects is not None:
                    suspects.extend(shard)
                    result = None
                else:
                    reason = (
                        f"a Dask worker died each time it read this photo "
                        f"({error.allowed_failures + 1} times): it may crash the decoder"
                    )
                    result = ShardResult(failed=[(p.id, reason) for p in shard])
            except ClusterError:
                raise
            except Exception as error:  # noqa: BLE001 - a shard's own error, not the photos'
                raise ClusterError(f"a Dask worker could not encode: {error}") from error
            finally:
                future.release()
            if result is not None:
                commit(shard, result)  # and waits there while the run is paused
            if cancel.is_set():
                break
            running.update(send())
    finally:
        if sent:  # cancelled, or an error: nothing more is committed from these
            client.cancel([future for future, _ in sent.values()])


def _commit(
    library: Library,
    model: ClipModel,
    shard: list[PendingPhoto],
    result: ShardResult,
    run: RunCounters,
) -> None:
    """Write a shard's thumbnails and commit its vectors and failures in one transaction."""
    by_id = {photo.id: photo for photo in shard}
    folder = library.thumbnail_dir
    thumbnails = [
        store_thumbnail(folder, digest, functools.partial(bytes, data), run.thumbnails_full)
        if data
        else None
        for digest, data in result.thumbnails
    ]
    vectors = result.vectors if len(result.ids) else np.zeros((0, model.embed_dim), np.float32)
    failed = [(by_id[photo_id], error) for photo_id, error in result.failed]
    save_results(library, model.name, result.ids, vectors, thumbnails, failed, run, result.digests)
