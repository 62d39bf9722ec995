"""Presets: how big a run is, and one table per paper saying what that means.

Every notebook has a papermill ``parameters`` cell with ``PRESET`` and its own knobs:

- ``smoke``: the test suite's preset: tiny subsets, one seed, seconds per notebook. It checks
  that everything runs; its numbers are noise.
- ``quick`` (the default every notebook opens with, and ``python -m tlab run``'s): one seed
  (seed 0), each notebook at most a few minutes cold on a 2-core CPU, sized so that each
  paper's main effect shows on that seed. Claims that need several seeds read "inconclusive"
  here; the standard preset tests them.
- ``standard``: 5 seeds, the same sizes as ``quick``: enough to test the papers' qualitative
  claims with a verdict; the whole lab about 75 minutes cold on 2 cores (budget 90, README).
- ``paper``: the papers' real tasks and hyperparameters (real datasets, GPU recommended).

What a preset means for one paper lives in that paper's :class:`PresetTable` (``PRESETS`` in
each module of :mod:`tlab.papers`), and only there: one row per knob, its three values side
by side and what it controls. ``python -m tlab presets`` prints every table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tlab.checks import check_choice

PRESETS = ("smoke", "quick", "standard", "paper")


def check_preset(preset: str) -> str:
    """``preset`` if valid, else an error listing the presets."""
    return check_choice("preset", preset, PRESETS)


@dataclass(frozen=True)
class Knob:
    """One row of a preset table: a value per preset and what it controls."""

    smoke: Any
    quick: Any
    standard: Any
    paper: Any
    means: str


class PresetTable:
    """What each preset means for one paper (or notebook): ``{knob name: Knob}``.

    ``table.values(preset)`` is the knobs' values for one preset, as a dict;
    ``table.rows()`` the whole table for printing (knob, one column per preset, meaning).
    """

    def __init__(self, title: str, knobs: Mapping[str, Knob]) -> None:
        self.title = title
        self.knobs = dict(knobs)

    def values(self, preset: str) -> dict[str, Any]:
        """Every knob's value for ``preset``."""
        check_preset(preset)
        return {name: getattr(knob, preset) for name, knob in self.knobs.items()}

    def rows(self) -> list[dict[str, Any]]:
        """One dict per knob: ``knob``, the three presets' values, ``means``."""
        return [
            {"knob": name, **{p: getattr(knob, p) for p in PRESETS}, "means": knob.means}
            for name, knob in self.knobs.items()
        ]

    def __repr__(self) -> str:
        return f"PresetTable({self.title!r}, {len(self.knobs)} knobs)"
