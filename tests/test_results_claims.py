"""The evaluation-result cache and the claims tables."""

from __future__ import annotations

import pytest

from tlab.cache import cached_result
from tlab.papers.claims import Claim, claims_table, mean_spread


def test_results_are_computed_once_then_read_back(tlab_data):
    calls = []

    def compute():
        calls.append(1)
        return {"eps": [0.0, 0.1], "acc": [0.9, 0.5]}

    first = cached_result("curve", {"model": "abc", "eps": [0, 0.1]}, compute)
    second = cached_result("curve", {"eps": [0, 0.1], "model": "abc"}, compute)
    assert first == second == {"eps": [0.0, 0.1], "acc": [0.9, 0.5]} and len(calls) == 1
    cached_result("curve", {"model": "other", "eps": [0, 0.1]}, compute)
    assert len(calls) == 2


def test_a_corrupt_result_is_recomputed_with_a_warning(tlab_data):
    cached_result("curve", {"m": 1}, lambda: [1, 2, 3])
    (path,) = (tlab_data / "results").glob("curve-*.json")
    path.write_text('{"value": [1, 2')
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert cached_result("curve", {"m": 1}, lambda: [4, 5]) == [4, 5]


def test_mean_spread_and_claims_table():
    assert mean_spread([0.5, 0.7]) == "60.0% ± 14.1 (n=2)"
    assert mean_spread([2.0], percent=False) == "2 ± 0 (n=1)"
    assert mean_spread([0.1234, 0.2], percent=False) == "0.162 ± 0.054 (n=2)"
    table = claims_table(
        [
            Claim("Z1", "FT beats Scratch", "80% vs 70%", "holds", "FT > Scratch"),
            Claim("Z2", "more robust", "50% vs 60%", "contradicted"),
        ]
    )
    assert list(table["verdict"]) == ["holds", "contradicted"]
    assert table.index[0] == "Z1: FT beats Scratch"
