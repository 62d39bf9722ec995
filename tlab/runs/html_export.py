"""Offline HTML export of an executed notebook: figures, math and panels with no network.

nbconvert's ``lab`` template fetches require.js, MathJax, mermaid and the widget manager from
CDNs, and plotly's notebook HTML fetches MathJax too, so a student offline saw raw ``$$...$$``.
This export:

- turns every plotly figure (plotly's JSON mimetype) into self-contained HTML, with plotly.js
  inlined once per page, before the first figure;
- replaces each widget panel (:class:`tlab.notebook.widgets.Panel`) by the figure it showed for the
  run's parameter values under a one-line note naming them, and drops other widget views (a
  progress bar means nothing once the run is over): a page has no kernel to move a slider;
- typesets math with MathJax 2 from the ``jupyter-server-mathjax`` package, copied beside the
  pages into ``_static/mathjax``;
- renders with ``tlab/templates/tlab_offline``, nbconvert's ``lab`` template without its CDN
  scripts.
"""

from __future__ import annotations

import copy
import html
import shutil
from pathlib import Path
from typing import Any

import jupyter_server_mathjax
import nbformat
import plotly.io as pio
from nbconvert import HTMLExporter

from tlab.notebook.widgets import PANEL_NOTE_KEY

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
TEMPLATES = Path(__file__).resolve().parent / "templates"
MATHJAX_SOURCE = Path(jupyter_server_mathjax.__file__).resolve().parent / "static"
#: Where the pages find MathJax, relative to the export folder.
MATHJAX_DIR = "_static/mathjax"
MATHJAX_URL = f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def figure_html(
    figure: dict[str, Any], *, include_plotlyjs: bool, height: int | None = None
) -> str:
    """One plotly figure as an HTML fragment that draws offline."""
    return pio.to_html(
        figure,
        config=figure.get("config"),
        include_plotlyjs=include_plotlyjs,
        include_mathjax=False,
        full_html=False,
        default_width="100%",
        default_height=height or 500,
        validate=False,
    )


def _panel_note(text: str) -> str:
    return f'<p class="tlab-panel-note">{html.escape(text)}</p>'


def offline_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose outputs need no network and no kernel (see the module doc)."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    plotly_inlined = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME in data:
                note = output.get("metadata", {}).get(PANEL_NOTE_KEY)
                body = figure_html(data[PLOTLY_MIME], include_plotlyjs=not plotly_inlined)
                plotly_inlined = True
                output["data"] = {"text/html": (_panel_note(note) if note else "") + body}
            elif WIDGET_MIME in data:
                continue
            outputs.append(output)
        cell["outputs"] = outputs
    return nb


def install_mathjax(out_dir: Path) -> Path:
    """Copy MathJax beside the pages (once per folder); returns its folder."""
    target = out_dir / MATHJAX_DIR
    if not (target / "MathJax.js").exists():
        shutil.copytree(MATHJAX_SOURCE, target, dirs_exist_ok=True)
    return target


def export_html(ipynb: Path) -> Path:
    """Write ``ipynb``'s offline HTML export next to it (same stem, ``.html``)."""
    install_mathjax(ipynb.parent)
    exporter = HTMLExporter(
        template_name="tlab_offline",
        extra_template_basedirs=[str(TEMPLATES)],
        mathjax_url=MATHJAX_URL,
    )
    body, _ = exporter.from_notebook_node(offline_notebook(nbformat.read(ipynb, as_version=4)))
    target = ipynb.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def first_figure(ipynb: Path) -> dict[str, Any] | None:
    """The first plotly figure among a notebook's outputs, if any (for the index page)."""
    nb = nbformat.read(ipynb, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if PLOTLY_MIME in output.get("data", {}):
                return output["data"][PLOTLY_MIME]
    return None
