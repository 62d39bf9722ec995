"""The lab's map: every notebook, the paper section it teaches, and whether it exists yet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tlab.errors import UnknownNameError

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"


@dataclass(frozen=True)
class NotebookInfo:
    """One numbered notebook of the lab."""

    name: str
    paper: str
    section: str
    teaches: str

    @property
    def path(self) -> Path:
        return NOTEBOOK_DIR / f"{self.name}.ipynb"

    @property
    def available(self) -> bool:
        return self.path.exists()


CATALOG: tuple[NotebookInfo, ...] = (
    NotebookInfo("00_start_here", "all three", "-",
                 "the lab's map, the device, every embedded domain, one model from the zoo, "
                 "one FGSM example with an eps slider"),
    NotebookInfo("01_adversarial_examples", "Zhang et al. 2020", "3.3",
                 "FGSM and PGD, accuracy vs eps, the [0, 1] vs [-1, 1] eps conventions"),
    NotebookInfo("02_transfer_strategies", "Zhang et al. 2020", "3.1-3.2, Fig. 1",
                 "Scratch, Fine-tune and CommonInit; how many frozen stages"),
    NotebookInfo("03_whitebox_robustness", "Zhang et al. 2020", "5.1, Fig. 3",
                 "fine-tuned models resist white-box FGSM better than Scratch"),
    NotebookInfo("04_blackbox_from_the_source", "Zhang et al. 2020", "3.4-3.5, 5.2, Figs. 2, 4, 5",
                 "the source model attacks its fine-tuned student with no query; gamma"),
    NotebookInfo("05_ablations", "Zhang et al. 2020", "6, Figs. 6-9",
                 "n_B, n_A, the choice of source domain, the architecture"),
    NotebookInfo("06_gradient_norms", "Zhang et al. 2020", "7, Fig. 10",
                 "input-gradient norms of Scratch vs fine-tuned models"),
    NotebookInfo("07_robust_features_under_transfer", "Davchev et al. 2019",
                 "2, 3.1, Figs. 1, 2, 4",
                 "how much adversarial robustness survives transfer; label leaking"),
    NotebookInfo("08_defences_improved_by_transfer", "Davchev et al. 2019", "3.2, Fig. 3",
                 "robust initialisation plus robust target training"),
    NotebookInfo("09_mimicry_attack", "Wang et al. 2018", "2.1, 3, 4",
                 "the internal-representation mimicry attack on black-box students"),
    NotebookInfo("10_fingerprinting_the_teacher", "Wang et al. 2018", "5.1, Fig. 6",
                 "which teacher did a student come from?"),
    NotebookInfo("11_defenses_and_adaptive_attacks", "Wang et al. 2018", "6",
                 "dropout, neuron distance, ensembles, and attackers who adapt"),
    NotebookInfo("12_batch_runs", "all three", "-",
                 "papermill parameter grids on one machine or a Dask cluster"),
)


def available_notebooks() -> list[NotebookInfo]:
    """The notebooks present in this checkout, in order."""
    return [info for info in CATALOG if info.available]


def find_notebook(name: str) -> NotebookInfo:
    """Look a notebook up by number ("03"), stem or file name."""
    wanted = Path(name).name.removesuffix(".ipynb")
    for info in available_notebooks():
        if wanted in (info.name, info.name.split("_", 1)[0]):
            return info
    raise UnknownNameError("notebook", name, [info.name for info in available_notebooks()])
