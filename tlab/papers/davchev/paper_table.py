"""Davchev et al. (ICML 2019 workshop): the paper's own Table 1 (CIFAR100 -> CIFAR10, ResNet56,
eps 0.0625 in [-1, 1] pixels), in the shape of the lab's rows so that the lab's arithmetic (D1's
transferred ratio, the R_fgsm vs R_fgsm_no_ll comparison) applies to the paper's numbers too."""

from __future__ import annotations

from typing import Any

from tlab.errors import TlabError
from tlab.papers.davchev.setup import ATTACK_COLUMNS, PAPER_EPS, Network

#: Davchev et al.'s Table 1 (CIFAR100 -> CIFAR10, ResNet56, eps 0.0625 in [-1, 1] pixels), in
#: percent, columns :data:`COLUMNS`, rows in the paper's order and with its names
#: (``R_fgsm_no_ll``: FGSM training with the true labels, see :func:`paper_name`). The paper
#: does not say which labels its FGSM-trained *transfers* crafted with; the authors' transfer
#: script names those with FGSM on the target ``..._no_ll`` (``transfer.py``).
PAPER_TABLE1: dict[str, tuple[float, float, float, float, float]] = {
    "R_nat": (92.5, 34.7, 12.6, 20.0, 0.0),
    "R_nat->nat 1": (73.1, 33.5, 30.2, 7.4, 0.0),
    "R_nat->nat 18": (91.2, 41.1, 24.6, 18.4, 0.0),
    "R_nat->nat 56": (92.6, 35.0, 14.9, 18.5, 0.0),
    "R_fgsm": (87.1, 81.5, 82.2, 78.6, 13.5),
    "R_fgsm_no_ll": (87.4, 76.0, 78.1, 88.5, 0.2),
    "R_fgsm->nat 1": (69.0, 46.3, 54.0, 23.5, 0.0),
    "R_fgsm->nat 18": (89.1, 58.3, 65.1, 43.3, 2.4),
    "R_fgsm->nat 56": (91.9, 37.9, 27.9, 23.6, 0.0),
    "R_nat->fgsm 1": (69.3, 40.9, 38.8, 13.1, 0.0),
    "R_nat->fgsm 18": (77.3, 65.0, 60.2, 41.9, 0.5),
    "R_nat->fgsm 56": (88.1, 69.3, 71.3, 78.4, 1.8),
    "R_fgsm->fgsm 1": (66.6, 56.2, 60.0, 42.7, 0.2),
    "R_fgsm->fgsm 18": (87.2, 71.4, 76.6, 67.5, 2.9),
    "R_fgsm->fgsm 56": (85.7, 65.2, 66.3, 72.3, 1.5),
    "R_pgd": (83.9, 81.1, 82.1, 45.4, 36.1),
    "R_pgd->nat 1": (64.9, 62.6, 63.0, 18.0, 12.0),
    "R_pgd->nat 18": (84.6, 80.4, 81.6, 26.2, 12.5),
    "R_pgd->nat 56": (91.4, 42.4, 31.9, 19.9, 0.0),
    "R_nat->pgd 1": (52.2, 30.6, 32.8, 13.2, 0.0),
    "R_nat->pgd 18": (60.8, 31.6, 30.7, 20.0, 1.0),
    "R_nat->pgd 56": (81.5, 79.2, 79.9, 45.6, 39.2),
    "R_pgd->pgd 1": (61.3, 59.6, 60.0, 25.6, 20.3),
    "R_pgd->pgd 18": (81.3, 78.6, 79.6, 45.1, 39.1),
    "R_pgd->pgd 56": (82.6, 80.1, 80.9, 47.7, 41.3),
}


def paper_name(network: Network) -> str:
    """The name of ``network``'s row in Davchev's Table 1: its ResNet56 label, ``R_fgsm_no_ll``
    for ``R_fgsm`` trained with the true labels. A TlabError if the paper has no such row."""
    name = network.label(56).replace(" (true labels)", "_no_ll")
    if name not in PAPER_TABLE1:
        raise TlabError(
            f"Davchev's Table 1 has no row for {network.label(56)}; its rows: "
            + ", ".join(PAPER_TABLE1)
        )
    return name


def paper_row(network: Network) -> dict[str, Any]:
    """``network``'s row of Davchev's Table 1 in the shape of ``tlab.papers.davchev.Lab.row``
    (fractions, one eps: :data:`PAPER_EPS`), so the lab's arithmetic applies to the paper's
    numbers too."""
    values = PAPER_TABLE1[paper_name(network)]
    row: dict[str, Any] = {"eps": [PAPER_EPS], "Natural": values[0] / 100}
    row.update({column: [v / 100] for column, v in zip(ATTACK_COLUMNS, values[1:], strict=True)})
    return row
