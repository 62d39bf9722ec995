"""Davchev et al. (ICML 2019 workshop): the claims of notebooks 07 (D1, D2) and 08 (D3), each a
seed-paired verdict (:mod:`tlab.papers.claims`) computed from the cached evaluations of
:class:`tlab.papers.davchev.lab.Lab`."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tlab.papers.claims import Claim, any_of, paired_claim, threshold_claim
from tlab.papers.davchev.lab import Lab
from tlab.papers.davchev.setup import Network, retrained_layers
from tlab.papers.evaluate import eps_index

#: D2's "far above": true-label FGSM at least this much above predicted-label FGSM.
LEAKING_MARGIN = 0.05


def _at_eps(lab: Lab, row: dict[str, Any], column: str) -> float:
    return float(row[column][eps_index(row["eps"], lab.setup.eps)])


def blackbox(lab: Lab, network: Network, seed: int) -> float:
    """Mean of black-box FGSM and PGD accuracy of ``network`` at the training eps."""
    row = lab.row(network, seed)
    return (_at_eps(lab, row, "BB-FGSM") + _at_eps(lab, row, "BB-PGD")) / 2


def d1_numbers(lab: Lab) -> dict[str, list[float]]:
    """Per seed, the black-box accuracy of the last-block transfers from a PGD-trained and an
    FGSM-trained source (Sec. 3.1)."""
    return {
        source: [blackbox(lab, Network("nat", source, "block"), seed) for seed in lab.setup.seeds]
        for source in ("pgd", "fgsm")
    }


def leaking_frame(lab: Lab) -> pd.DataFrame:
    """Per seed, :meth:`Lab.leaking` of the network FGSM-trained with true labels (Sec. 2.3)."""
    seeds = lab.setup.seeds
    rows = [lab.leaking(Network("fgsm", fgsm_labels="true"), seed) for seed in seeds]
    return pd.DataFrame(rows, index=pd.Index(seeds, name="seed"))


def d3_frame(lab: Lab) -> pd.DataFrame:
    """Per seed, white-box PGD and clean accuracy of ``R_pgd->pgd all`` and ``R_pgd``."""
    robust_start, target_only = Network("pgd", "pgd", "all"), Network("pgd")
    rows = []
    for seed in lab.setup.seeds:
        start, alone = lab.row(robust_start, seed), lab.row(target_only, seed)
        rows.append(
            {
                "seed": seed,
                "R_pgd->pgd all: WB-PGD": _at_eps(lab, start, "WB-PGD"),
                "R_pgd: WB-PGD": _at_eps(lab, alone, "WB-PGD"),
                "R_pgd->pgd all: clean": start["Natural"],
                "R_pgd: clean": alone["Natural"],
            }
        )
    return pd.DataFrame(rows).set_index("seed")


def transfer_claims(lab: Lab) -> list[Claim]:
    """D1 (Sec. 3.1: a PGD-trained source transfers more black-box robustness than an
    FGSM-trained one) and D2 (Sec. 2.3: label leaking of FGSM training with true labels)."""
    seeds = list(lab.setup.seeds)
    d1, d2 = d1_numbers(lab), leaking_frame(lab)
    block = retrained_layers(lab.setup.depth)["block"]
    return [
        paired_claim(
            "D1",
            "a PGD-trained source keeps more black-box robustness after transfer (last "
            f"block, {block} layers, retrained) than an FGSM-trained source",
            d1["pgd"],
            d1["fgsm"],
            what="mean BB accuracy, PGD source vs FGSM source",
            seeds=seeds,
        ),
        any_of(
            "D2",
            "label leaking: the FGSM-trained (true labels) network scores better on "
            "true-label FGSM examples than on clean ones, or far above predicted-label FGSM",
            [
                paired_claim(
                    "D2",
                    "above clean",
                    d2["fgsm_true_labels"],
                    d2["clean"],
                    what="FGSM (true labels) vs clean",
                    seeds=seeds,
                ),
                threshold_claim(
                    "D2",
                    "far above predicted-label FGSM",
                    d2["fgsm_true_labels"] - d2["fgsm_predicted_labels"],
                    LEAKING_MARGIN,
                    above=True,
                    what="FGSM (true labels) - FGSM (predicted labels)",
                    seeds=seeds,
                ),
            ],
        ),
    ]


def transfer_record(lab: Lab) -> dict[str, float]:
    """The means behind D1 and D2, for :func:`tlab.runs.record.record`."""
    d1, d2 = d1_numbers(lab), leaking_frame(lab)
    return {
        "d1_pgd_source_bb": sum(d1["pgd"]) / len(d1["pgd"]),
        "d1_fgsm_source_bb": sum(d1["fgsm"]) / len(d1["fgsm"]),
        "d2_clean": float(d2["clean"].mean()),
        "d2_fgsm_true": float(d2["fgsm_true_labels"].mean()),
        "d2_fgsm_predicted": float(d2["fgsm_predicted_labels"].mean()),
    }


def d3_claims(lab: Lab) -> list[Claim]:
    """D3 (Sec. 3.2, Table 1): a robust start plus PGD training on the target, all layers
    retrained, beats PGD training on the target alone on white-box PGD accuracy."""
    d3 = d3_frame(lab)
    return [
        paired_claim(
            "D3",
            "robust initialisation + PGD training on the target (all layers) beats target-only "
            "PGD training on white-box PGD accuracy",
            d3["R_pgd->pgd all: WB-PGD"].tolist(),
            d3["R_pgd: WB-PGD"].tolist(),
            what="WB-PGD accuracy, R_pgd->pgd all vs R_pgd",
            seeds=list(lab.setup.seeds),
        )
    ]


def d3_record(lab: Lab) -> dict[str, float]:
    """The means behind D3, for :func:`tlab.runs.record.record`."""
    d3 = d3_frame(lab)
    return {
        "d3_pgd_pgd_all_wb_pgd": float(d3["R_pgd->pgd all: WB-PGD"].mean()),
        "d3_pgd_wb_pgd": float(d3["R_pgd: WB-PGD"].mean()),
    }
