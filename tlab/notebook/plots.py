"""Plotly figures for the notebooks. Functions return figures; they never call ``show``."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
import torch
from PIL import Image

from tlab.core.data import Domain, domain_gallery_arrays
from tlab.core.metrics import minmax_normalise_columns


def setup_plotly() -> None:
    """Figures as plotly's JSON mimetype, which JupyterLab, Notebook 7 and VS Code draw.

    Executed notebooks keep only that JSON (no copy of plotly.js in every notebook); the HTML
    export of :mod:`tlab.runs.runner` turns it into self-contained figures that work offline.
    """
    pio.renderers.default = "plotly_mimetype"
    pio.templates.default = "plotly_white"


def _to_hwc_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    array = (
        images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    )
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return array.transpose(0, 2, 3, 1) if array.shape[1] in (1, 3) else array


def png_data_uri(image: np.ndarray) -> str:
    """An (H, W, 3) uint8 image as a PNG data URI: a tenth of the size of plotly's pixel lists."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_grid(
    images: torch.Tensor | np.ndarray,
    titles: Sequence[str] | None = None,
    *,
    columns: int = 10,
    title: str = "",
    size: int = 90,
) -> go.Figure:
    """A grid of images (N, 3, H, W) in [0, 1] or uint8, one title per image, ``size`` pixels
    per image on the page.

    The grid is one mosaic image with the titles as annotations: one trace and one pair of axes
    however many images, so it builds and redraws in a fraction of the time of one subplot per
    image (a panel redraws it whenever a slider moves).
    """
    array = _to_hwc_uint8(images)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    n, height, width = array.shape[:3]
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    pad = 2
    gap = max(pad, height // 3) if titles is not None else pad  # room for a title above
    cell_w, cell_h = width + pad, height + gap
    mosaic = np.full((rows * cell_h, columns * cell_w - pad, 3), 255, dtype=np.uint8)
    for i, image in enumerate(array):
        top, left = (i // columns) * cell_h + gap, (i % columns) * cell_w
        mosaic[top : top + height, left : left + width] = image
    fig = go.Figure(go.Image(source=png_data_uri(mosaic), hoverinfo="skip"))
    for i, label in enumerate(titles or []):
        fig.add_annotation(
            x=(i % columns) * cell_w + (width - 1) / 2,
            y=(i // columns) * cell_h + gap / 2 - 0.5,
            text=str(label),
            showarrow=False,
            font=dict(size=11),
        )
    fig.update_xaxes(visible=False).update_yaxes(visible=False)
    zoom = size / width
    fig.update_layout(
        title=title,
        height=int(mosaic.shape[0] * zoom) + 70,
        width=max(400, int(mosaic.shape[1] * zoom) + 20),
        margin=dict(l=10, r=10, t=60, b=10),
    )
    return fig


def curves(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    x_title: str,
    y_title: str,
    title: str = "",
    percent: bool = True,
) -> go.Figure:
    """Line plot of several named series over the same x values (one measurement each)."""
    return mean_curves(
        x,
        {name: [ys] for name, ys in series.items()},
        x_title=x_title,
        y_title=y_title,
        title=title,
        percent=percent,
    )


def domain_gallery(domain: Domain, per_class: int = 4, *, seed: int = 0) -> go.Figure:
    """Random training examples of a domain, one column per class, class names underneath."""
    pad = 2
    cell = 32 + pad
    rows_by_class = domain_gallery_arrays(domain, per_class, seed=seed, pad=pad)[pad:, pad:]
    blocks = rows_by_class.reshape(domain.num_classes, cell, per_class, cell, 3)
    grid = blocks.transpose(2, 1, 0, 3, 4).reshape(per_class * cell, domain.num_classes * cell, 3)
    fig = px.imshow(grid)
    fig.update_xaxes(
        tickmode="array",
        tickvals=[cell * i + 16 for i in range(domain.num_classes)],
        ticktext=list(domain.classes),
        tickangle=0 if max(len(c) for c in domain.classes) <= 3 else -45,
    )
    fig.update_yaxes(showticklabels=False)
    width = min(1100, max(640, 34 * domain.num_classes + 60))
    fig.update_layout(
        title=f"{domain.name}: {len(domain.train):,} train / "
        f"{len(domain.test):,} test images, {domain.num_classes} classes",
        width=width,
        height=int(width * grid.shape[0] / grid.shape[1]) + 90,
        margin=dict(l=10, r=10, t=50, b=30),
    )
    return fig


def attack_gallery(
    x: torch.Tensor,
    x_adv: torch.Tensor,
    clean_pred: Sequence[str],
    adv_pred: Sequence[str],
    *,
    eps: float,
    title: str = "",
) -> go.Figure:
    """Clean images, their adversarial versions and the perturbation (scaled to be visible).

    The perturbation row maps -eps..+eps to black..white (grey = unchanged pixel).
    """
    scale = 2 * eps if eps > 0 else 1.0
    delta = ((x_adv - x) / scale + 0.5).clamp(0, 1)
    images = torch.cat([x.cpu(), x_adv.cpu(), delta.cpu()])
    n = len(x)
    titles = (
        [f"clean: {p}" for p in clean_pred] + [f"adv: {p}" for p in adv_pred] + ["perturbation"] * n
    )
    return image_grid(images, titles, columns=n, title=title, size=110)


def normalised_heatmap(
    table: pd.DataFrame,
    *,
    title: str = "",
    row_breaks: Sequence[int] = (),
    column_breaks: Sequence[int] = (),
    percent: bool = True,
) -> go.Figure:
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
    headers = [
        f"{c}<br>{np.nanmin(raw[:, j]):.1f}-{np.nanmax(raw[:, j]):.1f}{unit}"
        for j, c in enumerate(table.columns)
    ]
    rows = [str(r) for r in table.index]
    fig = go.Figure(
        go.Heatmap(
            z=scaled.to_numpy(),
            x=headers,
            y=rows,
            customdata=raw,
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            text=np.round(scaled.to_numpy(), 2),
            texttemplate="%{text}",
            hovertemplate=f"%{{y}}<br>%{{x}}<br>%{{customdata:.1f}}{unit}<extra></extra>",
            colorbar=dict(title="normalised"),
        )
    )
    lines = [
        dict(type="line", xref="paper", x0=0, x1=1, y0=i + 0.5, y1=i + 0.5) for i in row_breaks
    ]
    lines += [
        dict(type="line", yref="paper", y0=0, y1=1, x0=j + 0.5, x1=j + 0.5) for j in column_breaks
    ]
    for line in lines:
        fig.add_shape(**line, line=dict(color="red", width=2))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="top")
    fig.update_layout(
        title=title, height=140 + 28 * len(rows), width=760, margin=dict(l=10, r=10, t=110, b=10)
    )
    return fig


# ------------------------------------------------------------------ distributions and panels


def _palette(names: Sequence[str]) -> dict[str, str]:
    """One colour per name, in order, from plotly's default qualitative palette."""
    colours = px.colors.qualitative.Plotly
    return {name: colours[i % len(colours)] for i, name in enumerate(dict.fromkeys(names))}


def histograms(
    groups: Mapping[str, Sequence[float] | np.ndarray],
    *,
    x_title: str,
    title: str = "",
    bins: int = 40,
    log_x: bool = False,
    medians: bool = True,
) -> go.Figure:
    """Overlaid histograms of several groups of values, as outlined and lightly filled steps.

    Every group shares the same bin edges (log-spaced when ``log_x``, for heavy-tailed values
    such as input-gradient norms, Zhang et al. 2020, Fig. 10) and is normalised to the fraction
    of *its own* values, so groups of different sizes compare. A log axis cannot show values
    <= 0: they are left out and counted in the group's legend entry. ``medians`` adds a dotted
    vertical line at each group's median (of the values shown).
    """
    shown = {}
    for name, values in groups.items():
        array = np.asarray(values, dtype=float)
        array = array[np.isfinite(array)]
        kept = array[array > 0] if log_x else array
        label = f"{name} (n={len(kept)})"
        if len(kept) < len(array):
            label += f", {len(array) - len(kept)} values <= 0 not shown"
        shown[name] = (kept, label)
    everything = np.concatenate([v for v, _ in shown.values()] + [np.zeros(0)])
    fig = go.Figure()
    if everything.size:
        lo, hi = float(everything.min()), float(everything.max())
        if hi <= lo:
            hi = lo + (abs(lo) or 1.0) * 1e-3
        edges = np.geomspace(lo, hi, bins + 1) if log_x else np.linspace(lo, hi, bins + 1)
        colours = _palette(list(shown))
        for name, (values, label) in shown.items():
            counts, _ = np.histogram(values, bins=edges)
            fraction = counts / max(len(values), 1)
            fig.add_trace(
                go.Scatter(
                    x=edges,
                    y=np.append(fraction, fraction[-1]),
                    mode="lines",
                    line_shape="hv",
                    fill="tozeroy",
                    name=label,
                    legendgroup=name,
                    opacity=0.6,
                    line=dict(color=colours[name], width=2),
                )
            )
            if medians and len(values):
                fig.add_vline(x=float(np.median(values)), line_dash="dot", line_color=colours[name])
    fig.update_xaxes(type="log" if log_x else "linear", title=x_title)
    fig.update_layout(title=title, yaxis_title="fraction of the group", height=400)
    return fig


def whole_number_ticks(x: Sequence[float]) -> dict[str, float]:
    """Axis settings that put ticks on whole numbers when every x is one (epochs, eps x 255),
    about ten of them; empty for other axes, categorical ones included (plotly's own ticks on a
    short whole-number axis fall on 1.5, 2.5, ...)."""
    try:
        values = np.asarray(list(x), dtype=float)
    except (TypeError, ValueError):  # categories: plotly places one tick per category
        return {}
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        return {}
    span = float(values.max() - values.min())
    return {"tick0": 0, "dtick": max(1, int(np.ceil(span / 10)))}


def mean_curves(
    x: Sequence[float],
    series: Mapping[str, Sequence[Sequence[float]]],
    *,
    x_title: str,
    y_title: str,
    title: str = "",
    percent: bool = True,
) -> go.Figure:
    """Like :func:`curves` for repeated measurements: one row per seed, drawn as the mean with
    error bars of one standard deviation over the rows (none for a single row)."""
    fig = go.Figure()
    for name, rows in series.items():
        array = np.asarray(rows, dtype=float).reshape(-1, len(x)) * (100 if percent else 1)
        spread = array.std(axis=0, ddof=1) if len(array) > 1 else np.zeros(len(x))
        fig.add_trace(
            go.Scatter(
                x=list(x),
                y=array.mean(axis=0),
                mode="lines+markers",
                name=name,
                error_y=dict(type="data", array=spread, visible=len(array) > 1),
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title=x_title,
        yaxis_title=f"{y_title} (%)" if percent else y_title,
        height=400,
    )
    fig.update_xaxes(**whole_number_ticks(x))
    return fig


def side_by_side(
    figures: Sequence[go.Figure],
    *,
    titles: Sequence[str] = (),
    title: str = "",
    shared_y: bool = False,
    height: int = 420,
) -> go.Figure:
    """Several figures as panels of one row, each trace in one colour and one legend entry
    per group across panels (clicking it toggles the group everywhere).

    A trace's group is its ``legendgroup`` if set (as :func:`histograms` sets it, whose trace
    names carry per-panel counts), else its name; a renamed trace keeps its own name as hover
    text. Only traces and axis titles / types are copied: add shapes (lines, bands) to the
    result."""
    from plotly.subplots import make_subplots

    titles = list(titles) or [f.layout.title.text or "" for f in figures]
    fig = make_subplots(rows=1, cols=len(figures), subplot_titles=titles, shared_yaxes=shared_y)
    colours = _palette(
        [t.legendgroup or t.name for f in figures for t in f.data if t.legendgroup or t.name]
    )
    seen: set[str] = set()
    for col, panel in enumerate(figures, start=1):
        for trace in panel.data:
            trace = go.Figure(trace).data[0]  # a copy: the source figure is left unchanged
            group = trace.legendgroup or trace.name
            if group and trace.name != group:
                trace.text, trace.name = trace.name, group
            colour = colours.get(trace.name)
            if colour and "line" in trace:
                trace.line.color = colour
            if colour and "marker" in trace:
                trace.marker.color = colour
            trace.legendgroup = trace.name
            trace.showlegend = trace.name not in seen
            seen.add(trace.name)
            fig.add_trace(trace, row=1, col=col)
        axis = panel.layout.xaxis
        fig.update_xaxes(
            title=axis.title.text,
            type=axis.type,
            tick0=axis.tick0,
            dtick=axis.dtick,
            row=1,
            col=col,
        )
        fig.update_yaxes(
            title=panel.layout.yaxis.title.text, type=panel.layout.yaxis.type, row=1, col=col
        )
    fig.update_layout(title=title, height=height)
    return fig
