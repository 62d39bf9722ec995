"""Claims tables: each paper's qualitative claims, the numbers measured here, holds or not.

Notebooks end with such a table. A claim's verdict is computed from the measurements by the
rule written next to it, never typed in by hand, so a rerun with other seeds or another preset
can flip it -- which is the point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tlab.errors import TlabError


def mean_spread(values: Sequence[float] | np.ndarray, *, percent: bool = True) -> str:
    """``"mean ± std (n=k)"`` of seed-wise values: percent with one decimal by default, else
    three significant digits (gradient norms, Gini coefficients)."""
    array = np.asarray(values, dtype=float) * (100 if percent else 1)
    spread = array.std(ddof=1) if len(array) > 1 else 0.0
    if percent:
        return f"{array.mean():.1f}% ± {spread:.1f} (n={len(array)})"
    return f"{array.mean():.3g} ± {spread:.2g} (n={len(array)})"


@dataclass(frozen=True)
class Claim:
    """One claim: its code (e.g. ``"Z2"``), what the paper says, what was measured, verdict."""

    code: str
    statement: str
    measured: str
    holds: bool
    rule: str = ""


def claims_table(claims: Sequence[Claim]) -> pd.DataFrame:
    """The claims as a table: claim, measured numbers, the rule applied, holds / does not hold."""
    return pd.DataFrame([{
        "claim": f"{c.code}: {c.statement}", "measured": c.measured, "rule": c.rule,
        "verdict": "holds" if c.holds else "does not hold"} for c in claims]).set_index("claim")


def paired_claim(code: str, statement: str, better: Sequence[float], worse: Sequence[float], *,
                 what: str, seeds: Sequence[int], percent: bool = True) -> Claim:
    """A claim "``better`` > ``worse``" tested on seed-paired measurements.

    Rule: the mean of the per-seed differences is positive and larger than its standard error
    (standard deviation / sqrt(number of seeds)); with one seed, simply positive. ``percent``
    formats the numbers as percentages (accuracies); False for other quantities.
    """
    better_a, worse_a = np.asarray(better, dtype=float), np.asarray(worse, dtype=float)
    if better_a.shape != worse_a.shape or better_a.size == 0:
        raise TlabError("paired_claim needs one measurement per seed on both sides")
    diff = better_a - worse_a
    sem = diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else 0.0
    return Claim(code, statement,
                 f"{what}: {mean_spread(better_a, percent=percent)} vs "
                 f"{mean_spread(worse_a, percent=percent)}; "
                 f"difference {mean_spread(diff, percent=percent)} (seeds {list(seeds)})",
                 bool(diff.mean() > 0 and diff.mean() > sem),
                 "mean paired difference > 0 and > its standard error")
