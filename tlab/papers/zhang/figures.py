"""Zhang et al. (KDD 2020): the figures behind the panels of notebooks 02-05.

Each function draws from numbers the notebook already computed (cached evaluations, training
histories, predictions), so a panel redraws without touching a model. Rows of evaluations are
:meth:`tlab.papers.zhang.Lab.evaluate` results, one per seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from tlab.checks import check_choice
from tlab.notebook import plots
from tlab.papers.zhang import ablations
from tlab.papers.zhang.setup import role_label

Rows = Sequence[Mapping[str, Any]]


def depth_figure(
    depths: pd.DataFrame, frozen: int, seed: int, *, references: Mapping[str, float], total: int
) -> go.Figure:
    """Notebook 02 (Sec. 3.2): clean accuracy of FT against its frozen depth (mean ± std over
    seeds, with horizontal reference lines) beside the training history of one FT model.

    ``depths``: one row per (seed, frozen) with ``clean``, ``best_epoch``, ``epochs_run``,
    ``trainable`` and ``history`` (the zoo's per-epoch records); ``total``: the parameters of
    the whole model.
    """
    steps = sorted(set(depths["frozen"]))
    by_depth = depths.groupby("frozen")["clean"]
    accuracy = go.Figure()
    for name, value in references.items():
        accuracy.add_trace(
            go.Scatter(
                x=steps,
                y=[100 * value] * len(steps),
                mode="lines",
                name=name,
                line=dict(dash="dot"),
            )
        )
    accuracy.add_trace(
        go.Scatter(
            x=steps,
            y=100 * by_depth.mean(),
            mode="lines+markers",
            name="FT, clean",
            error_y=dict(
                type="data",
                array=100 * by_depth.std().fillna(0),
                visible=depths["seed"].nunique() > 1,
            ),
        )
    )
    accuracy.update_layout(xaxis_title="frozen stages k", yaxis_title="clean accuracy on B (%)")
    row = depths[(depths.frozen == frozen) & (depths.seed == seed)].iloc[0]
    fig = plots.side_by_side(
        [accuracy, _history_figure(pd.DataFrame(row["history"]))],
        titles=["clean accuracy vs frozen depth", f"training of FT (frozen {frozen}), seed {seed}"],
        title=(
            f"FT with {frozen} frozen stage(s): {row['trainable']:,} of {total:,} parameters "
            f"train ({row['trainable'] / total:.1%}); kept epoch {row['best_epoch']} of "
            f"{row['epochs_run']}; clean {row['clean']:.1%}"
        ),
        height=420,
    )
    fig.add_vline(x=frozen, line_dash="dash", line_color="grey", row=1, col=1)
    fig.add_vline(
        x=row["best_epoch"],
        line_dash="dash",
        line_color="grey",
        row=1,
        col=2,
        annotation_text="kept",
    )
    return fig


def _history_figure(history: pd.DataFrame) -> go.Figure:
    training = go.Figure()
    for column in ("train_loss", "val_loss", "val_accuracy"):
        training.add_trace(
            go.Scatter(
                x=history["epoch"],
                y=history[column],
                mode="lines+markers",
                name=column.replace("_", " "),
            )
        )
    training.update_layout(xaxis_title="epoch", yaxis_title="loss / accuracy (fraction)")
    training.update_xaxes(**plots.whole_number_ticks(history["epoch"]))
    return training


def whitebox_figure(
    white_box: Mapping[tuple[str, int], Sequence[Sequence[float]]],
    eps255: Sequence[float],
    at: int,
    chosen: tuple[str, int],
    *,
    over: str,
) -> go.Figure:
    """Notebook 03 (Sec. 5.1, Fig. 3): white-box accuracy against eps of the chosen model with
    Scratch and A on B, beside every model's accuracy at the ``at``-th eps.

    ``white_box[(role, frozen)]``: white-box accuracy per eps, one list per seed; ``over``
    says which seeds the means are over.
    """

    def mean_at(model: tuple[str, int]) -> float:
        return float(np.mean([row[at] for row in white_box[model]]))

    name = role_label(*chosen)
    series = {name: white_box[chosen]}
    for ref in ("Scratch", "A on B"):
        series.setdefault(ref, white_box[(ref, 0)])
    left = plots.mean_curves(eps255, series, x_title="eps", y_title="white-box accuracy")
    names = [role_label(*model) for model in white_box]
    values = [100 * mean_at(model) for model in white_box]
    gap = 100 * (mean_at(chosen) - mean_at(("Scratch", 0)))
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=["accuracy vs eps", f"every model at {eps255[at]:g}/255"]
    )
    for trace in left.data:
        fig.add_trace(trace, row=1, col=1)
    fig.add_trace(
        go.Bar(
            x=names,
            y=values,
            showlegend=False,
            text=[f"{v:.0f}%" for v in values],
            textposition="outside",
            marker_color=["#c0392b" if n == name else "#95a5a6" for n in names],
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title="eps (x 1/255)", row=1, col=1)
    fig.update_yaxes(title="white-box accuracy (%)", range=[0, 110])
    fig.update_layout(
        height=440,
        title=f"{name} at eps {eps255[at]:g}/255: "
        f"{100 * mean_at(chosen):.1f}% ({gap:+.1f} points "
        f"vs Scratch; {over})",
    )
    fig.add_vline(x=eps255[at], line_dash="dash", line_color="grey", row=1, col=1)
    fig.update_yaxes(range=[0, 110], row=1, col=2)
    return fig


def blackbox_figure(
    mine: Rows,
    scratch: Rows,
    a_on_b: Rows,
    eps255: Sequence[float],
    at: int,
    name: str,
    *,
    x_title: str,
) -> go.Figure:
    """Notebook 04 (Sec. 5.2, Figs. 4-5): black- and white-box accuracy of one model B against
    eps, with Scratch's black-box curve and A on B, and its gamma at the ``at``-th eps."""
    fig = plots.mean_curves(
        eps255,
        {
            f"{name}, black-box": [r["bb"] for r in mine],
            f"{name}, white-box": [r["wb"] for r in mine],
            "Scratch, black-box": [r["bb"] for r in scratch],
            "A on B": [r["wb"] for r in a_on_b],
        },
        x_title=x_title,
        y_title="adversarial accuracy",
    )
    fig.update_traces(line_dash="dash", selector=dict(name=f"{name}, white-box"))
    fig.update_traces(line_dash="dot", selector=dict(name="A on B"))
    fig.add_vline(x=eps255[at], line_dash="dot", line_color="grey")
    bb, wb = np.mean([r["bb"][at] for r in mine]), np.mean([r["wb"][at] for r in mine])
    gammas = [r["gamma"][at] for r in mine]
    g = np.mean(gammas) if np.all(np.isfinite(gammas)) else float("nan")
    fig.update_layout(
        title=f"{name} at eps {eps255[at]:g}/255 ({len(mine)} seed(s)): black-box "
        f"{bb:.1%}, white-box {wb:.1%}, gamma {g:+.3f}" + ("  <-- below 0" if g < 0 else "")
    )
    return fig


def transfer_gallery(
    images: torch.Tensor,
    adversarial: torch.Tensor,
    predictions: tuple[torch.Tensor, ...],
    labels: torch.Tensor,
    classes: Sequence[str],
    *,
    eps: float,
    names: tuple[str, str],
    count: int,
    seed: int,
) -> go.Figure:
    """Notebook 04 (Sec. 3.4.2): images that the attacker's examples carry over to B.

    ``predictions`` = (attacker clean, attacker adversarial, B clean, B adversarial) at this
    eps; shown are images both models get right whose example fools both (else the attacker
    only), at most ``count``. ``names`` = (attacker, B).
    """
    a_clean, a_adv, b_clean, b_adv = predictions
    attacker, name = names
    both_right = (a_clean == labels) & (b_clean == labels)
    fool_a, fool_b = a_adv != labels, b_adv != labels
    both = both_right & fool_a & fool_b
    idx = (both if both.any() else both_right & fool_a).nonzero().flatten()[:count]
    if not len(idx):
        return plots.curves(
            [],
            {},
            x_title="",
            y_title="",
            title=f"B = {name}, eps "
            f"{eps * 255:g}/255: no image both models get right fools {attacker}",
        )
    counts = (
        f"of {int(both_right.sum())} images both get right, "
        f"{int((both_right & fool_a).sum())} fool {attacker}, "
        f"{int((both_right & fool_b).sum())} fool {name}, {int(both.sum())} fool both"
    )
    note = "fool both" if both.any() else f"fool {attacker} only (none fools both)"

    def label(p_a: torch.Tensor, p_b: torch.Tensor, j: int) -> str:
        return f"{attacker} {classes[int(p_a[j])]} · B {classes[int(p_b[j])]}"

    return plots.attack_gallery(
        images[idx].cpu(),
        adversarial[idx].cpu(),
        [label(a_clean, b_clean, j) for j in idx.tolist()],
        [label(a_adv, b_adv, j) for j in idx.tolist()],
        eps=eps,
        title=f"B = {name}, seed {seed}, eps {eps * 255:g}/255. Shown: {note}<br>{counts}",
    )


def ablation_figure(
    table: pd.DataFrame, ablation: str, *, metric: str = "clean", eps: int = 8, depth: str = "0"
) -> go.Figure:
    """Notebook 05 (Sec. 6, Figs. 6-9), from :func:`~tlab.papers.zhang.ablations.results`'s table.
    Left: Scratch and FT (and A on B) per variant, mean ± std over seeds. Right: the paired
    FT − Scratch gain. ``metric`` is ``clean``, ``wb``, ``bb`` or ``gamma``; ``eps`` in x/255."""
    names = ablations.METRICS
    check_choice("metric", metric, tuple(names))
    part = ablations.pick(table, ablation, eps)
    percent = metric != "gamma"
    scale = 100 if percent else 1
    order = part.drop_duplicates("variant").sort_values("position")["variant"].tolist()
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            ablations.METRICS[metric],
            f"FT (frozen {depth}) − Scratch, paired by seed",
        ),
    )
    shown = [
        ("Scratch", part[part["role"] == "Scratch"]),
        (f"FT (frozen {depth})", part[(part["role"] == "FT") & (part["depth"] == depth)]),
        ("A on B (no tuning)", part[part["role"] == "A on B"]),
    ]
    for name, rows in shown:
        if rows.empty:
            continue
        stats = rows.groupby("variant")[metric].agg(["mean", "std"]).reindex(order)
        fig.add_trace(
            go.Scatter(
                x=order,
                y=stats["mean"] * scale,
                name=name,
                mode="lines+markers",
                error_y=dict(type="data", array=stats["std"].fillna(0) * scale),
                line=dict(dash="dot") if name.startswith("A on B") else None,
            ),
            row=1,
            col=1,
        )
    gain = (
        ablations.gains(table, ablation, eps, depth).groupby("variant")[metric].agg(["mean", "std"])
    )
    gain = gain.reindex(order)
    fig.add_trace(
        go.Bar(
            x=order,
            y=gain["mean"] * scale,
            name="FT − Scratch",
            error_y=dict(type="data", array=gain["std"].fillna(0) * scale),
            marker_color="grey",
        ),
        row=1,
        col=2,
    )
    seeds = sorted(set(part["seed"]))
    at = "" if metric == "clean" else f" at eps {eps}/255"
    fig.update_layout(
        title=f"{ablations.ABLATIONS[ablation]}: {names[metric]}{at} (seeds {seeds}; bars: ± std)",
        height=420,
    )
    unit = " (%)" if percent else ""
    fig.update_yaxes(title_text=f"{metric}{unit}", row=1, col=1)
    fig.update_yaxes(title_text=f"difference{' (points)' if percent else ''}", row=1, col=2)
    return fig
