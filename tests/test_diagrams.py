"""The schematic of Zhang et al.'s three transfer strategies (tlab.notebook.diagrams)."""

from __future__ import annotations

import pytest

from tlab.errors import TlabError
from tlab.notebook import diagrams


def _stage_cells(fig):
    return [s for s in fig.layout.shapes if s.name in ("frozen stage", "trainable stage")]


@pytest.mark.parametrize("num_stages", [1, 4, 6])
def test_the_fine_tune_panel_shades_exactly_the_frozen_stages(num_stages):
    for frozen in range(num_stages + 1):
        cells = _stage_cells(diagrams.transfer_strategies(frozen, num_stages))
        assert len(cells) == num_stages + 1  # every stage plus the head
        names = [c.name for c in sorted(cells, key=lambda c: c.x0)]
        assert names == ["frozen stage"] * frozen + ["trainable stage"] * (num_stages + 1 - frozen)
        assert {c.fillcolor for c in cells if c.name == "frozen stage"} <= {diagrams.FROZEN_COLOUR}


def test_all_three_strategies_and_their_models_are_drawn():
    fig = diagrams.transfer_strategies()
    texts = " ".join(a.text for a in fig.layout.annotations)
    for title in diagrams.STRATEGIES:
        assert f"<b>{title}</b>" in texts
    for model in ("model A", "model C", "model A'", "model B"):
        assert model in texts
    arrows = [a for a in fig.layout.annotations if a.showarrow]
    # trains: B (Scratch); A, B (Fine-tune); C, A', B (CommonInit) = 6; initialises: 1 + 1 + 2
    assert len(arrows) == 10
    # every arrow stays inside the drawing area
    assert all(0 <= v <= 3 for a in arrows for v in (a.x, a.ax))
    assert all(0 <= v <= 1.06 for a in arrows for v in (a.y, a.ay))


@pytest.mark.parametrize("frozen", [-1, 5, 1.5, True])
def test_a_frozen_depth_outside_the_model_is_refused_with_the_valid_range(frozen):
    with pytest.raises(TlabError, match=r"0\.\.4"):
        diagrams.transfer_strategies(frozen, 4)


def test_a_model_needs_at_least_one_stage():
    with pytest.raises(TlabError, match="positive integer"):
        diagrams.transfer_strategies(0, 0)
