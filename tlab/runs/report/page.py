"""The report's offline HTML page and the files ``python -m tlab report`` writes."""

from __future__ import annotations

import html
from pathlib import Path

import tlab
from tlab.papers.reference import effect_text
from tlab.paths import writable_dir
from tlab.runs.html_export import figure_html
from tlab.runs.report.figures import FIGURES
from tlab.runs.report.inputs import NOT_RUN, Report, build_report
from tlab.runs.report.tables import (
    claim_codes,
    claim_rows,
    label,
    markdown_table,
    seed_count,
    update_readme,
)

HTML_FILE, MARKDOWN_FILE = "report.html", "claims.md"
PAPER_ORDER = ("zhang", "davchev", "wang")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; } .meta { color: #555; }
table { border-collapse: collapse; font-size: 0.88em; width: 100%; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.5em; vertical-align: top; text-align: left; }
th { background: #f4f4f4; } td.code { font-weight: bold; white-space: nowrap; }
.holds { color: #1e7d32; font-weight: bold; } .contradicted { color: #b71c1c; font-weight: bold; }
.inconclusive, .notrun { color: #8a6d00; } .src { font-family: monospace; font-size: 0.9em; }
"""


def _verdict_html(verdict: str) -> str:
    css = "notrun" if verdict == NOT_RUN else verdict.split(" ")[0]
    return f"<span class='{css}'>{html.escape(verdict)}</span>"


def html_table(report: Report, paper: str) -> str:
    """The claims table of one paper, as HTML."""
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "claim",
            "the paper",
            "preset",
            "run",
            "the lab's claim",
            "effect, 95 % CI",
            "seeds",
            "verdict",
        )
    )
    body, seen = [], set()
    for row in claim_rows(report):
        entry = report.numbers.claim(row.code)
        if (entry.paper if entry else "other") != paper:
            continue
        first = row.code not in seen
        seen.add(row.code)
        says = html.escape(entry.says) if entry else ""
        cells = [
            f"<td class='code'>{html.escape(row.code)}</td><td>{says}</td>"
            if first
            else "<td></td><td></td>",
            f"<td>{html.escape(entry.shown) if entry and first else ''}</td>",
            f"<td>{html.escape(row.preset)}</td>",
        ]
        if row.claim is None:
            cells.append(f"<td></td><td></td><td></td><td></td><td>{_verdict_html(NOT_RUN)}</td>")
        else:
            c = row.claim
            cells.append(
                f"<td class='src'>{html.escape(row.source)}</td>"
                f"<td>{html.escape(c['statement'])}</td><td>{html.escape(effect_text(c))}</td>"
                f"<td>{seed_count(c)}</td><td>{_verdict_html(c['verdict'])}</td>"
            )
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr><th>code</th>{head}</tr>{''.join(body)}</table>"


def html_page(report: Report) -> str:
    """The whole report as one page that needs no network (plotly.js inlined once)."""
    sections, inlined = [], False
    others = [code for code in claim_codes(report) if report.numbers.claim(code) is None]
    for paper in (*PAPER_ORDER, *(["other"] if others else [])):
        title = report.numbers.papers.get(paper, "Claims not in tlab/papers/paper_numbers.yaml")
        figure = ""
        if paper in FIGURES:
            figure = figure_html(
                FIGURES[paper](report).to_dict(), include_plotlyjs=not inlined, height=480
            )
            inlined = True
        sections.append(
            f"<section><h2>{html.escape(title)}</h2>{figure}{html_table(report, paper)}</section>"
        )
    skipped = (
        f"<p class='meta'>Left out, incomplete (interrupted runs): "
        f"{html.escape(', '.join(report.skipped))}</p>"
        if report.skipped
        else ""
    )
    meta = "".join(
        f"<p class='meta'>{html.escape(line).replace('**', '')}</p>" for line in label(report)
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>tlab: the papers' claims, measured</title><style>{STYLE}</style></head><body>"
        f"<h1>tlab {html.escape(tlab.__version__)}: the papers' claims, measured</h1>{meta}"
        f"{skipped}{''.join(sections)}</body></html>"
    )


def write_report(
    runs_dir: Path | str, out_dir: Path | str, *, readme: Path | str | None = None
) -> dict[str, Path]:
    """Build the report from ``runs_dir`` into ``out_dir`` (``report.html``, ``claims.md``);
    with ``readme``, also write the Markdown table into its claims block. Returns the paths
    written (``html``, ``markdown``, and ``readme`` when it changed)."""
    report = build_report(runs_dir)
    out = writable_dir(Path(out_dir), advice="choose another output folder with --out")
    table = markdown_table(report)
    written = {"html": out / HTML_FILE, "markdown": out / MARKDOWN_FILE}
    written["html"].write_text(html_page(report), encoding="utf-8")
    written["markdown"].write_text(table, encoding="utf-8")
    if readme is not None and update_readme(Path(readme), table):
        written["readme"] = Path(readme)
    return written
