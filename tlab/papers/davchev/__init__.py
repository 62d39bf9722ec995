"""Davchev et al. (ICML 2019 workshop), for notebooks 07 and 08: the setup per preset and the
networks (:mod:`~tlab.papers.davchev.setup`), the cached Table 1 evaluation
(:mod:`~tlab.papers.davchev.lab`), the claims (:mod:`~tlab.papers.davchev.verdicts`) and the
figures (:mod:`~tlab.papers.davchev.figures`)."""

from tlab.papers.davchev import verdicts
from tlab.papers.davchev.figures import defence_tables_figure, eps_figure
from tlab.papers.davchev.lab import ROW_VERSION, Lab, evaluate, label_leaking, table
from tlab.papers.davchev.paper_table import PAPER_TABLE1, paper_name, paper_row
from tlab.papers.davchev.setup import (
    ALSO_CLEAN_COLUMNS,
    ATTACK_COLUMNS,
    COLUMNS,
    MODES,
    PAPER_EPS,
    PGD_STEP_FRACTION,
    PGD_STEPS,
    PRESETS,
    RETRAINED,
    SMOKE_LETTERS,
    STANDARD_EPS,
    Network,
    Setup,
    baseline_networks,
    defence_networks,
    frozen_stages,
    network_spec,
    retrained_layers,
    setup,
    source_spec,
    strategy_label,
    substitute_spec,
    transfer_networks,
)

__all__ = [
    "ALSO_CLEAN_COLUMNS",
    "ATTACK_COLUMNS",
    "COLUMNS",
    "MODES",
    "PAPER_EPS",
    "PAPER_TABLE1",
    "PGD_STEPS",
    "PGD_STEP_FRACTION",
    "PRESETS",
    "RETRAINED",
    "ROW_VERSION",
    "SMOKE_LETTERS",
    "STANDARD_EPS",
    "Lab",
    "Network",
    "Setup",
    "baseline_networks",
    "defence_networks",
    "defence_tables_figure",
    "eps_figure",
    "evaluate",
    "frozen_stages",
    "label_leaking",
    "network_spec",
    "paper_name",
    "paper_row",
    "retrained_layers",
    "setup",
    "source_spec",
    "strategy_label",
    "substitute_spec",
    "table",
    "transfer_networks",
    "verdicts",
]
