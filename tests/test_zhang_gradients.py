"""tlab.papers.zhang.gradients: the gradient-norm split, panels and median claims of notebook 06."""

from __future__ import annotations

import numpy as np
import pytest

from tlab.papers.zhang import gradients as zgrad


def _row(norms, correct, fooled):
    return {"grad_norms": norms, "correct": correct, "eps": [4 / 255, 8 / 255],
            "wb_fooled": [[False] * len(norms), fooled]}  # fmt: skip


def test_split_keeps_correct_images_and_separates_fooled_from_resisted():
    row = _row([0.1, 2.0, 3.0, 0.2], [True, True, True, False], [False, True, False, False])
    fooled, resisted = zgrad.split([row], 8 / 255)
    assert fooled.tolist() == [2.0] and resisted.tolist() == [0.1, 3.0]
    assert [len(g) for g in zgrad.split([row], 4 / 255)] == [0, 3]
    assert zgrad.describe(zgrad.pooled([row, row]))["median"] == pytest.approx(1.1)


def test_median_claims_pair_seeds_and_record_means():
    rng = np.random.default_rng(0)
    correct, fooled = [True] * 6, [True, True, True, False, False, False]
    scratch = [
        _row(np.array([5, 6, 7, 1, 1, 1]) + rng.random(6), correct, fooled) for _ in range(3)
    ]
    ft = [_row(np.array([0.5, 0.6, 0.7, 0.1, 0.1, 0.1]) + 0.1 * rng.random(6), correct, fooled)
          for _ in range(3)]  # fmt: skip
    rows = {("Scratch", 0): scratch, ("FT", 4): ft}
    claims = zgrad.median_claims(rows, [4], 8 / 255, [0, 1, 2])
    assert [c.verdict for c in claims] == ["holds"] * 3
    out = zgrad.record_metrics(rows, 8 / 255)
    assert out["grad_median_scratch"] > out["grad_median_ft4"]
    assert out["grad_median_fooled8_ft4"] > out["grad_median_resisted8_ft4"]
    fig = zgrad.panel_figure(scratch, ft, ("FT", 4), 8 / 255, bins=10)
    assert "FT (frozen 4)" in fig.layout.title.text and "3 seed(s)" in fig.layout.title.text
