"""Run notebooks headless with papermill and write an HTML index of the results.

``python -m tlab run`` (see :mod:`tlab.runs.cli`) calls :func:`run_notebooks`: every selected
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

from tlab.paths import writable_dir
from tlab.presets import check_preset
from tlab.record import RECORD_DIR_ENV
from tlab.runs.catalog import NotebookInfo, available_notebooks, find_notebook
from tlab.runs.execute import check_parameters, execute
from tlab.runs.html_export import export_html, figure_html, first_figure


@dataclass
class NotebookRun:
    """The outcome of one notebook run."""

    name: str
    status: str  # "ok" or "failed"
    seconds: float
    output: str
    html: str
    error: str = ""


def run_one(info: NotebookInfo, out_dir: Path, parameters: dict[str, Any]) -> NotebookRun:
    """Execute one notebook with papermill; never raises for an error inside the notebook.

    The notebook records into ``out_dir/records/<name>/record.json`` (:mod:`tlab.record`), so
    ``python -m tlab report --runs out_dir`` reads its claims.
    """
    output = out_dir / f"{info.name}.ipynb"
    records = out_dir.resolve() / "records" / info.name
    records.mkdir(parents=True, exist_ok=True)
    run = execute(info.path, output, parameters, kernel_env={RECORD_DIR_ENV: str(records)})
    page = export_html(output) if output.exists() else None
    return NotebookRun(
        name=info.name,
        status=run.status,
        seconds=run.seconds,
        output=output.name,
        html=page.name if page else "",
        error=run.error,
    )


INDEX_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } .meta { color: #666; }
.run { display: grid; grid-template-columns: 1fr 360px; gap: 1em; align-items: center;
       border: 1px solid #ddd; border-radius: 6px; padding: 0.8em 1em; margin: 0.8em 0; }
.run h2 { font-size: 1.1em; margin: 0 0 0.3em 0; } .paper { color: #444; margin: 0.2em 0; }
.ok { color: #1e7d32; font-weight: bold; } .failed { color: #b71c1c; font-weight: bold; }
.error { color: #b71c1c; white-space: pre-wrap; font-family: monospace; font-size: 0.85em; }
.thumb { height: 240px; overflow: hidden; } .nofig { color: #888; font-style: italic; }
"""


def _index_entry(
    run: NotebookRun,
    info: NotebookInfo | None,
    figure: dict[str, Any] | None,
    include_plotlyjs: bool,
) -> str:
    where = info and (info.paper if info.section == "-" else f"{info.paper}, Sec. {info.section}")
    paper = (
        f"<p class='paper'>{html.escape(where)}: {html.escape(info.teaches)}</p>"
        if info and where
        else ""
    )
    error = f"<p class='error'>{html.escape(run.error)}</p>" if run.error else ""
    link = (
        f"<a href='{html.escape(run.html)}'>{html.escape(run.name)}</a>"
        if run.html
        else html.escape(run.name)
    )
    thumb = (
        figure_html(figure, include_plotlyjs=include_plotlyjs, height=240)
        if figure
        else "<p class='nofig'>no figure</p>"
    )
    return (
        f"<div class='run'><div><h2>{link}</h2>{paper}<p><span class='{run.status}'>"
        f"{run.status}</span> in {run.seconds:.1f} s</p>{error}</div>"
        f"<div class='thumb'>{thumb}</div></div>"
    )


def write_index(out_dir: Path, runs: list[NotebookRun], preset: str) -> Path:
    """``index.html`` (every executed notebook: paper, section, status, time, first figure)
    and ``runs.json``. The page works offline, like the notebooks' exports."""
    catalog = {info.name: info for info in available_notebooks()}
    entries, inlined = [], False
    for run in runs:
        figure = first_figure(out_dir / run.output) if (out_dir / run.output).exists() else None
        thumbnail_figure = _thumbnail(figure)
        entries.append(
            _index_entry(run, catalog.get(run.name), thumbnail_figure, include_plotlyjs=not inlined)
        )
        inlined = inlined or thumbnail_figure is not None
    ok = sum(r.status == "ok" for r in runs)
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>tlab runs ({html.escape(preset)})</title><style>{INDEX_STYLE}</style></head>"
        f"<body><h1>tlab: executed notebooks, preset {html.escape(preset)}</h1>"
        f"<p class='meta'>{time.strftime('%Y-%m-%d %H:%M:%S')}; {ok} of {len(runs)} ok; "
        f"{sum(r.seconds for r in runs):.0f} s in all</p>{''.join(entries)}</body></html>"
    )
    (out_dir / "runs.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _thumbnail(figure: dict[str, Any] | None) -> dict[str, Any] | None:
    """A figure shrunk for the index: no legend, small margins, 240 px high."""
    if figure is None:
        return None
    layout = {key: value for key, value in figure.get("layout", {}).items() if key != "width"}
    layout |= {
        "height": 240,
        "autosize": True,
        "showlegend": False,
        "margin": {"l": 30, "r": 10, "t": 30, "b": 25},
        "font": {"size": 9},
    }
    return {**figure, "layout": layout, "config": {"staticPlot": True}}


def run_notebooks(
    names: list[str] | None = None,
    *,
    preset: str = "quick",
    out_dir: Path | str = "runs/quick",
    parameters: dict[str, Any] | None = None,
    echo: bool = True,
) -> list[NotebookRun]:
    """Run the named notebooks (all available ones if ``names`` is empty) with ``preset``."""
    check_preset(preset)
    infos = [find_notebook(n) for n in names] if names else available_notebooks()
    extra = dict(parameters or {})
    for info in infos:
        check_parameters(info.path, {"PRESET": preset, **extra})
    out = writable_dir(Path(out_dir).resolve())
    runs = []
    for info in infos:
        if echo:
            print(f"running {info.name} (preset {preset}) ...", flush=True)
        run = run_one(info, out, {"PRESET": preset, **extra})
        runs.append(run)
        if echo:
            print(
                f"  {run.status} in {run.seconds:.1f} s{': ' + run.error if run.error else ''}",
                flush=True,
            )
    index = write_index(out, runs, preset)
    if echo:
        print(f"index: {index}")
    return runs
