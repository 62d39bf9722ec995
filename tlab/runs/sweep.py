"""Batch runs: one notebook over a grid of parameters, on this machine or a Dask cluster.

Quick start (README snippet)
----------------------------
Write the grid as YAML (``examples/grids/00_eps_seed.yaml`` is a commented example)::

    EPS: [0.0, 0.0314, 0.0627]   # every parameter with a list of values is an axis
    SEED: [0, 1]                 # 3 x 2 = 6 points (the cartesian product)
    fixed:                       # optional: the same value at every point
      PRESET: smoke
    explicit:                    # optional: extra points appended after the product
      - {EPS: 0.125, SEED: 0}

and run it::

    python -m tlab sweep 00 --grid examples/grids/00_eps_seed.yaml --workers 2
    python -m tlab sweep 00 --grid ... --scheduler tcp://scheduler-host:8786  # a running cluster

To get numbers into the table, the notebook ends with ``tlab.record.record({...})`` (see
:mod:`tlab.record`); a notebook that records nothing still gets one row per point (status,
time).

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
(see :func:`tlab.runs.cluster.local_kernel_env`).

With ``--scheduler`` the existing cluster's workers run the points: they need tlab installed,
the notebook at the same path, and the output folder on a shared file system. Their kernels
inherit the workers' environment: with dask's defaults that is one OpenMP thread and
``MALLOC_TRIM_THRESHOLD_=65536``, which slows PyTorch (2.4x for the batched mimicry attack);
set ``distributed.nanny.pre-spawn-environ`` in the workers' dask configuration to change either.

Several workers asking the zoo for the same model train it once (the zoo's per-key file lock);
the others wait and load it.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlab.checks import check_positive_int
from tlab.errors import TlabError
from tlab.paths import writable_dir
from tlab.presets import Knob, PresetTable
from tlab.record import (
    POINT_FILE,
    RECORD_DIR_ENV,
    RECORD_FILE,
    library_versions,
    read_complete,
    write_json_atomic,
)
from tlab.runs.cluster import connect, local_kernel_env
from tlab.runs.execute import execute
from tlab.runs.grid import Point, load_grid, plan_points, resolve_notebook
from tlab.runs.sweep_results import RESULT_FILE, timestamp, write_outputs

MANIFEST_FILE = "sweep.json"
CONNECT_TIMEOUT = 5.0

#: What each preset means for notebook 12 (the only place that says it).
PRESETS = PresetTable(
    "Notebook 12 (batch runs)",
    {
        "example_grid": Knob(
            "03_n_b_smoke.yaml",
            "03_n_b_smoke.yaml",
            "03_n_b_seeds.yaml",
            "03_n_b_seeds.yaml",
            "the grid of examples/grids/ notebook 12 runs by default",
        ),
    },
)


# ------------------------------------------------------------------ one point (in a worker)


def _result(
    point: Point,
    notebook: Path,
    *,
    status: str,
    error: str,
    seconds: float,
    started: str,
    recorded: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "point_id": point.id,
        "notebook": notebook.name,
        "parameters": point.parameters,
        "status": status,
        "error": error,
        "seconds": round(seconds, 3),
        "started_at": started,
        "finished_at": timestamp(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "recorded": recorded is not None,
        "metrics": (recorded or {}).get("metrics", {}),
        "extra": (recorded or {}).get("extra", {}),
        "versions": library_versions(),
        "complete": status == "ok",  # last key: the marker of a finished point
    }


def run_point(
    notebook: str, point: Point, out_dir: str, kernel_env: Mapping[str, str | None] | None = None
) -> dict[str, Any]:
    """Run one point with papermill and write its ``result.json``; returns the result.

    ``kernel_env``: variables set in (None: removed from) the notebook kernel's environment
    (see :func:`tlab.runs.cluster.local_kernel_env`); by default the kernel inherits the
    worker's environment.
    An error inside the notebook gives ``status: "failed"`` (not an exception); anything else
    (a dead kernel, a killed worker) propagates to the caller, which records it.
    """
    source, folder = Path(notebook), Path(out_dir) / point.id
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (RESULT_FILE, RECORD_FILE):
        (folder / stale).unlink(missing_ok=True)
    started = timestamp()
    write_json_atomic(
        folder / POINT_FILE,
        {
            "point_id": point.id,
            "notebook": str(source),
            "parameters": point.parameters,
            "started_at": started,
            "complete": True,
        },
    )
    run = execute(
        source,
        folder / source.name,
        point.parameters,
        kernel_env={**(kernel_env or {}), RECORD_DIR_ENV: str(folder)},
    )
    result = _result(
        point,
        source,
        status=run.status,
        error=run.error,
        seconds=run.seconds,
        started=started,
        recorded=read_complete(folder / RECORD_FILE),
    )
    write_json_atomic(folder / RESULT_FILE, result)
    return result


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
        raise TlabError(
            f"{out_dir} holds a sweep of {manifest.get('notebook')}, not {notebook}; "
            "choose another folder with --out"
        )


def _write_manifest(
    out_dir: Path, notebook: Path, grid: Mapping[str, Any], points: list[Point]
) -> None:
    write_json_atomic(
        out_dir / MANIFEST_FILE,
        {
            "notebook": str(notebook),
            "grid": dict(grid),
            "points": [p.id for p in points],
            "updated_at": timestamp(),
            "complete": True,
        },
    )


def _failure(point: Point, notebook: Path, out_dir: Path, error: str) -> dict[str, Any]:
    folder = out_dir / point.id
    folder.mkdir(parents=True, exist_ok=True)
    result = _result(
        point, notebook, status="failed", error=error, seconds=0.0, started="", recorded=None
    )
    write_json_atomic(folder / RESULT_FILE, result)
    return result


def _execute(
    client,
    notebook: Path,
    todo: list[Point],
    out_dir: Path,
    report: SweepReport,
    progress: bool,
    kernel_env: Mapping[str, str | None] | None,
) -> None:
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    by_key = {}
    futures = []
    for point in todo:
        future = client.submit(
            run_point,
            str(notebook),
            point,
            str(out_dir),
            kernel_env,
            pure=False,
            key=f"tlab-sweep-{point.id}-{time.time_ns()}",
        )
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
                result = _failure(
                    point,
                    notebook,
                    out_dir,
                    f"{type(exc).__name__}: {exc}"
                    if future.status == "error"
                    else "the task was cancelled",
                )
            (report.ran if result["status"] == "ok" else report.failed).append(point.id)
            bar.set_postfix(
                done=len(report.ran),
                failed=len(report.failed),
                remaining=len(todo) - len(report.ran) - len(report.failed),
                refresh=False,
            )
            bar.update(1)
    except KeyboardInterrupt:
        client.cancel(futures, force=True)
        bar.close()
        print(
            f"sweep interrupted: {len(report.ran) + len(report.skipped)} of "
            f"{len(report.points)} points complete; run the same command again to resume",
            file=sys.stderr,
        )
        raise
    bar.close()


def run_sweep(
    notebook: str | Path,
    grid: str | Path | Mapping[str, Any],
    *,
    out_dir: str | Path | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> SweepReport:
    """Run ``notebook`` at every point of ``grid`` and collect the results in ``out_dir``.

    Everything is checked (grid, parameters, types, output folder, scheduler) before the first
    point starts. Points already complete in ``out_dir`` are skipped. See the module docstring.
    """
    start = time.perf_counter()
    path = resolve_notebook(notebook)
    if workers is not None:
        check_positive_int(workers, name="--workers")
        if scheduler is not None:
            raise TlabError(
                "--workers sizes the local cluster; with --scheduler the cluster's "
                "own workers run the points -- leave out --workers"
            )
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
        client, cluster = connect(scheduler, workers, len(todo), connect_timeout)
        if cluster is not None:
            kernel_env = local_kernel_env(len(cluster.workers))
    _write_manifest(out, path, grid_data, points)
    if progress:
        print(
            f"sweep of {path.name}: {len(points)} points, {len(report.skipped)} already "
            f"complete, {len(todo)} to run -> {out}",
            file=sys.stderr,
        )
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
