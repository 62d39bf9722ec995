"""Mimicry attack (Wang et al. 2018, Sec. 3-4): DSSIM, budgets, batching, success, variants."""

from __future__ import annotations

import itertools
import threading

import pytest
import torch
from conftest import SMALL_VGG as VGG
from pytorch_msssim import ssim

from tlab.attacks import mimicry_loop
from tlab.attacks._fast import cpu_split
from tlab.attacks._fast.cpu_split import cpu_slices
from tlab.attacks.mimicry import (
    mimicry_attack,
    mimicry_attack_ensemble,
    mimicry_untargeted,
    targeted_success,
    untargeted_success,
)
from tlab.attacks.perturbation import dssim, l2_distance
from tlab.core.device import torch_threads
from tlab.core.models import build_model
from tlab.core.train import TrainConfig, fit, prepare_model
from tlab.errors import TlabError, UnknownNameError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lab(letters_and_digits, letters_teacher, deep_student):
    """A letters teacher, a deep-layer and a fully fine-tuned digits student, digit test data."""
    _, few, digits = letters_and_digits
    teacher = letters_teacher(0)
    students = {"deep": deep_student(0)}
    students["full"] = prepare_model(
        "finetune", arch="vgg", num_classes=10, source=teacher, frozen=0, seed=0, arch_options=VGG
    )
    fit(
        students["full"],
        few,
        None,
        TrainConfig(epochs=6, batch_size=32, lr=3e-3, patience=None),
        progress=False,
    )
    g = torch.Generator().manual_seed(0)
    x, y = digits.test.floats(), digits.test.labels
    i, j = torch.randperm(len(y), generator=g)[:24], torch.randperm(len(y), generator=g)[:24]
    keep = (y[i] != y[j]).nonzero().flatten()[:16]
    return {"teacher": teacher, **students, "x": x, "y": y, "src": i[keep], "tgt": j[keep]}


#: Enough steps for the deep-layer student's targeted success to clear the +0.3 margin over
#: full fine-tuning (0 of 16) by several pairs: 5 of 16 are needed; at 240 steps the student of
#: a bfloat16-trained teacher reaches 10 (13 in float32), at 120 steps only 7 (11 in float32).
TARGETED_STEPS = 240


@pytest.fixture(scope="module")
def targeted(lab):
    x, s, t = lab["x"], lab["src"], lab["tgt"]
    return mimicry_attack(
        lab["teacher"],
        x[s],
        x[t],
        layer=lab["teacher"].num_stages,
        budget=0.002,
        steps=TARGETED_STEPS,
        history=True,
    )


def noise_pairs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g), torch.rand(n, 3, 32, 32, generator=g)


def tiny_teacher(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("vgg", 5, **VGG).eval()


# ------------------------------------------------------------------------------------ DSSIM


def test_dssim_is_zero_for_identical_images_and_grows_with_noise():
    x, _ = noise_pairs(3)
    assert dssim(x, x).abs().max().item() < 1e-6
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    values = [dssim((x + s * noise).clamp(0, 1), x) for s in (0.01, 0.05, 0.2)]
    assert all(bool((a < b).all()) for a, b in itertools.pairwise(values))
    assert values[0].min().item() > 0


def test_dssim_matches_pytorch_msssim_single_scale():
    x, y = noise_pairs(4, seed=3)
    expected = (1 - ssim(x, y, data_range=1.0, size_average=False, win_size=11)) / 2
    torch.testing.assert_close(dssim(x, y), expected)


def test_dssim_rejects_bad_input():
    x, y = noise_pairs(2)
    with pytest.raises(TlabError, match="same shape"):
        dssim(x, y[:1])
    with pytest.raises(TlabError, match="at least 11x11"):
        dssim(x[..., :8, :8], y[..., :8, :8])
    with pytest.raises(TlabError, match=r"outside \[0, 1\]"):
        dssim(x * 2, y)


# ------------------------------------------------------------------------- targeted attack


def test_in_budget_results_respect_the_budget_and_pixel_range(lab, targeted):
    src = lab["x"][lab["src"]]
    assert targeted.in_budget.all()
    assert targeted.dssim.max().item() <= 0.002
    assert dssim(targeted.adversarial, src).max().item() <= 0.002 + 1e-6
    adv = targeted.adversarial
    assert adv.min().item() >= 0.0 and adv.max().item() <= 1.0
    torch.testing.assert_close(targeted.l2, l2_distance(adv, src))


def test_layer_distance_shrinks(lab, targeted):
    assert bool((targeted.distance < targeted.start_distance).all())
    assert targeted.distance.mean().item() < 0.75 * targeted.start_distance.mean().item()
    assert targeted.history.shape == (TARGETED_STEPS, len(targeted))
    # the returned image is one of the iterates, and none of them got closer than the minimum
    gap = (targeted.history - targeted.distance).abs().min(0).values
    assert gap.max().item() < 1e-4
    assert bool((targeted.distance >= targeted.history.min(0).values - 1e-5).all())


def test_deep_layer_student_falls_far_more_often_than_fully_finetuned(lab, targeted):
    """Wang et al. 2018, Sec. 4.2: the attack works on feature extractors, not full fine-tuning."""
    y_target = lab["y"][lab["tgt"]]
    deep = targeted_success(lab["deep"], targeted.adversarial, y_target).float().mean().item()
    full = targeted_success(lab["full"], targeted.adversarial, y_target).float().mean().item()
    assert deep >= full + 0.3
    # without the attack neither student predicts the target's class for these sources
    clean = targeted_success(lab["deep"], lab["x"][lab["src"]], y_target).float().mean().item()
    assert clean < deep


def test_batched_equals_one_pair_at_a_time():
    """Pairs are independent: the batched run must give each pair its solo result."""
    teacher = tiny_teacher()
    src, tgt = noise_pairs(4)
    batched = mimicry_attack(teacher, src, tgt, layer=5, budget=0.01, steps=30)
    chunked = mimicry_attack(teacher, src, tgt, layer=5, budget=0.01, steps=30, batch_size=3)
    for i in range(4):
        solo = mimicry_attack(
            teacher, src[i : i + 1], tgt[i : i + 1], layer=5, budget=0.01, steps=30
        )
        torch.testing.assert_close(
            batched.adversarial[i : i + 1], solo.adversarial, atol=1e-5, rtol=0
        )
        torch.testing.assert_close(batched.distance[i : i + 1], solo.distance, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(chunked.adversarial, batched.adversarial, atol=1e-5, rtol=0)


def test_big_cpu_batches_are_split_over_the_threads_with_the_same_results(monkeypatch):
    """From ROWS_PER_CPU_THREAD rows per torch thread, each thread attacks its own slice."""
    cpu = torch.device("cpu")
    teacher = tiny_teacher()
    src, tgt = noise_pairs(5)
    whole = mimicry_attack(teacher, src, tgt, layer=5, budget=0.01, steps=20)  # one thread
    monkeypatch.setattr(cpu_split, "ROWS_PER_CPU_THREAD", 2)
    seen = []

    class RecordingDSSIM(mimicry_loop.SourceDSSIM):
        def __init__(self, source, **kwargs):
            seen.append((len(source), threading.current_thread().name, torch.get_num_threads()))
            super().__init__(source, **kwargs)

    monkeypatch.setattr(mimicry_loop, "SourceDSSIM", RecordingDSSIM)
    setters = []
    set_threads = torch.set_num_threads

    def recording_set_threads(count):
        setters.append(threading.current_thread().name)
        set_threads(count)

    with torch_threads(2):
        monkeypatch.setattr(torch, "set_num_threads", recording_set_threads)
        assert cpu_slices(5, cpu, randomised=False) == 2
        assert cpu_slices(3, cpu, randomised=False) == 1
        assert cpu_slices(5, cpu, randomised=True) == 1  # input dropout: draws stay put
        assert cpu_slices(500, torch.device("cuda"), randomised=False) == 1
        split = mimicry_attack(teacher, src, tgt, layer=5, budget=0.01, steps=20)
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(torch, "set_num_threads", set_threads)
    # only the pool's own workers change their thread count: the caller's is never switched
    assert setters and all(name.startswith("tlab-mimicry") for name in setters)
    assert sorted(rows for rows, _, _ in seen) == [2, 3]
    assert all(name.startswith("tlab-mimicry") and threads == 1 for _, name, threads in seen)
    torch.testing.assert_close(split.adversarial, whole.adversarial, atol=1e-5, rtol=0)
    torch.testing.assert_close(split.distance, whole.distance, atol=1e-4, rtol=1e-4)
    assert torch.equal(split.in_budget, whole.in_budget)


def test_a_failing_slice_stops_the_others_and_restores_the_thread_count(monkeypatch):
    teacher = tiny_teacher()
    src, tgt = noise_pairs(5)
    monkeypatch.setattr(cpu_split, "ROWS_PER_CPU_THREAD", 2)
    steps_taken = []
    other_running = threading.Event()
    plain_from_tanh = mimicry_loop._from_tanh

    def counting_from_tanh(w):
        steps_taken.append(len(w))
        other_running.set()
        return plain_from_tanh(w)

    class FailingDSSIM(mimicry_loop.SourceDSSIM):
        def __init__(self, source, **kwargs):
            if len(source) == 2:  # the first slice fails once the other runs
                other_running.wait(timeout=60)
                raise RuntimeError("slice failed")
            super().__init__(source, **kwargs)

    monkeypatch.setattr(mimicry_loop, "_from_tanh", counting_from_tanh)
    monkeypatch.setattr(mimicry_loop, "SourceDSSIM", FailingDSSIM)
    with torch_threads(2):
        with pytest.raises(RuntimeError, match="slice failed"):
            mimicry_attack(teacher, src, tgt, layer=5, budget=0.01, steps=100_000)
        assert torch.get_num_threads() == 2
    assert 0 < len(steps_taken) < 100_000 and set(steps_taken) == {3}


def test_pair_never_within_budget_returns_source_and_is_flagged():
    teacher = tiny_teacher()
    src, tgt = noise_pairs(2)
    # an L2 budget far below one Adadelta step, and a penalty too weak to pull back
    result = mimicry_attack(
        teacher, src, tgt, layer=5, budget=1e-6, budget_kind="l2", steps=5, penalty=1e-12
    )
    assert not result.in_budget.any()
    assert torch.equal(result.adversarial, src)
    torch.testing.assert_close(result.distance, result.start_distance)


def test_l2_budget_is_respected():
    teacher = tiny_teacher()
    src, tgt = noise_pairs(3)
    result = mimicry_attack(teacher, src, tgt, layer=4, budget=0.3, budget_kind="l2", steps=60)
    assert result.budget_kind == "l2"
    assert result.in_budget.all()
    assert l2_distance(result.adversarial, src).max().item() <= 0.3 + 1e-5
    assert bool((result.distance < result.start_distance).all())


def test_teacher_is_left_untouched():
    teacher = tiny_teacher()
    teacher.train()
    teacher.stages[0].eval()  # a mixed mode must come back as it was
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    src, tgt = noise_pairs(2)
    mimicry_attack(teacher, src, tgt, layer=3, budget=0.01, steps=5)
    assert teacher.training and not teacher.stages[0].training
    assert all(p.grad is None for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key


# ---------------------------------------------------------------------------- non-targeted


def test_untargeted_keeps_the_closest_guide_of_another_class(lab):
    teacher, x, y = lab["teacher"], lab["x"], lab["y"]
    sources = lab["src"]
    pool = torch.stack([(y == c).nonzero()[0, 0] for c in range(3)])  # one guide per class 0-2
    k = teacher.num_stages
    # lr 10 as the notebooks use: with the paper's lr 1, 60 steps barely move the image
    result = mimicry_untargeted(
        teacher,
        x[sources],
        x[pool],
        layer=k,
        budget=0.003,
        steps=60,
        lr=10.0,
        source_labels=y[sources],
        pool_labels=y[pool],
    )
    assert len(result) == len(sources)
    assert bool((y[pool][result.target_index] != y[sources]).all())
    # The chosen result is the closest over the allowed guides, all run as targeted pairs. They
    # run in one batch, the one the untargeted attack makes (source by source, guides in pool
    # order): at lr 10 with a 1e10 penalty, rounding differences between batch shapes can send a
    # pair down another path (seen with a bfloat16-trained teacher), so separate runs per source
    # would test batch invariance (test_batched_equals_one_pair_at_a_time) by chance, not this.
    rows = [
        (i, g)
        for i, s in enumerate(sources.tolist())
        for g, p in enumerate(pool.tolist())
        if y[p] != y[s]
    ]
    row_sources = sources[[i for i, _ in rows]]
    row_guides = pool[[g for _, g in rows]]
    pairs = mimicry_attack(
        teacher, x[row_sources], x[row_guides], layer=k, budget=0.003, steps=60, lr=10.0
    )
    for i in range(len(sources)):
        mine = [r for r, (source, _) in enumerate(rows) if source == i]
        best = min(mine, key=lambda r: (not pairs.in_budget[r], pairs.distance[r].item()))
        assert result.target_index[i].item() == rows[best][1]
        assert result.distance[i].item() == pytest.approx(pairs.distance[best].item(), abs=1e-4)
        torch.testing.assert_close(
            result.adversarial[i], pairs.adversarial[best], atol=1e-5, rtol=0
        )
    # The attack flips most of the sources the deep-layer student got right (an image it already
    # misclassifies counts as "fooled" without any attack, so those are left out). 16 sources,
    # not 4: with 4, one source was the whole margin of a bfloat16-trained teacher.
    right = ~untargeted_success(lab["deep"], x[sources], y[sources])
    fooled = untargeted_success(lab["deep"], result.adversarial, y[sources])
    assert right.sum().item() >= 4, "too few correctly classified sources to measure"
    assert fooled[right].float().mean().item() >= 0.5, (fooled, right)


def test_untargeted_needs_a_guide_of_another_class(lab):
    x, y = lab["x"], lab["y"]
    same = (y == y[0]).nonzero().flatten()[:2]
    with pytest.raises(TlabError, match="no guide image of another class"):
        mimicry_untargeted(
            lab["teacher"],
            x[same[:1]],
            x[same[1:]],
            layer=1,
            budget=0.01,
            steps=1,
            source_labels=y[same[:1]],
            pool_labels=y[same[1:]],
        )
    with pytest.raises(TlabError, match="both source_labels and pool_labels"):
        mimicry_untargeted(
            lab["teacher"], x[:1], x[1:2], layer=1, budget=0.01, steps=1, source_labels=y[:1]
        )


# ----------------------------------------------------------------- adaptive attacks (Sec. 6)


def test_dropout_in_the_loop_is_seeded_and_still_mimics():
    teacher = tiny_teacher()
    src, tgt = noise_pairs(3)
    kwargs = dict(layer=5, budget=0.01, steps=30, input_dropout=0.2, eot_samples=2)
    a = mimicry_attack(teacher, src, tgt, seed=1, **kwargs)
    b = mimicry_attack(teacher, src, tgt, seed=1, **kwargs)
    c = mimicry_attack(teacher, src, tgt, seed=2, **kwargs)
    torch.testing.assert_close(a.adversarial, b.adversarial, atol=0, rtol=0)
    assert not torch.equal(a.adversarial, c.adversarial)
    assert bool((a.distance < a.start_distance).all())
    assert a.dssim.max().item() <= 0.01


def test_ensemble_attack_sums_the_teachers_distances():
    t1, t2 = tiny_teacher(0), tiny_teacher(1)
    src, tgt = noise_pairs(2)
    joint = mimicry_attack_ensemble([t1, t2], src, tgt, layers=[5, 3], budget=0.01, steps=25)
    with torch.no_grad():
        parts = [
            torch.linalg.vector_norm(
                (t.features(joint.adversarial, k) - t.features(tgt, k)).flatten(1), dim=1
            )
            for t, k in ((t1, 5), (t2, 3))
        ]
    torch.testing.assert_close(joint.distance, parts[0] + parts[1], atol=1e-4, rtol=1e-4)
    assert bool((joint.distance < joint.start_distance).all())
    single = mimicry_attack_ensemble([t1], src, tgt, layers=[5], budget=0.01, steps=25)
    plain = mimicry_attack(t1, src, tgt, layer=5, budget=0.01, steps=25)
    torch.testing.assert_close(single.adversarial, plain.adversarial, atol=0, rtol=0)


# -------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("budget", [0, -0.1, 1.5, float("nan")])
def test_dssim_budget_outside_unit_interval_is_rejected(budget):
    src, tgt = noise_pairs(1)
    with pytest.raises(TlabError, match=r"outside \(0, 1\]"):
        mimicry_attack(tiny_teacher(), src, tgt, layer=1, budget=budget, steps=1)


@pytest.mark.parametrize("layer", [0, 6, 2.0])
def test_layer_outside_the_stages_is_rejected_with_the_range(layer):
    src, tgt = noise_pairs(1)
    with pytest.raises(TlabError, match=r"valid range 1\.\.5"):
        mimicry_attack(tiny_teacher(), src, tgt, layer=layer, budget=0.01, steps=1)


def test_bad_images_are_rejected():
    teacher = tiny_teacher()
    src, tgt = noise_pairs(2)
    cases = [
        (src[:0], tgt[:0], "at least one image"),
        (src, tgt[:1], "same length"),
        (src[:, :1], tgt[:, :1], r"\(3, 32, 32\)"),
        (src[..., :16, :16], tgt[..., :16, :16], r"\(3, 32, 32\)"),
        (src * 3, tgt, r"outside \[0, 1\]"),
        ((src * 255).to(torch.uint8), tgt, "float pixels"),
    ]
    for s, t, message in cases:
        with pytest.raises(TlabError, match=message):
            mimicry_attack(teacher, s, t, layer=1, budget=0.01, steps=1)


def test_other_bad_arguments_are_rejected():
    teacher = tiny_teacher()
    src, tgt = noise_pairs(1)
    with pytest.raises(UnknownNameError, match="dssim, l2"):
        mimicry_attack(teacher, src, tgt, layer=1, budget=0.01, budget_kind="linf", steps=1)
    with pytest.raises(TlabError, match="StagedModel"):
        mimicry_attack(torch.nn.Identity(), src, tgt, layer=1, budget=0.01, steps=1)
    with pytest.raises(TlabError, match="steps"):
        mimicry_attack(teacher, src, tgt, layer=1, budget=0.01, steps=0)
    with pytest.raises(TlabError, match="input_dropout"):
        mimicry_attack(teacher, src, tgt, layer=1, budget=0.01, steps=1, input_dropout=1.0)
    with pytest.raises(TlabError, match="one layer per teacher"):
        mimicry_attack_ensemble([teacher, teacher], src, tgt, layers=[1], budget=0.01, steps=1)
    with pytest.raises(TlabError, match="target_labels"):
        targeted_success(teacher, src, torch.tensor([0, 1]))
    with torch.inference_mode(), pytest.raises(TlabError, match="inference_mode"):
        mimicry_attack(teacher, src, tgt, layer=1, budget=0.01, steps=1)


def test_round_pixels_gives_whole_8_bit_values_as_the_authors_code():
    teacher = tiny_teacher()
    src, tgt = noise_pairs(3)
    plain = mimicry_attack(teacher, src, tgt, layer=5, budget=0.01, steps=20)
    rounded = mimicry_attack(teacher, src, tgt, layer=5, budget=0.01, steps=20, round_pixels=True)
    levels = rounded.adversarial * 255
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)
    assert not torch.allclose(plain.adversarial * 255, (plain.adversarial * 255).round())
    # the rounded image is the chosen iterate, at most half a level away in every pixel
    assert (rounded.adversarial - plain.adversarial).abs().max().item() <= 0.5 / 255 + 1e-6
    torch.testing.assert_close(rounded.dssim, dssim(rounded.adversarial, src), atol=1e-5, rtol=0)


def test_an_ms_dssim_budget_is_met_in_the_authors_measure_and_is_looser_than_dssim():
    from tlab.attacks.msssim import ms_dssim

    teacher = tiny_teacher()
    src, tgt = noise_pairs(3)
    multi = mimicry_attack(
        teacher, src, tgt, layer=5, budget=3e-5, budget_kind="ms_dssim", steps=40
    )
    single = mimicry_attack(teacher, src, tgt, layer=5, budget=3e-5, steps=40)
    assert multi.in_budget.all() and multi.budget_kind == "ms_dssim"
    assert ms_dssim(multi.adversarial, src).max().item() <= 3e-5 + 1e-7
    # the same P allows a larger single-scale DSSIM. (That this also ends *closer* to the target
    # representation is not guaranteed: the penalty-form optimisation trades distance against
    # the budget differently under the two measures. On an Intel Xeon with AMX the two mean
    # distances tied at 0.37604 vs 0.37603 here, and with 100 steps the DSSIM-budget attack ends
    # closer, 0.325 vs 0.341; so this test does not assert it.)
    assert multi.dssim.mean().item() > 1.3 * single.dssim.mean().item()
