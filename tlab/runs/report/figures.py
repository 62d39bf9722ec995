"""The report's figures: per paper, the paper's own numbers on the lab's axes."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tlab.papers.davchev.paper_table import PAPER_TABLE1
from tlab.papers.davchev.setup import COLUMNS
from tlab.papers.davchev.verdicts import paper_d1_ratios
from tlab.papers.zhang.setup import paper_eps_to_pixels
from tlab.runs.report.inputs import Report, Run

PAPER_MARKER = dict(symbol="star", size=15, line=dict(width=1, color="#222"))
BOUND_MARKER = {"above": "triangle-up", "below": "triangle-down"}
PRESET_DASH = {"smoke": "dot", "quick": "dashdot", "standard": "solid", "paper": "dash"}
PRESET_BAR = {"smoke": "#c5cae9", "quick": "#7986cb", "standard": "#3949ab", "paper": "#1a237e"}
ROLE_COLOR = {"Scratch": "#1f77b4", "CommonInit": "#2ca02c", "FT": "#d62728"}
FT_SHADES = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
#: A role's label and colour; a curve: (attack, label, colour).
Role: TypeAlias = tuple[str, str]
Curve: TypeAlias = tuple[str, str, str]
#: A point of a curve: (eps x 255, accuracy).
Point: TypeAlias = tuple[float, float]
K = TypeVar("K")
V = TypeVar("V")
_CURVE = re.compile(r"^(wb|bb)(\d+(?:[.p]\d+)?)_(scratch|commoninit|ft(\d+))$")


def _role(name: str, depth: str | None) -> Role:
    """``(label, colour)`` of a metric's role suffix (``scratch``, ``commoninit``, ``ftK``)."""
    if depth is not None:
        return f"FT-{depth}", FT_SHADES[int(depth) % len(FT_SHADES)]
    role = {"scratch": "Scratch", "commoninit": "CommonInit"}[name]
    return role, ROLE_COLOR[role]


def zhang_curves(metrics: Mapping[str, float]) -> dict[Curve, list[Point]]:
    """``(attack, role label, colour) -> [(eps x 255, accuracy)]`` from metrics named as
    notebooks 03 and 04 record them (``wb8_scratch``, ``bb0p5_ft4``: attack ``wb`` or ``bb``,
    eps x 255, role)."""
    curves: dict[Curve, list[Point]] = {}
    for name, value in metrics.items():
        match = _CURVE.match(name)
        if match and math.isfinite(value):
            curve = (match.group(1), *_role(match.group(3), match.group(4)))
            curves.setdefault(curve, []).append((float(match.group(2).replace("p", ".")), value))
    return {curve: sorted(points) for curve, points in sorted(curves.items())}


def first_values(
    runs: Iterable[Run], preset: str, values: Callable[[Run], Mapping[K, V]]
) -> dict[K, tuple[V, str]]:
    """Per key of ``values(run)``, its value in the first run (by folder) of ``preset`` that has
    it, and that run's folder: a figure's quantities may come from several notebooks."""
    out: dict[K, tuple[V, str]] = {}
    for run in runs:
        if run.preset == preset:
            for key, value in values(run).items():
                out.setdefault(key, (value, run.source))
    return out


def _paper_eps(text: str) -> float:
    """A paper's eps as written in ``paper_numbers.yaml`` ("0.125" or "16/255"), in the lab's
    [0, 1] pixel units."""
    top, _, bottom = str(text).partition("/")
    return paper_eps_to_pixels(float(top) / float(bottom or 1))


def zhang_figure(report: Report) -> go.Figure:
    """Zhang et al.: white-box and black-box FGSM accuracy vs eps (Secs. 5.1-5.2, Figs. 3, 4, 6),
    the lab's curves per preset and the paper's numbers as stars (a triangle: a bound)."""
    attacks = {"white-box": "wb", "black-box": "bb"}
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("white-box FGSM on B", "black-box: FGSM crafted on A, no query to B"),
    )
    shown: set[str] = set()  # legend entries already drawn (one per name, both panels)

    def legend(name: str) -> dict[str, Any]:
        first = name not in shown
        shown.add(name)
        return {"name": name, "legendgroup": name, "showlegend": first}

    lab = {
        preset: first_values(report.runs, preset, lambda r: zhang_curves(r.metrics))
        for preset in report.presets
    }
    for col, (attack, key) in enumerate(attacks.items(), 1):
        for preset, curves in lab.items():
            for (curve_attack, role, colour), (points, source) in curves.items():
                if curve_attack != key:
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=[p[0] for p in points],
                        y=[100 * p[1] for p in points],
                        mode="lines+markers",
                        line=dict(color=colour, dash=PRESET_DASH[preset]),
                        hovertext=source,
                        **legend(f"lab {preset}: {role}"),
                    ),
                    row=1,
                    col=col,
                )
        for point in report.numbers.figures["zhang"]:
            if point["attack"] != attack:
                continue
            bound = point.get("lower_bound")
            fig.add_trace(
                go.Scatter(
                    x=[_paper_eps(point["eps"]) * 255],
                    y=[100 * point["accuracy"]],
                    mode="markers",
                    name=f"paper: {point['role']}, {point['task']}",
                    marker=PAPER_MARKER
                    | dict(
                        color=ROLE_COLOR[point["role"]],
                        symbol=BOUND_MARKER["above"] if bound else "star",
                    ),
                    hovertext=f"{point['task']}; {point['where']}"
                    + (" (a lower bound)" if bound else ""),
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="eps x 255, [0, 1] pixels (the papers' [-1, 1] eps halved)")
    fig.update_yaxes(title_text="adversarial accuracy, % of correctly classified", range=[0, 102])
    fig.update_layout(
        title="Zhang et al.: the paper's numbers (stars) on the lab's curves (lines, per preset)",
        height=480,
    )
    return fig


#: The Table 1 cells of Davchev et al. the lab records (notebooks 07 and 08): metric -> (label,
#: Table 1 row, columns averaged). ``d2_fgsm_predicted`` (FGSM with the predicted labels on the
#: network FGSM-trained with the true labels) has no cell in Table 1 and is left out.
DAVCHEV_CELLS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "d1_pgd_source_bb": ("D1: R_pgd->nat block, BB", "R_pgd->nat 18", ("BB-FGSM", "BB-PGD")),
    "d1_fgsm_source_bb": ("D1: R_fgsm->nat block, BB", "R_fgsm->nat 18", ("BB-FGSM", "BB-PGD")),
    "d2_clean": ("D2: FGSM-trained, clean", "R_fgsm_no_ll", ("Natural",)),
    "d2_fgsm_true": ("D2: FGSM-trained, FGSM true labels", "R_fgsm_no_ll", ("WB-FGSM",)),
    "d3_pgd_pgd_all_wb_pgd": ("D3: R_pgd->pgd all, WB-PGD", "R_pgd->pgd 56", ("WB-PGD",)),
    "d3_pgd_wb_pgd": ("D3: R_pgd, WB-PGD", "R_pgd", ("WB-PGD",)),
}


def metrics_among(names: Iterable[str]) -> Callable[[Run], dict[str, float]]:
    """A function giving the metrics of a run among ``names``."""
    wanted = set(names)
    return lambda run: {k: v for k, v in run.metrics.items() if k in wanted}


def davchev_paper_cell(row: str, columns: Sequence[str]) -> float:
    """The mean of ``columns`` of ``row`` in Davchev et al.'s Table 1
    (:data:`tlab.papers.davchev.paper_table.PAPER_TABLE1`), in %."""
    values = [PAPER_TABLE1[row][COLUMNS.index(c)] for c in columns]
    return sum(values) / len(values)


def davchev_figure(report: Report) -> go.Figure:
    """Davchev et al.: the Table 1 cells behind D1-D3 (BB = mean of BB-FGSM and BB-PGD), and
    D1's transferred ratio (Sec. 3.1: black-box accuracy of ``R_<src>->nat k`` over that of
    ``R_<src>``, per strategy; :func:`tlab.papers.davchev.verdicts.paper_d1_ratios` computes the
    paper's from its Table 1); the paper's as stars, the lab's recorded means as bars."""
    ratios = paper_d1_ratios().iloc[0]
    ratio_keys = {
        f"d1_ratio_{src}_{k}": (f"{src.upper()} source, {k}", (src, k)) for src, k in ratios.index
    }
    panels = {
        "cells": {
            k: (label, davchev_paper_cell(row, cols), 100.0)
            for k, (label, row, cols) in DAVCHEV_CELLS.items()
        },
        "ratios": {
            k: (label, float(ratios[column]), 1.0) for k, (label, column) in ratio_keys.items()
        },
    }
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.6, 0.4],
        subplot_titles=(
            "Table 1 cells behind D1-D3",
            "D1: transferred ratio of black-box robustness (1 / block / all retrained)",
        ),
    )
    for col, cells in enumerate(panels.values(), 1):
        labels = [label for label, _, _ in cells.values()]
        for preset in report.presets:
            found = first_values(report.runs, preset, metrics_among(cells))
            if found:
                fig.add_trace(
                    go.Bar(
                        x=labels,
                        y=[
                            scale * found[k][0] if k in found else None
                            for k, (_, _, scale) in cells.items()
                        ],
                        name=f"lab {preset}",
                        legendgroup=preset,
                        showlegend=col == 1,
                        marker_color=PRESET_BAR[preset],
                        hovertext=[found[k][1] if k in found else "not recorded" for k in cells],
                    ),
                    row=1,
                    col=col,
                )
        fig.add_trace(
            go.Scatter(
                x=labels,
                y=[paper for _, paper, _ in cells.values()],
                mode="markers",
                name="paper, Table 1 (CIFAR100 -> CIFAR10, ResNet56)",
                legendgroup="paper",
                showlegend=col == 1,
                marker=PAPER_MARKER | dict(color="#222"),
            ),
            row=1,
            col=col,
        )
    fig.update_yaxes(title_text="accuracy, %", range=[0, 102], row=1, col=1)
    fig.update_yaxes(title_text="BB accuracy / R_<src>'s", row=1, col=2)
    fig.update_layout(
        title="Davchev et al.: the paper's Table 1 (stars) and the lab's (bars)",
        barmode="group",
        height=500,
    )
    return fig


def wang_lab_values(claims: Iterable[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Per-seed numbers behind W1 and W3, read from the parts of the claims as
    :func:`tlab.papers.wang.verdicts.attack_claims` and ``fingerprint_claims`` build them: W1's
    parts "deep > mid" and "mid > full" give each student kind's targeted success (the two sides
    of each paired part), W3's "true teacher" and "other candidates" their Gini values."""
    out: dict[str, list[float]] = {}
    for claim in claims:
        for part in claim.get("parts") or []:
            evidence = part.get("evidence") or {}
            if claim["code"] == "W1":
                left, sep, right = part["statement"].partition(" > ")
                if sep:
                    out.setdefault(left.strip(), evidence.get("better", []))
                    out.setdefault(right.strip(), evidence.get("worse", []))
            elif claim["code"] == "W3":
                out.setdefault(part["statement"], evidence.get("values", []))
    return out


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def wang_figure(report: Report) -> go.Figure:
    """Wang et al.: targeted mimicry success by student kind (Sec. 4.2) and the fingerprint
    Gini of the true teacher vs the other candidates (Sec. 5.1, with the 0.1 cut-off); the
    paper's as stars (triangles: bounds), the lab's seed means as bars per preset."""
    paper = report.numbers.figures["wang"]
    panels = {panel: [k for k in paper[panel] if k != "where"] for panel in ("success", "gini")}
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            f"targeted success by student kind ({paper['success']['where']})",
            f"fingerprint Gini ({paper['gini']['where']})",
        ),
    )
    for preset in report.presets:
        found = first_values(report.runs, preset, lambda r: wang_lab_values(r.claims))
        for col, (panel, keys) in enumerate(panels.items(), 1):
            scale = 100 if panel == "success" else 1
            means = [_mean(found[k][0]) if k in found else None for k in keys]
            fig.add_trace(
                go.Bar(
                    x=keys,
                    y=[None if m is None else scale * m for m in means],
                    name=f"lab {preset}",
                    legendgroup=preset,
                    showlegend=col == 1,
                    marker_color=PRESET_BAR[preset],
                    hovertext=[
                        f"{found[k][1]}; per seed: {found[k][0]}" if k in found else "not recorded"
                        for k in keys
                    ],
                ),
                row=1,
                col=col,
            )
    for col, (panel, keys) in enumerate(panels.items(), 1):
        scale = 100 if panel == "success" else 1
        entries = [paper[panel][k] for k in keys]
        fig.add_trace(
            go.Scatter(
                x=keys,
                y=[scale * e["value"] for e in entries],
                mode="markers",
                name="paper" if col == 1 else "paper (bound)",
                marker=PAPER_MARKER
                | dict(
                    color="#222", symbol=[BOUND_MARKER.get(e.get("bound"), "star") for e in entries]
                ),
                hovertext=[e["task"] for e in entries],
            ),
            row=1,
            col=col,
        )
    fig.add_hline(y=0.1, line_dash="dash", line_color="#888", row=1, col=2)
    fig.update_yaxes(title_text="targeted success, %", range=[0, 102], row=1, col=1)
    fig.update_yaxes(title_text="Gini coefficient", range=[0, 1.02], row=1, col=2)
    fig.update_layout(
        title="Wang et al.: the paper's numbers (stars; triangles are bounds) and the lab's (bars)",
        barmode="group",
        height=460,
    )
    return fig


FIGURES = {"zhang": zhang_figure, "davchev": davchev_figure, "wang": wang_figure}
