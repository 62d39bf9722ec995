"""At the default preset (``quick``) each notebook shows its paper's main effect on seed 0.

Checked on the committed record of the default run (``tlab/papers/reference_runs/quick/``,
written by ``python -m tlab run 02 03 ... 11 --preset quick``): the numbers a student sees when
running the notebooks as they open. Issue 16 sets the thresholds; for Zhang et al. (02-06): the
source model at least 85 % on its own domain, FT more accurate than Scratch on clean images of
B, more robust to white-box FGSM at 4/255, and far more fooled by the source model's examples.
Davchev et al. (07, 08): the black-box substitute at least 70 % accurate on the target, and a
PGD-trained source that, PGD-trained again on the target, beats target-only PGD training under
white-box PGD (D3). Davchev's D1 ordering (a PGD source keeps a larger share of its black-box
robustness than an FGSM source at every strategy) does *not* show on seed 0 of the default: it
holds at one strategy of three in the committed record (the last block; on the Xeon of sessions
13-17 at two, the last block and all layers, never with 1 layer; notebook 07 prints the
per-strategy differences and why a single seed cannot decide), so no test asserts it; notebook
07 quotes beside it the standard reference run (5 seeds, inconclusive) and a replication on ten
other seeds (holds with 1 layer and the last block retrained, inconclusive with all layers;
``tests/test_summaries.py``). Wang et al.
(09-11): the deep-layer student fooled in at least half of the pairs and success falling from
deep to mid to full fine-tuning (W1); the fingerprint's Gini below 0.1 for the true teacher only
(W3); input dropout taking targeted success down faster than clean accuracy (W4); the adaptive
attacker winning back a part of it (W6, positive margin). W5 (neuron-distance retraining beats
its no-penalty control) does not show on seed 0 (both lose the same 15 points of success) and is
not asserted.

The same checks run on any other run of the default preset, to see whether the effects show on
this machine too (another CPU trains slightly different models)::

    python -m tlab run 02 03 04 07 08 09 10 11 --preset quick --out /tmp/run
    TLAB_DEFAULT_RECORDS=/tmp/run/records pytest tests/test_default_preset.py

On a 2-core Intel Xeon with AMX (sessions 13 to 17, with torch's CUDA build and, in session 16,
its CPU build too: the same recorded numbers bit for bit; the committed records come from an AMD
EPYC, but 05's, which no check here reads) every check passed but W3's: the largest diagonal Gini
was 0.118 every time, which is that deep student's bias-only Gini, so the fixed cut-off of 0.1
cannot be reached there (docs/lecturer.md, class 3).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tlab.papers.reference import REFERENCE_RUNS
from tlab.record import RECORD_FILE

QUICK = Path(os.environ.get("TLAB_DEFAULT_RECORDS") or REFERENCE_RUNS / "quick")


def _record(notebook: str) -> dict[str, Any]:
    data = json.loads((QUICK / notebook / RECORD_FILE).read_text(encoding="utf-8"))
    assert data["complete"] and data["extra"]["preset"] == "quick", notebook
    return data


def test_the_default_record_is_one_seed_seed_0():
    for notebook in ("02_transfer_strategies", "03_whitebox_robustness", "06_gradient_norms"):
        assert _record(notebook)["extra"]["seeds"] == [0]
    for notebook in ("07_robust_features_under_transfer", "08_defences_improved_by_transfer"):
        for claim in _record(notebook)["claims"]:
            for part in claim["parts"] or [claim]:
                assert part["evidence"]["seeds"] == [0], (notebook, claim["code"])


def test_zhang_source_model_fine_tuning_and_both_sides_of_the_coin_show_on_seed_0():
    m = _record("03_whitebox_robustness")["metrics"]
    assert m["a_own_accuracy"] >= 0.85  # A on its own domain's test set
    assert m["clean_ft0"] > m["clean_scratch"] and m["clean_ft4"] > m["clean_scratch"]
    assert m["wb4_ft0"] > m["wb4_scratch"]  # white-box FGSM at 4/255
    bb = _record("04_blackbox_from_the_source")["metrics"]
    for eps in (4, 8):  # the source's black-box examples: FT loses at least twice what Scratch does
        for ft in ("ft0", "ft4"):
            assert 1 - bb[f"bb{eps}_{ft}"] >= 2 * (1 - bb[f"bb{eps}_scratch"]), (eps, ft)


def test_davchev_substitute_learns_the_target_and_a_robust_source_helps_pgd_training_on_seed_0():
    assert _record("07_robust_features_under_transfer")["metrics"]["substitute_accuracy"] >= 0.70
    m = _record("08_defences_improved_by_transfer")["metrics"]
    assert m["d3_pgd_pgd_all_wb_pgd"] > m["d3_pgd_wb_pgd"]  # R_pgd->pgd all vs R_pgd, WB-PGD


def _parts(notebook: str, code: str) -> list[dict[str, Any]]:
    claim = next(c for c in _record(notebook)["claims"] if c["code"] == code)
    assert all(p["evidence"]["seeds"] == [0] for p in claim["parts"] or [claim]), code
    return [p["evidence"] for p in claim["parts"] or [claim]]


def test_wang_deep_students_are_fooled_and_success_falls_with_fine_tuning_on_seed_0():
    deep_vs_mid, mid_vs_full = _parts("09_mimicry_attack", "W1")
    deep, mid, full = deep_vs_mid["better"][0], deep_vs_mid["worse"][0], mid_vs_full["worse"][0]
    assert mid_vs_full["better"][0] == mid
    assert deep >= 0.5
    assert deep > mid > full


def test_wang_fingerprint_dropout_and_the_adaptive_attacker_show_on_seed_0():
    true_teacher, others = _parts("10_fingerprinting_the_teacher", "W3")
    assert true_teacher["values"][0] < 0.1 < others["values"][0]  # largest diagonal, smallest off
    (w4,) = _parts("11_defenses_and_adaptive_attacks", "W4")
    assert w4["better"][0] > w4["worse"][0]  # relative fall: targeted success vs clean accuracy
    (w6,) = _parts("11_defenses_and_adaptive_attacks", "W6")
    assert w6["values"][0] > 0  # won back more than half of what dropout took
