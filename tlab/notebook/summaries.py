"""A notebook summary's sentences about the lab's own results, generated from the verdicts.

A summary cell states what the paper reports; whether *this run* shows it is printed beneath
by :func:`verdict_summary` from the run's claims (:mod:`tlab.papers.claims`), so the text can
never contradict the table above it, whatever the preset or the seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

from IPython.display import Markdown

from tlab.papers.claims import TOO_FEW, Claim

#: How each verdict reads in a sentence.
READS = {
    "holds": "holds in this run",
    "contradicted": "is contradicted by this run (the opposite effect, beyond the noise)",
    "inconclusive": "is inconclusive in this run (the interval includes no effect)",
    TOO_FEW: "cannot be decided in this run (fewer than 3 seeds); the numbers are shown anyway",
}


def verdict_sentence(claim: Claim) -> str:
    """``"**W1** (targeted success: deep > mid > full) holds in this run: <measured>."``"""
    return f"**{claim.code}** ({claim.statement}) {READS[claim.verdict]}: {claim.measured}."


def verdict_summary(claims: Sequence[Claim], *, preset: str, seeds: Sequence[int]) -> Markdown:
    """The summary's bullet list of what this run measured, one sentence per claim."""
    lines = [f"**What this run measured** (preset `{preset}`, seeds {list(seeds)}):", ""]
    lines += [f"- {verdict_sentence(claim)}" for claim in claims]
    return Markdown("\n".join(lines))
