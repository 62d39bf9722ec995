"""Davchev et al. recipes: strategy mapping, specs per preset, the cached table, claims, heatmap."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from torch import nn

from tlab.core.metrics import blackbox_accuracy
from tlab.core.models import build_model, freeze
from tlab.errors import TlabError, UnknownNameError
from tlab.notebook import plots
from tlab.papers import davchev
from tlab.papers.claims import paired_claim
from tlab.papers.davchev import Network


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
        "a": {"eps": [0.1, 0.2], "Natural": 0.9, **{c: [0.5, 0.3] for c in davchev.ATTACK_COLUMNS}}
    }
    table = davchev.table(rows, 0.2)
    assert list(table.columns) == list(davchev.COLUMNS) and table.loc["a", "WB-PGD"] == 0.3
    with pytest.raises(TlabError, match="evaluated eps"):
        davchev.table(rows, 0.15)


@pytest.fixture
def tiny(tlab_data, one_thread):
    """A tiny setup on digits only (source and target), trained in seconds."""
    s = davchev.setup("quick")
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


def test_evaluation_matches_tlab_metrics_and_is_cached(tiny, monkeypatch):
    lab = davchev.Lab(tiny, device="cpu")
    network = Network("nat", "pgd", "block")
    row = lab.row(network)
    for column in davchev.ATTACK_COLUMNS:
        assert 0 <= row[column][0] <= row["Natural"] <= 1
    model, substitute = lab.entry(network).model, lab.substitute().model
    x, y = tiny.eval_set().tensors("cpu")
    for attack in ("fgsm", "pgd"):
        expected = blackbox_accuracy(substitute, model, x, y, davchev.lab._attack(attack, tiny.eps))
        assert row[f"BB-{attack.upper()}"][0] == pytest.approx(expected.adversarial_accuracy_all)
    leak = lab.leaking(Network("fgsm", fgsm_labels="true"))
    assert set(leak) == {"clean", "fgsm_true_labels", "fgsm_predicted_labels", "pgd_true_labels"}
    assert all(0 <= v <= 1 for v in leak.values())
    monkeypatch.setattr(davchev.lab, "get_or_train", lambda *a, **k: pytest.fail("not cached"))
    assert lab.row(network) == row and lab.leaking(Network("fgsm", fgsm_labels="true")) == leak


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


def _row(eps, natural, bb, wb):
    return {"eps": [eps], "Natural": natural, "BB-FGSM": [bb], "BB-PGD": [bb - 0.1],
            "WB-FGSM": [wb], "WB-PGD": [wb - 0.1]}  # fmt: skip


def test_davchev_verdicts_read_the_training_eps_and_pair_seeds():
    s = dataclasses.replace(davchev.setup("standard"), seeds=(0, 1, 2))
    pgd, fgsm = Network("nat", "pgd", "block"), Network("nat", "fgsm", "block")
    start, alone = Network("pgd", "pgd", "all"), Network("pgd")
    rows = {}
    for seed in s.seeds:
        rows[(pgd, seed)] = _row(s.eps, 0.9, 0.60 + 0.01 * seed, 0.3)
        rows[(fgsm, seed)] = _row(s.eps, 0.9, 0.50 + 0.01 * seed, 0.3)
        rows[(start, seed)] = _row(s.eps, 0.8, 0.5, 0.40 + 0.02 * seed)
        rows[(alone, seed)] = _row(s.eps, 0.8, 0.5, 0.45 + 0.02 * seed)
    leaks = {seed: {"clean": 0.9, "fgsm_true_labels": 0.5, "fgsm_predicted_labels": 0.6,
                    "pgd_true_labels": 0.1} for seed in s.seeds}  # fmt: skip
    lab = _FakeLab(s, rows, leaks)
    assert davchev.verdicts.d1_numbers(lab)["pgd"] == pytest.approx([0.55, 0.56, 0.57])
    d1, d2 = davchev.verdicts.transfer_claims(lab)
    (d3,) = davchev.verdicts.d3_claims(lab)
    assert (d1.verdict, d2.verdict, d3.verdict) == ("holds", "contradicted", "contradicted")
    assert davchev.verdicts.d3_record(lab) == pytest.approx(
        {"d3_pgd_pgd_all_wb_pgd": 0.32, "d3_pgd_wb_pgd": 0.37}
    )
