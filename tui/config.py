"""Settings of the terminal app, read from the ``[tui]`` table of the user's configuration file.

The file is ``config.toml`` in :func:`core.paths.config_dir` (``$CLIPSEARCH_HOME/config`` when
that variable is set); ``config.json`` there is read instead when no ``config.toml`` exists. Every
setting is optional::

    [tui]
    # Model to search and index with. Default: the model the library was indexed with, else the
    # registry's default model.
    model = "ViT-B-32-256-datacomp"
    # How thumbnails are drawn: "auto", "kitty", "sixel", "halfcell" or "none".
    # The --images option of the command line overrides it.
    images = "auto"
    # Largest number of results one search returns.
    results = 200
    # Result rows added to the list at a time, as it is scrolled.
    page_size = 30
    # Photos encoded per batch while indexing.
    batch_size = 16
    # Encode on a Vulkan GPU when there is one (the CPU otherwise).
    gpu = false
    # Arithmetic of the encoder: "auto" (bf16 where the CPU has native bf16 dot products and
    # the model was measured accurate enough in bf16, float32 elsewhere), "fp32" (exact),
    # "bf16", or "int8" (only for a model installed with --precision int8). The app shows the
    # choice next to the model name. `clipsearch-tui index` takes --precision instead.
    precision = "auto"
    # Colour theme of the app (any Textual theme: "textual-dark", "nord", "gruvbox", ...).
    # Choosing one in the app (Ctrl+P, "Change theme") writes it here.
    theme = "textual-dark"
    # How results are shown: "list" (one row each) or "grid" (thumbnails side by side).
    # The g key of the app switches between them and writes the choice here.
    view = "list"
    # Cosine similarity from which two photos count as near-duplicates (the Duplicates view).
    duplicate_threshold = 0.95
    # Texts that "describe" ranks for a photo (image -> text).
    labels = ["a photo of a person", "a photo of a dog", "a landscape"]
    # Encode on the workers of a Dask cluster: the address of its scheduler (needs
    # pip install ".[cluster]"; the album at the same path on every worker, the model installed
    # there). Default: encode here. `clipsearch-tui index` takes --dask instead.
    cluster = "tcp://nas:8786"

The JSON form is ``{"tui": {"results": 100, "labels": [...]}}``.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, cast, get_args

from core.errors import ClipsearchError
from core.paths import config_dir
from core.precision import PRECISIONS
from core.query import MAX_LABELS

ImageMode = Literal["auto", "kitty", "sixel", "halfcell", "none"]
IMAGE_MODES: tuple[str, ...] = get_args(ImageMode)

ResultsView = Literal["list", "grid"]
RESULTS_VIEWS: tuple[str, ...] = get_args(ResultsView)

CONFIG_NAMES = ("config.toml", "config.json")
SECTION = "tui"
MAX_CONFIG_BYTES = 1024 * 1024
"""A settings file is read only up to this size (a thousand long labels fit many times)."""

DEFAULT_LABELS: tuple[str, ...] = (
    "a photo of a person",
    "a group of people",
    "a selfie",
    "a photo of a child",
    "a photo of a dog",
    "a photo of a cat",
    "a bird",
    "a landscape",
    "a beach",
    "mountains",
    "a forest",
    "a city street",
    "a building",
    "the inside of a room",
    "food on a plate",
    "a car",
    "a flower",
    "a night scene",
    "snow",
    "a document or a screenshot",
)


class ConfigError(ClipsearchError):
    """The configuration file cannot be read or holds a bad setting."""


@dataclass(frozen=True, slots=True)
class TuiConfig:
    """The app's settings; see this module's documentation for the file they are read from.

    Attributes
    ----------
    model
        Model to search and index with; None picks the library's model, else the default one.
    images
        Thumbnail renderer: ``auto`` (detect Kitty or Sixel, else half-cell blocks), ``kitty``,
        ``sixel``, ``halfcell`` or ``none`` (text only).
    results
        Largest number of results one search returns (1 to 10,000).
    page_size
        Result rows mounted at a time; more are mounted as the list is scrolled (5 to 500).
    batch_size
        Photos encoded per batch while indexing (1 to 256).
    labels
        Texts that "describe" ranks for a photo; at least one and at most
        :data:`core.query.MAX_LABELS`, none empty.
    gpu
        Encode on a Vulkan GPU when one is present; the CPU is used otherwise.
    precision
        Encoder arithmetic: ``auto``, ``fp32``, ``bf16`` or ``int8`` (see
        :mod:`core.precision`).
    cluster
        Address of a Dask scheduler whose workers encode while indexing (:mod:`core.distributed`);
        None encodes in this process.
    theme
        Name of the Textual colour theme; None keeps Textual's default.
    view
        How results are shown: ``list`` (a row per photo) or ``grid`` (thumbnails side by side).
    duplicate_threshold
        Cosine similarity from which two photos count as near-duplicates (above 0, at most 1).
    """

    model: str | None = None
    images: ImageMode = "auto"
    results: int = 200
    page_size: int = 30
    batch_size: int = 16
    labels: tuple[str, ...] = DEFAULT_LABELS
    gpu: bool = False
    precision: str = "auto"
    cluster: str | None = None
    duplicate_threshold: float = 0.95
    theme: str | None = None
    view: ResultsView = "list"

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "settings") -> TuiConfig:
        """Build the settings from a ``[tui]`` table; unknown keys and bad values raise."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown setting {unknown[0]!r} in [{SECTION}]; "
                f"known settings: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        if "model" in data:
            model = data["model"]
            if model is not None and (not isinstance(model, str) or not model.strip()):
                raise ConfigError(f"{source}: [tui] model must be a model name")
            values["model"] = model
        if "images" in data:
            values["images"] = cast(ImageMode, _one_of(data, "images", IMAGE_MODES, source))
        for key, low, high in (
            ("results", 1, 10_000),
            ("page_size", 5, 500),
            ("batch_size", 1, 256),
        ):
            if key in data:
                value = data[key]
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int)
                    or not low <= value <= high
                ):
                    raise ConfigError(
                        f"{source}: [tui] {key} must be a whole number from {low} to {high}"
                    )
                values[key] = value
        if "gpu" in data:
            if not isinstance(data["gpu"], bool):
                raise ConfigError(f"{source}: [tui] gpu must be true or false")
            values["gpu"] = data["gpu"]
        if "precision" in data:
            values["precision"] = _one_of(data, "precision", PRECISIONS, source)
        if "cluster" in data:
            cluster = data["cluster"]
            if cluster is not None and (not isinstance(cluster, str) or not cluster.strip()):
                raise ConfigError(
                    f"{source}: [tui] cluster must be a Dask scheduler address (tcp://host:8786)"
                )
            values["cluster"] = cluster.strip() if cluster else None
        if "theme" in data:
            theme = data["theme"]
            if not isinstance(theme, str) or not theme.strip():
                raise ConfigError(f"{source}: [tui] theme must be the name of a theme")
            values["theme"] = theme.strip()
        if "view" in data:
            values["view"] = cast(ResultsView, _one_of(data, "view", RESULTS_VIEWS, source))
        if "duplicate_threshold" in data:
            value = data["duplicate_threshold"]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                raise ConfigError(
                    f"{source}: [tui] duplicate_threshold must be a number above 0, at most 1"
                )
            values["duplicate_threshold"] = float(value)
        if "labels" in data:
            labels = data["labels"]
            if (
                not isinstance(labels, list)
                or not 0 < len(labels) <= MAX_LABELS
                or not all(isinstance(label, str) and label.strip() for label in labels)
            ):
                raise ConfigError(
                    f"{source}: [tui] labels must be a list of non-empty texts, at most "
                    f"{MAX_LABELS:,}"
                )
            values["labels"] = tuple(label.strip() for label in labels)
        return cls(**values)


def _one_of(data: dict[str, Any], key: str, choices: tuple[str, ...], source: str) -> str:
    """``data[key]``, which must be one of ``choices``."""
    value = data[key]
    if value not in choices:
        raise ConfigError(
            f"{source}: [tui] {key} must be one of {', '.join(choices)}, not {value!r}"
        )
    return str(value)


def config_path() -> Path:
    """The configuration file that is read: ``config.toml``, else ``config.json`` if present."""
    folder = config_dir()
    for name in CONFIG_NAMES:
        if (folder / name).is_file():
            return folder / name
    return folder / CONFIG_NAMES[0]


def load_config(path: Path | None = None) -> TuiConfig:
    """Read the ``[tui]`` settings; defaults when the file or the table is absent.

    Raises
    ------
    ConfigError
        The file cannot be read or parsed, or a setting is unknown or out of range.
    """
    path = path or config_path()
    if not path.is_file():
        return TuiConfig()
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KB: not a settings file"
            )
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path} is not valid {path.suffix[1:].upper()}: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a table of settings")
    section = data.get(SECTION, {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [{SECTION}] must be a table")
    loose = [key for key, value in data.items() if not isinstance(value, dict)]
    if loose:  # written above every table, a setting would otherwise be ignored in silence
        raise ConfigError(
            f"{path}: setting {loose[0][:40]!r} is outside the [{SECTION}] table; settings go "
            f"below a [{SECTION}] line"
        )
    return TuiConfig.from_mapping(section, str(path))


_SECTION_LINE = re.compile(r"^\s*\[([^\]]+)\]\s*(?:#.*)?$", re.MULTILINE)

SAVED_SETTINGS = ("theme", "view")
"""Settings that the app writes back when they are changed in it."""


def save_theme(theme: str, path: Path | None = None) -> Path:
    """Record ``theme`` in the ``[tui]`` table of ``config.toml``: see :func:`save_setting`."""
    return save_setting("theme", theme, path)


def save_setting(name: str, value: str, path: Path | None = None) -> Path:
    """Record ``name = value`` in the ``[tui]`` table of ``config.toml``, keeping everything else.

    ``name`` is one of :data:`SAVED_SETTINGS`. The file is made if missing; an existing
    ``name = ...`` line of the table is replaced, else one is added at the table's start. A
    ``config.json`` is rewritten as JSON.
    """
    if name not in SAVED_SETTINGS:
        raise ValueError(f"{name!r} is not a setting the app saves")
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if path.suffix == ".json":
        data = json.loads(text) if text.strip() else {}
        data.setdefault(SECTION, {})[name] = value
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return path
    line = f"{name} = {json.dumps(value)}"
    setting_line = re.compile(rf"^[ \t]*{name}[ \t]*=.*$", re.MULTILINE)
    sections = list(_SECTION_LINE.finditer(text))
    start = next((m for m in sections if m.group(1).strip() == SECTION), None)
    if start is None:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + f"[{SECTION}]\n{line}\n"
    else:
        after = [m for m in sections if m.start() > start.start()]
        end = after[0].start() if after else len(text)
        body = text[start.end() : end]
        if setting_line.search(body):
            body = setting_line.sub(lambda _: line, body, count=1)
        else:
            body = "\n" + line + body
        text = text[: start.end()] + body + text[end:]
    tomllib.loads(text)  # never write a file the next start cannot read
    path.write_text(text, encoding="utf-8")
    return path
