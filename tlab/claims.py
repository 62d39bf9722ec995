"""Claims tables: each paper's qualitative claims, the numbers measured here, holds or not.

Notebooks end with such a table. A claim's verdict is computed from the measurements by the
rule written next to it, never typed in by hand, so a rerun with other seeds or another preset
can flip it -- which is the point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd


def mean_spread(values: Sequence[float], *, percent: bool = True) -> str:
    """``"mean ± std (n=k)"`` of seed-wise values, in percent by default."""
    array = np.asarray(values, dtype=float) * (100 if percent else 1)
    spread = array.std(ddof=1) if len(array) > 1 else 0.0
    unit = "%" if percent else ""
    return f"{array.mean():.1f}{unit} ± {spread:.1f} (n={len(array)})"


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
