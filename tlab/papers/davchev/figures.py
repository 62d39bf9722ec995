"""Davchev et al. (ICML 2019 workshop): the figures behind the panels of notebooks 07 and 08."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tlab.notebook import plots


def eps_figure(
    lines: Mapping[str, Mapping[str, Any]],
    attack: str,
    eps: float,
    grid: Sequence[float],
    *,
    note: str = "",
) -> go.Figure:
    """Accuracy under one attack column of Table 1 against eps, one line per network
    (``lines[label]`` is a :meth:`tlab.papers.davchev.Lab.row`), values at ``eps`` in the title."""
    at = list(grid).index(eps)
    fig = plots.curves(
        [e * 255 for e in grid],
        {name: row[attack] for name, row in lines.items()},
        x_title="eps (x 1/255, [0, 1] pixels)",
        y_title=f"{attack} accuracy",
        title=f"{attack} at eps = {eps * 255:.0f}/255: "
        + ", ".join(f"{name} {row[attack][at]:.1%}" for name, row in lines.items())
        + note,
    )
    fig.add_vline(x=eps * 255, line_dash="dot")
    return fig


def defence_tables_figure(
    tables: Mapping[str, pd.DataFrame], *, row_breaks: Sequence[int] = (), title: str = ""
) -> go.Figure:
    """Davchev's Fig. 5: one per-column min-max normalised heatmap per table, side by side
    (``tables[name]``, e.g. the FGSM-defence and PGD-defence networks of
    :func:`tlab.papers.davchev.defence_networks` from :meth:`tlab.papers.davchev.Lab.table`).

    Each table is normalised on its own (:func:`tlab.notebook.plots.normalised_heatmap`), so
    colours compare networks within one table and one column; the column headers carry each
    table's raw range. Red lines after the rows of ``row_breaks`` (0-based, as the paper's
    horizontal lines between strategies) and after the Natural column."""
    panels = {
        name: plots.normalised_heatmap(table, row_breaks=row_breaks, column_breaks=[0])
        for name, table in tables.items()
    }
    fig = make_subplots(
        rows=1, cols=len(panels), subplot_titles=list(panels), horizontal_spacing=0.16
    )
    for col, panel in enumerate(panels.values(), start=1):
        heatmap = go.Heatmap(panel.data[0])
        heatmap.showscale = col == len(panels)
        fig.add_trace(heatmap, row=1, col=col)
        axis = "" if col == 1 else str(col)
        for shape in panel.layout.shapes:
            line = shape.to_plotly_json()
            line["xref"] = f"x{axis} domain" if line.get("xref") == "paper" else f"x{axis}"
            line["yref"] = f"y{axis} domain" if line.get("yref") == "paper" else f"y{axis}"
            fig.add_shape(line)
    rows = max(len(table) for table in tables.values())
    fig.update_annotations(yshift=45)  # the panel titles above the two-line column headers
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="top", tickangle=0, tickfont_size=10)
    fig.update_layout(
        title=title,
        height=190 + 28 * rows,  # no width: the figure fills its output area, whatever it is
        margin=dict(l=10, r=10, t=160, b=10),
    )
    return fig
