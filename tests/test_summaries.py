"""tlab.notebook.summaries: a summary's sentences about the run come from its verdicts."""

from __future__ import annotations

import json
from types import SimpleNamespace

from tlab.notebook.summaries import reference_sentence, verdict_summary
from tlab.papers import reference
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


def test_an_undecided_claim_quotes_the_standard_reference_run_of_the_same_claim(
    tmp_path, monkeypatch
):
    five = paired_claim("X1", "a beats b", [0.6, 0.7, 0.65, 0.6, 0.7], [0.5, 0.6, 0.55, 0.5, 0.6],
                        what="acc", seeds=[0, 1, 2, 3, 4])  # fmt: skip
    folder = tmp_path / "standard" / "03_x"
    folder.mkdir(parents=True)
    record = {"recorded_at": "2026-12-02T06:00:00", "claims": [five.as_record()], "complete": True}
    (folder / "record.json").write_text(json.dumps(record))
    monkeypatch.setattr(reference, "REFERENCE_RUNS", tmp_path)
    reference.reference_claims.cache_clear()
    one_seed = paired_claim("X1", "a beats b", [0.6], [0.5], what="acc", seeds=[0])
    other = paired_claim("X1", "a beats c", [0.6], [0.5], what="acc", seeds=[0])
    text = verdict_summary([one_seed, other], preset="quick", seeds=[0]).data
    first, second = [line for line in text.splitlines() if line.startswith("- ")]
    assert "Standard preset's reference run (5 seeds, 2026-12-02): holds, +10 points" in first
    assert "record no claim stated this way" in second
    # a standard run quotes no reference, whatever its verdicts
    assert "reference" not in verdict_summary([one_seed], preset="standard", seeds=[0]).data
    reference.reference_claims.cache_clear()


def test_a_reference_claim_made_of_parts_counts_the_parts_seeds():
    """Davchev's D1 is recorded as three parts (one per strategy), each with its own n."""
    recorded = json.loads(
        (
            reference.REFERENCE_RUNS
            / "standard"
            / "07_robust_features_under_transfer"
            / "record.json"
        ).read_text()
    )
    d1 = next(c for c in recorded["claims"] if c["code"] == "D1")
    assert d1["parts"] and not d1["evidence"]
    n = {part["evidence"]["n"] for part in d1["parts"]}
    sentence = reference_sentence(SimpleNamespace(code="D1", statement=d1["statement"]))
    assert f"({n.pop()} seeds, " in sentence and "?" not in sentence


def test_a_claim_with_a_committed_replication_quotes_it_at_every_preset(tmp_path, monkeypatch):
    """A replication (studies/, fixed seeds decided before the run) is quoted beside the claim
    it replicates, whatever this run's preset; other claims are left alone."""
    ten = paired_claim("X1", "a beats b", [0.6, 0.7] * 5, [0.5, 0.65] * 5, what="acc",
                       seeds=range(5, 15))  # fmt: skip
    folder = tmp_path / "x_seeds_5-14"
    folder.mkdir()
    record = {
        "extra": {"preset": "standard", "study": "studies/x.py"},
        "claims": [ten.as_record()],
        "recorded_at": "2026-12-03T05:00:00+0000",
        "complete": True,
    }
    (folder / "record.json").write_text(json.dumps(record))
    monkeypatch.setattr(reference, "REPLICATIONS", tmp_path)
    reference.replications.cache_clear()
    one_seed = paired_claim("X1", "a beats b", [0.5], [0.6], what="acc", seeds=[0])
    other = paired_claim("X2", "a beats b", [0.6], [0.5], what="acc", seeds=[0])
    for preset in ("quick", "standard"):
        text = verdict_summary([one_seed, other], preset=preset, seeds=[0]).data
        first, second = [line for line in text.splitlines() if line.startswith("- ")]
        quoted = "(5-14, fixed before it ran; `studies/x.py`, 2026-12-03): holds"
        assert f"Replication on 10 other seeds {quoted}" in first
        assert ten.evidence.effect.describe(percent=True) in first
        assert "Replication" not in second
    reference.replications.cache_clear()


def test_notebook_07_quotes_the_committed_d1_replication_beside_its_d1():
    """The replication (studies/davchev_d1_replication.py) states D1 as notebook 07 does, so its
    summary finds it; its seeds are disjoint from the standard reference run's."""
    replicated = {
        code: found for (code, _), found in reference.replications().items() if code == "D1"
    }
    d1 = replicated["D1"]
    standard = reference.reference_claim("D1", d1["statement"], "standard")
    assert standard is not None, "the replication no longer states D1 as notebook 07 does"
    seeds = {s for part in d1["parts"] for s in part["evidence"]["seeds"]}
    standard_seeds = {s for part in standard["parts"] for s in part["evidence"]["seeds"]}
    assert len(seeds) == 10 and not seeds & standard_seeds
    claim = SimpleNamespace(code="D1", statement=d1["statement"], verdict="inconclusive",
                            measured="m")  # fmt: skip
    text = verdict_summary([claim], preset="quick", seeds=[0]).data
    assert "Replication on 10 other seeds (5-14, fixed before it ran" in text
