"""Hugging Face tokenizers for models that bring their own (SigLIP 2's Gemma vocabulary).

A model whose registry entry has ``"tokenizer": {"kind": "hf", ...}`` ships the files of its hub
repository: ``tokenizer.json`` (the vocabulary, normalizer, pre-tokenizer and post-processor, as
the Hugging Face ``tokenizers`` library serialises them), ``tokenizer_config.json`` and, when the
repository has one, ``special_tokens_map.json``. :class:`HFTokenizer` turns texts into the same
``[N, L] int32`` ids as open_clip's ``HFTokenizer`` (which loads the same files through
``transformers.AutoTokenizer``) does, for each text:

1. Cleaning, as the model's open_clip config names it. ``canonicalize`` (SigLIP): ``ftfy.fix_text``,
   ``html.unescape`` twice, strip; then ``_`` becomes a space, ASCII punctuation
   (``string.punctuation``) is removed, the text is lower-cased, runs of whitespace become one
   space and the ends are stripped. ``lower`` and ``whitespace`` are the shorter variants.
2. ``tokenizer.json`` encodes the text (its special tokens are matched in the text, as
   ``transformers`` does by default).
3. Special tokens: the post-processor of ``tokenizer.json`` frames the text (for SigLIP 2, an
   ``<eos>`` after it). ``transformers`` 5 ignores the ``add_bos_token`` and ``add_eos_token`` flags
   of ``tokenizer_config.json`` when a ``tokenizer.json`` is present, and so does this; a file
   without a post-processor adds nothing.
4. Truncation to ``L`` ids, counting the special tokens, from the ``truncation_side`` of the config
   (default right); padding to ``L`` with the pad token's id, on the config's ``padding_side``
   (default: the side set in ``tokenizer.json``, else left for Gemma tokenizers, as their
   ``transformers`` class says, and right for others).

Any text (any script, emoji, control characters, the empty string) gives a row; an unknown
character falls back to its UTF-8 bytes in a byte-fallback vocabulary such as Gemma's.
"""

from __future__ import annotations

import json
import string
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import TokenizerError
from core.text_repair import repair

__all__ = ["REQUIRED_FILES", "HFTokenizer", "canonicalize", "clean_function"]

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
REQUIRED_FILES = (TOKENIZER_FILE, CONFIG_FILE)
"""Files an ``hf`` tokenizer cannot work without."""
OPTIONAL_FILES = (SPECIAL_TOKENS_FILE,)
"""Files read when the hub repository has them."""
MAX_FILE_SIZE = 256 * 1024 * 1024
"""A tokenizer file larger than this is refused (Gemma's ``tokenizer.json`` is about 33 MB)."""

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_SPECIAL_NAMES = ("bos_token", "eos_token", "pad_token", "unk_token")


def _basic_clean(text: str) -> str:
    return repair(text).strip()


def canonicalize(text: str) -> str:
    """open_clip's ``canonicalize`` cleaning (from big_vision): see the module docstring."""
    text = _basic_clean(text).replace("_", " ").translate(_PUNCTUATION).lower()
    return " ".join(text.split()).strip()


def _lower(text: str) -> str:
    return " ".join(_basic_clean(text).split()).lower()


def _whitespace(text: str) -> str:
    return " ".join(_basic_clean(text).split())


_CLEANERS: dict[str, Callable[[str], str]] = {
    "canonicalize": canonicalize,
    "lower": _lower,
    "whitespace": _whitespace,
}


def clean_function(name: str) -> Callable[[str], str]:
    """The cleaning step called ``name`` in open_clip's tokenizer options."""
    if name not in _CLEANERS:
        raise TokenizerError(f"unknown text cleaning {name!r}; known: {', '.join(_CLEANERS)}")
    return _CLEANERS[name]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_SIZE:
            raise TokenizerError(f"tokenizer file {path.name} is too large ({size} bytes): {path}")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenizerError(f"tokenizer file {path.name} is missing: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TokenizerError(
            f"tokenizer file {path.name} is damaged (not JSON: {_brief(error)}): {path}"
        ) from None
    except OSError as error:
        raise TokenizerError(f"cannot read tokenizer file {path}: {error.strerror}") from None
    if not isinstance(data, dict):
        raise TokenizerError(f"tokenizer file {path.name} is not a JSON object: {path}")
    return data


def _token_text(value: Any) -> str | None:
    """A special token as a config gives it: a string, or ``{"content": ...}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


class HFTokenizer:
    """Texts to token ids with a model's own Hugging Face tokenizer files.

    Parameters
    ----------
    folder
        Holds ``tokenizer.json``, ``tokenizer_config.json`` and optionally
        ``special_tokens_map.json``.
    context_length
        Ids per row (64 for SigLIP 2).
    clean
        The cleaning step: ``"canonicalize"``, ``"lower"`` or ``"whitespace"``.

    Raises
    ------
    TokenizerError
        A file is missing, unreadable, not what it should be, or names a special token that is not
        in the vocabulary; the message names the file.
    """

    def __init__(self, folder: str | Path, context_length: int, clean: str = "whitespace") -> None:
        from tokenizers import Tokenizer, processors

        folder = Path(folder)
        self.context_length = int(context_length)
        self._clean = clean_function(clean)
        config = _read_json(folder / CONFIG_FILE)
        special_map = (
            _read_json(folder / SPECIAL_TOKENS_FILE)
            if (folder / SPECIAL_TOKENS_FILE).exists()
            else {}
        )
        path = folder / TOKENIZER_FILE
        _read_json(path)  # a clear message for a missing, huge or non-JSON file
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust side raises plain Exception subclasses
            raise TokenizerError(
                f"tokenizer file {TOKENIZER_FILE} is damaged ({_brief(error)}): {path}"
            ) from None

        specials: dict[str, str | None] = {}
        for name in _SPECIAL_NAMES:
            value = _token_text(config.get(name))
            if value is None:
                value = _token_text(special_map.get(name))
            specials[name] = value
        ids: dict[str, int | None] = {}
        for name, token in specials.items():
            ids[name] = None if token is None else tokenizer.token_to_id(token)
            if token is not None and ids[name] is None:
                raise TokenizerError(
                    f"tokenizer files disagree: {name} {token!r} of {CONFIG_FILE} is not in the "
                    f"vocabulary of {TOKENIZER_FILE} ({folder})"
                )

        if tokenizer.post_processor is None:
            # no template in the file: the text alone (transformers does not read the
            # add_bos_token / add_eos_token flags of the config when tokenizer.json exists)
            tokenizer.post_processor = processors.TemplateProcessing(
                single="$A:0", pair="$A:0 $B:1", special_tokens=[]
            )

        padding = tokenizer.padding or {}
        gemma = str(config.get("tokenizer_class", "")).startswith("Gemma")
        padding_side = config.get("padding_side") or padding.get("direction")
        padding_side = padding_side or ("left" if gemma else "right")
        truncation_side = config.get("truncation_side") or "right"
        if padding_side not in ("left", "right") or truncation_side not in ("left", "right"):
            raise TokenizerError(
                f"{CONFIG_FILE} has padding_side {padding_side!r} and truncation_side "
                f"{truncation_side!r}; each must be left or right ({folder})"
            )
        if ids["pad_token"] is None:
            raise TokenizerError(f"{CONFIG_FILE} names no pad_token, needed to pad ({folder})")
        tokenizer.enable_truncation(
            max_length=self.context_length,
            stride=0,
            strategy="longest_first",
            direction=truncation_side,
        )
        tokenizer.enable_padding(
            length=self.context_length,
            direction=padding_side,
            pad_id=ids["pad_token"],
            pad_token=specials["pad_token"],
            pad_type_id=0,
        )
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.max_id = max(tokenizer.get_vocab(with_added_tokens=True).values())
        self.pad_id = int(ids["pad_token"])
        self._tokenizer = tokenizer
        self._lock = threading.Lock()  # padding and truncation are set once; encoding is shared

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        """Token ids ``[N, context_length] int32`` for ``texts`` (one string is one row)."""
        if isinstance(texts, str):
            texts = [texts]
        cleaned = [self._clean(str(text)) for text in texts]
        if not cleaned:
            return np.zeros((0, self.context_length), np.int32)
        with self._lock:
            encodings = self._tokenizer.encode_batch(cleaned, add_special_tokens=True)
        return np.array([e.ids for e in encodings], dtype=np.int32)


def _brief(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."
