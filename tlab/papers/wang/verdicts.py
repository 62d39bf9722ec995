"""Wang et al. (USENIX Security 2018): the claims of notebooks 09 (W1, W2), 10 (W3) and 11
(W4-W6), each a seed-paired verdict (:mod:`tlab.papers.claims`) computed from the cached tables
of :mod:`~tlab.papers.wang.tables`, :mod:`~tlab.papers.wang.fingerprinting` and
:mod:`~tlab.papers.wang.defending` (one table per seed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tlab.attacks.fingerprint import GINI_THRESHOLD
from tlab.papers.claims import Claim, all_of, mean_spread, paired_claim, threshold_claim

Rows = Sequence[Mapping[str, Any]]

#: W5: the most clean accuracy neuron-distance retraining may cost (the lab's reading of Sec.
#: 6.2's "without significantly impacting classification accuracy").
ACCURACY_COST = 0.05
#: W5's control: retraining with this threshold, where the penalty is barely active.
CONTROL_THRESHOLD = 0.001


def success(rows: Rows, kind: str, layer: int, budget: float) -> float:
    """The targeted success of :func:`~tlab.papers.wang.tables.targeted_table` for one student
    kind, attacked layer and budget."""
    return next(
        r["success"]
        for r in rows
        if r["student"] == kind and r["layer"] == layer and r["budget"] == budget
    )


def attack_claims(
    grids: Mapping[int, Rows], frozen: Mapping[str, int], layers: Sequence[int], budget: float
) -> list[Claim]:
    """W1 (Sec. 4.2: targeted success deep > mid > full) and W2 (Sec. 4.3: success against the
    attacked layer peaks at the student's K) from one targeted table per seed. ``frozen`` maps
    each kind to its K (0 for ``full``, which is attacked at the last layer)."""
    seeds, last = list(grids), max(layers)

    def at_k(seed: int, kind: str) -> float:
        return success(grids[seed], kind, frozen[kind] or last, budget)

    def peak_margin(seed: int, kind: str) -> float:  # success at K minus the best other layer
        others = (success(grids[seed], kind, n, budget) for n in layers if n != frozen[kind])
        return at_k(seed, kind) - max(others)

    w1 = {kind: [at_k(seed, kind) for seed in seeds] for kind in frozen}
    return [
        all_of(
            "W1",
            "targeted success: deep-layer > mid-layer > full fine-tuning",
            [
                paired_claim(
                    "W1",
                    "deep > mid",
                    w1["deep"],
                    w1["mid"],
                    what="success, deep vs mid",
                    seeds=seeds,
                ),
                paired_claim(
                    "W1",
                    "mid > full",
                    w1["mid"],
                    w1["full"],
                    what="success, mid vs full",
                    seeds=seeds,
                ),
            ],
        ),
        all_of(
            "W2",
            "success vs attacked layer peaks at the student's last frozen layer K",
            [
                threshold_claim(
                    "W2",
                    f"{kind}: peak at K",
                    [peak_margin(seed, kind) for seed in seeds],
                    0.0,
                    above=True,
                    what=f"{kind}: success at K minus the best other layer",
                    seeds=seeds,
                )
                for kind in ("deep", "mid")
            ],
        ),
    ]


def fingerprint_numbers(ginis: Mapping[int, Sequence[Sequence[float]]]) -> dict[str, list]:
    """Per seed, from the Gini matrix of each seed (rows: fingerprints of each candidate,
    columns: students built from each candidate): the largest Gini on the diagonal (true
    teachers), the smallest off it (other candidates), and whether every student's smallest
    Gini is its true teacher."""
    out: dict[str, list] = {"diagonal": [], "off_diagonal": [], "found": []}
    for g in ginis.values():
        n = len(g)
        out["diagonal"].append(max(g[i][i] for i in range(n)))
        out["off_diagonal"].append(min(g[i][j] for i in range(n) for j in range(n) if i != j))
        columns = [[g[i][j] for i in range(n)] for j in range(n)]
        out["found"].append(all(column.index(min(column)) == j for j, column in enumerate(columns)))
    return out


def fingerprint_claims(ginis: Mapping[int, Sequence[Sequence[float]]]) -> list[Claim]:
    """W3 (Sec. 5.1): a fingerprint's Gini is below 0.1 for the true teacher and above it for
    every other candidate, for every deep-layer student."""
    seeds, numbers = list(ginis), fingerprint_numbers(ginis)
    count = len(next(iter(ginis.values())))
    return [
        all_of(
            "W3",
            f"fingerprint Gini < {GINI_THRESHOLD} for the true teacher, > {GINI_THRESHOLD} for "
            f"every other candidate ({count} candidates), for every deep-layer student",
            [
                threshold_claim(
                    "W3",
                    "true teacher",
                    numbers["diagonal"],
                    GINI_THRESHOLD,
                    above=False,
                    what="largest Gini on the diagonal",
                    seeds=seeds,
                    percent=False,
                ),
                threshold_claim(
                    "W3",
                    "other candidates",
                    numbers["off_diagonal"],
                    GINI_THRESHOLD,
                    above=True,
                    what="smallest Gini off the diagonal",
                    seeds=seeds,
                    percent=False,
                ),
            ],
        )
    ]


def _relative_fall(before: float, after: float) -> float:
    return (before - after) / before if before > 0 else float("nan")


def defence_numbers(
    drop: Mapping[int, Rows], nd: Mapping[int, Rows], ratio: float, threshold: float
) -> dict[str, list[float]]:
    """Per seed, the quantities of W4-W6 from :func:`~tlab.papers.wang.defending.dropout_table`
    (at drop ratio ``ratio``) and :func:`~tlab.papers.wang.defending.neuron_distance_table`
    (at ``threshold``, against 0 = not retrained and the :data:`CONTROL_THRESHOLD` control)."""
    out: dict[str, list[float]] = {}
    for seed in drop:
        d = {r["ratio"]: r for r in drop[seed]}
        n = {r["threshold"]: r for r in nd[seed]}
        values = {
            "success_fall": _relative_fall(d[0.0]["targeted"], d[ratio]["targeted"]),
            "accuracy_fall": _relative_fall(d[0.0]["accuracy"], d[ratio]["accuracy"]),
            "taken": d[0.0]["targeted"] - d[ratio]["targeted"],
            "won_back": d[ratio]["adaptive"] - d[ratio]["targeted"],
            "nd_success": n[0.0]["success"] - n[threshold]["success"],
            "nd_accuracy": n[0.0]["accuracy"] - n[threshold]["accuracy"],
            "nd_gini": n[threshold]["gini"],
            "control_success": n[0.0]["success"] - n[CONTROL_THRESHOLD]["success"],
            "control_gini": n[CONTROL_THRESHOLD]["gini"],
        }
        for key, value in values.items():
            out.setdefault(key, []).append(value)
    return out


def defence_claims(
    drop: Mapping[int, Rows], nd: Mapping[int, Rows], ratio: float, threshold: float
) -> list[Claim]:
    """W4 (Sec. 6.1: input dropout lowers targeted success faster than clean accuracy), W5
    (Sec. 6.2: neuron-distance retraining beats a barely penalised control on success and on
    the fingerprint Gini, at a small cost in accuracy) and W6 (Sec. 6.1, limitations: an
    attacker who adds dropout to the crafting wins most of it back), from one table of each
    kind per seed."""
    seeds, v = list(drop), defence_numbers(drop, nd, ratio, threshold)
    return [
        paired_claim(
            "W4",
            "input dropout lowers targeted success faster than clean accuracy",
            v["success_fall"],
            v["accuracy_fall"],
            what=f"relative fall at ratio {ratio:g}: targeted success vs clean accuracy",
            seeds=seeds,
        ),
        all_of(
            "W5",
            f"neuron-distance retraining (threshold {threshold:g}) lowers targeted success more "
            "than the same retraining without an active penalty, loses < 5 points of clean "
            f"accuracy and lifts the true teacher's Gini above the control's and above "
            f"{GINI_THRESHOLD}",
            [
                paired_claim(
                    "W5",
                    "beats the control on success",
                    v["nd_success"],
                    v["control_success"],
                    what="fall of success, penalised vs control",
                    seeds=seeds,
                ),
                threshold_claim(
                    "W5",
                    "accuracy",
                    v["nd_accuracy"],
                    ACCURACY_COST,
                    above=False,
                    what="clean accuracy lost",
                    seeds=seeds,
                ),
                paired_claim(
                    "W5",
                    "beats the control on Gini",
                    v["nd_gini"],
                    v["control_gini"],
                    what="Gini, penalised vs control",
                    seeds=seeds,
                    percent=False,
                ),
                threshold_claim(
                    "W5",
                    "Gini",
                    v["nd_gini"],
                    GINI_THRESHOLD,
                    above=True,
                    what="Gini of the true teacher",
                    seeds=seeds,
                    percent=False,
                ),
            ],
        ),
        threshold_claim(
            "W6",
            "the adaptive (EOT) attacker recovers most of the success that dropout took away",
            [w - t / 2 for w, t in zip(v["won_back"], v["taken"], strict=True)],
            0.0,
            above=True,
            what=f"ratio {ratio:g}: success won back minus half of what dropout took "
            f"(took {mean_spread(v['taken'])}, won back {mean_spread(v['won_back'])})",
            seeds=seeds,
        ),
    ]
