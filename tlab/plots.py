"""Plotly figures for the notebooks. Functions return figures; they never call ``show``."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
import torch


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
