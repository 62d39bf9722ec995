"""Presets: how big a run is.

Every notebook has a papermill ``parameters`` cell with ``PRESET`` and its own knobs:

- ``quick``: seconds per notebook on a laptop CPU; small subsets and few epochs. The tests and
  a first classroom pass use it. Numbers are noisy; the shapes of the curves are what count.
- ``standard``: minutes per notebook on a 2-core CPU; several seeds, enough training for the
  papers' qualitative claims to be tested honestly on the embedded domains.
- ``paper``: the papers' real tasks and hyperparameters (real datasets, GPU recommended).
"""

from __future__ import annotations

from typing import TypeVar

from tlab.checks import check_choice

PRESETS = ("quick", "standard", "paper")

T = TypeVar("T")


def check_preset(preset: str) -> str:
    """``preset`` if valid, else an error listing the presets."""
    return check_choice("preset", preset, PRESETS)


def by_preset(preset: str, *, quick: T, standard: T, paper: T) -> T:
    """The value for ``preset``: lets a notebook state its three sizes side by side."""
    return {"quick": quick, "standard": standard, "paper": paper}[check_preset(preset)]
