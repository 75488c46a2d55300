"""Messages that the app's thread workers post back to the UI thread.

Workers never touch widgets: each one reports through one of these dataclasses, and a handler on
the UI thread updates the screen. A progress message that a newer one makes stale says so with
``can_replace``, so a burst of them collapses to the latest in the message queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from PIL import Image

    from core.encoder import ClipModel
    from core.indexer import IndexProgress
    from core.library import Library, PhotoRecord
    from core.ranking import Hit, Label
    from core.timeline import Timeline


@dataclass
class EngineReady(Message):
    """The library is open and the model loaded."""

    library: Library
    model: ClipModel
    model_name: str
    roots: list[Path]
    offer_gallery: bool
    """No album folder is known yet and none was given: the sample gallery may be offered."""


@dataclass
class ModelMissing(Message):
    """The library is open, but the model to use is not installed."""

    library: Library
    model_name: str
    reason: str


@dataclass
class ModelSwitched(Message):
    """The library now belongs to ``model``: its old embeddings are gone, every photo is pending."""

    model: ClipModel


@dataclass
class TimelineLoaded(Message):
    """A fresh timeline of the library."""

    timeline: Timeline


@dataclass
class IndexProgressed(Message):
    """How far a sync or indexing job has got, in the engine's own figures."""

    job: int
    progress: IndexProgress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, IndexProgressed) and message.job == self.job


@dataclass
class IndexFinished(Message):
    """An indexing job ended: completed, cancelled, or failed (``error`` set)."""

    job: int
    key: str
    indexed: int
    errors: int
    cancelled: bool
    error: str | None = None
    summary: str = ""
    """One line on what the job did: ``"12 photos, 3 new"``, ``"40 indexed"``."""
    roots: list[Path] | None = None
    """The library's album folders after a sync; None for other jobs."""
    unexpected: bool = False
    """The error is a bug rather than a problem the user can fix; the worker raised it."""


@dataclass
class SearchFinished(Message):
    """Ranked results of a text query, or of "find similar".

    A text query first reports the hits that fill the screen (``complete`` False), then the whole
    list, whose first hits are the same ones.
    """

    generation: int
    query: str
    hits: list[Hit]
    elapsed_s: float
    complete: bool = True


@dataclass
class SearchFailed(Message):
    """A search could not run (bad query, nothing indexed...)."""

    generation: int
    query: str
    reason: str


@dataclass
class ThumbnailsLoaded(Message):
    """Decoded thumbnails for result rows, by photo id."""

    generation: int
    images: dict[int, Image.Image | None] = field(default_factory=dict)
    """None for a photo whose thumbnail is missing or unreadable."""


@dataclass
class FailuresLoaded(Message):
    """Photos that could not be indexed and files that were skipped, as ``(path, reason)``."""

    failures: list[tuple[str, str]]
    skipped: list[tuple[str, str]]


@dataclass
class InstallProgressed(Message):
    """Progress of a model install: stage, and done/total in bytes or steps."""

    stage: str
    done: int
    total: int | None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, InstallProgressed) and message.stage == self.stage


@dataclass
class InstallFinished(Message):
    """A model install ended; ``error`` is None on success."""

    model_name: str
    error: str | None
    cancelled: bool = False
    urls: tuple[str, ...] = ()  # checkpoint files to fetch by hand, when the download failed
    route: str | None = None  # the command that installs from such a file


@dataclass
class PreviewLoaded(Message):
    """A photo's larger preview, its camera (EXIF make and model) and folder facts."""

    photo_id: int
    image: Image.Image | None
    camera: str | None


@dataclass
class DescribeFinished(Message):
    """Labels ranked for a photo by "describe"."""

    photo_id: int
    labels: list[Label]
    error: str | None = None


@dataclass
class DuplicatesFound(Message):
    """Groups of near-duplicate photos, largest first; ``error`` when the search failed."""

    groups: list[tuple[float, list[PhotoRecord]]]
    error: str | None = None


@dataclass
class DuplicateThumbnail(Message):
    """The thumbnail of one photo of the duplicates view, decoded off the UI thread."""

    photo_id: int
    image: Image.Image | None


@dataclass
class PhotosMoved(Message):
    """The marked photos of the duplicates view were moved (or some could not be)."""

    moved: list[int]
    folder: str
    problems: list[str]
