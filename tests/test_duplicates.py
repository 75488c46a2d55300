"""Near-duplicate groups: the blocked search against all pairs, grouping, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from core.duplicates import (
    DuplicateGroup,
    exact_pairs,
    group_pairs,
    map_members,
    near_duplicate_pairs,
)
from core.errors import ClipsearchError


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _library(n: int, seed: int = 0) -> tuple[np.ndarray, list[set[int]]]:
    """Unrelated unit vectors (D = 64) with bursts of near-copies planted; the bursts too."""
    rng = np.random.default_rng(seed)
    x = _unit(0.6 * _unit(rng.standard_normal(64)) + 0.8 * _unit(rng.standard_normal((n, 64))))
    bursts = []
    order = rng.permutation(n)
    for k in range(0, n // 10 * 3, 3):  # a tenth of the photos lead a burst of three
        leader, *copies = order[k : k + 3]
        for copy in copies:
            x[copy] = _unit(x[leader] + 0.05 * _unit(rng.standard_normal(64)))
        bursts.append({int(leader), *map(int, copies)})
    return x, bursts


def test_the_blocked_search_finds_the_pairs_all_pairs_finds() -> None:
    x, bursts = _library(3000)
    exact, exact_similarity = exact_pairs(x, 0.97)
    pairs, similarity = near_duplicate_pairs(x, 0.97, leaf_size=200, rounds=3)

    truth = {tuple(p) for p in exact.tolist()}
    found = {tuple(p) for p in pairs.tolist()}
    assert found <= truth  # nothing reported that is not a pair
    assert len(found) / len(truth) >= 0.97, (len(found), len(truth))
    assert np.all(pairs[:, 0] < pairs[:, 1])
    assert len(found) == len(pairs)  # no repeats
    np.testing.assert_allclose(
        similarity, np.sum(x[pairs[:, 0]] * x[pairs[:, 1]], axis=1), atol=1e-5
    )
    # the planted bursts are what the exact search groups
    exact_groups = {frozenset(g.members) for g in group_pairs(exact, exact_similarity)}
    assert {frozenset(b) for b in bursts} <= exact_groups


def test_small_inputs_are_exact() -> None:
    x, _ = _library(150)
    exact, _ = exact_pairs(x, 0.9)
    pairs, _ = near_duplicate_pairs(x, 0.9, leaf_size=200)
    assert pairs.tolist() == exact.tolist() and len(pairs) > 0


def test_copies_of_one_photo_that_cannot_be_split_are_compared_all_pairs() -> None:
    rng = np.random.default_rng(1)
    x = np.repeat(_unit(rng.standard_normal((1, 32))), 500, axis=0)
    pairs, similarity = near_duplicate_pairs(x, 0.99, leaf_size=64)
    assert len(pairs) == 500 * 499 // 2
    groups = group_pairs(pairs, similarity)
    assert [len(g.members) for g in groups] == [500]


def test_more_pairs_than_the_limit_are_refused_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from core import duplicates

    rng = np.random.default_rng(2)
    x = _unit(rng.standard_normal((400, 32)))  # unrelated photos: few pairs
    monkeypatch.setattr(duplicates, "MAX_PAIRS", 1000)
    for leaf_size in (1024, 64):  # one block, and many
        assert len(near_duplicate_pairs(x, 0.95, leaf_size=leaf_size)[0]) < 1000
        copies = np.repeat(x[:1], 400, axis=0)  # 79,800 pairs of one photo's copies
        with pytest.raises(duplicates.TooManyPairsError, match="raise the threshold"):
            near_duplicate_pairs(copies, 0.95, leaf_size=leaf_size)


def test_rows_that_are_not_finite_take_no_part() -> None:
    rng = np.random.default_rng(2)
    x = _unit(rng.standard_normal((6, 16)))
    x[1] = x[0]
    x[2] = np.nan
    x[3] = x[2]
    pairs, _ = near_duplicate_pairs(x, 0.99)
    assert pairs.tolist() == [[0, 1]]


def test_groups_join_chains_and_keep_their_weakest_link() -> None:
    pairs = np.array([[5, 9], [0, 1], [1, 2], [7, 8]], np.int64)
    similarity = np.array([0.99, 0.97, 0.96, 0.98], np.float32)
    groups = group_pairs(pairs, similarity)
    assert groups == [
        DuplicateGroup((0, 1, 2), pytest.approx(0.96)),
        DuplicateGroup((5, 9), pytest.approx(0.99)),
        DuplicateGroup((7, 8), pytest.approx(0.98)),
    ]
    ids = np.arange(100, 110)
    assert map_members(groups, ids)[0].members == (100, 101, 102)


@pytest.mark.parametrize("threshold", [0.0, -0.5, 1.5])
def test_a_threshold_outside_0_1_is_refused(threshold: float) -> None:
    with pytest.raises(ClipsearchError, match="threshold"):
        near_duplicate_pairs(np.eye(3, dtype=np.float32), threshold)
