"""Wang et al.: the figures of notebooks 09-11 (Figs. 4-6)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from tlab.attacks.fingerprint import (
    GINI_THRESHOLD,
)

_COLOURS = {"deep": "#d62728", "mid": "#ff7f0e", "full": "#1f77b4"}


def layer_figure(
    rows: Sequence[Mapping[str, Any]],
    *,
    budget: float,
    highlight: int | None = None,
    students: Sequence[str] | None = None,
    title: str = "",
) -> go.Figure:
    """Targeted success against the attacked layer, one line per student (Wang et al., Fig. 5).

    A dotted vertical line in the student's colour marks its last frozen layer K; ``highlight``
    draws a grey band at one attacked layer (the widget's choice).
    """
    fig = go.Figure()
    picked = [r for r in rows if math.isclose(r["budget"], budget)]
    names = students or list(dict.fromkeys(r["student"] for r in picked))
    for name in names:
        mine = sorted((r for r in picked if r["student"] == name), key=lambda r: r["layer"])
        if not mine:
            continue
        colour = _COLOURS.get(name)
        k = mine[0]["frozen"]
        fig.add_trace(
            go.Scatter(
                x=[r["layer"] for r in mine],
                y=[100 * r["success"] for r in mine],
                mode="lines+markers",
                name=f"{name} (K={k})",
                line=dict(color=colour),
            )
        )
        if k > 0:
            fig.add_vline(x=k, line=dict(color=colour, dash="dot", width=2))
    if highlight is not None:
        fig.add_vrect(
            x0=highlight - 0.3, x1=highlight + 0.3, fillcolor="grey", opacity=0.15, line_width=0
        )
    fig.update_layout(
        title=title
        or f"Targeted success vs attacked layer (P = {budget:g}); "
        "dotted: each student's last frozen layer K",
        xaxis_title="attacked layer K of the teacher",
        yaxis_title="targeted success (%)",
        yaxis_range=[-3, 103],
        height=420,
    )
    fig.update_xaxes(dtick=1)
    return fig


def gini_heatmap(table: Mapping[str, Any], *, title: str = "") -> go.Figure:
    """The fingerprint matrix (Fig. 6): rows = candidate teachers, columns = students.

    Cells below :data:`GINI_THRESHOLD` (0.1: "this candidate is the teacher") are marked.
    """
    z = np.asarray(table["gini"], dtype=float)
    text = [[f"{v:.3f}{' ✔' if v < GINI_THRESHOLD else ''}" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=table["students"],
            y=table["candidates"],
            text=text,
            texttemplate="%{text}",
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            colorbar=dict(title="Gini"),
        )
    )
    fig.update_layout(
        title=title
        or f"Gini coefficient of the student's output on each "
        f"candidate's fingerprint (✔: below {GINI_THRESHOLD})",
        xaxis_title="student (built from ...)",
        yaxis_title="candidate teacher",
        yaxis_autorange="reversed",
        height=120 + 70 * len(z),
        width=820,
    )
    return fig


def defences_figure(dropout: Mapping[str, Any], distance: Mapping[str, Any]) -> go.Figure:
    """Notebook 11 (Sec. 6.1-6.2): the deep-layer student under input dropout with a vote (a
    row of :func:`tlab.papers.wang.dropout_table`) beside neuron-distance retraining (a row of
    :func:`tlab.papers.wang.neuron_distance_table`)."""
    fig = go.Figure(
        [
            go.Bar(
                name=f"input dropout {dropout['ratio']:g} + vote",
                x=["clean accuracy", "targeted success", "non-targeted success"],
                y=[
                    100 * dropout["accuracy"],
                    100 * dropout["targeted"],
                    100 * dropout["untargeted"],
                ],
            ),
            go.Bar(
                name=f"neuron distance, threshold {distance['threshold']:g}",
                x=["clean accuracy", "targeted success", "fingerprint Gini (x100)"],
                y=[100 * distance["accuracy"], 100 * distance["success"], 100 * distance["gini"]],
            ),
        ]
    )
    return fig.update_layout(
        barmode="group",
        yaxis_title="%",
        yaxis_range=[0, 105],
        height=400,
        title="Two defenses of the deep-layer student",
    )
