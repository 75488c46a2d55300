"""CLIP's byte-level BPE tokenizer, without torch.

Turns search text into the ``[N, 77] int32`` token ids that CLIP text encoders read. The ids are
the ones open_clip's default tokenizer (``open_clip.tokenize``) gives; the test suite holds a
corpus of a few thousand strings to prove it. For each text:

1. ``ftfy.fix_text`` repairs mojibake and odd Unicode (and unescapes HTML entities once when the
   text holds no ``<`` or ``>``), ``html.unescape`` runs twice more, runs of whitespace become
   one space, the ends are stripped and the text is lower-cased (:func:`core.text_repair.repair`:
   a text of printable ASCII without ``&``, which ftfy would not change, skips loading it).
2. The text is split into words by one pattern, tried in this order at each position: the names
   of the two special tokens (``<start_of_text>`` and ``<end_of_text>``, which become those
   tokens' ids wherever they appear in the text), the contractions ``'s 't 're 've 'm 'll 'd``
   (case-insensitively), a run of letters, a single digit, a run of anything else that is not
   whitespace. Whitespace is dropped.
3. Each word's UTF-8 bytes are spelled with one printable symbol per byte, the last symbol marked
   as the end of a word, and adjacent symbols are merged by byte-pair encoding: the best-ranked
   pair in the vocabulary's merge list is merged everywhere, then the next, until no pair is
   ranked. Each resulting symbol is one id.
4. The ids are framed by :data:`START_TOKEN` and :data:`END_TOKEN` and padded with zeros. A text
   too long for the context is cut to the context length and its last id overwritten with
   :data:`END_TOKEN`, so the end token always closes the row.

The vocabulary (``models/bpe_simple_vocab_16e6.txt.gz``, from OpenAI CLIP) is read once, on first
use, and shared by all threads.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import operator
import threading
from collections.abc import Iterable, Sequence
from importlib import resources

import numpy as np
import regex

from core.text_repair import repair

__all__ = [
    "CONTEXT_LENGTH",
    "END_TOKEN",
    "PAD_TOKEN",
    "START_TOKEN",
    "ClipTokenizer",
    "default_tokenizer",
    "tokenize",
]

CONTEXT_LENGTH = 77
"""Token positions every CLIP text encoder reads."""

START_TOKEN = 49406
"""Id that opens every row."""

END_TOKEN = 49407
"""Id that closes every row; the largest id, so a row's ``argmax`` finds it."""

PAD_TOKEN = 0
"""Id that fills a row after the end token."""

_VOCAB_PACKAGE = "models"
_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
_VOCAB_READ = 1 << 16  # bytes of the vocabulary's text decompressed at a time
_MERGE_COUNT = 48894  # 49408 ids = 256 bytes + 256 word-final bytes + merges + 2 special tokens
_END_OF_WORD = "</w>"
_SPECIAL_NAMES = ("<start_of_text>", "<end_of_text>")
_CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")
_WORD_CACHE_SIZE = 1 << 16

_WORD_PATTERN = regex.compile(
    "|".join(
        [
            *_SPECIAL_NAMES,
            *("'" + suffix for suffix in _CONTRACTIONS),
            r"\p{L}+",
            r"\p{N}",
            r"[^\s\p{L}\p{N}]+",
        ]
    ),
    regex.IGNORECASE,
)


def _byte_symbols() -> dict[int, str]:
    """The symbol that spells each byte, in the vocabulary's order of the 256 byte ids.

    Bytes that Latin-1 prints as a visible character (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``)
    are spelled by that character and come first. The other 68 (controls, space, no-break space,
    soft hyphen) follow in byte order, spelled by the characters from U+0100 upward, so that no
    symbol is whitespace or a control character.
    """
    visible = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    hidden = sorted(set(range(256)) - set(visible))
    symbols = {byte: chr(byte) for byte in visible}
    symbols.update({byte: chr(0x100 + index) for index, byte in enumerate(hidden)})
    return symbols


def _clean(text: str) -> str:
    """Repair, unescape, collapse whitespace and lower-case ``text`` (step 1 of the pipeline)."""
    return " ".join(repair(text).split()).lower()


class ClipTokenizer:
    """Byte-level BPE over CLIP's vocabulary.

    Parameters
    ----------
    merges
        The ranked merge list, best first: pairs of symbols whose concatenation is a vocabulary
        entry. CLIP's list has 48,894 pairs; :func:`default_tokenizer` reads it from the package.
    """

    def __init__(self, merges: Sequence[tuple[str, str]]) -> None:
        byte_symbols = _byte_symbols()
        names = list(byte_symbols.values())
        names += [symbol + _END_OF_WORD for symbol in byte_symbols.values()]
        names += [first + second for first, second in merges]
        names += _SPECIAL_NAMES
        self._names = names
        self._ids = {name: index for index, name in enumerate(names)}
        self._ranks = {tuple(pair): rank for rank, pair in enumerate(merges)}
        self._special_ids = {name: self._ids[name] for name in _SPECIAL_NAMES}
        self.start_id = self._ids[_SPECIAL_NAMES[0]]
        self.end_id = self._ids[_SPECIAL_NAMES[1]]
        self._spell = str.maketrans(
            {chr(byte): symbol for byte, symbol in byte_symbols.items() if chr(byte) != symbol}
        )
        self._symbol_bytes = {symbol: byte for byte, symbol in byte_symbols.items()}
        self._word_ids = functools.lru_cache(maxsize=_WORD_CACHE_SIZE)(self._merge_word)

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return len(self._names)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``, without the start and end tokens and without truncation.

        Parameters
        ----------
        text
            Any string; see the module docstring for how it is cleaned and split.

        Returns
        -------
        list[int]
            One id per BPE symbol, in text order.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, not {type(text).__name__}")
        ids: list[int] = []
        for word in _WORD_PATTERN.findall(_clean(text)):
            ids.extend(self._word_ids(word))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text spelled by ``ids``; the end of each word becomes a space.

        Every id is decoded, padding and special tokens included (a special token reads as its
        name, ``<start_of_text>`` or ``<end_of_text>``); slice a row before decoding it.

        Parameters
        ----------
        ids
            Token ids, for example from :meth:`encode`.

        Returns
        -------
        str
            The cleaned, lower-cased text; byte sequences that are not valid UTF-8 read as
            U+FFFD.

        Raises
        ------
        ValueError
            If an id is outside the vocabulary.
        """
        pieces = []
        for value in ids:
            index = operator.index(value)
            if not 0 <= index < len(self._names):
                raise ValueError(
                    f"token id {index} is outside the vocabulary (0..{len(self._names) - 1})"
                )
            pieces.append(self._names[index])
        raw = bytes(self._symbol_bytes[symbol] for symbol in "".join(pieces))
        return raw.decode("utf-8", errors="replace").replace(_END_OF_WORD, " ")

    def _merge_word(self, word: str) -> tuple[int, ...]:
        """Ids of one word as the pattern split it (cached per word)."""
        special = self._special_ids.get(word)
        if special is not None:
            return (special,)
        spelled = word.encode("utf-8").decode("latin-1").translate(self._spell)
        symbols = [*spelled[:-1], spelled[-1] + _END_OF_WORD]
        ranks = self._ranks
        while len(symbols) > 1:
            best_pair = None
            best_rank = len(ranks)
            for pair in itertools.pairwise(symbols):
                rank = ranks.get(pair, best_rank)
                if rank < best_rank:
                    best_pair, best_rank = pair, rank
            if best_pair is None:
                break
            first, second = best_pair
            merged = []
            index = 0
            last = len(symbols) - 1
            while index <= last:
                if index < last and symbols[index] == first and symbols[index + 1] == second:
                    merged.append(first + second)
                    index += 2
                else:
                    merged.append(symbols[index])
                    index += 1
            symbols = merged
        return tuple(self._ids[symbol] for symbol in symbols)


def _read_merges() -> list[tuple[str, str]]:
    """CLIP's ranked merge list, from the vocabulary file shipped in the package.

    Only the first :data:`_MERGE_COUNT` of the file's 262,144 merges are used, about a sixth
    of its text: it is decompressed only that far (a tenth of the time of the whole file, which
    every search from the command line would otherwise pay).
    """
    chunks: list[bytes] = []
    newlines = 0
    with (
        resources.files(_VOCAB_PACKAGE).joinpath(_VOCAB_FILE).open("rb") as raw,
        gzip.open(raw) as text,
    ):
        while newlines <= _MERGE_COUNT:
            chunk = text.read(_VOCAB_READ)
            if not chunk:
                break
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
    data = b"".join(chunks)
    if newlines > _MERGE_COUNT:  # the lines used are whole; the last one read may be cut short
        data = data[: data.rindex(b"\n")]
    lines = data.decode("utf-8").split("\n")
    # The first line is a version header; only the first _MERGE_COUNT merges are used.
    merges: list[tuple[str, str]] = []
    for line in lines[1 : 1 + _MERGE_COUNT]:
        first, _, second = line.partition(" ")
        if not first or not second or " " in second:
            break
        merges.append((first, second))
    if len(merges) != _MERGE_COUNT:
        raise ValueError(f"{_VOCAB_FILE} is damaged: expected {_MERGE_COUNT} merge pairs")
    return merges


_default: ClipTokenizer | None = None
_default_lock = threading.Lock()


def default_tokenizer() -> ClipTokenizer:
    """The shared tokenizer over CLIP's vocabulary, built on the first call."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = ClipTokenizer(_read_merges())
    return _default


def _as_batch(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray, memoryview)) or not isinstance(texts, Iterable):
        raise TypeError(f"tokenize() takes a str or a sequence of str, not {type(texts).__name__}")
    batch = list(texts)
    for position, text in enumerate(batch):
        if not isinstance(text, str):
            raise TypeError(
                f"tokenize() takes a str or a sequence of str; item {position} is "
                f"{type(text).__name__}"
            )
    return batch


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> np.ndarray:
    """Token ids of ``texts``, one padded row per text, as CLIP text encoders read them.

    Parameters
    ----------
    texts
        One string (a batch of one) or a sequence of strings.
    context_length
        Length of each row, at least 2. CLIP models use 77.

    Returns
    -------
    np.ndarray
        ``[N, context_length] int32``: :data:`START_TOKEN`, the text's ids, :data:`END_TOKEN`,
        then zeros. A text with more than ``context_length - 2`` ids is cut short and its row
        still ends with :data:`END_TOKEN` (the last id kept is overwritten by it).

    Raises
    ------
    TypeError
        If ``texts`` is not a str or a sequence of str.
    ValueError
        If ``context_length`` is below 2.
    """
    batch = _as_batch(texts)
    context_length = operator.index(context_length)
    if context_length < 2:
        raise ValueError(f"context_length must be at least 2, not {context_length}")
    tokenizer = default_tokenizer()
    rows = np.full((len(batch), context_length), PAD_TOKEN, dtype=np.int32)
    for row, text in enumerate(batch):
        ids = [tokenizer.start_id, *tokenizer.encode(text), tokenizer.end_id]
        if len(ids) > context_length:
            ids = ids[:context_length]
            ids[-1] = tokenizer.end_id
        rows[row, : len(ids)] = ids
    return rows
