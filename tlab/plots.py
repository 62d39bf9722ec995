"""Plotly figures for the notebooks. Functions return figures; they never call ``show``."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
import torch

from tlab.data import Domain, domain_gallery_arrays
from tlab.metrics import minmax_normalise_columns


def setup_plotly() -> None:
    """Render figures both live (JupyterLab's plotly mimetype) and in exported HTML.

    The ``notebook`` renderer embeds plotly.js in the output, so the executed notebooks and their
    HTML exports under ``runs/`` show figures offline.
    """
    pio.renderers.default = "plotly_mimetype+notebook"
    pio.templates.default = "plotly_white"


def _to_hwc_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return array.transpose(0, 2, 3, 1) if array.shape[1] in (1, 3) else array


def image_grid(images: torch.Tensor | np.ndarray, titles: Sequence[str] | None = None, *,
               columns: int = 10, title: str = "", size: int = 90) -> go.Figure:
    """A grid of images (N, 3, H, W) in [0, 1] or uint8, one title per image."""
    array = _to_hwc_uint8(images)
    columns = max(1, min(columns, len(array)))
    fig = px.imshow(array, facet_col=0, facet_col_wrap=columns, facet_col_spacing=0.01,
                    facet_row_spacing=0.08 if titles is not None else 0.02)
    labels = list(titles) if titles is not None else [""] * len(array)
    fig.for_each_annotation(lambda a: a.update(text=labels[int(a.text.split("=")[1])]))
    rows = -(-len(array) // columns)
    fig.update_xaxes(showticklabels=False).update_yaxes(showticklabels=False)
    fig.update_layout(title=title, height=size * rows + 80, width=max(400, size * columns + 40),
                      margin=dict(l=10, r=10, t=60, b=10))
    return fig


def curves(x: Sequence[float], series: Mapping[str, Sequence[float]], *, x_title: str,
           y_title: str, title: str = "", percent: bool = True) -> go.Figure:
    """Line plot of several named series over the same x values."""
    fig = go.Figure()
    for name, ys in series.items():
        values = [100 * v for v in ys] if percent else list(ys)
        fig.add_trace(go.Scatter(x=list(x), y=values, mode="lines+markers", name=name))
    fig.update_layout(title=title, xaxis_title=x_title,
                      yaxis_title=f"{y_title} (%)" if percent else y_title, height=400)
    return fig


def domain_gallery(domain: Domain, per_class: int = 4, *, seed: int = 0) -> go.Figure:
    """Random training examples of a domain, one column per class, class names underneath."""
    pad = 2
    cell = 32 + pad
    rows_by_class = domain_gallery_arrays(domain, per_class, seed=seed, pad=pad)[pad:, pad:]
    blocks = rows_by_class.reshape(domain.num_classes, cell, per_class, cell, 3)
    grid = blocks.transpose(2, 1, 0, 3, 4).reshape(per_class * cell, domain.num_classes * cell, 3)
    fig = px.imshow(grid)
    fig.update_xaxes(tickmode="array", tickvals=[cell * i + 16 for i in range(domain.num_classes)],
                     ticktext=list(domain.classes),
                     tickangle=0 if max(len(c) for c in domain.classes) <= 3 else -45)
    fig.update_yaxes(showticklabels=False)
    width = min(1100, max(640, 34 * domain.num_classes + 60))
    fig.update_layout(title=f"{domain.name}: {len(domain.train):,} train / {len(domain.test):,} test "
                            f"images, {domain.num_classes} classes",
                      width=width, height=int(width * grid.shape[0] / grid.shape[1]) + 90,
                      margin=dict(l=10, r=10, t=50, b=30))
    return fig


def attack_gallery(x: torch.Tensor, x_adv: torch.Tensor, clean_pred: Sequence[str],
                   adv_pred: Sequence[str], *, eps: float, title: str = "") -> go.Figure:
    """Clean images, their adversarial versions and the perturbation (scaled to be visible).

    The perturbation row maps -eps..+eps to black..white (grey = unchanged pixel).
    """
    scale = 2 * eps if eps > 0 else 1.0
    delta = ((x_adv - x) / scale + 0.5).clamp(0, 1)
    images = torch.cat([x.cpu(), x_adv.cpu(), delta.cpu()])
    n = len(x)
    titles = ([f"clean: {p}" for p in clean_pred] + [f"adv: {p}" for p in adv_pred]
              + ["perturbation"] * n)
    return image_grid(images, titles, columns=n, title=title, size=110)


def normalised_heatmap(table: pd.DataFrame, *, title: str = "", row_breaks: Sequence[int] = (),
                       column_breaks: Sequence[int] = (), percent: bool = True) -> go.Figure:
    """A table drawn as a heatmap with every column min-max normalised on its own.

    Davchev et al. (2019, Figs. 2-5) show results this way: in each column the lowest value
    becomes 0 and the highest 1, so colours compare rows within a column (an attack), not across
    columns. Cells show the normalised value, the hover the raw one; each column header carries
    its raw range (in % when ``percent``). ``row_breaks`` / ``column_breaks`` draw separating
    lines after those row / column positions (0-based), like the paper's red lines.
    """
    scaled = minmax_normalise_columns(table.astype(float))
    raw = table.to_numpy(dtype=float) * (100 if percent else 1)
    unit = "%" if percent else ""
    headers = [f"{c}<br>{np.nanmin(raw[:, j]):.1f}-{np.nanmax(raw[:, j]):.1f}{unit}"
               for j, c in enumerate(table.columns)]
    rows = [str(r) for r in table.index]
    fig = go.Figure(go.Heatmap(
        z=scaled.to_numpy(), x=headers, y=rows, customdata=raw, zmin=0, zmax=1,
        colorscale="Viridis", text=np.round(scaled.to_numpy(), 2), texttemplate="%{text}",
        hovertemplate=f"%{{y}}<br>%{{x}}<br>%{{customdata:.1f}}{unit}<extra></extra>",
        colorbar=dict(title="normalised")))
    lines = [dict(type="line", xref="paper", x0=0, x1=1, y0=i + 0.5, y1=i + 0.5)
             for i in row_breaks]
    lines += [dict(type="line", yref="paper", y0=0, y1=1, x0=j + 0.5, x1=j + 0.5)
              for j in column_breaks]
    for line in lines:
        fig.add_shape(**line, line=dict(color="red", width=2))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="top")
    fig.update_layout(title=title, height=140 + 28 * len(rows), width=760,
                      margin=dict(l=10, r=10, t=110, b=10))
    return fig
