"""The report's inputs: the papers' numbers (``paper_numbers.yaml``) and the runs' records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tlab.errors import TlabError
from tlab.papers.claims import TOO_FEW, VERDICTS
from tlab.presets import PRESETS
from tlab.record import RECORD_DIR_ENV, RECORD_FILE, read_complete

#: The papers' numbers per claim (package data).
PAPER_NUMBERS = Path(__file__).resolve().parents[2] / "papers" / "paper_numbers.yaml"
NOT_RUN = "not run"


@dataclass(frozen=True)
class PaperClaim:
    """What a paper says for one claim code, and its number (None: stated without one)."""

    code: str
    paper: str
    where: str
    says: str
    number: str | None

    @property
    def shown(self) -> str:
        """The paper's number with its place, or "qualitative" with it."""
        return f"{self.number} ({self.where})" if self.number else f"qualitative ({self.where})"


@dataclass(frozen=True)
class PaperNumbers:
    """``paper_numbers.yaml``: the papers' titles, claims and the numbers drawn on figures."""

    papers: dict[str, str]
    claims: tuple[PaperClaim, ...]
    figures: dict[str, Any]

    def claim(self, code: str) -> PaperClaim | None:
        return next((c for c in self.claims if c.code == code), None)


def load_paper_numbers(path: Path = PAPER_NUMBERS) -> PaperNumbers:
    """Read the papers' numbers (see the module docstring)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    claims = tuple(
        PaperClaim(c["code"], c["paper"], c["where"], c["says"], c.get("number"))
        for c in data["claims"]
    )
    unknown = {c.paper for c in claims} - set(data["papers"])
    if unknown:
        raise TlabError(f"{path}: claims name papers {sorted(unknown)} missing from 'papers:'")
    return PaperNumbers(dict(data["papers"]), claims, dict(data["figures"]))


@dataclass(frozen=True)
class Run:
    """One complete record: its folder relative to the runs folder, preset, date, metrics and
    claims (each as :meth:`tlab.papers.claims.Claim.as_record` gave it)."""

    source: str
    preset: str
    date: str
    metrics: dict[str, float]
    claims: tuple[dict[str, Any], ...]


def _check_claim(path: Path, claim: Any) -> None:
    if not isinstance(claim, dict) or not all(
        isinstance(claim.get(key), str) for key in ("code", "statement", "verdict")
    ):
        raise TlabError(
            f"{path}: a recorded claim needs a code, a statement and a verdict, got {claim!r}; "
            "rerun the notebook to record it again"
        )
    if claim["verdict"] not in (*VERDICTS, TOO_FEW):
        raise TlabError(
            f"{path}: claim {claim['code']} has verdict {claim['verdict']!r}, not one of "
            f"{', '.join((*VERDICTS, TOO_FEW))}; rerun the notebook to record it again"
        )
    for part in claim.get("parts", []):
        _check_claim(path, part)


def read_run(path: Path, root: Path) -> Run | None:
    """The run recorded in ``path`` (a ``record.json`` under ``root``); None if the record is
    not complete (its run was interrupted). A record without a preset is an error."""
    data = read_complete(path)
    if data is None:
        return None
    preset = data.get("extra", {}).get("preset") or data.get("parameters", {}).get("PRESET")
    if preset not in PRESETS:
        raise TlabError(
            f"{path} does not say which preset made it (got {preset!r}); rerun that notebook "
            f"with {RECORD_DIR_ENV} set (tlab now records the preset when the notebook starts), "
            "or delete the record"
        )
    claims = data.get("claims", [])
    for claim in claims:
        _check_claim(path, claim)
    return Run(
        source=path.parent.relative_to(root).as_posix() or ".",
        preset=preset,
        date=str(data.get("recorded_at") or "")[:10],
        metrics=dict(data.get("metrics", {})),
        claims=tuple(claims),
    )


def load_runs(runs_dir: Path | str) -> tuple[list[Run], list[str]]:
    """Every complete record under ``runs_dir``, sorted by folder, and the folders whose record
    is incomplete (left out). Raises a :class:`TlabError` saying what to do when there is none."""
    root = Path(runs_dir)
    target = root.resolve() / "quick" / "07"  # absolute: a notebook runs in its own folder
    how = (
        f"record runs first: `mkdir -p {target} && {RECORD_DIR_ENV}={target} python -m tlab run "
        "07`, or `python -m tlab sweep` (every point records)"
    )
    if not root.is_dir():
        raise TlabError(f"runs folder {root} does not exist; {how}")
    runs, skipped = [], []
    for path in sorted(root.rglob(RECORD_FILE)):
        run = read_run(path, root)
        if run is None:
            skipped.append(path.parent.relative_to(root).as_posix())
        else:
            runs.append(run)
    if not runs:
        found = f" ({len(skipped)} incomplete)" if skipped else ""
        raise TlabError(f"no complete {RECORD_FILE} under {root}{found}; {how}")
    return runs, skipped


@dataclass(frozen=True)
class Report:
    """The runs and the papers' numbers the report is made of."""

    runs: tuple[Run, ...]
    skipped: tuple[str, ...]
    numbers: PaperNumbers

    @property
    def presets(self) -> tuple[str, ...]:
        """The presets present in the runs, in :data:`tlab.presets.PRESETS` order."""
        found = {run.preset for run in self.runs}
        return tuple(p for p in PRESETS if p in found)


def build_report(runs_dir: Path | str, numbers: PaperNumbers | None = None) -> Report:
    """Read the runs under ``runs_dir`` (and the papers' numbers)."""
    runs, skipped = load_runs(runs_dir)
    return Report(tuple(runs), tuple(skipped), numbers or load_paper_numbers())
