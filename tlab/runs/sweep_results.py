"""Collecting a batch run's points into one tidy table, its summary figures and pages."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from tlab.runs.execute import declared_parameters
from tlab.runs.grid import TABLE_COLUMNS, Point

RESULT_FILE = "result.json"


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _read_result(path: Path) -> dict[str, Any] | None:
    """A point's result, finished or failed; None if it never ran or its file is unreadable
    (which only a crash of the file system could cause: results are written atomically)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _column(values: list[Any]):
    """A parameter column with one dtype (ints mix with floats; missing values stay missing);
    anything else becomes JSON text, so that the Parquet file can be written."""
    import pandas as pd

    kinds = {type(v) for v in values if v is not None}
    dtype = {
        frozenset({int}): "Int64",
        frozenset({float}): "float64",
        frozenset({int, float}): "float64",
        frozenset({bool}): "boolean",
        frozenset({str}): "str",
    }.get(frozenset(kinds))
    if dtype is None:
        return pd.array(
            [None if v is None else json.dumps(v, sort_keys=True) for v in values], dtype="str"
        )
    return pd.array(values, dtype=dtype)


def _values(points: list[Point], notebook: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The parameter names of the points, and each point's values with the notebook's default
    for parameters the point does not set."""
    names = list(dict.fromkeys(name for p in points for name in p.parameters))
    declared = declared_parameters(notebook)
    defaults = {n: declared[n].value for n in names if n in declared}
    return names, [{n: p.parameters.get(n, defaults.get(n)) for n in names} for p in points]


def collect(out_dir: Path, notebook: Path, points: list[Point]):
    """The tidy results table (one row per point and metric; see the module docstring)."""
    import pandas as pd

    names, values = _values(points, notebook)
    rows = []
    for point, point_values in zip(points, values, strict=True):
        result = _read_result(out_dir / point.id / RESULT_FILE)
        status = (
            "not run" if result is None else ("ok" if result.get("complete") is True else "failed")
        )
        metrics = result.get("metrics", {}) if result is not None and status == "ok" else {}
        common = {"point_id": point.id, "status": status, **point_values}
        tail = {
            "seconds": None if result is None else result.get("seconds"),
            "error": "" if result is None else result.get("error", ""),
            "notebook": f"{point.id}/{notebook.name}",
        }
        rows += [
            {**common, "metric": m, "value": float(v), **tail} for m, v in metrics.items()
        ] or [{**common, "metric": None, "value": float("nan"), **tail}]
    columns = ["point_id", "status", *names, "metric", "value", "seconds", "error", "notebook"]
    table = pd.DataFrame(rows, columns=columns)
    for name in names:
        table[name] = _column([row[name] for row in rows])
    table["value"] = table["value"].astype("float64")
    table["seconds"] = table["seconds"].astype("float64")
    return table


def _varied(table) -> list[str]:
    names = [c for c in table.columns if c not in TABLE_COLUMNS]
    return [n for n in names if table[n].nunique(dropna=False) > 1]


def summary_figures(table) -> list:
    """One plotly figure per recorded metric and varied parameter: the metric against the
    parameter, one line per combination of the other varied parameters. Parameters with fewer
    than two values among the finished points give no figure."""
    done = table[(table["status"] == "ok") & table["metric"].notna()]
    varied = _varied(done)
    return [
        metric_figure(done, metric, x, [n for n in varied if n != x])
        for metric in dict.fromkeys(done["metric"])
        for x in varied
        if done[(done["metric"] == metric) & done[x].notna()][x].nunique() >= 2
    ]


def metric_figure(table, metric: str, x: str, others: list[str]):
    """``metric`` against parameter ``x`` over the finished points of ``table``, one line per
    combination of the ``others`` parameters (notebook 12's panel, the sweep's summary)."""
    import pandas as pd
    import plotly.graph_objects as go

    rows = table[(table["metric"] == metric) & table[x].notna()]
    fig = go.Figure()
    groups = rows.groupby(others, dropna=False, sort=True) if others else [((), rows)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = (
            ", ".join(f"{n}={'?' if pd.isna(v) else v}" for n, v in zip(others, key, strict=True))
            or metric
        )
        group = group.sort_values(x, key=lambda col: col.map(_sort_key))
        fig.add_trace(
            go.Scatter(
                x=group[x].tolist(), y=group["value"].tolist(), mode="lines+markers", name=label
            )
        )
    fig.update_layout(
        title=f"{metric} vs {x}",
        xaxis_title=x,
        yaxis_title=metric,
        height=380,
        margin=dict(l=50, r=20, t=50, b=40),
    )
    return fig


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def _points_table(table) -> str:
    per_point = table.drop_duplicates("point_id")
    metrics = (
        table.pivot_table(index="point_id", columns="metric", values="value", aggfunc="first")
        if table["metric"].notna().any()
        else None
    )
    params = [c for c in table.columns if c not in TABLE_COLUMNS]
    metric_names = [] if metrics is None else list(metrics.columns)
    head = "".join(
        f"<th>{html.escape(str(c))}</th>"
        for c in ["point", "status", *params, *metric_names, "seconds", "error"]
    )
    body = []
    for _, row in per_point.iterrows():
        values = (
            []
            if metrics is None or row["point_id"] not in metrics.index
            else [metrics.loc[row["point_id"], m] for m in metric_names]
        )
        cells = [
            f"<a href='{html.escape(row['notebook'])}'>{html.escape(row['point_id'])}</a>",
            html.escape(row["status"]),
            *(html.escape(str(row[p])) for p in params),
            *(f"{v:.4g}" for v in values),
            "" if row["seconds"] != row["seconds"] else f"{row['seconds']:.1f}",
            html.escape(str(row["error"] or "")),
        ]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table border='1' cellpadding='4'><tr>{head}</tr>{''.join(body)}</table>"


def write_outputs(out_dir: Path, notebook: Path, points: list[Point]):
    """Write ``results.csv``, ``results.parquet`` and ``summary.html``; returns the table and
    the paths."""
    from plotly.offline import get_plotlyjs

    table = collect(out_dir, notebook, points)
    files = {
        "csv": out_dir / "results.csv",
        "parquet": out_dir / "results.parquet",
        "html": out_dir / "summary.html",
    }
    table.to_csv(files["csv"], index=False)
    table.to_parquet(files["parquet"], index=False)
    script = out_dir / "plotly.min.js"
    if not script.exists():
        script.write_text(get_plotlyjs(), encoding="utf-8")
    figures = summary_figures(table)
    counts = table.drop_duplicates("point_id")["status"].value_counts().to_dict()
    plots = "\n".join(f.to_html(full_html=False, include_plotlyjs=False) for f in figures) or (
        "<p>No metric to plot: call <code>tlab.record.record({...})</code> at the end of the "
        "notebook, or vary a parameter.</p>"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>sweep of "
        f"{html.escape(notebook.name)}</title><script src='plotly.min.js'></script></head>"
        f"<body><h1>Sweep of {html.escape(notebook.name)}</h1><p>{timestamp()}: "
        f"{len(points)} points; "
        + ", ".join(f"{n} {html.escape(k)}" for k, n in sorted(counts.items()))
        + f"</p>{plots}<h2>Points</h2>{_points_table(table)}</body></html>"
    )
    files["html"].write_text(page, encoding="utf-8")
    return table, files


def mean_difference(wide, by: str, better: str, worse: str):
    """Per value of parameter ``by``, the mean over points of ``wide[better] - wide[worse]``
    (a pandas Series indexed by ``by``): e.g. fine-tuning's clean-accuracy advantage over
    training from scratch per target-set size n_B (Zhang et al. 2020, Sec. 6.1, Fig. 6)."""
    return (wide[better] - wide[worse]).groupby(wide[by]).mean()
