"""Match probabilities by each model's rule, and the hint for queries a model cannot read."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from core.languages import foreign_script, multilingual_model_name, script_hint
from core.registry import get_spec
from core.scoring import SOFTMAX_BLOCK, match_probabilities, rule_of

SCORES = np.array([0.31, 0.12, -0.05, 0.29])


def test_clip_shares_one_unit_of_probability_over_the_candidates() -> None:
    clip = SimpleNamespace(logit_scale=100.0, logit_bias=None)
    assert rule_of(clip) == "softmax"
    p = match_probabilities(clip, SCORES)
    assert p.sum() == pytest.approx(1.0)
    assert p[0] > p[3] > p[1]
    # a candidate's probability depends on the others
    assert match_probabilities(clip, SCORES[:2])[0] != pytest.approx(p[0])


def test_the_softmax_over_many_candidates_is_summed_block_by_block_exactly() -> None:
    """More candidates than one block of the denominator, and a last block that is not full."""
    clip = SimpleNamespace(logit_scale=100.0, logit_bias=None)
    scores = np.random.default_rng(0).uniform(-0.2, 0.4, 2 * SOFTMAX_BLOCK + 77)
    scores = scores.astype(np.float32)
    chosen = np.array([0, SOFTMAX_BLOCK - 1, SOFTMAX_BLOCK, len(scores) - 1, int(scores.argmax())])
    weights = np.exp(100.0 * (scores.astype(np.float64) - float(scores.max())))
    expected = weights[chosen] / weights.sum()
    np.testing.assert_allclose(match_probabilities(clip, scores, chosen), expected, rtol=1e-12)
    assert match_probabilities(clip, scores).sum() == pytest.approx(1.0, abs=1e-12)


def test_siglip_gives_each_candidate_its_own_sigmoid() -> None:
    siglip = SimpleNamespace(logit_scale=11.5, logit_bias=-8.25)
    assert rule_of(siglip) == "sigmoid"
    p = match_probabilities(siglip, SCORES, np.array([3, 0]))
    expected = 1 / (1 + np.exp(-(11.5 * SCORES[[3, 0]] - 8.25)))
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    # independent of the other candidates, and extreme logits neither overflow nor give NaN
    assert match_probabilities(siglip, SCORES[:1])[0] == pytest.approx(expected[1])
    huge = SimpleNamespace(logit_scale=1e6, logit_bias=0.0)
    assert list(match_probabilities(huge, np.array([1.0, -1.0]))) == [1.0, 0.0]


@pytest.mark.parametrize(
    "text,script",
    [
        ("一只狗在雪地里奔跑", "Chinese"),
        ("雪の中を走る犬", "Chinese"),  # kanji come first
        ("ひらがな", "Japanese"),
        ("눈 속의 강아지", "Korean"),
        ("собака в снегу", "Cyrillic"),
        ("قطة", "Arabic"),
        ("Café au lait, crème brûlée", None),
        ("🐶🎉 123 !?", None),
        ("", None),
    ],
)
def test_foreign_script(text: str, script: str | None) -> None:
    assert foreign_script(text) == script


def test_script_hint_names_the_multilingual_model_and_the_switch() -> None:
    name = multilingual_model_name()
    assert name == "ViT-B-32-SigLIP2-256-webli"
    hint = script_hint(get_spec("ViT-B-32-256-datacomp"), "собака в снегу")
    assert hint is not None and "\n" not in hint
    assert "Cyrillic" in hint and f"model install {name}" in hint and "--reindex" in hint
    assert script_hint(get_spec("ViT-B-32-256-datacomp"), "a dog in the snow") is None
    assert script_hint(get_spec(name), "собака в снегу") is None
