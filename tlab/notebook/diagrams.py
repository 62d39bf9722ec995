"""Schematic figures drawn with plotly shapes and annotations (no data, no models).

:func:`transfer_strategies` draws the three ways Zhang et al. (KDD 2020, Sec. 3.2, Fig. 1) build
a target model B from a small domain B: *Scratch*, *Fine-tune* and *CommonInit*. Data boxes
(left) train model boxes (right, grey arrows); red arrows show which model's weights
initialise which. In the Fine-tune panel model B is drawn stage by stage, the frozen stages
(kept at model A's weights, :func:`tlab.core.models.freeze`) shaded.
"""

from __future__ import annotations

import plotly.graph_objects as go

from tlab.checks import check_stage
from tlab.errors import TlabError

DATA_COLOUR = "#e8f1fb"
MODEL_COLOUR = "#fdf0d5"
FROZEN_COLOUR = "#9aa5b1"
TRAINABLE_COLOUR = "#f6c667"
STRATEGIES = ("Scratch", "Fine-tune", "CommonInit")

_ROWS = {"C": 0.84, "A": 0.54, "B": 0.22}  # vertical position of each domain's row
_HALF_W, _HALF_H = 0.15, 0.085  # half-size of a box, in panel units


def _box(
    fig: go.Figure, x: float, y: float, text: str, colour: str, *, name: str, dash: str = "solid"
) -> None:
    fig.add_shape(
        type="rect",
        x0=x - _HALF_W,
        x1=x + _HALF_W,
        y0=y - _HALF_H,
        y1=y + _HALF_H,
        fillcolor=colour,
        line=dict(color="#34495e", width=1.5, dash=dash),
        name=name,
        layer="below",
    )
    fig.add_annotation(x=x, y=y, text=text, showarrow=False, font=dict(size=12))


def _arrow(
    fig: go.Figure,
    start: tuple[float, float],
    end: tuple[float, float],
    *,
    trains: bool,
    label: str = "",
) -> None:
    """An arrow from ``start`` to ``end`` (box edges); grey for "trains", red for
    "initialises"."""
    colour = "#7f8c8d" if trains else "#c0392b"
    fig.add_annotation(
        x=end[0],
        y=end[1],
        ax=start[0],
        ay=start[1],
        xref="x",
        yref="y",
        axref="x",
        ayref="y",
        showarrow=True,
        arrowhead=3,
        arrowsize=1.2,
        arrowwidth=1.6 if trains else 2.4,
        arrowcolor=colour,
        text="",
    )
    if label:
        fig.add_annotation(
            x=(start[0] + end[0]) / 2 + 0.015,
            y=(start[1] + end[1]) / 2,
            text=label,
            xanchor="left",
            showarrow=False,
            font=dict(size=10, color=colour),
        )


def _elbow_arrow(
    fig: go.Figure, start: tuple[float, float], end: tuple[float, float], out: float
) -> None:
    """A red "initialises" arrow from the right edge ``start`` to the right edge ``end``,
    routed ``out`` to the right of both so that it passes beside the boxes in between."""
    x = max(start[0], end[0]) + out
    fig.add_shape(
        type="path",
        path=f"M {start[0]},{start[1]} L {x},{start[1]} L {x},{end[1]}",
        line=dict(color="#c0392b", width=2.4),
        name="elbow",
    )
    _arrow(fig, (x, end[1]), end, trains=False)


def _trains(fig: go.Figure, cx: float, row: str, domain_text: str, model_text: str) -> None:
    """Domain box on the left of the panel training the model box on the right."""
    y = _ROWS[row]
    _box(fig, cx - 0.22, y, domain_text, DATA_COLOUR, name=f"data {row}")
    _box(fig, cx + 0.22, y, model_text, MODEL_COLOUR, name=f"model {row}")
    _arrow(fig, (cx - 0.22 + _HALF_W, y), (cx + 0.22 - _HALF_W, y), trains=True)


def _staged_model_b(fig: go.Figure, x: float, y: float, frozen: int, num_stages: int) -> None:
    """Model B of Fine-tune as ``num_stages`` stage cells plus the head; frozen cells shaded."""
    cells = num_stages + 1
    width = 2 * _HALF_W / cells
    for i in range(cells):
        is_frozen = i < frozen
        fig.add_shape(
            type="rect",
            x0=x - _HALF_W + i * width,
            x1=x - _HALF_W + (i + 1) * width,
            y0=y - _HALF_H,
            y1=y + _HALF_H,
            layer="below",
            fillcolor=FROZEN_COLOUR if is_frozen else TRAINABLE_COLOUR,
            line=dict(color="#34495e", width=1),
            name="frozen stage" if is_frozen else "trainable stage",
        )
    fig.add_annotation(
        x=x,
        y=y - _HALF_H - 0.045,
        showarrow=False,
        font=dict(size=11),
        text=f"<b>model B</b>: {num_stages} stages + head,<br>first {frozen} frozen (grey)",
    )


def transfer_strategies(frozen: int = 0, num_stages: int = 4) -> go.Figure:
    """Zhang et al. (2020), Fig. 1, redrawn: Scratch, Fine-tune and CommonInit side by side.

    ``frozen`` (0..``num_stages``) is how many leading stages of the fine-tuned model B keep
    model A's weights; the Fine-tune panel shades them (the DTN of the lab has 4 stages, the
    classifier head always trains).
    """
    if isinstance(num_stages, bool) or int(num_stages) != num_stages or num_stages < 1:
        raise TlabError(f"num_stages={num_stages!r} must be a positive integer (the DTN has 4)")
    frozen = check_stage(
        frozen,
        num_stages,
        name="frozen",
        hint=(f"0 = fine-tune every stage, {num_stages} = train only the head"),
    )
    fig = go.Figure()
    # Scratch: random weights, trained on B only.
    cx = 0.5
    _box(fig, cx + 0.22, _ROWS["A"], "random<br>weights", "#ffffff", name="random", dash="dot")
    _trains(fig, cx, "B", "domain B<br>(few images)", "<b>model B</b>")
    _arrow(
        fig,
        (cx + 0.22, _ROWS["A"] - _HALF_H),
        (cx + 0.22, _ROWS["B"] + _HALF_H),
        trains=False,
        label="initialises",
    )
    # Fine-tune: A trained on domain A initialises B; the first `frozen` stages stay A's.
    cx = 1.5
    _trains(fig, cx, "A", "domain A<br>(many images)", "<b>model A</b>")
    y_b = _ROWS["B"]
    _box(fig, cx - 0.22, y_b, "domain B<br>(few images)", DATA_COLOUR, name="data B")
    _staged_model_b(fig, cx + 0.22, y_b, int(frozen), int(num_stages))
    _arrow(fig, (cx - 0.22 + _HALF_W, y_b), (cx + 0.22 - _HALF_W, y_b), trains=True)
    _arrow(
        fig,
        (cx + 0.22, _ROWS["A"] - _HALF_H),
        (cx + 0.22, y_b + _HALF_H),
        trains=False,
        label="initialises",
    )
    # CommonInit: C of a third domain initialises both A and B.
    cx = 2.5
    _trains(fig, cx, "C", "domain C<br>(a third one)", "<b>model C</b>")
    _trains(fig, cx, "A", "domain A", "<b>model A'</b>")
    _trains(fig, cx, "B", "domain B<br>(few images)", "<b>model B</b>")
    start = (cx + 0.22, _ROWS["C"] - _HALF_H)
    _arrow(fig, start, (cx + 0.22, _ROWS["A"] + _HALF_H), trains=False, label="initialises")
    _elbow_arrow(
        fig, (cx + 0.22 + _HALF_W, _ROWS["C"]), (cx + 0.22 + _HALF_W, _ROWS["B"]), out=0.06
    )
    for i, title in enumerate(STRATEGIES):
        fig.add_annotation(
            x=i + 0.5, y=1.0, text=f"<b>{title}</b>", showarrow=False, font=dict(size=15)
        )
    for x in (1.0, 2.0):
        fig.add_shape(
            type="line",
            x0=x,
            x1=x,
            y0=0.02,
            y1=1.02,
            name="separator",
            line=dict(color="#d0d7de", width=1),
        )
    fig.update_xaxes(range=[0, 3], visible=False)
    fig.update_yaxes(range=[0, 1.06], visible=False)
    fig.update_layout(
        height=380,
        width=960,
        margin=dict(l=10, r=10, t=50, b=10),
        plot_bgcolor="white",
        showlegend=False,
        title="Three ways to build model B (after Zhang et al. 2020, Fig. 1)<br>"
        "<sup>grey arrows: the data trains the model; red arrows: the "
        "model's weights initialise the next one</sup>",
    )
    return fig
