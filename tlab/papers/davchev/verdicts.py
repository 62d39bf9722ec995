"""Davchev et al. (ICML 2019 workshop): the claims of notebooks 07 (D1, D2) and 08 (D3), each a
seed-paired verdict (:mod:`tlab.papers.claims`) computed from the cached evaluations of
:class:`tlab.papers.davchev.lab.Lab`, in the convention of their Table 1 (every evaluation image
attacked; :mod:`tlab.papers.davchev.lab`).

D1's measure, the *transferred ratio* (Sec. 3.1; the captions of Figs. 2 and 4 credit a PGD
source with a higher ratio of transferred robustness than an FGSM one): the black-box accuracy
of ``R_<src>->nat k`` divided by that of ``R_<src>``, the network trained with the same defence
on the target without transfer. Those are the rows the paper measures its transfers against
(Sec. 3.1 calls the last-block transfer of the PGD defence nearly complete against black-box
attacks, reading ``R_pgd->nat 18`` against ``R_pgd``); the source network itself cannot serve,
its task has other classes. Black-box accuracy is the mean of the BB-FGSM and BB-PGD columns:
Sec. 3.1 finds PGD ahead against black-box attacks, while against white-box attacks it sees
both defences keep about the same share. The paper states the comparison for every strategy
and its Table 1 bears it out at each (:func:`paper_d1_ratios`), so D1 must hold at all three.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from tlab.papers.claims import Claim, all_of, any_of, paired_claim, threshold_claim
from tlab.papers.davchev.lab import Lab
from tlab.papers.davchev.paper_table import paper_name, paper_row
from tlab.papers.davchev.setup import (
    PAPER_EPS,
    RETRAINED,
    Network,
    retrained_layers,
)
from tlab.papers.evaluate import eps_index

#: D2's "far above": true-label FGSM at least this much above predicted-label FGSM.
LEAKING_MARGIN = 0.05
#: The source defences D1 compares, the claimed better one first.
D1_SOURCES = ("pgd", "fgsm")


def _at_eps(lab: Lab, row: dict[str, Any], column: str) -> float:
    return float(row[column][eps_index(row["eps"], lab.setup.eps)])


def blackbox(row: dict[str, Any], eps: float) -> float:
    """Mean of the black-box FGSM and PGD accuracy of a table row at ``eps``."""
    index = eps_index(row["eps"], eps)
    return (row["BB-FGSM"][index] + row["BB-PGD"][index]) / 2


def transferred_ratio(transferred: dict[str, Any], baseline: dict[str, Any], eps: float) -> float:
    """Black-box accuracy of a transferred network over that of its baseline (module docstring);
    NaN when the baseline scores 0 (the ratio is undefined; a claim leaves the seed out)."""
    base = blackbox(baseline, eps)
    return blackbox(transferred, eps) / base if base > 0 else float("nan")


def d1_networks(source: str, retrained: str) -> tuple[Network, Network]:
    """D1's pair for one source defence and strategy: ``R_<source>->nat k`` and ``R_<source>``."""
    return Network("nat", source, retrained), Network(source)


def _ratio_frame(
    index: pd.Index, ratios: Callable[[Network, Network], list[float]]
) -> pd.DataFrame:
    """One column per (source, retrained) of D1: ``ratios(transferred, baseline)``."""
    columns = {
        (source, retrained): ratios(*d1_networks(source, retrained))
        for retrained in RETRAINED
        for source in D1_SOURCES
    }
    frame = pd.DataFrame(list(zip(*columns.values(), strict=True)), index=index)
    frame.columns = pd.MultiIndex.from_tuples(list(columns), names=["source", "retrained"])
    return frame


def d1_frame(lab: Lab) -> pd.DataFrame:
    """Per seed (rows), the transferred ratio of each source defence (``"pgd"``, ``"fgsm"``)
    and strategy (``"1"``, ``"block"``, ``"all"``): columns ``(source, retrained)``."""
    eps, seeds = lab.setup.eps, lab.setup.seeds
    return _ratio_frame(
        pd.Index(seeds, name="seed"),
        lambda transferred, baseline: [
            transferred_ratio(lab.row(transferred, seed), lab.row(baseline, seed), eps)
            for seed in seeds
        ],
    )


def paper_d1_ratios() -> pd.DataFrame:
    """The transferred ratios computed from the paper's own Table 1 (one row), in the columns
    of :func:`d1_frame`: the definition gives what Sec. 3.1 reads from the paper's numbers."""
    return _ratio_frame(
        pd.Index(["paper (Table 1)"]),
        lambda transferred, baseline: [
            transferred_ratio(paper_row(transferred), paper_row(baseline), PAPER_EPS)
        ],
    )


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


def fgsm_labels_frame(lab: Lab) -> pd.DataFrame:
    """White-box PGD accuracy of ``R_fgsm`` trained with predicted and with true labels (the
    paper's ``R_fgsm`` and ``R_fgsm_no_ll``), mean over the seeds, beside the paper's Table 1
    (Sec. 3.1: FGSM training that avoids label leaking resists PGD better)."""
    rows = {}
    for network in (Network("fgsm"), Network("fgsm", fgsm_labels="true")):
        measured = [_at_eps(lab, lab.row(network, seed), "WB-PGD") for seed in lab.setup.seeds]
        rows[paper_name(network)] = {
            "network here": network.label(lab.setup.depth),
            "FGSM training labels": network.fgsm_labels,
            f"WB-PGD here (mean of {len(measured)} seed(s))": sum(measured) / len(measured),
            "WB-PGD in the paper (Table 1)": paper_row(network)["WB-PGD"][0],
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def d1_claim(lab: Lab) -> Claim:
    """D1 (Sec. 3.1, Figs. 2 and 4): a PGD-trained source keeps a higher ratio of its black-box
    robustness through clean transfer than an FGSM-trained one, at every strategy; one
    seed-paired part per strategy (module docstring)."""
    seeds = list(lab.setup.seeds)
    d1 = d1_frame(lab)
    layers = retrained_layers(lab.setup.depth)
    return all_of(
        "D1",
        "a PGD-trained source keeps a higher ratio of its black-box robustness after clean "
        "transfer than an FGSM-trained source, at every strategy ("
        + ", ".join(layers[k] for k in RETRAINED)
        + " layers retrained)",
        [
            paired_claim(
                "D1",
                f"{layers[retrained]} layers retrained",
                d1[("pgd", retrained)].tolist(),
                d1[("fgsm", retrained)].tolist(),
                what=f"BB ratio R_pgd->nat {layers[retrained]} / R_pgd vs "
                f"R_fgsm->nat {layers[retrained]} / R_fgsm",
                seeds=seeds,
                percent=False,
            )
            for retrained in RETRAINED
        ],
    )


def transfer_claims(lab: Lab) -> list[Claim]:
    """D1 (:func:`d1_claim`) and D2 (Sec. 2.3: label leaking of FGSM training with true
    labels)."""
    seeds = list(lab.setup.seeds)
    d2 = leaking_frame(lab)
    return [
        d1_claim(lab),
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
    """The means behind D1 (the transferred ratio per source and strategy, and the last-block
    transfers' black-box accuracy, the Table 1 cells a report sets beside the paper's) and D2,
    and the black-box attacker's substitute's clean accuracy on the target, for
    :func:`tlab.record.record`."""
    d1, d2 = d1_frame(lab), leaking_frame(lab)
    seeds, eps = lab.setup.seeds, lab.setup.eps
    last_block = {
        source: [blackbox(lab.row(d1_networks(source, "block")[0], s), eps) for s in seeds]
        for source in D1_SOURCES
    }
    return {
        **{
            f"d1_ratio_{source}_{retrained}": float(d1[(source, retrained)].mean())
            for source, retrained in d1.columns
        },
        **{f"d1_{source}_source_bb": sum(v) / len(v) for source, v in last_block.items()},
        "d2_clean": float(d2["clean"].mean()),
        "d2_fgsm_true": float(d2["fgsm_true_labels"].mean()),
        "d2_fgsm_predicted": float(d2["fgsm_predicted_labels"].mean()),
        "substitute_accuracy": float(lab.substitute().meta["metrics"]["test_accuracy"]),
    }


def d3_claims(lab: Lab) -> list[Claim]:
    """D3 (Sec. 3.2, Table 1): a robust start plus PGD training on the target, all layers
    retrained, beats PGD training on the target alone on white-box PGD accuracy (Table 1's
    convention: every evaluation image attacked)."""
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
    """The means behind D3, for :func:`tlab.record.record`."""
    d3 = d3_frame(lab)
    return {
        "d3_pgd_pgd_all_wb_pgd": float(d3["R_pgd->pgd all: WB-PGD"].mean()),
        "d3_pgd_wb_pgd": float(d3["R_pgd: WB-PGD"].mean()),
    }
