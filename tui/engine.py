"""Plain helpers between the app and the engine: no Textual here, so each is easy to test.

The app's thread workers call these; they block, and never touch a widget.
"""

from __future__ import annotations

import importlib.resources
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from core.errors import UnknownModelError
from core.library import Library
from core.scan import SUPPORTED_SUFFIXES
from core.timeline import bucket_range
from tui.config import TuiConfig

JobKind = Literal["sync", "index", "retry"]


@dataclass(slots=True)
class Job:
    """One run of the writer: a ``sync`` (scan the album, read new photos' dates) or an ``index``.

    Attributes
    ----------
    number
        Unique per app run; progress messages carry it.
    kind
        ``sync``, ``index``, or ``retry`` (an ``index`` that first makes the failed photos
        pending again: :meth:`core.library.Library.retry_failed`).
    key
        Timeline key of the bucket to index (``"2019-05"``, ``"all"``); None for a sync.
    name
        What the indexing pane calls the job.
    roots
        For a sync: folders to add to the library and scan (all its roots when empty).
    """

    number: int
    kind: JobKind
    key: str | None
    name: str
    roots: list[Path] = field(default_factory=list)

    def same_work(self, other: Job) -> bool:
        """Whether ``other`` would do what this job does (so need not be queued again)."""
        return (self.kind, self.key, self.roots) == (other.kind, other.key, other.roots)


def bucket_bounds(key: str, now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
    """``(since, until)`` of a timeline key for the engine's filters; None for an open end."""
    start, end = bucket_range(key, now)
    return (None if start == datetime.min else start, None if end == datetime.max else end)


def choose_model_name(config: TuiConfig, library: Library) -> str:
    """The model to use: the configured one, else the library's, else the registry's default
    when it is installed, else the one model installed (:func:`core.encoder.default_model`)."""
    from core.encoder import default_model

    return config.model or library.model_name or default_model()


def not_installable(name: str, from_setting: bool) -> UnknownModelError | None:
    """Why the model ``name``, not installed, cannot be offered for download: it is not in the
    registry (a model once installed from a file under a name of its own, say). None for a
    registry model. ``from_setting`` says whether the model setting named it (else the
    library did)."""
    from core.catalog import known_specs
    from core.paths import is_model_name
    from tui.config import config_path

    if is_model_name(name) and name in known_specs():
        return None
    where = (
        f"the model setting in {config_path()}"
        if from_setting
        else "the model this library was indexed with"
    )
    return UnknownModelError(
        f"model {name!r} ({where}) is not installed and not in the registry, so it cannot be "
        f"downloaded; install it from its checkpoint (clipsearch-tui model install --from FILE "
        f"--as {name}), or see the models with: clipsearch-tui model list"
    )


def gallery_folder() -> Path | None:
    """The sample photos shipped in the ``gallery`` package, or None when it holds none."""
    try:
        folder = Path(str(importlib.resources.files("gallery")))
    except (ModuleNotFoundError, TypeError):
        return None
    if not folder.is_dir():
        return None
    for entry in folder.iterdir():
        if entry.suffix.lower() in SUPPORTED_SUFFIXES and entry.is_file():
            return folder
    return None


LOW_PRIORITY_NICENESS = 10
"""How much nicer than the app the indexing thread (and the threads it starts) runs."""


def lower_thread_priority(increment: int = LOW_PRIORITY_NICENESS) -> bool:
    """Raise the calling thread's nice value on Linux; threads it starts later inherit it.

    Returns whether it worked. Elsewhere (where the nice value belongs to the whole process),
    nothing is changed.
    """
    if not sys.platform.startswith("linux"):
        return False
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + increment))
    except OSError:
        return False
    return True


def run_in_low_priority_thread(target: Callable[..., Any], *args: Any) -> Any:
    """Call ``target(*args)`` in a new thread of lower CPU priority and wait for it.

    The indexer's decode pool, encoder threads and OpenMP team are started from that thread and
    inherit its priority, so the UI and searches keep the CPU while indexing uses what is left. A
    new thread is used because an unprivileged thread cannot raise its priority back afterwards,
    and the caller (a worker thread) is reused for other work. Exceptions are raised again here.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        lower_thread_priority()
        try:
            outcome["value"] = target(*args)
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = error

    thread = threading.Thread(target=run, name="clipsearch-index", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
