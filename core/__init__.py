"""clipsearch's headless engine.

The small public surface::

    core.tokenize(texts)          -> [N, 77] int32 token ids
    core.load_model(name=None)    -> ClipModel with encode_images / encode_texts / logit_scale
    core.available_models()       -> names in the model registry

Everything else (album scanning, the index store, search) lives in its own module of this package.
The package never imports a UI toolkit.
"""

from core.encoder import ClipModel, load_model
from core.registry import available_models
from core.tokenizer import tokenize

__all__ = ["ClipModel", "available_models", "load_model", "tokenize"]
