"""Where clipsearch keeps its own files.

Everything the program writes (installed models, the index, thumbnails, configuration) lives in
the platform's user folders, or under ``$CLIPSEARCH_HOME`` when that variable is set. The photo
album itself is only ever read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import platformdirs

APP_NAME = "clipsearch-tui"
HOME_ENV = "CLIPSEARCH_HOME"
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
"""What a model name may be: a plain folder name, never a path (no ``/``, no ``..``)."""


def _home() -> Path | None:
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    """Folder for durable data: installed models and the index database."""
    home = _home()
    return home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """Folder for data that can be rebuilt: thumbnails, download caches."""
    home = _home()
    return home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    """Folder for the configuration file."""
    home = _home()
    return (
        home / "config" if home else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    )


def models_dir() -> Path:
    """Folder that holds one sub-folder per installed model."""
    return data_dir() / "models"


def own_folders() -> list[Path]:
    """The folders the program writes to: data, models, cache and configuration.

    A scan of the album never enters them (:func:`core.scan.scan`), wherever they lie: an album
    root above them (the home folder, or a ``$CLIPSEARCH_HOME`` inside the album) would
    otherwise index the program's own thumbnails. The models folder is named apart because it
    may be a link to a folder elsewhere.
    """
    return [data_dir(), models_dir(), cache_dir(), config_dir()]


def is_model_name(name: str) -> bool:
    """Whether ``name`` can name a model: a folder inside :func:`models_dir`, never a path."""
    return bool(MODEL_NAME.fullmatch(name or "")) and ".." not in name
