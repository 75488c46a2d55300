"""The Hugging Face tokenizer path (SigLIP 2's Gemma vocabulary) against open_clip's HFTokenizer.

Each case trains a small Gemma-style tokenizer with the ``tokenizers`` library, lays it out as the
hub repository does, and compares our ids with open_clip's ``HFTokenizer`` (through
``transformers``) on the same files, id for id.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("open_clip")
pytest.importorskip("transformers")

from core.errors import TokenizerError
from core.hf_tokenizer import HFTokenizer, canonicalize
from tests.reference import build_test_tokenizer, openclip_tokenizer

TEXTS = [
    "A red bicycle in the snow!",
    "",
    "   ",
    "一只狗在雪地里奔跑",
    "雪の中を走る犬",
    "собака в снегу",
    "Café au lait, crème brûlée — Paris",
    "قطة على الأريكة",
    "눈 속에서 달리는 강아지",
    "🍣🐶🎉 emoji only",
    "👨‍👩‍👧 family",
    "x" * 300,
    "a long caption " * 40,
    "\x00\x07 control\tcharacters\r\n and a\u200bzero width space",
    "<eos> and <bos> typed by hand",
    "snake_case_words and kebab-case",
    "HTML &amp; entities &lt;b&gt;",
    "ελληνικά",
    "हिंदी",
    "ภาษาไทย",
    "Ünïcödé ÀÉÎ ß",
    "\ud83d broken surrogate",
    "tab\tseparated\tvalues",
    "1234567890",
]


@pytest.mark.parametrize(
    "post_processor,config",
    [
        ("eos", {}),
        ("bos", {"padding_side": None}),  # Gemma's class default: padding on the left
        (None, {"truncation_side": "left"}),
        ("eos", {"padding_side": "left", "add_eos_token": False}),  # the file's template wins
    ],
    ids=["siglip2", "bos-left-default", "no-template-truncate-left", "template-wins"],
)
def test_ids_equal_open_clip(tmp_path: Path, post_processor, config) -> None:
    folder = build_test_tokenizer(tmp_path / "tok", post_processor=post_processor, **config)
    texts = [t.encode("utf-8", "replace").decode("utf-8") for t in TEXTS]
    reference = openclip_tokenizer(folder)(texts).numpy()
    ours = HFTokenizer(folder, 64, "canonicalize")(texts)
    assert ours.dtype == np.int32 and ours.shape == (len(texts), 64)
    np.testing.assert_array_equal(ours, reference)
    # the cases differ from one another, so the comparison can tell a wrong rule from a right one
    assert len({tuple(row) for row in ours}) == len(texts) - 1  # "" and "   " clean alike


def test_canonicalize_matches_open_clip() -> None:
    from open_clip.tokenizer import _clean_canonicalize

    for text in TEXTS:
        assert canonicalize(text) == _clean_canonicalize(text)


def test_one_text_and_none(tmp_path: Path) -> None:
    tokenizer = HFTokenizer(build_test_tokenizer(tmp_path / "tok"), 64, "canonicalize")
    assert tokenizer("snow").shape == (1, 64)
    assert tokenizer([]).shape == (0, 64)


@pytest.mark.parametrize("damage", ["missing", "not-json", "truncated", "bad-pad"])
@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json"])
def test_bad_files_name_the_file(tmp_path: Path, name: str, damage: str) -> None:
    folder = build_test_tokenizer(tmp_path / "tok")
    path = folder / name
    if damage == "missing":
        path.unlink()
    elif damage == "not-json":
        path.write_bytes(b"\x89PNG\r\n not json")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif name == "tokenizer_config.json":
        config = json.loads(path.read_text())
        config["pad_token"] = "<no-such-token>"
        path.write_text(json.dumps(config))
    else:
        data = json.loads(path.read_text())
        data["model"]["type"] = "NoSuchModel"
        path.write_text(json.dumps(data))
    with pytest.raises(TokenizerError) as error:
        HFTokenizer(folder, 64, "canonicalize")
    message = str(error.value)
    assert "\n" not in message
    assert name in message
