"""clipsearch's headless engine.

The small public surface::

    core.tokenize(texts)          -> [N, 77] int32 token ids
    core.load_model(name=None)    -> ClipModel with encode_images / encode_texts / logit_scale
    core.available_models()       -> names in the model registry

Everything else lives in a module of this package with one job each: the album
(:mod:`core.scan`, :mod:`core.capture_time`, :mod:`core.timeline`), the library on disk
(:mod:`core.database`, :mod:`core.sync`, :mod:`core.library`), search (:mod:`core.query`,
:mod:`core.ranking`, and the vectors it scores: :mod:`core.vector_cache`, :mod:`core.vectorfile`,
:mod:`core.compact`) and indexing (:mod:`core.indexer`). The package never imports a UI toolkit
nor the front ends (:mod:`cli`, :mod:`tui`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.encoder import ClipModel, load_model
    from core.registry import available_models
    from core.tokenizer import tokenize

__all__ = ["ClipModel", "available_models", "load_model", "tokenize"]

# The public names are imported on first use, so that importing one small module of the
# package (``core.errors`` for the command line's start, say) does not load numpy, Pillow, ftfy
# and the tokenizer's patterns along with it.
_HOMES = {
    "ClipModel": "core.encoder",
    "load_model": "core.encoder",
    "available_models": "core.registry",
    "tokenize": "core.tokenizer",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
