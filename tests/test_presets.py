"""Each paper's preset table is the one place that says what a preset means: the setups,
specs and notebook defaults read their values from it."""

from __future__ import annotations

import pytest

from tlab.errors import UnknownNameError
from tlab.papers import davchev, start_here, wang, zhang
from tlab.papers.zhang import ablations as zhang_ablations
from tlab.presets import PRESETS, Knob, PresetTable


def test_a_table_gives_each_preset_its_own_column():
    table = PresetTable(
        "t", {"epochs": Knob(1, 2, 3, 4, "epochs"), "n": Knob(None, 5, 10, 100, "n")}
    )
    assert table.values("smoke") == {"epochs": 1, "n": None}
    assert table.values("quick") == {"epochs": 2, "n": 5}
    assert table.values("paper") == {"epochs": 4, "n": 100}
    assert [r["knob"] for r in table.rows()] == ["epochs", "n"]
    assert table.rows()[1] == {
        "knob": "n",
        "smoke": None,
        "quick": 5,
        "standard": 10,
        "paper": 100,
        "means": "n",
    }
    with pytest.raises(UnknownNameError, match="standard"):
        table.values("huge")


@pytest.mark.parametrize("preset", PRESETS)
def test_setups_and_specs_take_their_sizes_from_the_paper_tables(preset):
    z = zhang.PRESETS.values(preset)
    s = zhang.setup(preset)
    assert s.train_b.epochs == z["epochs_b"] and s.train_a.patience == z["patience_a"]
    assert s.seeds == z["seeds"] and s.eval_n == z["eval_n"] and s.eps_grid == z["eps"]
    assert s.train_a.optimizer == z["optimizer"] and s.train_b.lr == z["lr"]
    d = davchev.setup(preset)
    for name, value in davchev.PRESETS.values(preset).items():
        assert getattr(d, name) == value, name
    assert zhang_ablations.sizes(preset).n_b == zhang_ablations.PRESETS.values(preset)["n_b"]
    w = wang.PRESETS.values(preset)
    teacher = wang.teacher_spec(preset)
    assert (teacher.arch, teacher.arch_options) == w["teacher_arch"]
    assert teacher.train.epochs == w["teacher_epochs"] and teacher.n == w["teacher_n"]
    assert (
        start_here.start_here_spec(preset).train.epochs
        == start_here.PRESETS.values(preset)["epochs"]
    )


def test_zhang_panels_offer_every_depth_only_where_the_table_says_so():
    smoke, standard = zhang.setup("smoke"), zhang.setup("standard")
    assert smoke.panel_depths() == list(smoke.frozen)
    assert standard.panel_depths() == list(range(standard.max_frozen + 1))
    assert smoke.panel_depths([2]) == sorted({2, *smoke.frozen})
