"""The lab's reference runs: recorded claims a notebook can quote beside its own run.

``reference_runs/<preset>/<notebook>/record.json`` (package data) are records written by
``python -m tlab run ... --preset P`` (:mod:`tlab.record`): the claims of every claims table with
their per-seed effect, interval, seeds and verdict. The README's claims table and
``python -m tlab report --runs tlab/papers/reference_runs`` are built from them; a notebook run
at the one-seed ``quick`` preset quotes the ``standard`` reference (5 seeds) next to a claim it
cannot decide (:func:`tlab.notebook.summaries.verdict_summary`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from tlab.papers.claims import Effect
from tlab.record import RECORD_FILE, read_complete

#: The committed reference records, one folder per preset.
REFERENCE_RUNS = Path(__file__).resolve().parent / "reference_runs"
#: Replications decided before they ran, each a record (its own folder, like a reference run's)
#: written by a script in ``studies/``, which it names as ``extra["study"]``.
REPLICATIONS = REFERENCE_RUNS / "replications"


def _recorded_claims(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every claim of the complete records in ``folder``'s subfolders, by (code, statement),
    each with its run's date as ``recorded_at`` and, if the record names it, its ``study``."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(folder.glob(f"*/{RECORD_FILE}")):
        data = read_complete(path) or {}
        about = {"recorded_at": str(data.get("recorded_at") or "")[:10]}
        if "study" in data.get("extra", {}):
            about["study"] = data["extra"]["study"]
        for claim in data.get("claims", []):
            found[(claim["code"], claim["statement"])] = {**claim, **about}
    return found


@cache
def reference_claims(preset: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every claim recorded in the ``preset`` reference runs, by (code, statement), each with
    the date of its run as ``recorded_at``."""
    return _recorded_claims(REFERENCE_RUNS / preset)


def reference_claim(code: str, statement: str, preset: str = "standard") -> dict[str, Any] | None:
    """The reference run's record of the claim ``code`` stated as ``statement``, or None."""
    return reference_claims(preset).get((code, statement))


@cache
def replications() -> dict[tuple[str, str], dict[str, Any]]:
    """Every claim of the committed replications (:data:`REPLICATIONS`) by (code, statement),
    each with its run's ``recorded_at`` date and ``study`` script."""
    return _recorded_claims(REPLICATIONS)


def describe_effect(evidence: Mapping[str, Any] | None) -> str:
    """The recorded effect as :meth:`tlab.papers.claims.Effect.describe` writes it (points for
    percentages), "undefined" if no seed defined it, "-" for a claim stated by hand."""
    if not evidence:
        return "-"
    found = evidence.get("effect")
    if found is None:
        return f"undefined in every seed (n={len(evidence.get('seeds', []))})"
    nan = float("nan")

    def number(key: str) -> float:
        value = found.get(key)
        return nan if value is None else float(value)

    return Effect(number("mean"), number("low"), number("high"), int(evidence["n"]), "").describe(
        percent=bool(evidence.get("percent", True))
    )


def effect_text(claim: Mapping[str, Any]) -> str:
    """A recorded claim's effect with its interval; a combined claim lists its parts."""
    parts = claim.get("parts") or []
    if parts:
        return "; ".join(
            f"({i}) {p['statement']}: {describe_effect(p.get('evidence'))}, {p['verdict']}"
            for i, p in enumerate(parts, 1)
        )
    evidence = claim.get("evidence")
    if not evidence:
        return f"- ({claim.get('measured', '')})"
    return describe_effect(evidence)
