"""tlab.notebook.summaries: a summary's sentences about the run come from its verdicts."""

from __future__ import annotations

from tlab.notebook.summaries import verdict_summary
from tlab.papers.claims import paired_claim


def test_each_verdict_becomes_its_own_sentence_with_the_numbers():
    holds = paired_claim("X1", "a beats b", [0.6, 0.7, 0.65], [0.5, 0.6, 0.55], what="acc",
                         seeds=[0, 1, 2])  # fmt: skip
    reversed_ = paired_claim("X2", "b beats a", [0.5, 0.6, 0.55], [0.6, 0.7, 0.65], what="acc",
                             seeds=[0, 1, 2])  # fmt: skip
    one_seed = paired_claim("X3", "a beats b", [0.6], [0.5], what="acc", seeds=[0])
    text = verdict_summary([holds, reversed_, one_seed], preset="smoke", seeds=[0, 1, 2]).data
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(lines) == 3 and "preset `smoke`, seeds [0, 1, 2]" in text
    assert "**X1** (a beats b) holds in this run" in lines[0] and holds.measured in lines[0]
    assert "**X2**" in lines[1] and "contradicted" in lines[1]
    assert "**X3**" in lines[2] and "fewer than 3 seeds" in lines[2]
