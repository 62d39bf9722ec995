"""Verdicts are statistical statements: a real effect holds, no effect rarely does, a reversed
effect is contradicted, and too few seeds are always inconclusive (tlab.papers.claims)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tlab.errors import TlabError
from tlab.papers.claims import (
    MIN_SEEDS,
    TOO_FEW,
    Claim,
    all_of,
    any_of,
    claims_table,
    effect,
    paired_claim,
    threshold_claim,
)

SEEDS = [0, 1, 2, 3, 4]


def simulated_verdicts(shift: float, n: int, runs: int = 1000, seed: int = 0) -> dict[str, float]:
    """How often each verdict comes out of ``runs`` simulated experiments with ``n`` seeds,
    paired accuracies whose true difference is ``shift`` (noise sd 3 points per model)."""
    rng = np.random.default_rng(seed)
    counts = {"holds": 0, "contradicted": 0, "inconclusive": 0, TOO_FEW: 0}
    for _ in range(runs):
        base = rng.uniform(0.5, 0.9, n)  # per-seed difficulty, shared
        better = base + shift + rng.normal(0, 0.03, n)
        worse = base + rng.normal(0, 0.03, n)
        counts[paired_claim("X", "s", better, worse, what="acc", seeds=range(n)).verdict] += 1
    return {k: v / runs for k, v in counts.items()}


def test_with_no_effect_a_claim_holds_in_at_most_five_percent_of_1000_experiments():
    rates = simulated_verdicts(shift=0.0, n=5)
    assert rates["holds"] <= 0.05 and rates["contradicted"] <= 0.05
    assert rates["inconclusive"] >= 0.9
    # the interval's level is what it says: the t-test's false positive rate is 2.5 % one-sided
    assert rates["holds"] == pytest.approx(0.025, abs=0.015)


def test_a_real_effect_holds_and_a_reversed_one_is_contradicted():
    # 12 points is about 3 standard deviations of a paired difference here (sd 4.2 points):
    # 5 seeds detect it nearly always (an effect of 1 sd would often stay inconclusive)
    assert simulated_verdicts(shift=0.12, n=5, runs=300)["holds"] >= 0.95
    assert simulated_verdicts(shift=-0.12, n=5, runs=300)["contradicted"] >= 0.95
    assert simulated_verdicts(shift=0.04, n=5, runs=300)["contradicted"] == 0


def test_fewer_than_three_seeds_are_always_inconclusive_but_show_the_numbers():
    for n in range(1, MIN_SEEDS):
        assert simulated_verdicts(shift=0.5, n=n, runs=50)[TOO_FEW] == 1.0
    one = paired_claim("Z1", "FT > Scratch", [0.9], [0.5], what="clean", seeds=[0])
    assert one.verdict == TOO_FEW and not one.holds and "90.0%" in one.measured


def test_the_interval_is_students_t_interval_of_the_mean_difference():
    diff = np.array([0.1, 0.1, 0.05, 0.02])
    found = effect(diff)
    half = stats.t.ppf(0.975, 3) * diff.std(ddof=1) / 2
    assert found.mean == pytest.approx(diff.mean())
    assert (found.low, found.high) == pytest.approx((diff.mean() - half, diff.mean() + half))
    assert found.verdict == "holds"
    assert effect([0.1, -0.1, 0.05]).verdict == "inconclusive"
    assert effect([-0.2, -0.25, -0.22]).verdict == "contradicted"
    with pytest.raises(TlabError, match="finite"):
        effect([0.1, float("nan"), 0.2])


def test_thresholds_and_combinations():
    above = threshold_claim(
        "W3",
        "Gini above 0.1",
        [0.3, 0.35, 0.32],
        0.1,
        above=True,
        what="Gini",
        seeds=[0, 1, 2],
        percent=False,
    )
    below = threshold_claim(
        "W3",
        "Gini below 0.1",
        [0.3, 0.35, 0.32],
        0.1,
        above=False,
        what="Gini",
        seeds=[0, 1, 2],
        percent=False,
    )
    unsure = threshold_claim(
        "X", "s", [0.05, 0.2, 0.1], 0.1, above=True, what="v", seeds=[0, 1, 2], percent=False
    )
    assert (above.verdict, below.verdict, unsure.verdict) == (
        "holds",
        "contradicted",
        "inconclusive",
    )
    assert all_of("W5", "both", [above, above]).verdict == "holds"
    assert all_of("W5", "both", [above, unsure]).verdict == "inconclusive"
    assert all_of("W5", "both", [above, below]).verdict == "contradicted"
    assert any_of("D2", "either", [unsure, above]).verdict == "holds"
    assert any_of("D2", "either", [below, below]).verdict == "contradicted"
    assert any_of("D2", "either", [below, unsure]).verdict == "inconclusive"


def test_claims_table_shows_the_verdict_and_refuses_a_made_up_one():
    table = claims_table(
        [
            Claim("Z1", "FT beats Scratch", "80% vs 70%", "holds", "rule"),
            Claim("Z2", "more robust", "50% vs 60%", TOO_FEW),
        ]
    )
    assert list(table["verdict"]) == ["holds", TOO_FEW]
    with pytest.raises(TlabError, match="verdict"):
        Claim("Z3", "s", "m", "probably")  # type: ignore[arg-type]


def test_seeds_where_the_effect_is_undefined_are_left_out_and_said_so():
    nan = float("nan")
    claim = paired_claim(
        "Z4",
        "gamma lower",
        [0.5, 0.6, 0.55, nan],
        [0.1, 0.12, 0.11, 0.2],
        what="gamma",
        seeds=[0, 1, 2, 3],
        percent=False,
    )
    assert claim.verdict == "holds" and "undefined in 1 seed(s), left out" in claim.measured
    none = paired_claim("Z4", "gamma lower", [nan, nan], [0.1, 0.2], what="gamma", seeds=[0, 1])
    assert none.verdict == "inconclusive" and "undefined in every seed" in none.measured
