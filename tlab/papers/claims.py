"""Claims tables: each paper's qualitative claims, the numbers measured here, and a verdict.

Notebooks end with such a table. A claim's verdict is computed from the measurements by a
statistical test written next to it, never typed in by hand, so a rerun with other seeds or
another preset can change it -- which is the point.

Every verdict is one of three (:data:`VERDICTS`), from a confidence interval across seeds:

- **holds**: the 95 % confidence interval of the effect lies entirely on the claimed side;
- **contradicted**: it lies entirely on the other side (the opposite effect is measured);
- **inconclusive**: the interval contains "no effect", or fewer than :data:`MIN_SEEDS` seeds
  were run (``inconclusive (n too small)``, shown with the numbers).

The effect is measured per seed (a paired difference, or a value minus a threshold) and the
interval is Student's t interval of its mean over seeds: ``mean ± t(0.975, n-1) * sd / sqrt(n)``.
Deciding "holds" only when the lower end is above zero is a one-sided t-test at the 2.5 %
level, so with no real effect a claim reads "holds" in at most 2.5 % of experiments
(``tests/test_claims.py`` simulates 1,000 of them).

Each claim keeps its :class:`Evidence` (the per-seed effects and the numbers behind them), and
:func:`claims_table` also writes the claims, structured, to the run's record when the run is
recorded (``TLAB_RECORD_DIR`` set: :mod:`tlab.record`), so that ``python -m tlab report``
can gather every notebook's verdicts without the notebooks doing anything more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tlab import record as run_record
from tlab.errors import TlabError

VERDICTS = ("holds", "contradicted", "inconclusive")
#: Fewer seeds than this give no interval worth the name: the verdict is "inconclusive".
MIN_SEEDS = 3
#: Confidence level of the intervals.
LEVEL = 0.95
TOO_FEW = "inconclusive (n too small)"


def mean_spread(values: Sequence[float] | np.ndarray, *, percent: bool = True) -> str:
    """``"mean ± std (n=k)"`` of seed-wise values: percent with one decimal by default, else
    three significant digits (gradient norms, Gini coefficients)."""
    array = np.asarray(values, dtype=float) * (100 if percent else 1)
    spread = array.std(ddof=1) if len(array) > 1 else 0.0
    if percent:
        return f"{array.mean():.1f}% ± {spread:.1f} (n={len(array)})"
    return f"{array.mean():.3g} ± {spread:.2g} (n={len(array)})"


@dataclass(frozen=True)
class Effect:
    """The mean of per-seed effects, its confidence interval and the verdict it gives."""

    mean: float
    low: float
    high: float
    n: int
    verdict: str

    def describe(self, *, percent: bool = True) -> str:
        """``"+3.1 points, 95% CI [+0.4, +5.8]"`` (points for percentages)."""
        scale, unit = (100, " points") if percent else (1, "")
        if self.n < 2:
            return f"{scale * self.mean:+.3g}{unit}, no interval (n={self.n})"
        return (
            f"{scale * self.mean:+.3g}{unit}, {LEVEL:.0%} CI [{scale * self.low:+.3g}, "
            f"{scale * self.high:+.3g}] (n={self.n})"
        )


def effect(per_seed: Sequence[float] | np.ndarray) -> Effect:
    """The verdict on "the per-seed effects are positive on average" (see the module doc)."""
    values = np.asarray(per_seed, dtype=float)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise TlabError(f"a claim needs one finite effect per seed, got {values.tolist()}")
    return _t_interval(values)


def _finite_effect(per_seed: np.ndarray) -> tuple[Effect | None, str]:
    """:func:`effect` of the seeds where the effect is defined (gamma is undefined where
    white-box accuracy is 0), and a note saying how many were left out."""
    finite = np.isfinite(per_seed)
    note = "" if finite.all() else f"; undefined in {int((~finite).sum())} seed(s), left out"
    return (_t_interval(per_seed[finite]) if finite.any() else None), note


def _t_interval(values: np.ndarray) -> Effect:
    n, mean = values.size, float(values.mean())
    if n < 2:
        return Effect(mean, float("nan"), float("nan"), n, TOO_FEW)
    half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    low, high = mean - half, mean + half
    if n < MIN_SEEDS:
        verdict = TOO_FEW
    elif low > 0:
        verdict = "holds"
    elif high < 0:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return Effect(mean, low, high, n, verdict)


def _json_float(value: float) -> float | None:
    """``value`` for a JSON record: None where it is not finite (an undefined effect)."""
    return float(value) if np.isfinite(value) else None


def _json_floats(values: Sequence[float]) -> list[float | None]:
    return [_json_float(v) for v in values]


@dataclass(frozen=True)
class Evidence:
    """What a verdict was computed from: the effect per seed (NaN where undefined), its
    :class:`Effect` over the seeds where it is defined (None if none is), and the numbers behind
    it -- the two sides of a paired claim (``better``, ``worse``, effect = better - worse), or the
    values of a threshold claim with its ``threshold`` and side (``above``)."""

    seeds: tuple[int, ...]
    per_seed: tuple[float, ...]
    effect: Effect | None
    percent: bool
    better: tuple[float, ...] = ()
    worse: tuple[float, ...] = ()
    values: tuple[float, ...] = ()
    threshold: float | None = None
    above: bool | None = None

    def as_record(self) -> dict[str, Any]:
        """The evidence as JSON-able data (undefined numbers as None)."""
        found = self.effect
        out: dict[str, Any] = {
            "seeds": list(self.seeds),
            "n": 0 if found is None else found.n,
            "percent": self.percent,
            "per_seed": _json_floats(self.per_seed),
            "effect": None
            if found is None
            else {
                "mean": _json_float(found.mean),
                "low": _json_float(found.low),
                "high": _json_float(found.high),
            },
        }
        if self.threshold is None:
            out |= {"better": _json_floats(self.better), "worse": _json_floats(self.worse)}
        else:
            out |= {
                "values": _json_floats(self.values),
                "threshold": self.threshold,
                "above": self.above,
            }
        return out


@dataclass(frozen=True)
class Claim:
    """One claim: its code (e.g. ``"Z2"``), what the paper says, what was measured, the
    verdict (one of :data:`VERDICTS`, or ``inconclusive (n too small)``) and its rule; the
    :class:`Evidence` behind the verdict (None for a claim stated by hand), and the ``parts`` of a
    claim made of several (:func:`all_of`, :func:`any_of`)."""

    code: str
    statement: str
    measured: str
    verdict: str
    rule: str = ""
    evidence: Evidence | None = None
    parts: tuple[Claim, ...] = ()

    def __post_init__(self) -> None:
        if self.verdict not in (*VERDICTS, TOO_FEW):
            raise TlabError(f"verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}")

    @property
    def holds(self) -> bool:
        return self.verdict == "holds"

    def as_record(self) -> dict[str, Any]:
        """The claim as JSON-able data for the run's record: code, statement, measured text,
        rule, verdict, its evidence (``None`` when stated by hand) and its parts, recursively."""
        return {
            "code": self.code,
            "statement": self.statement,
            "measured": self.measured,
            "rule": self.rule,
            "verdict": self.verdict,
            "evidence": None if self.evidence is None else self.evidence.as_record(),
            "parts": [part.as_record() for part in self.parts],
        }


def claims_table(claims: Sequence[Claim]) -> pd.DataFrame:
    """The claims as a table: claim, measured numbers, the rule applied, the verdict.

    In a recorded run (``TLAB_RECORD_DIR`` set) the claims are also added to the run's
    ``record.json`` (:func:`tlab.record.record_claims`); otherwise nothing more happens.
    """
    if run_record.record_dir() is not None:
        run_record.record_claims([claim.as_record() for claim in claims])
    return pd.DataFrame(
        [
            {
                "claim": f"{c.code}: {c.statement}",
                "measured": c.measured,
                "rule": c.rule,
                "verdict": c.verdict,
            }
            for c in claims
        ]
    ).set_index("claim")


def _seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(seed) for seed in seeds)


def _check_pairs(better: Sequence[float], worse: Sequence[float]) -> tuple[np.ndarray, ...]:
    better_a, worse_a = np.asarray(better, dtype=float), np.asarray(worse, dtype=float)
    if better_a.shape != worse_a.shape or better_a.size == 0:
        raise TlabError("paired_claim needs one measurement per seed on both sides")
    return better_a, worse_a


def _claim(code: str, statement: str, measured: str, rule: str, evidence: Evidence) -> Claim:
    """The claim whose verdict is its evidence's (``inconclusive`` where the effect is undefined
    in every seed)."""
    verdict = evidence.effect.verdict if evidence.effect is not None else "inconclusive"
    return Claim(code, statement, measured, verdict, rule, evidence)


def paired_claim(
    code: str,
    statement: str,
    better: Sequence[float],
    worse: Sequence[float],
    *,
    what: str,
    seeds: Sequence[int],
    percent: bool = True,
) -> Claim:
    """A claim "``better`` > ``worse``" tested on seed-paired measurements.

    The effect is ``better - worse`` per seed; the verdict comes from its confidence interval
    (module docstring). ``percent`` formats the numbers as percentages (accuracies); False for
    other quantities.
    """
    better_a, worse_a = _check_pairs(better, worse)
    found, note = _finite_effect(better_a - worse_a)
    evidence = Evidence(
        _seeds(seeds),
        tuple(float(v) for v in better_a - worse_a),
        found,
        percent,
        better=tuple(float(v) for v in better_a),
        worse=tuple(float(v) for v in worse_a),
    )
    rule = f"{LEVEL:.0%} CI of the mean paired difference > 0"
    measured = (
        f"{what}: {mean_spread(better_a, percent=percent)} vs "
        f"{mean_spread(worse_a, percent=percent)}; difference "
    )
    if found is None:
        measured += f"undefined in every seed {list(seeds)}"
    else:
        measured += f"{found.describe(percent=percent)}{note} (seeds {list(seeds)})"
    return _claim(code, statement, measured, rule, evidence)


def threshold_claim(
    code: str,
    statement: str,
    values: Sequence[float],
    threshold: float,
    *,
    above: bool,
    what: str,
    seeds: Sequence[int],
    percent: bool = True,
) -> Claim:
    """A claim "``values`` lie above (or below) ``threshold``", tested across seeds: the
    effect per seed is the margin ``value - threshold`` (``threshold - value`` for below)."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise TlabError(f"threshold_claim needs one value per seed, got {array.tolist()}")
    margins = array - threshold if above else threshold - array
    found, note = _finite_effect(margins)
    evidence = Evidence(
        _seeds(seeds),
        tuple(float(v) for v in margins),
        found,
        percent,
        values=tuple(float(v) for v in array),
        threshold=float(threshold),
        above=above,
    )
    side = ">" if above else "<"
    shown = f"{100 * threshold:g}%" if percent else f"{threshold:g}"
    rule = f"{LEVEL:.0%} CI of the mean {side} {shown}"
    if found is None:
        measured = f"{what}: undefined in every seed {list(seeds)}"
    else:
        measured = (
            f"{what}: {mean_spread(array, percent=percent)}; margin over {shown} "
            f"{found.describe(percent=percent)}{note} (seeds {list(seeds)})"
        )
    return _claim(code, statement, measured, rule, evidence)


def all_of(code: str, statement: str, parts: Sequence[Claim]) -> Claim:
    """A claim made of several that must all hold: it holds when every part holds, is
    contradicted when any part is, and is inconclusive otherwise."""
    return _combined(code, statement, parts, "all")


def any_of(code: str, statement: str, parts: Sequence[Claim]) -> Claim:
    """A claim that holds when any part holds and is contradicted when every part is."""
    return _combined(code, statement, parts, "any")


def _combined(code: str, statement: str, parts: Sequence[Claim], how: str) -> Claim:
    if not parts:
        raise TlabError(f"claim {code} needs at least one part")
    verdicts = [p.verdict for p in parts]
    if how == "all":
        verdict = (
            "holds"
            if all(v == "holds" for v in verdicts)
            else "contradicted"
            if "contradicted" in verdicts
            else None
        )
    else:
        verdict = (
            "holds"
            if "holds" in verdicts
            else "contradicted"
            if all(v == "contradicted" for v in verdicts)
            else None
        )
    if verdict is None:
        verdict = TOO_FEW if TOO_FEW in verdicts else "inconclusive"
    join = " and " if how == "all" else " or "
    return Claim(
        code,
        statement,
        "; ".join(f"({i}) {p.measured}" for i, p in enumerate(parts, 1)),
        verdict,
        join.join(f"({i}) {p.rule}: {p.verdict}" for i, p in enumerate(parts, 1)),
        parts=tuple(parts),
    )
