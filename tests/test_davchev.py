"""Davchev et al. recipes: strategy mapping, specs per preset, the cached table, claims, heatmap."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import tlab
from tlab.core import zoo
from tlab.core.metrics import accuracy, adversarial_accuracy, blackbox_accuracy
from tlab.core.models import build_model, freeze
from tlab.errors import TlabError, UnknownNameError
from tlab.notebook import plots
from tlab.papers import davchev
from tlab.papers.claims import paired_claim
from tlab.papers.davchev import Network


def test_a_strategy_control_shows_the_layer_count_and_the_name_only_where_they_differ():
    assert [davchev.strategy_label(8, k) for k in davchev.RETRAINED] == [
        "1",
        "2 (block)",
        "8 (all)",
    ]
    assert davchev.strategy_label(56, "block") == "18 (block)"


@pytest.mark.parametrize("depth", [8, 20, 56])
def test_each_retrained_choice_leaves_the_right_stages_trainable(depth):
    n = (depth - 2) // 6
    names = davchev.retrained_layers(depth)
    assert names == {"1": "1", "block": str(2 * n), "all": str(depth)}
    trainable = {}
    for retrained in davchev.RETRAINED:
        frozen = davchev.frozen_stages(depth, retrained)
        model = freeze(build_model("resnet", 10, depth=depth), frozen)
        trainable[retrained] = [
            i
            for i, stage in enumerate(model.stages)
            if all(p.requires_grad for p in stage.parameters())
        ]
    stages = 1 + 3 * n
    assert trainable["1"] == []
    assert trainable["block"] == list(range(stages - n, stages))  # the last group of n blocks
    assert trainable["all"] == list(range(stages))


def test_paper_preset_uses_the_papers_setting_and_converts_eps():
    s = davchev.setup("paper")
    assert (s.source_domain, s.target_domain, s.depth) == ("cifar100", "cifar10", 56)
    assert s.substitute_arch == "densenet" and s.batch_size == 100
    assert s.eps == pytest.approx(0.0625 / 2) and s.eps == pytest.approx(8 / 256)
    assert davchev.retrained_layers(s.depth) == {"1": "1", "block": "18", "all": "56"}
    assert len(davchev.setup("standard").seeds) >= 3


def test_network_specs_chain_source_strategy_and_adversarial_settings():
    s = davchev.setup("standard")
    spec = davchev.network_spec(s, Network("pgd", "fgsm", "block", fgsm_labels="true"), seed=2)
    assert spec.strategy == "finetune" and spec.frozen == davchev.frozen_stages(s.depth, "block")
    assert spec.domain == s.target_domain and spec.train.seed == 2
    assert spec.train.adversarial == "pgd" and spec.train.adv_steps == 7
    assert spec.train.adv_alpha is None and spec.train.adv_eps == s.eps  # alpha = eps / 4
    assert spec.source.domain == s.source_domain and spec.source.train.seed == 2
    assert (spec.source.train.adversarial, spec.source.train.adv_labels) == ("fgsm", "true")
    plain = davchev.network_spec(s, Network("fgsm"))
    assert plain.strategy == "scratch" and plain.train.adv_labels == "predicted"
    assert plain.key() != davchev.network_spec(s, Network("fgsm", fgsm_labels="true")).key()


def test_bad_networks_are_refused_with_the_choices():
    with pytest.raises(TlabError, match="source"):
        Network("nat", retrained="block")
    with pytest.raises(TlabError, match="pgd"):
        Network("madry")
    with pytest.raises(TlabError, match="block"):
        Network("nat", "pgd", "18")


def test_labels_follow_davchevs_names():
    assert Network("nat", "pgd", "block").label(56) == "R_pgd->nat 18"
    assert Network("pgd", "pgd", "all").label(8) == "R_pgd->pgd 8"
    assert Network("fgsm", fgsm_labels="true").label(56) == "R_fgsm (true labels)"


def test_table_reads_one_eps_and_names_the_evaluated_ones():
    rows = {
        "a": {
            "eps": [0.1, 0.2],
            "Natural": 0.9,
            **{c: [0.5, 0.3] for c in davchev.ATTACK_COLUMNS},
            **{c: [0.4, 0.2] for c in davchev.ALSO_CLEAN_COLUMNS},
        }
    }
    table = davchev.table(rows, 0.2)
    assert list(table.columns) == list(davchev.COLUMNS) and table.loc["a", "WB-PGD"] == 0.3
    both = davchev.table(rows, 0.2, also_clean=True)
    assert list(both.columns) == [*davchev.COLUMNS, *davchev.ALSO_CLEAN_COLUMNS]
    assert both.loc["a", "WB-PGD (also clean)"] == 0.2 and both.loc["a", "WB-PGD"] == 0.3
    with pytest.raises(TlabError, match="evaluated eps"):
        davchev.table(rows, 0.15)


@pytest.fixture
def tiny(tlab_data, one_thread):
    """A tiny setup on digits only (source and target), trained in seconds."""
    s = davchev.setup("smoke")
    return dataclasses.replace(
        s,
        source_domain="digits",
        source_params={},
        source_n=40,
        target_n=40,
        eval_n=20,
        eps_grid=(8 / 255,),
        eps=8 / 255,
        seeds=(0,),
    )


def test_evaluation_follows_table_1_keeps_the_both_correct_view_and_is_cached(tiny, monkeypatch):
    lab = davchev.Lab(tiny, device="cpu")
    network = Network("nat", "pgd", "block")
    recipes = []
    store = davchev.lab.cached_result
    monkeypatch.setattr(
        davchev.lab,
        "cached_result",
        lambda name, recipe, compute: recipes.append(recipe) or store(name, recipe, compute),
    )
    row = lab.row(network)
    model, substitute = lab.entry(network).model, lab.substitute().model
    x, y = tiny.eval_set().tensors("cpu")
    assert row["Natural"] == pytest.approx(accuracy(model, x, y))
    for attack in ("fgsm", "pgd"):
        craft = davchev.lab._attack(attack, tiny.eps)
        # Table 1 (the authors' evaluation code): every image attacked, scored after the attack
        bb, wb = f"BB-{attack.upper()}", f"WB-{attack.upper()}"
        assert row[bb][0] == pytest.approx(accuracy(model, craft(substitute, x, y), y))
        assert row[wb][0] == pytest.approx(accuracy(model, craft(model, x, y), y))
        # the extra view: correct clean and attacked (tlab.core.metrics' *_all)
        also = blackbox_accuracy(substitute, model, x, y, craft).adversarial_accuracy_all
        assert row[f"{bb} (also clean)"][0] == pytest.approx(also)
        also = adversarial_accuracy(model, x, y, craft).adversarial_accuracy_all
        assert row[f"{wb} (also clean)"][0] == pytest.approx(also)
    for column, strict in zip(davchev.ATTACK_COLUMNS, davchev.ALSO_CLEAN_COLUMNS, strict=True):
        assert 0 <= row[strict][0] <= min(row[column][0], row["Natural"])
    # a row cached under the recipe of the first convention (no row_version) is not read back
    assert recipes[0]["row_version"] == davchev.ROW_VERSION >= 2
    old = {k: v for k, v in recipes[0].items() if k != "row_version"}
    assert store("davchev-row", old, lambda: {**row, "Natural": -1.0})["Natural"] == -1.0
    leak = lab.leaking(Network("fgsm", fgsm_labels="true"))
    assert set(leak) == {"clean", "fgsm_true_labels", "fgsm_predicted_labels", "pgd_true_labels"}
    assert all(0 <= v <= 1 for v in leak.values())
    monkeypatch.setattr(davchev.lab, "get_or_train", lambda *a, **k: pytest.fail("not cached"))
    assert lab.row(network) == row and lab.leaking(Network("fgsm", fgsm_labels="true")) == leak


def test_a_curve_over_the_grid_reuses_the_tables_budget_and_adds_the_others(tiny, monkeypatch):
    """Tables and claims ask for the training eps only; a widget's curve over the grid then
    computes only the other budgets, and its value at the training eps is the table's."""
    s = dataclasses.replace(tiny, eps_grid=(4 / 255, tiny.eps, 16 / 255))
    lab = davchev.Lab(s, device="cpu")
    network = Network("pgd", "nat", "all")
    computed = []
    store = davchev.lab.cached_result
    monkeypatch.setattr(
        davchev.lab,
        "cached_result",
        lambda name, recipe, compute: store(
            name, recipe, lambda: computed.append(recipe["eps"]) or compute()
        ),
    )
    table = lab.table([network])
    assert computed == [s.eps]
    curve = lab.row(network, eps=s.eps_grid)
    assert computed == [s.eps, 4 / 255, 16 / 255]
    assert curve["eps"] == list(s.eps_grid)
    assert curve["WB-PGD"][1] == table.loc[network.label(s.depth), "WB-PGD"]
    assert curve["WB-PGD"][0] >= curve["WB-PGD"][2]  # a larger budget never helps the network
    assert lab.row(network) == {k: [v[1]] if isinstance(v, list) else v for k, v in curve.items()}


class _Wave(nn.Module):
    """Two classes: class 0 where sin(omega * mean pixel) > 0. With eps * omega = pi, FGSM's
    step (away from the true class 0) overshoots a trough: it can turn a wrong prediction right."""

    def __init__(self, omega):
        super().__init__()
        self.omega, self.zero = omega, nn.Parameter(torch.zeros(()))

    def forward(self, x):
        wave = torch.sin(self.omega * x.flatten(1).mean(1)) + self.zero
        return torch.stack([wave, torch.zeros_like(wave)], dim=1)


def test_table_1_counts_an_attacked_image_right_even_if_its_clean_prediction_was_wrong(
    tlab_data, monkeypatch
):
    eps = 0.1
    omega = math.pi / eps
    # image 0: wrong clean (sin < 0), right after FGSM; image 1: right clean, wrong after FGSM
    levels = torch.tensor([math.pi + 0.1, math.pi - 0.1]) / omega
    x, y = levels.view(2, 1, 1, 1).expand(2, 1, 4, 4).contiguous(), torch.tensor([0, 0])
    wave = _Wave(omega)
    data = SimpleNamespace(recipe=lambda: {"wave": 1}, tensors=lambda device=None: (x, y))
    entry = SimpleNamespace(model=wave, key="wave-model")
    monkeypatch.setattr(davchev.lab, "get_or_train", lambda *a, **k: entry)
    spec = SimpleNamespace(key=lambda: "wave-model")
    row = davchev.evaluate(spec, spec, SimpleNamespace(eval_set=lambda: data), [eps])
    assert row["Natural"] == 0.5
    # Table 1: the attacked image 0 is right; the both-correct view counts it wrong (clean)
    assert row["WB-FGSM"] == [0.5] and row["BB-FGSM"] == [0.5]
    assert row["WB-FGSM (also clean)"] == [0.0] and row["BB-FGSM (also clean)"] == [0.0]


def test_paired_claim_needs_a_consistent_positive_difference():
    consistent = paired_claim(
        "X", "a beats b", [0.6, 0.7, 0.65], [0.5, 0.6, 0.6], what="acc", seeds=[0, 1, 2]
    )
    mixed = paired_claim(
        "X", "a beats b", [0.9, 0.4, 0.5], [0.5, 0.6, 0.6], what="acc", seeds=[0, 1, 2]
    )
    assert consistent.holds and not mixed.holds and "n=3" in consistent.measured
    with pytest.raises(TlabError):
        paired_claim("X", "s", [0.1, 0.2], [0.1], what="acc", seeds=[0, 1])


def test_normalised_heatmap_scales_every_column_to_its_own_range():
    table = pd.DataFrame(
        {"Natural": [0.9, 0.8, 0.7], "WB-PGD": [0.0, 0.3, 0.1]}, index=["a", "b", "c"]
    )
    fig = plots.normalised_heatmap(table, row_breaks=[0], column_breaks=[0])
    z = np.asarray(fig.data[0].z)
    assert np.allclose(z.min(axis=0), 0) and np.allclose(z.max(axis=0), 1)
    assert z[1, 1] == pytest.approx(1.0) and z[0, 0] == pytest.approx(1.0)
    assert "0.0-30.0%" in fig.data[0].x[1] and len(fig.layout.shapes) == 2


def test_resnet56_block_retrains_the_last_group_of_nine_blocks_and_18_convolutions():
    model = build_model("resnet56", 10)
    assert davchev.frozen_stages(56, "1") == model.num_stages == 28
    assert davchev.frozen_stages(56, "all") == 0
    freeze(model, davchev.frozen_stages(56, "block"))
    trainable = [
        name
        for name, s in zip(model.stage_names, model.stages, strict=True)
        if next(s.parameters()).requires_grad
    ]
    assert trainable == [f"group3.block{b}" for b in range(1, 10)]
    assert sum(isinstance(m, nn.Conv2d) and m.weight.requires_grad for m in model.modules()) == 18


def test_a_retrained_choice_outside_the_vocabulary_or_a_depth_not_6n_plus_2_is_refused():
    with pytest.raises(UnknownNameError) as info:
        davchev.frozen_stages(56, "18")  # Davchev's layer count is a label, not a choice
    assert all(c in str(info.value) for c in davchev.RETRAINED)
    with pytest.raises(TlabError):
        davchev.frozen_stages(21, "all")


def test_setup_spec_names_every_network_and_the_substitute():
    s = davchev.setup("standard")
    network = Network("pgd", "fgsm", "block")
    assert s.spec(network, 1) == davchev.network_spec(s, network, 1)
    assert s.spec("substitute") == davchev.substitute_spec(s)
    with pytest.raises(UnknownNameError, match="substitute"):
        s.spec("teacher")


class _FakeLab:
    """Table rows and leaking numbers chosen per seed, for the verdicts' arithmetic."""

    def __init__(self, setup, rows, leaks):
        self.setup, self._rows, self._leaks = setup, rows, leaks

    def row(self, network, seed=0):
        return self._rows[(network, seed)]

    def leaking(self, network, seed=0):
        return self._leaks[seed]

    def substitute(self):
        return SimpleNamespace(meta={"metrics": {"test_accuracy": 0.74}})


def _row(eps, natural, bb, wb):
    return {"eps": [eps], "Natural": natural, "BB-FGSM": [bb], "BB-PGD": [bb - 0.1],
            "WB-FGSM": [wb], "WB-PGD": [wb - 0.1]}  # fmt: skip


def _fake_lab(pgd_transferred, fgsm_transferred):
    """Baselines R_pgd, R_fgsm with mean BB accuracy 0.8 (and D2, D3 rows); the transfers'
    mean BB accuracy per (strategy, seed) from the two functions."""
    s = dataclasses.replace(davchev.setup("standard"), seeds=(0, 1, 2))
    start, alone = Network("pgd", "pgd", "all"), Network("pgd")
    rows = {}
    for seed in s.seeds:
        rows[(Network("fgsm"), seed)] = _row(s.eps, 0.9, 0.85, 0.3)
        for retrained in davchev.RETRAINED:
            pgd, fgsm = pgd_transferred(retrained, seed), fgsm_transferred(retrained, seed)
            rows[(Network("nat", "pgd", retrained), seed)] = _row(s.eps, 0.9, pgd + 0.05, 0.3)
            rows[(Network("nat", "fgsm", retrained), seed)] = _row(s.eps, 0.9, fgsm + 0.05, 0.3)
        rows[(start, seed)] = _row(s.eps, 0.8, 0.5, 0.40 + 0.02 * seed)
        rows[(alone, seed)] = _row(s.eps, 0.8, 0.85, 0.45 + 0.02 * seed)  # also D1's R_pgd
    leaks = {seed: {"clean": 0.9, "fgsm_true_labels": 0.5, "fgsm_predicted_labels": 0.6,
                    "pgd_true_labels": 0.1} for seed in s.seeds}  # fmt: skip
    return _FakeLab(s, rows, leaks)


def test_davchev_verdicts_read_the_training_eps_and_pair_seeds():
    lab = _fake_lab(lambda k, seed: 0.60 + 0.01 * seed, lambda k, seed: 0.40 + 0.02 * seed)
    d1 = davchev.verdicts.d1_frame(lab)
    assert d1[("pgd", "block")].tolist() == pytest.approx([0.75, 0.7625, 0.775])  # 0.6 / 0.8
    assert d1[("fgsm", "all")].tolist() == pytest.approx([0.5, 0.525, 0.55])
    d1_claim, d2 = davchev.verdicts.transfer_claims(lab)
    (d3,) = davchev.verdicts.d3_claims(lab)
    assert (d1_claim.verdict, d2.verdict, d3.verdict) == ("holds", "contradicted", "contradicted")
    assert len(d1_claim.rule.split(" and ")) == 3  # one paired test per strategy
    assert davchev.verdicts.d3_record(lab) == pytest.approx(
        {"d3_pgd_pgd_all_wb_pgd": 0.32, "d3_pgd_wb_pgd": 0.37}
    )
    record = davchev.verdicts.transfer_record(lab)
    assert record["d1_ratio_pgd_block"] == pytest.approx(0.7625)
    assert record["d1_ratio_fgsm_1"] == pytest.approx(0.525)
    assert record["d1_pgd_source_bb"] == pytest.approx(0.61)  # R_pgd->nat block, mean BB
    assert record["substitute_accuracy"] == pytest.approx(0.74)


def test_d1_needs_the_pgd_source_ahead_at_every_strategy():
    behind_when_all = _fake_lab(
        lambda k, seed: (0.30 if k == "all" else 0.60) + 0.01 * seed,
        lambda k, seed: 0.40 + 0.02 * seed,
    )
    d1 = davchev.verdicts.transfer_claims(behind_when_all)[0]
    assert d1.verdict == "contradicted"
    assert "holds" in d1.rule and "contradicted" in d1.rule


def test_the_transferred_ratio_is_undefined_without_baseline_robustness():
    eps = 0.1
    assert davchev.verdicts.transferred_ratio(
        _row(eps, 0.9, 0.45, 0), _row(eps, 0.9, 0.65, 0), eps
    ) == (pytest.approx(0.4 / 0.6))
    assert np.isnan(
        davchev.verdicts.transferred_ratio(_row(eps, 0.9, 0.5, 0), _row(eps, 0.9, 0.05, 0), eps)
    )


def test_the_papers_own_table_1_gives_pgd_the_higher_ratio_at_every_strategy():
    ratios = davchev.verdicts.paper_d1_ratios().iloc[0]
    for retrained in davchev.RETRAINED:
        assert ratios[("pgd", retrained)] > ratios[("fgsm", retrained)]
    # R_pgd->nat 18 keeps almost all of R_pgd's black-box accuracy (Sec. 3.1)
    assert ratios[("pgd", "block")] == pytest.approx((80.4 + 81.6) / (81.1 + 82.1))


def test_paper_rows_follow_the_papers_names_and_fgsm_labels():
    assert davchev.paper_name(Network("fgsm", fgsm_labels="true")) == "R_fgsm_no_ll"
    assert davchev.paper_name(Network("nat", "pgd", "block")) == "R_pgd->nat 18"
    no_ll = davchev.paper_row(Network("fgsm", fgsm_labels="true"))
    assert no_ll["WB-FGSM"][0] > no_ll["Natural"]  # 88.5 > 87.4: Table 1 counts attacked images
    assert davchev.paper_row(Network("fgsm"))["WB-PGD"] == [pytest.approx(0.135)]
    assert no_ll["WB-PGD"] == [pytest.approx(0.002)]
    with pytest.raises(TlabError, match="no row"):
        davchev.paper_name(Network("pgd", "fgsm", "all"))


def test_fgsm_labels_frame_sets_this_runs_wb_pgd_beside_the_papers():
    lab = _fake_lab(lambda k, seed: 0.6, lambda k, seed: 0.4)
    true_labels = Network("fgsm", fgsm_labels="true")
    for seed in lab.setup.seeds:
        lab._rows[(true_labels, seed)] = _row(lab.setup.eps, 0.9, 0.5, 0.1 + 0.03 * seed)
    frame = davchev.verdicts.fgsm_labels_frame(lab)
    assert list(frame.index) == ["R_fgsm", "R_fgsm_no_ll"]
    assert frame.iloc[:, -2].tolist() == pytest.approx([0.2, 0.03])  # means over the seeds
    assert frame.iloc[:, -1].tolist() == pytest.approx([0.135, 0.002])


def test_fig5_tables_hold_each_defence_across_strategies_normalised_on_their_own():
    fgsm = davchev.defence_networks("fgsm")
    assert fgsm[0] == Network("fgsm") and len(fgsm) == 1 + 3 * len(davchev.RETRAINED)
    assert fgsm[1:4] == [
        Network("nat", "fgsm", "1"), Network("fgsm", "nat", "1"), Network("fgsm", "fgsm", "1")
    ]  # fmt: skip
    with pytest.raises(UnknownNameError):
        davchev.defence_networks("nat")
    tables = {
        name: pd.DataFrame(
            {"Natural": [0.9, 0.5, 0.7], "WB-PGD": shift + np.array([0.1, 0.3, 0.2])}
        )
        for name, shift in (("FGSM", 0.0), ("PGD", 0.5))
    }
    fig = davchev.defence_tables_figure(tables, row_breaks=[0])
    assert len(fig.data) == 2 and [a.text for a in fig.layout.annotations] == ["FGSM", "PGD"]
    for heatmap in fig.data:  # each table on its own scale: the same colours for both
        assert np.allclose(np.asarray(heatmap.z), [[1, 0], [0, 1], [0.5, 0.5]])
    assert "60.0-80.0%" in fig.data[1].x[1]
    assert {s.xref for s in fig.layout.shapes} == {"x domain", "x", "x2 domain", "x2"}


#: Zoo keys of the smoke (once "quick") and standard presets before frozen_train_mode
#: (issue 15): the sha256 of every key of every network, seed, substitute and source, in order.
KEYS_BEFORE = {
    "smoke": "8923e7457f45cae37f036f33873075ebc07af8ac5c294ac06b5633d2d3fa9084",
    "standard": "fd58ec91f1762f624ce7cac84710d6fb34813027f939e04b9c43ac824974847a",
}


def _all_keys(s):
    networks = davchev.baseline_networks() + [
        n for target in davchev.MODES for n in davchev.transfer_networks(target)
    ]
    keys = [s.spec(n, seed).key() for seed in s.seeds for n in networks]
    keys.append(s.spec("substitute").key())
    return keys + [davchev.source_spec(s, mode, 0).key() for mode in davchev.MODES]


@pytest.mark.parametrize("preset", ["smoke", "standard"])
def test_smoke_and_standard_models_keep_their_zoo_keys(preset, monkeypatch):
    # zoo keys include the version, the zoo format and the training precision: those the
    # pinned keys were made under
    monkeypatch.setattr(tlab, "__version__", "0.1.0")
    monkeypatch.setattr(zoo, "ZOO_FORMAT", 3)
    monkeypatch.setenv("TLAB_PRECISION", "bfloat16")
    s = davchev.setup(preset)
    s = dataclasses.replace(s, seeds=s.seeds[:3])  # the keys were pinned with 3 standard seeds
    keys = _all_keys(s)
    assert len(keys) == {"smoke": 35, "standard": 97}[preset]
    assert hashlib.sha256("\n".join(keys).encode()).hexdigest() == KEYS_BEFORE[preset]
    pinned = {"smoke": "0ca57c3c3a5a4c30408d", "standard": "34aa3139486dc853a31a"}[preset]
    assert s.spec(Network("nat", "pgd", "block")).key() == pinned


def test_only_the_paper_preset_runs_frozen_stages_in_train_mode_as_the_authors():
    paper = davchev.setup("paper")
    assert paper.frozen_train_mode and not davchev.setup("standard").frozen_train_mode
    for retrained, expected in (("1", True), ("block", True), ("all", False)):  # "all": none frozen
        spec = paper.spec(Network("pgd", "pgd", retrained))
        assert spec.train.frozen_train_mode is expected
        assert spec.source.train.frozen_train_mode is False
    assert not paper.spec(Network("pgd")).train.frozen_train_mode
    assert not paper.spec("substitute").train.frozen_train_mode
    standard = davchev.setup("standard")
    as_paper = dataclasses.replace(standard, frozen_train_mode=True)
    network = Network("nat", "pgd", "block")
    assert as_paper.spec(network).key() != standard.spec(network).key()
