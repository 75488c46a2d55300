"""Match probabilities from cosine scores, by each model's own rule.

CLIP models were trained with a softmax over a batch, so their probability for a candidate is the
softmax of ``logit_scale * cosine`` over every candidate (the candidates share one unit of
probability). SigLIP models were trained with a sigmoid loss, so their probability for a candidate
is ``sigmoid(logit_scale * cosine + logit_bias)``, on its own: it does not depend on the other
candidates, and several photos (or labels) can each be a near-certain match, or none.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["RULE_HELP", "match_probabilities", "rule_of"]

RULE_HELP = (
    "probability: for CLIP models, the softmax of logit_scale x cosine over every candidate "
    "(they share 100%%); for SigLIP models, sigmoid(logit_scale x cosine + logit_bias) for each "
    "candidate on its own (several, or none, can be near 100%%)"
)
"""How the probability is worked out, for ``--help`` texts (``%`` doubled for argparse)."""

SOFTMAX_BLOCK = 8192  # scores exponentiated at a time: 64 KiB of float64 work space


class _Scored(Protocol):
    logit_scale: float
    logit_bias: float | None


def rule_of(model: _Scored) -> str:
    """``"sigmoid"`` for a model with a ``logit_bias`` (SigLIP), else ``"softmax"``."""
    return "softmax" if getattr(model, "logit_bias", None) is None else "sigmoid"


def match_probabilities(
    model: _Scored,
    scores: np.ndarray,
    chosen: np.ndarray | None = None,
    others: tuple[np.ndarray, float] | None = None,
) -> np.ndarray:
    """Probabilities ``[K] float64`` of the candidates at positions ``chosen`` (all by default).

    Parameters
    ----------
    model
        Gives ``logit_scale`` and ``logit_bias`` (None for CLIP models).
    scores
        Cosine scores ``[N]`` of every candidate; finite.
    chosen
        Positions whose probabilities are wanted. For CLIP the softmax still runs over all ``N``
        (in float64, after subtracting the largest score); for SigLIP only the chosen are
        computed.
    others
        For CLIP, candidates left out of ``scores`` and estimated instead: the scores of a
        random sample of them, and how many candidates each sample stands for. They count in
        the softmax's denominator only.
    """
    if chosen is None:
        chosen = np.arange(len(scores))
    bias = getattr(model, "logit_bias", None)
    if bias is not None:
        logits = float(model.logit_scale) * np.asarray(scores, np.float64)[chosen]
        logits += float(bias)
        # sigmoid as 0.5 * (1 + tanh(x / 2)): no overflow for large |x|
        return 0.5 * (1.0 + np.tanh(0.5 * logits))
    values = np.asarray(scores)
    largest = float(values.max())
    scale = float(model.logit_scale)
    # the denominator block by block: a float64 copy of every score would be fresh memory at
    # every search (8 MB at a million photos), which glibc maps and the kernel faults in anew
    total = 0.0
    work = np.empty(min(len(values), SOFTMAX_BLOCK), np.float64)
    for start in range(0, len(values), SOFTMAX_BLOCK):
        part = work[: min(SOFTMAX_BLOCK, len(values) - start)]
        part[:] = values[start : start + SOFTMAX_BLOCK]
        part -= largest
        part *= scale
        np.exp(part, out=part)
        total += float(part.sum())
    if others is not None and len(others[0]):
        rest = np.asarray(others[0], dtype=np.float64) - largest
        rest *= scale
        total += others[1] * float(np.exp(rest).sum())
    weights = np.asarray(values[chosen], dtype=np.float64) - largest
    weights *= scale
    chosen_probabilities: np.ndarray = np.exp(weights) / total
    return chosen_probabilities
