"""Notebook 12's exercise: reading a batch run's table (Zhang et al. 2020, Sec. 6.1, Fig. 6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from tlab.notebook.exercises import NotQuite, check, expect

#: Column names of the made-up tables, (by, better, worse) per seed: never the names of the
#: notebook's own table, so an answer that types those in instead of using its arguments fails.
_MADE_UP_COLUMNS = [("size", "acc_ft", "acc_scratch"), ("n_target", "ft_clean", "scratch_clean")]


def check_mean_difference(my_difference: Callable[..., Any], *, seed: int = 0) -> bool:
    """FT's advantage over Scratch per n_B, on a made-up wide table with several seeds per n_B
    in shuffled order, columns named differently from the run's and one more column beside them:
    the mean over points of (FT - Scratch) for each n_B, indexed by n_B."""
    rng = np.random.default_rng(seed)
    by, better, worse = _MADE_UP_COLUMNS[seed % len(_MADE_UP_COLUMNS)]
    sizes = np.repeat([50, 100, 500], 3)
    ft = rng.uniform(0.5, 0.9, len(sizes))
    scratch = ft - rng.uniform(-0.05, 0.3, len(sizes))
    order = rng.permutation(len(sizes))
    wide = pd.DataFrame(
        {
            "seed": np.tile([0, 1, 2], 3)[order],
            worse: scratch[order],
            by: sizes[order],
            better: ft[order],
        }
    )
    want = {n: float(np.mean(ft[sizes == n] - scratch[sizes == n])) for n in (50, 100, 500)}

    def test() -> str:
        try:
            got = my_difference(wide.copy(), by, better, worse)
        except KeyError as missing:
            raise NotQuite(
                f"no column {missing} in the check's table (its columns: {list(wide.columns)}): "
                "read the column names from the arguments by, better, worse"
            ) from None
        expect(isinstance(got, pd.Series), "return a pandas Series indexed by the parameter")
        expect(
            got.index.tolist() == sorted(want),
            f"one value per n_B, indexed by n_B in increasing order {sorted(want)} (the reveal "
            f"below reads the Series in that order), got index {got.index.tolist()}",
        )
        for n, value in want.items():
            expect(
                abs(float(got[n]) - value) < 1e-9,
                f"n_B = {n}: {float(got[n]):+.4f}, but the mean of FT - Scratch over its "
                f"{int((sizes == n).sum())} points is {value:+.4f}",
            )
        return (
            f"the mean of FT - Scratch per n_B on {len(wide)} made-up points "
            f"(columns {by!r}, {better!r}, {worse!r})"
        )

    return check(
        "FT's advantage per n_B",
        test,
        hint="for each point take FT - Scratch; then average those differences over the points "
        "that share a value of the parameter, with that value as the index (pandas' grouping "
        "sorts it).",
    )
