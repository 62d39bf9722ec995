"""The report's claims table: one row per claim and preset, in Markdown (and the README block)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlab.errors import TlabError
from tlab.papers.claims import TOO_FEW
from tlab.papers.reference import effect_text
from tlab.runs.report.inputs import NOT_RUN, Report

#: The lines that enclose the generated claims table in a README.
README_START = "<!-- report:claims:start -->"
README_END = "<!-- report:claims:end -->"


@dataclass(frozen=True)
class Row:
    """One line of the claims table: a recorded claim, or "not run" (``claim`` None)."""

    code: str
    preset: str
    source: str
    claim: dict[str, Any] | None


def claim_codes(report: Report) -> list[str]:
    known = [c.code for c in report.numbers.claims]
    recorded = {claim["code"] for run in report.runs for claim in run.claims}
    return known + sorted(recorded - set(known))


def claim_rows(report: Report) -> list[Row]:
    """Every claim code (the papers' order, then codes the papers' file lacks), and for each
    preset present in the runs, its recorded claims or one "not run" row."""
    rows = []
    for code in claim_codes(report):
        for preset in report.presets:
            found = [
                Row(code, preset, run.source, claim)
                for run in report.runs
                if run.preset == preset
                for claim in run.claims
                if claim["code"] == code
            ]
            rows.extend(found or [Row(code, preset, "", None)])
    return rows


def seed_count(claim: Mapping[str, Any]) -> str:
    """How many seeds the claim was measured over ("1", "3", or "1-3" across parts)."""
    evidences = [p.get("evidence") for p in claim.get("parts") or []] or [claim.get("evidence")]
    counts = sorted({len(e.get("seeds", [])) for e in evidences if e})
    if not counts:
        return "-"
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def label(report: Report) -> list[str]:
    """What the runs are: per preset, how many runs, the dates, the seeds per claim; and a
    warning when a one-seed preset (smoke, quick) is among them."""
    lines = []
    for preset in report.presets:
        runs = [r for r in report.runs if r.preset == preset]
        dates = sorted({r.date for r in runs if r.date})
        when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}" if dates else "?"
        seeds = sorted(
            {seed_count(c) for r in runs for c in r.claims if seed_count(c) != "-"},
            key=lambda s: int(s.split("-")[0]),
        )
        lines.append(
            f"Preset **{preset}**: {len(runs)} recorded run(s) of {when}; seeds per claim: "
            f"{', '.join(seeds) or 'no claims recorded'}."
        )
    if {"smoke", "quick"} & set(report.presets):
        lines.append(
            "The smoke and quick presets run one seed: their verdicts read "
            f'"{TOO_FEW}" (the quick preset shows each effect on seed 0; smoke trains tiny '
            "models and is a test of the pipeline); the standard preset (5 seeds) tests the claims."
        )
    return lines


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


MARKDOWN_HEADER = (
    "| claim | the paper | preset | run | the lab's claim | effect, 95 % CI | seeds | verdict |",
    "|---|---|---|---|---|---|---|---|",
)


def markdown_table(report: Report) -> str:
    """The claims table in Markdown, with :func:`label` above it."""
    lines = [*(f"{line}\n" for line in label(report)), *MARKDOWN_HEADER]
    seen: set[str] = set()
    for row in claim_rows(report):
        paper = report.numbers.claim(row.code)
        first = row.code not in seen
        seen.add(row.code)
        says = f"**{row.code}** {paper.says}" if paper else f"**{row.code}**"
        shown = (paper.shown if paper else "not in paper_numbers.yaml") if first else ""
        if row.claim is None:
            cells = ["", "", "", "", NOT_RUN]
        else:
            c = row.claim
            cells = [
                f"`{row.source}`",
                c["statement"],
                effect_text(c),
                seed_count(c),
                f"**{c['verdict']}**",
            ]
        cells = [says if first else "", shown, row.preset, *cells]
        lines.append("| " + " | ".join(_md(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, table: str) -> bool:
    """Replace the text between :data:`README_START` and :data:`README_END` in ``readme`` by
    ``table``; True if the file changed."""
    text = readme.read_text(encoding="utf-8")
    if text.count(README_START) != 1 or text.count(README_END) != 1:
        raise TlabError(
            f"{readme} needs exactly one line {README_START} and one line {README_END} where "
            "the claims table goes; add them and run the command again"
        )
    head, rest = text.split(README_START)
    _, tail = rest.split(README_END)
    new = f"{head}{README_START}\n{table}{README_END}{tail}"
    if new == text:
        return False
    readme.write_text(new, encoding="utf-8")
    return True


def readme_block(text: str) -> str:
    """The text between the markers of a README (what :func:`update_readme` wrote there)."""
    if README_START not in text or README_END not in text:
        raise TlabError(f"no {README_START} ... {README_END} block in this text")
    return text.split(README_START, 1)[1].split(README_END, 1)[0].removeprefix("\n")
