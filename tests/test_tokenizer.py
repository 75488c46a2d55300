"""The tokenizer gives open_clip's ids, byte for byte.

The committed corpus (``tests/data/tokenizer_corpus.jsonl``) and the ids open_clip gave for it
(``tests/data/tokenizer_expected.npz``) are made by ``tests/tools/make_tokenizer_expected.py``.
The comparison against them needs neither torch nor open_clip; the live comparisons run only
where open_clip is installed.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.tokenizer import (
    CONTEXT_LENGTH,
    END_TOKEN,
    START_TOKEN,
    default_tokenizer,
    tokenize,
)

DATA = Path(__file__).parent / "data"
CORPUS_PATH = DATA / "tokenizer_corpus.jsonl"
EXPECTED_PATH = DATA / "tokenizer_expected.npz"


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    lines = CORPUS_PATH.read_bytes().decode("utf-8").split("\n")
    assert lines[-1] == "", "the corpus ends with a newline"
    return [json.loads(line) for line in lines[:-1]]


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(EXPECTED_PATH) as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def corpus_ids(corpus: list[str]) -> np.ndarray:
    return tokenize(corpus)


def mismatch_report(texts: list[str], got: np.ndarray, want: np.ndarray) -> str:
    rows = np.flatnonzero((got != want).any(axis=1))
    lines = [f"{len(rows)} of {len(texts)} rows differ"]
    for row in rows[:5]:
        lines.append(f"{texts[row]!r}:\n  got  {got[row].tolist()}\n  want {want[row].tolist()}")
    return "\n".join(lines)


# --- The committed corpus ------------------------------------------------------------------


def test_expected_ids_were_made_from_this_corpus(expected: dict[str, np.ndarray]) -> None:
    digest = hashlib.sha256(CORPUS_PATH.read_bytes()).hexdigest()
    assert str(expected["corpus_sha256"]) == digest, "rerun tests/tools/make_tokenizer_expected.py"


def test_corpus_is_large_and_reaches_the_edges(
    corpus: list[str], expected: dict[str, np.ndarray]
) -> None:
    assert len(corpus) >= 2000
    assert len(set(corpus)) == len(corpus)
    assert "" in corpus
    assert expected["ids"].shape == (len(corpus), CONTEXT_LENGTH)
    lengths = expected["lengths"]
    assert (lengths > CONTEXT_LENGTH - 2).sum() >= 50, "too few texts longer than the context"
    assert (lengths == CONTEXT_LENGTH - 2).any() and (lengths == CONTEXT_LENGTH - 1).any()
    assert sum(not text.isascii() for text in corpus) >= 1000


def test_ids_match_open_clip_on_the_whole_corpus(
    corpus: list[str], corpus_ids: np.ndarray, expected: dict[str, np.ndarray]
) -> None:
    assert corpus_ids.dtype == np.int32
    assert corpus_ids.shape == expected["ids"].shape
    assert np.array_equal(corpus_ids, expected["ids"]), mismatch_report(
        corpus, corpus_ids, expected["ids"]
    )


def test_untruncated_lengths_match_open_clip(
    corpus: list[str], expected: dict[str, np.ndarray]
) -> None:
    tokenizer = default_tokenizer()
    lengths = np.array([len(tokenizer.encode(text)) for text in corpus])
    assert np.array_equal(lengths, expected["lengths"])


def test_the_corpus_comparison_can_fail(
    corpus_ids: np.ndarray, expected: dict[str, np.ndarray]
) -> None:
    shifted = np.roll(corpus_ids, 1, axis=0)
    assert not np.array_equal(shifted, expected["ids"])
    one_id_off = corpus_ids.copy()
    one_id_off[1, 1] += 1
    assert not np.array_equal(one_id_off, expected["ids"])


def test_every_row_is_framed(corpus_ids: np.ndarray) -> None:
    assert (corpus_ids[:, 0] == START_TOKEN).all()
    assert ((corpus_ids == END_TOKEN).sum(axis=1) >= 1).all()
    for row in corpus_ids:
        # A literal "<end_of_text>" in the text is also the end token: the last one closes.
        end = int(np.flatnonzero(row == END_TOKEN)[-1])
        assert (row[end + 1 :] == 0).all()


# --- Known values and edges ----------------------------------------------------------------


def test_known_ids() -> None:
    row = tokenize("A photo of a DOG.")[0]
    assert row[:8].tolist() == [START_TOKEN, 320, 1125, 539, 320, 1929, 269, END_TOKEN]
    assert not row[8:].any()


def test_different_texts_give_different_ids() -> None:
    dog, cat = tokenize(["a photo of a dog", "a photo of a cat"])
    assert not np.array_equal(dog, cat)


def test_empty_and_blank_strings() -> None:
    want = [START_TOKEN, END_TOKEN] + [0] * (CONTEXT_LENGTH - 2)
    for text in ["", " ", "\t\n\r\x0b\x0c", "\u3000", "\xa0\u2028\u2029"]:
        assert tokenize(text)[0].tolist() == want, repr(text)


def test_a_single_string_is_a_batch_of_one() -> None:
    single = tokenize("red car")
    assert single.shape == (1, CONTEXT_LENGTH)
    assert single.dtype == np.int32
    assert np.array_equal(single, tokenize(["red car"]))
    assert np.array_equal(single, tokenize(("red car",)))


def test_an_empty_batch() -> None:
    ids = tokenize([])
    assert ids.shape == (0, CONTEXT_LENGTH)
    assert ids.dtype == np.int32


@pytest.mark.parametrize("words", [74, 75, 76, 77, 120])
def test_truncation_keeps_the_end_token_last(words: int) -> None:
    # "a" is one id, so the text has exactly `words` ids.
    row = tokenize(" ".join(["a"] * words))[0]
    a = default_tokenizer().encode("a")[0]
    kept = min(words, CONTEXT_LENGTH - 2)
    assert row[0] == START_TOKEN
    assert (row[1 : 1 + kept] == a).all()
    assert row[1 + kept] == END_TOKEN
    assert (row[2 + kept :] == 0).all()


def test_truncation_cuts_inside_a_word() -> None:
    tokenizer = default_tokenizer()
    text = "a " * 73 + "antidisestablishmentarianism"
    ids = tokenizer.encode(text)
    assert len(ids) > CONTEXT_LENGTH - 2
    row = tokenize(text)[0]
    assert row[1:-1].tolist() == ids[: CONTEXT_LENGTH - 2]
    assert row[-1] == END_TOKEN


@pytest.mark.parametrize("context_length", [2, 5, 16, 100])
def test_other_context_lengths(context_length: int) -> None:
    ids = tokenize(["a photo of a dog", "dog " * 200], context_length=context_length)
    assert ids.shape == (2, context_length)
    assert (ids[:, 0] == START_TOKEN).all()
    assert ids[1, -1] == END_TOKEN


@pytest.mark.parametrize("context_length", [1, 0, -3])
def test_a_context_too_short_is_refused(context_length: int) -> None:
    with pytest.raises(ValueError, match="context_length"):
        tokenize("dog", context_length=context_length)


def test_special_token_names_in_text_become_special_ids() -> None:
    row = tokenize("dog <START_OF_TEXT> cat <end_of_text>")[0]
    dog, cat = default_tokenizer().encode("dog cat")
    assert row[:7].tolist() == [START_TOKEN, dog, START_TOKEN, cat, END_TOKEN, END_TOKEN, 0]


def test_html_entities_are_unescaped_two_or_three_times() -> None:
    # Twice always; once more by ftfy when the text holds no "<" or ">".
    assert np.array_equal(tokenize("tom &amp;amp;amp; jerry"), tokenize("tom & jerry"))
    assert np.array_equal(tokenize("<b> &amp;amp;"), tokenize("<b> &"))
    assert not np.array_equal(tokenize("<b> &amp;amp;amp;"), tokenize("<b> &"))


def test_unicode_is_repaired_before_splitting() -> None:
    assert np.array_equal(tokenize("cafÃ©"), tokenize("café"))
    assert np.array_equal(tokenize("cafe\u0301"), tokenize("café"))
    assert np.array_equal(tokenize("\ud83d\ude00"), tokenize("😀"))
    assert np.array_equal(tokenize("ＤＯＧ"), tokenize("dog"))
    # ftfy reads C1 controls as the Windows-1252 characters they usually are.
    assert np.array_equal(tokenize("wait\x85"), tokenize("wait…"))


def test_the_repair_shortcut_gives_what_ftfy_gives() -> None:
    """Texts of printable ASCII without "&" skip ftfy; on random texts from an alphabet around
    that boundary (controls, escapes, entities, mojibake, curly quotes, wide letters), the result
    is always what ftfy and html.unescape give."""
    import html

    import ftfy

    from core.text_repair import repair

    alphabet = [chr(code) for code in range(0x20, 0x7F)] * 3
    alphabet += [*"\x00\x07\t\n\x0b\x0c\r\x1b\x7f", "&", "&amp;", "&lt;", "&#39;", "\x1b[31m"]
    alphabet += [*"\x85\x92é\u00a0\u2019\u201c\ufb01\uff24\u0301\u2028", "Ã©", "â€™", "😀"]
    rng = random.Random(7)
    texts = ["", " ", "a photo of a dog", "&", "<b>&amp;</b>", "x\ry", "Ã©t\u00e9"]
    texts += ["".join(rng.choices(alphabet, k=rng.randint(1, 40))) for _ in range(4000)]
    texts += ["".join(rng.choices(alphabet[:285], k=rng.randint(1, 40))) for _ in range(1000)]
    skipped = 0
    for text in texts:
        expected = html.unescape(html.unescape(ftfy.fix_text(text)))
        assert repair(text) == expected, repr(text)
        skipped += text.isascii() and text.isprintable() and "&" not in text
    assert 800 < skipped < len(texts) - 2000  # both ways are taken many times


def test_decode_reads_back_the_text() -> None:
    tokenizer = default_tokenizer()
    assert tokenizer.decode(tokenizer.encode("A Photo of  a Dog!")) == "a photo of a dog ! "
    assert tokenizer.decode(tokenizer.encode("猫 🐶 café")) == "猫 🐶 café "
    assert tokenizer.decode([START_TOKEN, END_TOKEN]) == "<start_of_text><end_of_text>"
    assert tokenizer.vocab_size == END_TOKEN + 1


@pytest.mark.parametrize("bad_id", [-1, END_TOKEN + 1])
def test_decode_refuses_ids_outside_the_vocabulary(bad_id: int) -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        default_tokenizer().decode([320, bad_id])


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (None, "not NoneType"),
        (42, "not int"),
        (b"dog", "not bytes"),
        (["dog", 3], "item 1 is int"),
        (["dog", None], "item 1 is NoneType"),
        ([b"dog"], "item 0 is bytes"),
    ],
)
def test_bad_input_is_a_clear_type_error(texts: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        tokenize(texts)  # type: ignore[arg-type]


def test_encode_refuses_a_non_string() -> None:
    with pytest.raises(TypeError, match="encode\\(\\) takes a str, not NoneType"):
        default_tokenizer().encode(None)  # type: ignore[arg-type]


def test_the_tokenizer_needs_neither_torch_nor_the_tui() -> None:
    code = (
        "import sys; from core.tokenizer import tokenize; tokenize('a dog'); "
        "bad = {'torch', 'open_clip', 'textual', 'rich'} & set(sys.modules); "
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# --- Live comparison with open_clip --------------------------------------------------------

_RANDOM_PIECES = [
    *"abcXYZ019 '\t\n!?.,&;#<>/_-",
    *["'s", "'T", "'re", "'LL", "'ſ", "&amp;", "&#39;", "&#x1F600;", "&lt;", "</w>"],
    *["<start_of_text>", "<end_of_text>", "<|endoftext|>", "\xa0", "\u3000", "\u200b"],
    *["\u200d", "\ufe0f", "\u0301", "\u0345", "İ", "ẞ", "ﬁ", "Ａ", "ｶ", "Ã©", "â€™", "\x1b[0m"],
    *["\x00", "\x85", "\u2028", "\ud800", "\udc00", "\ud83d\ude00", "🐶", "👍🏽", "🇫🇷", "猫"],
    *["собака", "قطة", "नमस्ते", "שלום", "한국어", "٣", "½", "²", "Ⅻ", "①", "𝟙"],
]


def random_texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        pieces = [rng.choice(_RANDOM_PIECES) for _ in range(rng.randint(0, 30))]
        if rng.random() < 0.3:
            pieces.append("".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(5)))
        texts.append("".join(pieces))
    return texts


def test_live_matches_open_clip_on_the_corpus(corpus: list[str], corpus_ids: np.ndarray) -> None:
    open_clip = pytest.importorskip("open_clip")
    reference = open_clip.get_tokenizer("ViT-B-32")(corpus).numpy()
    assert np.array_equal(corpus_ids, reference), mismatch_report(corpus, corpus_ids, reference)


@pytest.mark.parametrize("context_length", [5, 16, 77])
def test_live_matches_open_clip_on_random_texts(context_length: int) -> None:
    open_clip = pytest.importorskip("open_clip")
    texts = random_texts(seed=context_length, count=400)
    ours = tokenize(texts, context_length=context_length)
    reference = open_clip.tokenize(texts, context_length=context_length).numpy()
    assert np.array_equal(ours, reference), mismatch_report(texts, ours, reference)


def test_live_decode_matches_open_clip(corpus: list[str]) -> None:
    open_clip = pytest.importorskip("open_clip")
    reference = open_clip.get_tokenizer("ViT-B-32")
    ours = default_tokenizer()
    for text in corpus[::7]:
        ids = ours.encode(text)
        assert ours.decode(ids) == reference.decode(ids), repr(text)


def test_the_merges_read_in_small_pieces_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """The vocabulary is decompressed only as far as the merges used; pieces that cut lines in
    two change nothing."""
    import core.tokenizer as tokenizer_module

    whole = tokenizer_module._read_merges()
    assert len(whole) == tokenizer_module._MERGE_COUNT
    monkeypatch.setattr(tokenizer_module, "_VOCAB_READ", 7)
    assert tokenizer_module._read_merges() == whole


def test_a_vocabulary_cut_short_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    import core.tokenizer as tokenizer_module

    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in tokenizer_module._read_merges()[:100])]
    (tmp_path / tokenizer_module._VOCAB_FILE).write_bytes(gzip.compress("\n".join(lines).encode()))
    monkeypatch.setattr(tokenizer_module.resources, "files", lambda package: tmp_path)
    with pytest.raises(ValueError, match="is damaged: expected 48894 merge pairs"):
        tokenizer_module._read_merges()
