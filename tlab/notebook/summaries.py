"""A notebook summary's sentences about the lab's own results, generated from the verdicts.

A summary cell states what the paper reports; whether *this run* shows it is printed beneath
by :func:`verdict_summary` from the run's claims (:mod:`tlab.papers.claims`), so the text can
never contradict the table above it, whatever the preset or the seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

from IPython.display import Markdown

from tlab.papers.claims import TOO_FEW, Claim
from tlab.papers.reference import effect_text, reference_claim, replications

#: How each verdict reads in a sentence.
READS = {
    "holds": "holds in this run",
    "contradicted": "is contradicted by this run (the opposite effect, beyond the noise)",
    "inconclusive": "is inconclusive in this run (the interval includes no effect)",
    TOO_FEW: "cannot be decided in this run (fewer than 3 seeds); the numbers are shown anyway",
}
#: The preset whose reference run a one-seed run quotes (:mod:`tlab.papers.reference`).
REFERENCE_PRESET = "standard"


def verdict_sentence(claim: Claim, preset: str = REFERENCE_PRESET) -> str:
    """``"**W1** (targeted success: deep > mid > full) holds in this run: <measured>."``; a
    claim this run cannot decide also gets the standard preset's reference result, and a claim
    with a committed replication (:func:`tlab.papers.reference.replications`) that one."""
    sentence = f"**{claim.code}** ({claim.statement}) {READS[claim.verdict]}: {claim.measured}."
    if claim.verdict == TOO_FEW and preset != REFERENCE_PRESET:
        sentence = f"{sentence} {reference_sentence(claim)}"
    replicated = replications().get((claim.code, claim.statement))
    if replicated is not None:
        sentence = f"{sentence} {replication_sentence(replicated)}"
    return sentence


def reference_sentence(claim: Claim) -> str:
    """What the standard preset's reference run recorded for the same claim."""
    found = reference_claim(claim.code, claim.statement, REFERENCE_PRESET)
    if found is None:
        return f"The {REFERENCE_PRESET} reference runs record no claim stated this way."
    return (
        f"*{REFERENCE_PRESET.capitalize()} preset's reference run ({_seed_count(found)} seeds, "
        f"{found['recorded_at']}): {found['verdict']}, {effect_text(found)}.*"
    )


def replication_sentence(replicated: dict) -> str:
    """What a committed replication (:func:`tlab.papers.reference.replications`) recorded for
    the claim: its seeds, study script, date, verdict and effects."""
    seeds = sorted({seed for evidence in _evidences(replicated) for seed in evidence["seeds"]})
    return (
        f"*Replication on {len(seeds)} other seeds ({seeds[0]}-{seeds[-1]}, fixed before it ran; "
        f"`{replicated['study']}`, {replicated['recorded_at']}): {replicated['verdict']}, "
        f"{effect_text(replicated)}.*"
    )


def _evidences(recorded: dict) -> list[dict]:
    """A recorded claim's evidence and its parts' (D1: one part per strategy), where present."""
    parts = [recorded, *(recorded.get("parts") or [])]
    return [part["evidence"] for part in parts if part.get("evidence")]


def _seed_count(recorded: dict) -> str:
    """How many seeds a recorded claim rests on: its own evidence's n, or, for a claim made of
    parts, the parts' n ("5", or "3-5" if they differ)."""
    counts = {e["n"] for e in _evidences(recorded) if e.get("n") is not None}
    if not counts:
        return "?"
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def verdict_summary(claims: Sequence[Claim], *, preset: str, seeds: Sequence[int]) -> Markdown:
    """The summary's bullet list of what this run measured, one sentence per claim."""
    lines = [f"**What this run measured** (preset `{preset}`, seeds {list(seeds)}):", ""]
    lines += [f"- {verdict_sentence(claim, preset)}" for claim in claims]
    return Markdown("\n".join(lines))
