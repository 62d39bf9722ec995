"""Zhang et al. (KDD 2020), "Two Sides of the Same Coin", for notebooks 02-06: the setup per
preset (:mod:`~tlab.papers.zhang.setup`), the lab of cached evaluations
(:mod:`~tlab.papers.zhang.lab`), the figures (:mod:`~tlab.papers.zhang.figures`), the claims Z1-Z6
(:mod:`~tlab.papers.zhang.verdicts`) and the ablations of Sec. 6
(:mod:`~tlab.papers.zhang.ablations`, notebook 05)."""

from tlab.papers.evaluate import eps_index
from tlab.papers.zhang.lab import Lab
from tlab.papers.zhang.setup import (
    DEFAULT_COMMON,
    DEFAULT_SOURCE,
    DEFAULT_TARGET,
    PAPER_EPS_SIGNED,
    PAPER_TASKS,
    PRESETS,
    RELIABLE_WB,
    ROLES,
    TARGET_ROLES,
    Setup,
    paper_eps_to_pixels,
    role_label,
    setup,
)
from tlab.papers.zhang.verdicts import (
    ablation_claims,
    claims,
    z5_claims,
)

__all__ = [
    "DEFAULT_COMMON",
    "DEFAULT_SOURCE",
    "DEFAULT_TARGET",
    "PAPER_EPS_SIGNED",
    "PAPER_TASKS",
    "PRESETS",
    "RELIABLE_WB",
    "ROLES",
    "TARGET_ROLES",
    "Lab",
    "Setup",
    "ablation_claims",
    "claims",
    "eps_index",
    "paper_eps_to_pixels",
    "role_label",
    "setup",
    "z5_claims",
]
