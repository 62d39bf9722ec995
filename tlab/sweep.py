"""Batch runs: one notebook over a grid of parameters, on this machine or a Dask cluster.

Quick start (README snippet)
----------------------------
Write the grid as YAML (``examples/grids/00_eps_seed.yaml`` is a commented example)::

    EPS: [0.0, 0.0314, 0.0627]   # every parameter with a list of values is an axis
    SEED: [0, 1]                 # 3 x 2 = 6 points (the cartesian product)
    fixed:                       # optional: the same value at every point
      PRESET: quick
    explicit:                    # optional: extra points appended after the product
      - {EPS: 0.125, SEED: 0}

and run it::

    python -m tlab sweep 00 --grid examples/grids/00_eps_seed.yaml --workers 2
    python -m tlab sweep 00 --grid ... --scheduler tcp://scheduler-host:8786  # a running cluster

To get numbers into the table, the notebook ends with ``tlab.record.record({...})`` (see
:mod:`tlab.record`); a notebook that records nothing still gets one row per point (status, time).

Each point runs the notebook headless with papermill (kernel ``python3``, working folder = the
notebook's folder) in a Dask worker process; the kernel gets ``TLAB_RECORD_DIR`` = the point's
folder in its environment, so the notebook needs no extra parameter. A progress bar shows
done / failed / remaining. Results land in ``--out`` (default ``runs/sweep-<notebook>``)::

    OUT/<point-id>/<notebook>.ipynb   the executed notebook
    OUT/<point-id>/point.json         the point's parameters (written before it starts)
    OUT/<point-id>/record.json        what the notebook recorded with tlab.record.record(...)
    OUT/<point-id>/result.json        status, error, time, metrics; "complete": true when done
    OUT/results.csv, results.parquet  the tidy table (below)
    OUT/summary.html                  each metric against each varied parameter (plotly)
    OUT/sweep.json                    which notebook and grid made this folder

The grid format
---------------
A YAML mapping. Every key other than ``fixed`` and ``explicit`` names a notebook parameter and
holds a non-empty list of values; the points are the cartesian product of these lists, in file
order with the last axis varying fastest. ``explicit`` is a list of mappings, each one more point
(with only the parameters it names, plus ``fixed``). ``fixed`` is a mapping applied to every
point; a parameter may not be both fixed and varied. Points that come out identical are run once.

Before anything runs, each parameter is checked against the notebook's ``parameters`` cell
(``papermill.inspect_notebook``): an undeclared name, or a value whose type differs from the
declared default's (an int is accepted, and converted, for a float), is an error. Note that YAML
reads ``1e-3`` as text: write ``1.0e-3``.

Point ids
---------
``<slug>-<hash>``, e.g. ``EPS-0.0314_SEED-1-3f9c2a1b``: the slug shows the point's non-fixed
parameters, the hash is the first 8 hex digits of the SHA-256 of all its parameters (sorted JSON).
The same parameters always give the same id, so a rerun finds earlier results.

Resuming and failures
---------------------
A point is done when its ``result.json`` says ``"complete": true`` (written last, atomically, only
after the notebook ran to the end). Rerunning the same command skips done points and runs the
rest, including failed ones. A failing point writes ``status: "failed"`` and the error into its
``result.json`` and does not stop the others; the command then exits 1. Ctrl-C cancels what is
queued and leaves no point marked complete that did not finish.

The table
---------
``results.csv`` / ``results.parquet`` are tidy (long): one row per point and recorded metric,
with columns ``point_id, status, <one column per parameter>, metric, value, seconds, error,
notebook``. A point that recorded no metric (or failed) has one row with empty ``metric`` and
``value``. A parameter that a point does not set shows the notebook's default (when that is a
plain value or plain arithmetic, like ``16 / 255``). Pivot the table to one row per point with
``df.pivot_table(index="point_id", columns="metric", values="value")``.

Clusters
--------
Without ``--scheduler`` a ``LocalCluster`` of ``--workers`` processes with one thread each is
started (default: as many as there are CPUs, at most one per point). The CPUs are shared out
between their notebook kernels (2 workers on 4 CPUs: 2 torch threads per kernel), so kernels do
not oversubscribe the cores, and they do not inherit dask's ``MALLOC_TRIM_THRESHOLD_`` setting
(see :func:`local_kernel_env`).

With ``--scheduler`` the existing cluster's workers run the points: they need tlab installed,
the notebook at the same path, and the output folder on a shared file system. Their kernels
inherit the workers' environment: with dask's defaults that is one OpenMP thread and
``MALLOC_TRIM_THRESHOLD_=65536``, which slows PyTorch (2.4x for the batched mimicry attack);
set ``distributed.nanny.pre-spawn-environ`` in the workers' dask configuration to change either.

Several workers asking the zoo for the same model train it once (the zoo's per-key file lock);
the others wait and load it.
"""

from __future__ import annotations

import ast
import hashlib
import html
import itertools
import json
import logging
import operator
import os
import re
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import papermill
import yaml
from jupyter_client import AsyncKernelManager
from traitlets import Dict
from traitlets.config import Config

from tlab.catalog import find_notebook
from tlab.checks import check_positive_int
from tlab.errors import TlabError
from tlab.paths import writable_dir
from tlab.record import (
    POINT_FILE,
    RECORD_DIR_ENV,
    RECORD_FILE,
    library_versions,
    read_complete,
    write_json_atomic,
)

RESULT_FILE = "result.json"
MANIFEST_FILE = "sweep.json"
GRID_KEYS = ("fixed", "explicit")
#: Column names of the results table; a notebook parameter may not use them.
TABLE_COLUMNS = ("point_id", "status", "metric", "value", "seconds", "error", "notebook")
CONNECT_TIMEOUT = 5.0


# ------------------------------------------------------------------ grid


@dataclass(frozen=True)
class Point:
    """One run of the notebook: its stable id and the parameters papermill injects."""

    id: str
    parameters: dict[str, Any]
    fixed: tuple[str, ...] = ()


def _check_json_able(where: str, value: Any) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TlabError(f"{where}: value {value!r} is not a plain number, text, list or "
                        f"mapping ({exc}); quote it in the YAML file") from exc


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise TlabError(f"{where}: {name!r} is not a parameter name (a Python identifier)")
    if name in TABLE_COLUMNS:
        raise TlabError(f"{where}: a parameter may not be called {name!r}; the results table "
                        f"uses the columns {', '.join(TABLE_COLUMNS)}")
    return name


def load_grid(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The grid from a YAML file (or an already loaded mapping), not yet expanded."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    try:
        grid = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TlabError(f"cannot read the grid file {path} ({exc.strerror or exc}); give the "
                        "path of a YAML grid, e.g. examples/grids/00_eps_seed.yaml") from exc
    except yaml.YAMLError as exc:
        detail = str(exc).replace("\n", " ")
        raise TlabError(f"the grid file {path} is not valid YAML: {detail}") from exc
    if grid is None:
        raise TlabError(f"the grid {path} is empty; give each parameter to vary a list of values, "
                        "e.g. 'EPS: [0.0, 0.03]'")
    if not isinstance(grid, dict):
        raise TlabError(f"the grid {path} must be a YAML mapping of parameter -> list of values "
                        f"(plus optional fixed: and explicit:), not a {type(grid).__name__}")
    return grid


def expand_grid(grid: Mapping[str, Any]) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The grid's points (cartesian product, then ``explicit``, each with ``fixed``) and the
    names of the fixed parameters. Duplicates are kept here; :func:`plan_points` drops them."""
    fixed = grid.get("fixed") or {}
    explicit = grid.get("explicit") or []
    if not isinstance(fixed, Mapping):
        raise TlabError("grid 'fixed:' must be a mapping of parameter -> value, e.g. "
                        "'fixed: {PRESET: quick}'")
    if not isinstance(explicit, list) or not all(isinstance(p, Mapping) for p in explicit):
        raise TlabError("grid 'explicit:' must be a list of mappings, e.g. "
                        "'explicit: [{EPS: 0.1, SEED: 3}]'")
    axes = {k: v for k, v in grid.items() if k not in GRID_KEYS}
    for name, values in axes.items():
        _check_name(name, "grid")
        if not isinstance(values, list):
            raise TlabError(f"grid: {name} must be a list of values, e.g. '{name}: [{values!r}]'; "
                            "put a single value under 'fixed:'")
        if not values:
            raise TlabError(f"grid: {name} has no values, so the grid has no points; "
                            "give it at least one value or remove it")
        for value in values:
            _check_json_able(f"grid: {name}", value)
    for name, value in fixed.items():
        _check_name(name, "grid fixed")
        _check_json_able(f"grid fixed: {name}", value)
        if name in axes:
            raise TlabError(f"grid: {name} is both varied and fixed; keep only one of them")
    for number, point in enumerate(explicit, 1):
        for name, value in point.items():
            _check_name(name, f"grid explicit point {number}")
            _check_json_able(f"grid explicit point {number}: {name}", value)
            if name in fixed:
                raise TlabError(f"grid explicit point {number} sets {name}, which is fixed; "
                                f"remove it from the point or from 'fixed:'")
    points = ([dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
              if axes else [])
    points += [dict(p) for p in explicit]
    if not points:
        raise TlabError("the grid has no points; give each parameter to vary a list of values "
                        "(e.g. 'EPS: [0.0, 0.03]') or list points under 'explicit:'")
    return [{**fixed, **p} for p in points], tuple(fixed)


def _slug_value(value: Any) -> str:
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def point_id(parameters: Mapping[str, Any], fixed: tuple[str, ...] = ()) -> str:
    """``<slug>-<hash>``: readable non-fixed parameters, and a hash of all of them."""
    text = json.dumps(dict(parameters), sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    shown = [f"{name}-{_slug_value(parameters[name])}" for name in sorted(parameters)
             if name not in fixed]
    slug = re.sub(r"[^A-Za-z0-9._+=-]+", "", "_".join(shown))[:60].strip("_-.") or "point"
    return f"{slug}-{digest}"


# ------------------------------------------------------------------ the notebook's parameters


_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": list,
          "dict": dict}
_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
               ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}


@dataclass(frozen=True)
class DeclaredParameter:
    """A parameter of a notebook: its default (source text) and the type a value must have
    (``None``: any type is accepted, e.g. for a ``None`` default)."""

    name: str
    default: str
    expected: type | None
    none_ok: bool
    value: Any = None  # the default's value when it is a plain value or arithmetic, else None


def _arithmetic(node: ast.AST) -> float | int:
    """Evaluate a default like ``16 / 255``: numbers and + - * / // % only, nothing else."""
    # isinstance() for the type checker; type() leaves out bool
    if (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and type(node.value) in (int, float)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _arithmetic(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](_arithmetic(node.left), _arithmetic(node.right))
    raise ValueError("not plain arithmetic")


def _default_value(source: str) -> Any:
    """The value of a default written as a literal or plain arithmetic; None otherwise."""
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            return _arithmetic(ast.parse(source, mode="eval").body)
        except (ValueError, SyntaxError, ZeroDivisionError):
            return None  # an expression we do not evaluate: any value is accepted


def _default_type(value: Any) -> tuple[type | None, bool]:
    if value is None:
        return None, True
    kind = list if isinstance(value, tuple) else type(value)
    return (kind, False) if kind in (int, float, str, bool, list, dict) else (None, True)


def _annotation_type(annotation: str) -> tuple[type | None, bool]:
    none_ok = "Optional" in annotation or re.search(r"\bNone\b", annotation) is not None
    inner = re.sub(r"^(typing\.)?Optional\[(.*)\]$", r"\2", annotation.strip())
    parts = [p.strip() for p in inner.split("|") if p.strip() != "None"]
    if len(parts) != 1:
        return None, True
    return _TYPES.get(parts[0].split("[")[0].removeprefix("typing.").lower()), none_ok


def declared_parameters(notebook: Path) -> dict[str, DeclaredParameter]:
    """The notebook's parameters (from its cell tagged ``parameters``) with expected types."""
    out = {}
    for name, spec in papermill.inspect_notebook(str(notebook)).items():
        annotation = spec.get("inferred_type_name") or "None"
        value = _default_value(spec["default"])
        expected, none_ok = (_annotation_type(annotation) if annotation != "None"
                             else _default_type(value))
        if expected is None:
            none_ok = True
        value = list(value) if isinstance(value, tuple) else value
        out[name] = DeclaredParameter(name, spec["default"], expected, none_ok, value)
    return out


def _conform(param: DeclaredParameter, value: Any) -> Any:
    """``value`` if its type fits ``param`` (an int becomes a float for a float), else an error."""
    expected = param.expected
    if expected is None or (value is None and param.none_ok):
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool):
        return value
    hint = ""
    if isinstance(value, str) and re.fullmatch(r"[-+]?[0-9.]+[eE][-+]?[0-9]+", value):
        hint = f" (YAML reads {value} as text: write it with a decimal point, e.g. 1.0e-3)"
    raise TlabError(f"{param.name}={value!r} is of type {type(value).__name__}, but the "
                    f"notebook's default {param.name} = {param.default} is of type "
                    f"{expected.__name__}; give {expected.__name__} values{hint}")


def check_points(notebook: Path, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points with values conformed to the notebook's declared parameters, or an error
    naming the undeclared parameter or the ill-typed value."""
    declared = declared_parameters(notebook)
    names = ", ".join(declared) if declared else "none (no cell is tagged 'parameters')"
    checked = []
    for point in points:
        unknown = sorted(set(point) - set(declared))
        if unknown:
            raise TlabError(f"notebook {notebook.name} declares no parameter "
                            f"{', '.join(unknown)}; its parameters are: {names}")
        checked.append({name: _conform(declared[name], value) for name, value in point.items()})
    return checked


def resolve_notebook(name: str | Path) -> Path:
    """A notebook path from a catalog number or name ("00", "00_start_here") or a file path."""
    path = Path(name)
    if path.suffix == ".ipynb" and (path.parent != Path(".") or path.exists()):
        if not path.is_file():
            raise TlabError(f"no notebook file {path}; give an existing .ipynb path or a "
                            "notebook number (python -m tlab notebooks lists them)")
        return path.resolve()
    return find_notebook(str(name)).path


def plan_points(notebook: Path, grid: Mapping[str, Any]) -> list[Point]:
    """The checked, de-duplicated points of ``grid`` for ``notebook``, in grid order."""
    raw, fixed = expand_grid(grid)
    points: dict[str, Point] = {}
    for params in check_points(notebook, raw):
        pid = point_id(params, fixed)
        points.setdefault(pid, Point(pid, params, fixed))
    return list(points.values())


# ------------------------------------------------------------------ one point (in a worker)


class RecordingKernelManager(AsyncKernelManager):
    """A kernel manager that adds ``extra_env`` to the kernel's environment.

    Used to hand each notebook its ``TLAB_RECORD_DIR`` (and a local sweep's thread share)
    without touching the worker's own environment (safe when a worker runs several points in
    threads). A variable mapped to None is removed from the kernel's environment.
    """

    extra_env = Dict(config=True, help="variables added to (None: removed from) the kernel's "
                                       "environment")

    # AsyncKernelManager.start_kernel is a coroutine function, but jupyter_client types it
    # with the synchronous KernelManager's signature
    async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
        env = {**(kw.get("env") or os.environ), **self.extra_env}
        kw["env"] = {name: value for name, value in env.items() if value is not None}
        # the kernel's "running over TCP without encryption" warning would garble the progress bar
        kw["extra_arguments"] = [*kw.get("extra_arguments", []), "--IPKernelApp.log_level=ERROR"]
        await super().start_kernel(**kw)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _result(point: Point, notebook: Path, *, status: str, error: str, seconds: float,
            started: str, recorded: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "point_id": point.id, "notebook": notebook.name, "parameters": point.parameters,
        "status": status, "error": error, "seconds": round(seconds, 3),
        "started_at": started, "finished_at": _now(), "host": socket.gethostname(),
        "pid": os.getpid(), "recorded": recorded is not None,
        "metrics": (recorded or {}).get("metrics", {}), "extra": (recorded or {}).get("extra", {}),
        "versions": library_versions(),
        "complete": status == "ok",  # last key: the marker of a finished point
    }


def run_point(notebook: str, point: Point, out_dir: str,
              kernel_env: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """Run one point with papermill and write its ``result.json``; returns the result.

    ``kernel_env``: variables set in (None: removed from) the notebook kernel's environment
    (see :func:`local_kernel_env`); by default the kernel inherits the worker's environment.
    An error inside the notebook gives ``status: "failed"`` (not an exception); anything else
    (a dead kernel, a killed worker) propagates to the caller, which records it.
    """
    source, folder = Path(notebook), Path(out_dir) / point.id
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (RESULT_FILE, RECORD_FILE):
        (folder / stale).unlink(missing_ok=True)
    started = _now()
    write_json_atomic(folder / POINT_FILE, {"point_id": point.id, "notebook": str(source),
                                            "parameters": point.parameters, "started_at": started,
                                            "complete": True})
    env = {**(kernel_env or {}), RECORD_DIR_ENV: str(folder)}
    config = Config({"RecordingKernelManager": {"extra_env": env}})
    start, error = time.perf_counter(), ""
    try:
        papermill.execute_notebook(str(source), str(folder / source.name),
                                   parameters=point.parameters, cwd=str(source.parent),
                                   kernel_name="python3", progress_bar=False,
                                   kernel_manager_class=RecordingKernelManager, config=config)
    except papermill.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    result = _result(point, source, status="failed" if error else "ok", error=error,
                     seconds=time.perf_counter() - start, started=started,
                     recorded=read_complete(folder / RECORD_FILE))
    write_json_atomic(folder / RESULT_FILE, result)
    return result


# ------------------------------------------------------------------ collection


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
    dtype = {frozenset({int}): "Int64", frozenset({float}): "float64",
             frozenset({int, float}): "float64", frozenset({bool}): "boolean",
             frozenset({str}): "str"}.get(frozenset(kinds))
    if dtype is None:
        return pd.array([None if v is None else json.dumps(v, sort_keys=True) for v in values],
                        dtype="str")
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
        status = "not run" if result is None else ("ok" if result.get("complete") is True
                                                   else "failed")
        metrics = result.get("metrics", {}) if result is not None and status == "ok" else {}
        common = {"point_id": point.id, "status": status, **point_values}
        tail = {"seconds": None if result is None else result.get("seconds"),
                "error": "" if result is None else result.get("error", ""),
                "notebook": f"{point.id}/{notebook.name}"}
        rows += ([{**common, "metric": m, "value": float(v), **tail} for m, v in metrics.items()]
                 or [{**common, "metric": None, "value": float("nan"), **tail}])
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
    import pandas as pd
    import plotly.graph_objects as go

    done = table[(table["status"] == "ok") & table["metric"].notna()]
    varied = _varied(done)
    figures = []
    for metric in dict.fromkeys(done["metric"]):
        rows = done[done["metric"] == metric]
        for x in varied:
            others = [n for n in varied if n != x]
            present = rows[rows[x].notna()]
            if present[x].nunique() < 2:
                continue
            fig = go.Figure()
            groups = present.groupby(others, dropna=False, sort=True) if others else [((), present)]
            for key, group in groups:
                key = key if isinstance(key, tuple) else (key,)
                label = ", ".join(f"{n}={'?' if pd.isna(v) else v}"
                                  for n, v in zip(others, key, strict=True)) or metric
                group = group.sort_values(x, key=lambda col: col.map(_sort_key))
                fig.add_trace(go.Scatter(x=group[x].tolist(), y=group["value"].tolist(),
                                         mode="lines+markers", name=label))
            fig.update_layout(title=f"{metric} vs {x}", xaxis_title=x, yaxis_title=metric,
                              height=380, margin=dict(l=50, r=20, t=50, b=40))
            figures.append(fig)
    return figures


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def _points_table(table) -> str:
    per_point = table.drop_duplicates("point_id")
    metrics = table.pivot_table(index="point_id", columns="metric", values="value",
                                aggfunc="first") if table["metric"].notna().any() else None
    params = [c for c in table.columns if c not in TABLE_COLUMNS]
    metric_names = [] if metrics is None else list(metrics.columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in
                   ["point", "status", *params, *metric_names, "seconds", "error"])
    body = []
    for _, row in per_point.iterrows():
        values = [] if metrics is None or row["point_id"] not in metrics.index else [
            metrics.loc[row["point_id"], m] for m in metric_names]
        cells = [f"<a href='{html.escape(row['notebook'])}'>{html.escape(row['point_id'])}</a>",
                 html.escape(row["status"]), *(html.escape(str(row[p])) for p in params),
                 *(f"{v:.4g}" for v in values),
                 "" if row["seconds"] != row["seconds"] else f"{row['seconds']:.1f}",
                 html.escape(str(row["error"] or ""))]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table border='1' cellpadding='4'><tr>{head}</tr>{''.join(body)}</table>"


def write_outputs(out_dir: Path, notebook: Path, points: list[Point]):
    """Write ``results.csv``, ``results.parquet`` and ``summary.html``; returns the table and
    the paths."""
    from plotly.offline import get_plotlyjs

    table = collect(out_dir, notebook, points)
    files = {"csv": out_dir / "results.csv", "parquet": out_dir / "results.parquet",
             "html": out_dir / "summary.html"}
    table.to_csv(files["csv"], index=False)
    table.to_parquet(files["parquet"], index=False)
    script = out_dir / "plotly.min.js"
    if not script.exists():
        script.write_text(get_plotlyjs(), encoding="utf-8")
    figures = summary_figures(table)
    counts = table.drop_duplicates("point_id")["status"].value_counts().to_dict()
    plots = "\n".join(f.to_html(full_html=False, include_plotlyjs=False) for f in figures) or (
        "<p>No metric to plot: call <code>tlab.record.record({...})</code> at the end of the "
        "notebook, or vary a parameter.</p>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>sweep of "
            f"{html.escape(notebook.name)}</title><script src='plotly.min.js'></script></head>"
            f"<body><h1>Sweep of {html.escape(notebook.name)}</h1><p>{_now()}: "
            f"{len(points)} points; " + ", ".join(f"{n} {html.escape(k)}" for k, n in
                                                   sorted(counts.items())) +
            f"</p>{plots}<h2>Points</h2>{_points_table(table)}</body></html>")
    files["html"].write_text(page, encoding="utf-8")
    return table, files


# ------------------------------------------------------------------ scheduling


@dataclass
class SweepReport:
    """What a sweep did: counts, where the table and summary are, and the table itself."""

    out_dir: Path
    points: list[Point]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    table: Any = None  # pandas.DataFrame
    files: dict[str, Path] = field(default_factory=dict)


def _output_dir(out_dir: Path) -> Path:
    return writable_dir(out_dir, advice="choose another output folder with --out")


def _check_manifest(out_dir: Path, notebook: Path) -> None:
    manifest = read_complete(out_dir / MANIFEST_FILE)
    if manifest is not None and manifest.get("notebook") != str(notebook):
        raise TlabError(f"{out_dir} holds a sweep of {manifest.get('notebook')}, not {notebook}; "
                        "choose another folder with --out")


def _write_manifest(out_dir: Path, notebook: Path, grid: Mapping[str, Any],
                    points: list[Point]) -> None:
    write_json_atomic(out_dir / MANIFEST_FILE, {
        "notebook": str(notebook), "grid": dict(grid), "points": [p.id for p in points],
        "updated_at": _now(), "complete": True})


def _connect(scheduler: str | None, workers: int | None, n_points: int, timeout: float):
    """A ``(client, cluster)`` pair; ``cluster`` is None for an existing scheduler."""
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            return Client(scheduler, timeout=timeout), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise TlabError(f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s "
                            f"({exc}); start it with `dask scheduler` and check the address, or "
                            "leave out --scheduler to use a local cluster") from exc
    size = min(workers or os.cpu_count() or 1, n_points)
    cluster = LocalCluster(n_workers=size, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    return Client(cluster), cluster


def local_kernel_env(size: int) -> dict[str, str | None]:
    """The kernel environment of a point run by one of ``size`` local workers.

    The machine's CPUs are shared out (torch reads ``OMP_NUM_THREADS``), and dask's
    ``MALLOC_TRIM_THRESHOLD_=65536``, which every worker process gets
    (``distributed.nanny.pre-spawn-environ``), is not passed on: it hands freed memory back to
    the OS at once, so PyTorch's large tensors come back as fresh pages, page fault by page
    fault (measured: the batched mimicry attack ran 2.4x slower under it, and a sweep of two
    points of notebook 09 took 70 s instead of 50 s).
    """
    threads = str(max(1, (os.cpu_count() or 1) // size))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "MALLOC_TRIM_THRESHOLD_": None}


def _failure(point: Point, notebook: Path, out_dir: Path, error: str) -> dict[str, Any]:
    folder = out_dir / point.id
    folder.mkdir(parents=True, exist_ok=True)
    result = _result(point, notebook, status="failed", error=error, seconds=0.0, started="",
                     recorded=None)
    write_json_atomic(folder / RESULT_FILE, result)
    return result


def _execute(client, notebook: Path, todo: list[Point], out_dir: Path, report: SweepReport,
             progress: bool, kernel_env: Mapping[str, str | None] | None) -> None:
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    by_key = {}
    futures = []
    for point in todo:
        future = client.submit(run_point, str(notebook), point, str(out_dir), kernel_env,
                               pure=False,
                               key=f"tlab-sweep-{point.id}-{time.time_ns()}")
        by_key[future.key] = point
        futures.append(future)
    bar = tqdm(total=len(todo), unit="point", desc="sweep", disable=not progress, file=sys.stderr)
    try:
        for future in as_completed(futures):
            point = by_key[future.key]
            if future.status == "finished":
                result = future.result()
            else:  # the task itself broke (dead kernel, killed worker) or was cancelled
                exc = future.exception() if future.status == "error" else "cancelled"
                result = _failure(point, notebook, out_dir, f"{type(exc).__name__}: {exc}"
                                  if future.status == "error" else "the task was cancelled")
            (report.ran if result["status"] == "ok" else report.failed).append(point.id)
            bar.set_postfix(done=len(report.ran), failed=len(report.failed),
                            remaining=len(todo) - len(report.ran) - len(report.failed),
                            refresh=False)
            bar.update(1)
    except KeyboardInterrupt:
        client.cancel(futures, force=True)
        bar.close()
        print(f"sweep interrupted: {len(report.ran) + len(report.skipped)} of "
              f"{len(report.points)} points complete; run the same command again to resume",
              file=sys.stderr)
        raise
    bar.close()


def run_sweep(notebook: str | Path, grid: str | Path | Mapping[str, Any], *,
              out_dir: str | Path | None = None, workers: int | None = None,
              scheduler: str | None = None, progress: bool = True,
              connect_timeout: float = CONNECT_TIMEOUT) -> SweepReport:
    """Run ``notebook`` at every point of ``grid`` and collect the results in ``out_dir``.

    Everything is checked (grid, parameters, types, output folder, scheduler) before the first
    point starts. Points already complete in ``out_dir`` are skipped. See the module docstring.
    """
    start = time.perf_counter()
    path = resolve_notebook(notebook)
    if workers is not None:
        check_positive_int(workers, name="--workers")
        if scheduler is not None:
            raise TlabError("--workers sizes the local cluster; with --scheduler the cluster's "
                            "own workers run the points -- leave out --workers")
    grid_data = load_grid(grid)
    points = plan_points(path, grid_data)
    out = _output_dir(Path(out_dir or f"runs/sweep-{path.stem}").resolve())
    _check_manifest(out, path)
    report = SweepReport(out_dir=out, points=points)
    todo = []
    for point in points:
        done = read_complete(out / point.id / RESULT_FILE)
        (report.skipped.append(point.id) if done is not None else todo.append(point))
    client = cluster = kernel_env = None
    if todo:
        client, cluster = _connect(scheduler, workers, len(todo), connect_timeout)
        if cluster is not None:
            kernel_env = local_kernel_env(len(cluster.workers))
    _write_manifest(out, path, grid_data, points)
    if progress:
        print(f"sweep of {path.name}: {len(points)} points, {len(report.skipped)} already "
              f"complete, {len(todo)} to run -> {out}", file=sys.stderr)
    if client is not None:
        try:
            _execute(client, path, todo, out, report, progress, kernel_env)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    report.table, report.files = write_outputs(out, path, points)
    report.seconds = time.perf_counter() - start
    return report
