"""Davchev et al. (ICML 2019 workshop): the figures behind the panels of notebooks 07 and 08."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

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
