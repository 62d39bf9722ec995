"""Zhang et al. (KDD 2020), Sec. 7 and Fig. 10, for notebook 06: input-gradient norms of the
models of B, read from :meth:`tlab.papers.zhang.Lab.evaluate` rows (one per seed). Pooled norms,
the split into the images white-box FGSM fools and those it does not, the panels' figures and
the median-based Z6 claims (the mean-based Z6 is in :func:`tlab.papers.zhang.verdicts.claims`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from tlab.notebook import plots
from tlab.papers.claims import Claim, paired_claim
from tlab.papers.evaluate import eps_index
from tlab.papers.zhang.setup import role_label

Rows = Sequence[Mapping[str, Any]]
#: A model of B: (role, frozen depth), e.g. ("FT", 4) or ("Scratch", 0).
Model = tuple[str, int]
AXIS = "||grad_x loss||_2"


def pooled(rows: Rows) -> np.ndarray:
    """Every evaluation image's gradient norm, pooled over the seeds of ``rows``."""
    return np.concatenate([np.asarray(r["grad_norms"], dtype=float) for r in rows])


def describe(values: np.ndarray) -> dict[str, float]:
    """Mean, median, 90th percentile, max and the shares of (near-)zero norms."""
    return {
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "90th percentile": float(np.quantile(values, 0.9)),
        "max": float(values.max()),
        "share < 0.05": float((values < 0.05).mean()),
        "share = 0": float((values == 0).mean()),
    }


def split(rows: Rows, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Norms of the correctly classified images, as (fooled, resisted) by white-box FGSM at
    ``eps`` (Fig. 10b-c), pooled over the seeds of ``rows``."""
    fooled, resisted = [], []
    for r in rows:
        g, correct = np.asarray(r["grad_norms"]), np.asarray(r["correct"], dtype=bool)
        hit = np.asarray(r["wb_fooled"][eps_index(r["eps"], eps)], dtype=bool)
        fooled.append(g[hit])
        resisted.append(g[correct & ~hit])
    return np.concatenate(fooled), np.concatenate(resisted)


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def split_figure(rows: Rows, eps: float, model: Model, *, bins: int) -> go.Figure:
    """Histograms of the fooled and the resisting images' norms for one model (Fig. 10b-c)."""
    fooled, resisted = split(rows, eps)
    fig = plots.histograms(
        {"fooled": fooled, "resisted": resisted},
        bins=bins,
        log_x=True,
        x_title=f"{AXIS} at the clean image",
    )

    def med(v: np.ndarray) -> str:
        return f"{np.median(v):.3g}" if len(v) else "-"

    fig.update_layout(
        title=f"{role_label(*model)}<br>median {med(fooled)} (fooled, n={len(fooled)})"
        f" vs {med(resisted)} (n={len(resisted)})"
    )
    return fig


def panel_figure(scratch: Rows, rows: Rows, model: Model, eps: float, *, bins: int) -> go.Figure:
    """Notebook 06's panel: ``model``'s norms against Scratch's (all test images), beside the
    fooled / resisted split at ``eps``."""
    name = role_label(*model)
    versus = plots.histograms(
        {"Scratch": pooled(scratch), name: pooled(rows)}, bins=bins, log_x=True, x_title=AXIS
    )
    ratio = np.median(pooled(scratch)) / max(np.median(pooled(rows)), 1e-12)
    success = split_figure(rows, eps, model, bins=bins)
    return plots.side_by_side(
        [versus, success],
        titles=[
            f"all test images: Scratch's median / {name}'s = {ratio:.2g}",
            f"eps {eps * 255:g}/255, " + success.layout.title.text,
        ],
        height=460,
        title=f"{name} ({len(rows)} seed(s)) -- Scratch pooled over {len(scratch)} seed(s)",
    )


def medians(rows: Rows) -> list[float]:
    """The median gradient norm of each seed's model."""
    return [float(np.median(r["grad_norms"])) for r in rows]


def split_medians(rows: Rows, eps: float) -> tuple[list[float], list[float]]:
    """Per seed, the median norm of the fooled and of the resisting images (NaN if none)."""
    pairs = [split([r], eps) for r in rows]
    return [_median(f) for f, _ in pairs], [_median(r) for _, r in pairs]


def median_claims(
    rows: Mapping[Model, Rows], frozen: Sequence[int], eps: float, seeds: Sequence[int]
) -> list[Claim]:
    """Z6 on the typical image (Sec. 7, Fig. 10a: FT's median norm below Scratch's, for each FT
    depth of ``frozen``) and fooled vs resisted (Fig. 10b-c: the images white-box FGSM fools at
    ``eps`` have larger norms than those that resist, per model), paired by seed."""
    out = [
        paired_claim(
            "Z6",
            f"{role_label('FT', k)} has smaller input-gradient norms than Scratch (median over "
            "B's test)",
            medians(rows[("Scratch", 0)]),
            medians(rows[("FT", k)]),
            what=f"median {AXIS}, Scratch vs FT",
            seeds=seeds,
            percent=False,
        )
        for k in frozen
    ]
    for model, model_rows in rows.items():
        fooled, resisted = split_medians(model_rows, eps)
        out.append(
            paired_claim(
                "Z6",
                f"images fooled by white-box FGSM at {eps * 255:g}/255 have larger norms than "
                f"those that resist ({role_label(*model)})",
                fooled,
                resisted,
                what="median norm, fooled vs resisted",
                seeds=seeds,
                percent=False,
            )
        )
    return out


def record_metrics(rows: Mapping[Model, Rows], eps: float) -> dict[str, float]:
    """Means over seeds of the per-seed mean and median norms (and, where every seed has both
    groups, of the fooled / resisted medians), for :func:`tlab.record.record`."""
    out: dict[str, float] = {}
    for (role, k), model_rows in rows.items():
        name = {"Scratch": "scratch", "CommonInit": "commoninit"}.get(role, f"ft{k}")
        per_seed = [np.asarray(r["grad_norms"]) for r in model_rows]
        out[f"grad_mean_{name}"] = float(np.mean([v.mean() for v in per_seed]))
        out[f"grad_median_{name}"] = float(np.mean([np.median(v) for v in per_seed]))
        fooled, resisted = split_medians(model_rows, eps)
        if np.all(np.isfinite(fooled + resisted)):
            out[f"grad_median_fooled{eps * 255:g}_{name}"] = float(np.mean(fooled))
            out[f"grad_median_resisted{eps * 255:g}_{name}"] = float(np.mean(resisted))
    return out
