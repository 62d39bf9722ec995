"""tlab.papers.wang: recipes, pairs, cached attacks and argument checks of notebooks 09-11."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tlab.core.architectures.parts import Parts
from tlab.core.data import Domain
from tlab.core.models import StagedModel, build_model
from tlab.core.tensorsets import TensorSet
from tlab.core.zoo import ZooEntry
from tlab.errors import TlabError, UnknownNameError
from tlab.papers import wang
from tlab.presets import PRESETS

TINY = {"widths": [4, 4], "fc_width": 8}


pytestmark = pytest.mark.usefixtures("one_thread")


def entry(model: StagedModel, key: str) -> ZooEntry:
    return ZooEntry(
        key=key, model=model.eval(), meta={"metrics": {"test_accuracy": 1.0}}, from_cache=True
    )


def tiny_lab(n_test: int = 40, classes: int = 4) -> wang.SeedLab:
    """A lab of untrained tiny VGGs on random images (labels cycle over the classes)."""
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(n_test, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    labels = torch.arange(n_test) % classes
    data = TensorSet(images, labels)
    domain = Domain("toy", tuple(str(c) for c in range(classes)), data, data, {})
    torch.manual_seed(0)
    teacher = build_model("vgg", 6, **TINY)
    students = {
        "deep": entry(build_model("vgg", classes, **TINY), "s-deep"),
        "full": entry(build_model("vgg", classes, **TINY), "s-full"),
    }
    return wang.SeedLab(
        teacher=entry(teacher, "t"),
        students=students,
        frozen={"deep": teacher.num_stages, "full": 0},
        domain=domain,
        seed=0,
    )


@pytest.fixture
def oracle(monkeypatch):
    """Students that classify every test image correctly (predict returns the true labels)."""

    def predict(model, x, **_):
        lab_labels = oracle.labels
        return (
            lab_labels[: len(x)].to(x.device)
            if len(x) == len(lab_labels)
            else torch.zeros(len(x), dtype=torch.long)
        )

    oracle.labels = None
    monkeypatch.setattr(wang.crafting, "predict", predict)  # where pairs are drawn
    return oracle


# ------------------------------------------------------------------------------------ checks


@pytest.mark.parametrize("budget", [0, -0.1, 1.5, True, "0.01", float("nan")])
def test_budget_outside_0_1_is_refused_with_the_range(budget):
    with pytest.raises(TlabError, match=r"\(0, 1\]"):
        wang.check_budget(budget)


def test_valid_budgets_pass_and_l2_budgets_have_their_own_range():
    assert wang.check_budget(1) == 1.0 and wang.check_budget(0.003) == 0.003
    assert wang.check_budget(5.0, "l2") == 5.0
    with pytest.raises(TlabError):
        wang.check_budget(100.0, "l2")  # more than the whole image's L2 norm
    with pytest.raises(UnknownNameError):
        wang.check_budget(0.01, "linf")


@pytest.mark.parametrize("layer", [0, 4, -1, True, 2.0])
def test_layer_outside_the_teachers_stages_is_refused(layer):
    teacher = build_model("vgg", 5, **TINY)  # 3 stages
    with pytest.raises(TlabError, match=r"1\.\.3"):
        wang.check_layer(teacher, layer)
    assert wang.check_layer(teacher, 3) == 3


def test_student_whose_head_does_not_match_the_domain_is_refused():
    teacher = build_model("vgg", 26, **TINY)
    with pytest.raises(TlabError, match="10 classes"):
        wang.check_student(teacher, build_model("vgg", 7, **TINY), 10)
    with pytest.raises(TlabError, match="not copied"):
        wang.check_student(teacher, build_model("vgg", 10, widths=[4, 4, 8], fc_width=8), 10)
    with pytest.raises(TlabError, match="StagedModel"):
        wang.check_student(teacher, nn.Linear(3, 10), 10)
    student = build_model("vgg", 10, **TINY)
    assert wang.check_student(teacher, student, 10) is student


def test_attack_settings_are_checked_when_made():
    with pytest.raises(TlabError):
        wang.MimicrySettings(layer=1, budget=0.0, steps=10)
    with pytest.raises(TlabError):
        wang.MimicrySettings(layer=1, budget=0.01, steps=0)


# ------------------------------------------------------------------------------------ recipes


def test_student_kinds_map_to_frozen_stages():
    assert [wang.frozen_layer(k, 5) for k in ("deep", "mid", "full")] == [5, 4, 0]
    with pytest.raises(UnknownNameError):
        wang.frozen_layer("shallow", 5)


def test_teacher_and_student_specs_per_preset():
    teacher = wang.teacher_spec("standard", seed=2)
    assert (teacher.domain, teacher.arch, teacher.train.seed) == ("letters", "vgg", 2)
    assert wang.num_stages(teacher) == 5
    paper = wang.teacher_spec("paper")
    assert paper.arch == "tv_resnet18" and paper.arch_options == {"weights": "imagenet"}
    student = wang.student_spec(teacher, 4, "standard", seed=2)
    assert (student.domain, student.frozen, student.source, student.strategy) == (
        "digits",
        4,
        teacher,
        "finetune",
    )
    assert wang.student_spec(teacher, 5, "standard").train.lr > student.train.lr
    with pytest.raises(TlabError, match=r"0\.\.5"):
        wang.student_spec(teacher, 6, "standard")
    with pytest.raises(UnknownNameError):
        wang.teacher_spec("huge")


def test_the_lab_teacher_is_the_first_candidate_so_the_zoo_entry_is_shared():
    candidates = wang.candidate_specs("smoke", 3)
    assert len(candidates) == 3
    assert next(iter(candidates.values())).key() == wang.teacher_spec("smoke", 0).key()
    assert len({spec.key() for spec in candidates.values()}) == 3
    for count in (1, 99):
        with pytest.raises(TlabError):
            wang.candidate_specs("smoke", count)


def test_w3_seeds_train_new_students_and_seed_0_keeps_each_candidates_own_student():
    candidates = wang.candidate_specs("smoke", 3)
    seed0 = wang.candidate_student_specs(candidates, "deep", "smoke", 0)
    for name, spec in candidates.items():  # seed 0: the student notebook 10 shows
        frozen = wang.frozen_layer("deep", wang.num_stages(spec))
        assert seed0[name].key() == wang.student_spec(spec, frozen, "smoke", spec.train.seed).key()
    keys = {
        spec.key()
        for seed in range(3)
        for spec in wang.candidate_student_specs(candidates, "deep", "smoke", seed).values()
    }
    assert len(keys) == 9  # every (candidate, seed) gets its own student


# ------------------------------------------------------------------------------------ pairs


def test_pairs_join_images_of_different_classes_reproducibly(oracle):
    lab = tiny_lab()
    oracle.labels = lab.domain.test.labels
    src, tgt = wang.attack_pairs(lab, 12, seed=3)
    labels = lab.domain.test.labels
    assert len(src) == len(tgt) == 12 and bool((labels[src] != labels[tgt]).all())
    again = wang.attack_pairs(lab, 12, seed=3)
    assert torch.equal(src, again[0]) and torch.equal(tgt, again[1])
    assert not torch.equal(src, wang.attack_pairs(lab, 12, seed=4)[0])


def test_an_empty_target_set_is_refused(oracle):
    lab = tiny_lab()
    oracle.labels = torch.full_like(lab.domain.test.labels, -1)  # every image misclassified
    with pytest.raises(TlabError, match="no target set"):
        wang.attack_pairs(lab, 4)
    oracle.labels = lab.domain.test.labels
    with pytest.raises(TlabError):
        wang.attack_pairs(lab, 0)


def test_crafted_images_respect_the_budget_and_come_back_from_the_cache(
    oracle, tlab_data, monkeypatch
):
    lab = tiny_lab()
    oracle.labels = lab.domain.test.labels
    attack = wang.MimicrySettings(layer=3, budget=0.01, steps=5)
    first = wang.crafted(lab, attack, 3)
    inside = first["in_budget"]
    assert first["adversarial"].shape == (3, 3, 32, 32)
    assert bool((first["dssim"][inside] <= 0.01 + 1e-6).all())
    assert float(first["adversarial"].min()) >= 0 and float(first["adversarial"].max()) <= 1
    monkeypatch.setattr(
        wang.crafting,
        "mimicry_attack_ensemble",
        lambda *a, **k: pytest.fail("a cached attack was recomputed"),
    )
    second = wang.crafted(lab, attack, 3)
    assert torch.equal(first["adversarial"], second["adversarial"])
    with pytest.raises(TlabError, match=r"1\.\.3"):
        wang.crafted(lab, wang.MimicrySettings(layer=4, budget=0.01, steps=5), 3)


# ------------------------------------------------------------------------------------ fingerprints


def test_a_candidate_teacher_of_another_input_size_is_refused(tlab_data):
    big = StagedModel(
        "custom",
        Parts(
            stages=[("flat", nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 8)))],
            head=nn.Linear(8, 4),
        ),
    )
    lab = tiny_lab()
    with pytest.raises(TlabError, match="3, 32, 32"):
        wang.fingerprint_table({"64px": entry(big, "big")}, lab.students, n_images=1, steps=2)
    with pytest.raises(TlabError):
        wang.fingerprint_table({}, lab.students, n_images=1, steps=2)


def test_an_ensemble_needs_two_teachers():
    with pytest.raises(TlabError, match="at least 2"):
        wang.ensemble_table(
            [tiny_lab()], "deep", wang.MimicrySettings(layer=3, budget=0.01, steps=2), n_pairs=2
        )


# ------------------------------------------------------------------------------------ figures


def test_layer_figure_marks_each_students_frozen_layer():
    rows = [
        {"layer": n, "budget": 0.01, "student": s, "frozen": k, "success": 0.1 * n}
        for s, k in (("deep", 3), ("full", 0))
        for n in (1, 2, 3)
    ]
    fig = wang.layer_figure(rows, budget=0.01, highlight=2)
    assert [t.name for t in fig.data] == ["deep (K=3)", "full (K=0)"]
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert [s.x0 for s in lines] == [3]  # K = 0 has no frozen layer to mark
    assert list(fig.data[0].y) == pytest.approx([10, 20, 30])


def test_gini_heatmap_ticks_only_cells_below_the_threshold():
    fig = wang.gini_heatmap(
        {"candidates": ["a", "b"], "students": ["a", "b"], "gini": [[0.05, 0.7], [0.4, 0.099]]}
    )
    ticks = [[("✔" in cell) for cell in row] for row in fig.data[0].text]
    assert ticks == [[True, False], [False, True]]


def test_setup_spec_names_the_teacher_and_each_student_kind():
    s = wang.setup("standard")
    teacher = wang.teacher_spec("standard", 2)
    assert s.spec("teacher", 2) == teacher and s.pairs == wang.PRESETS.values("standard")["pairs"]
    stages = wang.num_stages(teacher)
    for kind in wang.STUDENT_KINDS:
        frozen = wang.frozen_layer(kind, stages)
        assert s.spec(kind, 2) == wang.student_spec(teacher, frozen, "standard", 2)
    with pytest.raises(TlabError, match="teacher"):
        s.spec("ensemble")


def _targeted_rows(seed, peak_of):
    """Rows of a targeted table where each kind's success peaks at its K (``peak_of``)."""
    base = {"deep": 0.6, "mid": 0.4, "full": 0.1}
    return [
        {"student": kind, "layer": layer, "budget": 0.01,
         "success": base[kind] + 0.01 * seed - (0 if layer == peak_of[kind] else 0.2)}
        for kind in base
        for layer in (1, 2, 3, 4)
    ]  # fmt: skip


def test_wang_attack_verdicts_hold_when_success_orders_and_peaks_at_k():
    frozen = {"deep": 4, "mid": 3, "full": 0}
    grids = {seed: _targeted_rows(seed, {"deep": 4, "mid": 3, "full": 4}) for seed in (0, 1, 2)}
    w1, w2 = wang.verdicts.attack_claims(grids, frozen, [1, 2, 3, 4], 0.01)
    assert (w1.verdict, w2.verdict) == ("holds", "holds")
    shifted = {seed: _targeted_rows(seed, {"deep": 2, "mid": 2, "full": 4}) for seed in (0, 1, 2)}
    assert wang.verdicts.attack_claims(shifted, frozen, [1, 2, 3, 4], 0.01)[1].verdict == (
        "contradicted"
    )


def test_fingerprint_numbers_find_the_true_teacher_on_the_diagonal():
    good = [[0.01, 0.5, 0.6], [0.4, 0.02, 0.7], [0.3, 0.8, 0.05]]
    swapped = [[0.5, 0.01, 0.6], [0.02, 0.4, 0.7], [0.3, 0.8, 0.05]]
    numbers = wang.verdicts.fingerprint_numbers({0: good, 1: swapped})
    assert numbers["diagonal"] == [0.05, 0.5] and numbers["off_diagonal"] == [0.3, 0.01]
    assert numbers["found"] == [True, False]
    (w3,) = wang.verdicts.fingerprint_claims(dict.fromkeys(range(3), good))
    assert w3.verdict == "holds"


def test_wang_defence_verdicts_compare_neuron_distance_with_its_control():
    control = wang.verdicts.CONTROL_THRESHOLD
    drop = {seed: [{"ratio": 0.0, "targeted": 0.8, "accuracy": 0.9, "adaptive": 0.8},
                   {"ratio": 0.05, "targeted": 0.3 + 0.01 * seed, "accuracy": 0.85,
                    "adaptive": 0.7}] for seed in range(3)}  # fmt: skip
    nd = {seed: [{"threshold": 0.0, "success": 0.8, "accuracy": 0.9, "gini": 0.01},
                 {"threshold": control, "success": 0.5 + 0.01 * seed, "accuracy": 0.9,
                  "gini": 0.05},
                 {"threshold": 0.25, "success": 0.5 + 0.02 * seed, "accuracy": 0.88,
                  "gini": 0.5}] for seed in range(3)}  # fmt: skip
    w4, w5, w6 = wang.verdicts.defence_claims(drop, nd, 0.05, 0.25)
    assert (w4.verdict, w6.verdict) == ("holds", "holds")
    # the penalised student falls no further than the control: W5 cannot hold
    assert w5.verdict != "holds"
    numbers = wang.verdicts.defence_numbers(drop, nd, 0.05, 0.25)
    assert numbers["control_success"] == pytest.approx([0.3, 0.29, 0.28])


def test_every_preset_bounds_the_attack_by_the_authors_multi_scale_dssim():
    for preset in PRESETS:
        assert wang.setup(preset).attack(3, 0.01).budget_kind == "ms_dssim"
    assert wang.setup("smoke").attack(3, 50.0, budget_kind="l2").budget_kind == "l2"


def test_the_paper_preset_attacks_with_the_papers_learning_rate_and_rounds_pixels():
    smoke, paper = wang.setup("smoke").attack(3, 0.01), wang.setup("paper").attack(3, 0.01)
    assert (smoke.lr, smoke.round_pixels, smoke.steps) == (wang.ATTACK_LR, False, 100)
    assert (paper.lr, paper.round_pixels, paper.steps) == (1.0, True, 2000)
    assert "round_pixels" not in smoke.recipe() and paper.recipe()["round_pixels"] is True
    # settings made before rounding existed hash as they did
    before = {"layer": 3, "budget": 0.01, "steps": 100, "budget_kind": "dssim",
              "lr": wang.ATTACK_LR, "input_dropout": 0.0, "eot_samples": 1}  # fmt: skip
    assert wang.setup("smoke").attack(3, 0.01, budget_kind="dssim").recipe() == before
    assert paper.options(seed=4)["seed"] == 4 and paper.options()["lr"] == 1.0


# ------------------------------------------------------------------------------------ below K


def test_below_k_table_attacks_every_layer_of_the_retrained_and_original_student(
    oracle, tlab_data, monkeypatch
):
    lab = tiny_lab()
    oracle.labels = lab.domain.test.labels
    for e in lab.students.values():  # the zoo recipe's subset: the whole (tiny) split
        e.meta["spec"] = {"n": None, "subset_seed": 0}
    attack = wang.MimicrySettings(layer=3, budget=0.01, steps=3)
    rows = wang.below_k_table(lab, "deep", attack, 0.5, n_pairs=3, epochs=1)
    assert [r["layer"] for r in rows] == [1, 2, 3]
    for r in rows:
        for key in ("success", "success_original", "in_budget"):
            assert 0.0 <= r[key] <= 1.0
        assert r["distance"] >= 0 and r["distance_original"] >= 0
        assert r["threshold"] == 0.5
    series = wang.below_k_series(list(reversed(rows)))
    assert series["layer"] == [1, 2, 3]
    assert series["retrained"] == [r["success"] for r in rows]
    assert series["original"] == [r["success_original"] for r in rows]
    monkeypatch.setattr(
        wang.defending,
        "neuron_distance_retrain",
        lambda *a, **k: pytest.fail("a cached table was recomputed"),
    )
    assert wang.below_k_table(lab, "deep", attack, 0.5, n_pairs=3, epochs=1) == rows
    with pytest.raises(TlabError, match="> 0"):
        wang.below_k_table(lab, "deep", attack, 0.0, n_pairs=3)


def test_below_k_reuses_the_retraining_of_fig_8s_curve_at_the_same_threshold(
    oracle, tlab_data, monkeypatch
):
    lab = tiny_lab()
    oracle.labels = lab.domain.test.labels
    for e in lab.students.values():
        e.meta["spec"] = {"n": None, "subset_seed": 0}
    attack = wang.MimicrySettings(layer=3, budget=0.01, steps=3)
    retrainings = []
    retrain = wang.defending.neuron_distance_retrain

    def counted_retrain(*args, **kwargs):
        retrainings.append(kwargs["threshold"])
        return retrain(*args, **kwargs)

    monkeypatch.setattr(wang.defending, "neuron_distance_retrain", counted_retrain)
    curve = wang.neuron_distance_table(
        lab, "deep", attack, [0.0, 0.5], n_pairs=3, epochs=1, n_prints=1, fingerprint_steps=2
    )
    assert len(retrainings) == 1  # threshold 0 is the student as it is
    rows = wang.below_k_table(lab, "deep", attack, 0.5, n_pairs=3, epochs=1)
    assert len(retrainings) == 1  # the same retrained weights, read back
    at_k = next(r for r in rows if r["layer"] == 3)
    assert at_k["success"] == curve[1]["success"]  # same images, same retrained student
    wang.below_k_table(lab, "deep", attack, 0.4, n_pairs=3, epochs=1)
    assert len(retrainings) == 2  # another threshold is another retraining
