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

from core.encoder import ClipModel, load_model
from core.registry import available_models
from core.tokenizer import tokenize

__all__ = ["ClipModel", "available_models", "load_model", "tokenize"]
