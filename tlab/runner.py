"""Run notebooks headless with papermill and write an HTML index of the results.

``python -m tlab run`` (see :mod:`tlab.cli`) calls :func:`run_notebooks`: every selected
notebook is executed with the chosen preset, the executed ``.ipynb`` and an ``.html`` export
(plotly figures included) are written to the output folder, and ``index.html`` links them with
their status and run time. A failing notebook is recorded and the others still run.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nbformat
import papermill
from nbconvert import HTMLExporter

from tlab.catalog import NotebookInfo, available_notebooks, find_notebook
from tlab.errors import TlabError
from tlab.paths import writable_dir
from tlab.presets import check_preset


@dataclass
class NotebookRun:
    """The outcome of one notebook run."""

    name: str
    status: str  # "ok" or "failed"
    seconds: float
    output: str
    html: str
    error: str = ""


def notebook_parameters(info: NotebookInfo) -> dict[str, Any]:
    """The parameters a notebook's ``parameters`` cell declares, with their defaults."""
    return {name: spec["default"] for name, spec in papermill.inspect_notebook(str(info.path)).items()}


def check_parameters(info: NotebookInfo, parameters: dict[str, Any]) -> None:
    """Reject parameter names a notebook does not declare (papermill would only warn)."""
    declared = notebook_parameters(info)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise TlabError(f"notebook {info.name} has no parameter(s) {', '.join(unknown)}; "
                        f"its parameters are: {', '.join(sorted(declared))}")


def _export_html(ipynb: Path) -> Path:
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(ipynb, as_version=4))
    target = ipynb.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def run_one(info: NotebookInfo, out_dir: Path, parameters: dict[str, Any]) -> NotebookRun:
    """Execute one notebook with papermill; never raises for an error inside the notebook."""
    output = out_dir / f"{info.name}.ipynb"
    start = time.perf_counter()
    error = ""
    try:
        papermill.execute_notebook(str(info.path), str(output), parameters=parameters,
                                   cwd=str(info.path.parent), progress_bar=False,
                                   kernel_name="python3")
    except papermill.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    seconds = time.perf_counter() - start
    page = _export_html(output) if output.exists() else None
    return NotebookRun(name=info.name, status="failed" if error else "ok", seconds=seconds,
                       output=output.name, html=page.name if page else "", error=error)


def write_index(out_dir: Path, runs: list[NotebookRun], preset: str) -> Path:
    """``index.html`` (a table linking every executed notebook) and ``runs.json``."""
    rows = "\n".join(
        f"<tr><td><a href='{html.escape(r.html)}'>{html.escape(r.name)}</a></td>"
        f"<td>{r.status}</td><td>{r.seconds:.1f}</td><td>{html.escape(r.error)}</td></tr>"
        for r in runs)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>tlab runs ({preset})"
            f"</title></head><body><h1>tlab: executed notebooks, preset {html.escape(preset)}</h1>"
            f"<p>{time.strftime('%Y-%m-%d %H:%M:%S')}</p><table border='1' cellpadding='4'>"
            f"<tr><th>notebook</th><th>status</th><th>seconds</th><th>error</th></tr>{rows}"
            f"</table></body></html>")
    (out_dir / "runs.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def run_notebooks(names: list[str] | None = None, *, preset: str = "quick",
                  out_dir: Path | str = "runs/quick", parameters: dict[str, Any] | None = None,
                  echo: bool = True) -> list[NotebookRun]:
    """Run the named notebooks (all available ones if ``names`` is empty) with ``preset``."""
    check_preset(preset)
    infos = [find_notebook(n) for n in names] if names else available_notebooks()
    extra = dict(parameters or {})
    for info in infos:
        check_parameters(info, extra)
    out = writable_dir(Path(out_dir).resolve())
    runs = []
    for info in infos:
        if echo:
            print(f"running {info.name} (preset {preset}) ...", flush=True)
        run = run_one(info, out, {"PRESET": preset, **extra})
        runs.append(run)
        if echo:
            print(f"  {run.status} in {run.seconds:.1f} s{': ' + run.error if run.error else ''}",
                  flush=True)
    index = write_index(out, runs, preset)
    if echo:
        print(f"index: {index}")
    return runs
