"""Neuron-distance retraining against Wang et al. (2018), Sec. 6.2, Eq. 4 and the authors' code.

Eq. 4 is computed here by hand, example by example, and compared with
:func:`neuron_distance_objective` and with the steps :func:`neuron_distance_retrain` takes.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL_VGG

from tlab.core.models import StagedModel, build_model
from tlab.core.tensorsets import TensorSet
from tlab.defenses.neuron_distance import (
    PAPER_EPOCHS,
    PAPER_RAMP_EPOCHS,
    PAPER_THRESHOLD,
    neuron_distance,
    neuron_distance_objective,
    neuron_distance_retrain,
    neuron_weights,
    threshold_schedule,
)
from tlab.errors import TlabError

pytestmark = pytest.mark.usefixtures("one_thread")

N = 12  # examples in the tiny training set (one batch = the whole set)


def tiny(seed: int, dropout: float = 0.0) -> StagedModel:
    """A small VGG whose BatchNorm running statistics stay put (momentum 0), so that the
    eval-mode passes of a test agree however many training-mode passes ran between them."""
    torch.manual_seed(seed)
    model = build_model("vgg", 10, **SMALL_VGG, dropout=dropout).eval()
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.momentum = 0.0
    return model


def tiny_set(n: int = N, seed: int = 0) -> TensorSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    return TensorSet(images, torch.randint(0, 10, (n,), generator=g))


def eq4_by_hand(
    student: StagedModel,
    teacher: StagedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    d_th: float,
    lam: float,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``CE + lam * max(D_th - sum_x d(x), 0)^2`` over the set ``x`` (Eq. 4, penalty form).

    ``d(x)`` weights the squared layer-N differences by ``|W_s|`` (absolute outgoing weights
    summed over classes, scaled to mean 1), the authors' code form of Eq. 4's weighted norm.
    The cross-entropy comes from a training-mode pass, the representation from an eval-mode one.
    """
    k = student.num_stages
    student.train()
    ce = F.cross_entropy(student(x), y)
    student.eval()
    outgoing = student.head.weight.abs().sum(0)
    w = outgoing / outgoing.mean()
    with torch.no_grad():
        t = teacher.eval().features(x, k)
    distances = []
    for j in range(len(x)):
        s_j = student.features(x[j : j + 1], k)[0]
        distances.append(torch.sqrt(sum(w[i] * (t[j, i] - s_j[i]) ** 2 for i in range(len(w)))))
    total = torch.stack(distances).sum()
    student.train()
    return ce + lam * (d_th - total).clamp_min(0) ** 2, distances


def test_set_objective_is_eq4_summed_over_the_whole_set():
    teacher, student = tiny(0), tiny(1)
    k = student.num_stages
    data = tiny_set()
    x, y = data.floats(), data.labels
    with torch.no_grad():
        t = teacher.features(x, k)
    d = neuron_distance(student, teacher, x, layer=k)
    threshold, penalty = 2 * d.mean().item(), 0.3  # per image; the constraint is active
    student.train()
    got = neuron_distance_objective(student, x, y, t, layer=k, threshold=threshold, penalty=penalty)
    # Eq. 4 with D_th = |X| * threshold and coefficient penalty / |X|^2
    expected, distances = eq4_by_hand(student, teacher, x, y, N * threshold, penalty / N**2)
    torch.testing.assert_close(got.loss, expected)
    torch.testing.assert_close(got.distance, torch.stack(distances))
    assert got.loss.item() > got.cross_entropy.item() + 0.1  # the penalty counts here


def test_set_and_per_example_constraints_differ_where_they_should():
    teacher, student = tiny(0), tiny(1)
    k = student.num_stages
    data = tiny_set()
    x, y = data.floats(), data.labels
    with torch.no_grad():
        t = teacher.features(x, k)
    d = neuron_distance(student, teacher, x, layer=k)
    # between the smallest distance and the mean: the set meets it on average, not every image
    threshold, penalty = (d.min().item() + d.mean().item()) / 2, 0.7
    assert d.mean().item() > threshold > d.min().item()
    student.train()
    kw = dict(layer=k, threshold=threshold, penalty=penalty)
    set_level = neuron_distance_objective(student, x, y, t, constraint="set", **kw)
    per_example = neuron_distance_objective(student, x, y, t, constraint="per_example", **kw)
    torch.testing.assert_close(set_level.loss, set_level.cross_entropy)  # met on average
    # the per-example form: the authors' code (and tlab's earlier default), unchanged
    hinge = (threshold - d).clamp_min(0).square().mean()
    torch.testing.assert_close(per_example.loss, per_example.cross_entropy + penalty * hinge)
    assert per_example.loss.item() > set_level.loss.item()


def test_penalty_gradient_reaches_the_classifier_through_the_neuron_weights():
    teacher, student = tiny(0), tiny(1)
    k = student.num_stages
    data = tiny_set()
    x, y = data.floats(), data.labels
    assert neuron_weights(student, k).requires_grad  # live, not detached
    student.train()
    for layer, reaches_head in ((k, True), (2, False)):  # layer 2: conv maps, equal weights
        with torch.no_grad():
            t = teacher.features(x, layer)
        d = neuron_distance(student, teacher, x, layer=layer)
        student.zero_grad()
        got = neuron_distance_objective(
            student, x, y, t, layer=layer, threshold=3 * d.mean().item(), penalty=1.0
        )
        (got.loss - got.cross_entropy).backward()  # the penalty alone, and it is active
        assert student.stages[0][0].weight.grad.abs().sum().item() > 0, layer
        grad = student.head.weight.grad
        # the representation at layer N does not depend on the head: only the weights lead
        # there; at layer 2 nothing does
        assert (grad is not None and grad.abs().sum().item() > 0) == reaches_head, layer


def test_training_pass_gives_both_the_logits_and_the_representation():
    student = tiny(1, dropout=0.5)
    teacher = copy.deepcopy(student)  # a frozen copy: eval-mode distance 0
    k = student.num_stages
    data = tiny_set()
    x, y = data.floats(), data.labels
    with torch.no_grad():
        t = teacher.features(x, k)
    student.train()
    kw = dict(layer=k, threshold=1.0, penalty=1.0)
    torch.manual_seed(3)
    same_pass = neuron_distance_objective(student, x, y, t, student_pass="train", **kw)
    torch.manual_seed(3)
    s = student.features(x, k)  # replay the pass: same dropout masks
    torch.testing.assert_close(same_pass.logits, student.head(s))
    w = neuron_weights(student, k)
    torch.testing.assert_close(same_pass.distance, ((t - s).square() * w).sum(1).sqrt())
    assert same_pass.distance.min().item() > 0  # dropout and batch statistics move it
    separate = neuron_distance_objective(student, x, y, t, student_pass="eval", **kw)
    assert separate.distance.abs().max().item() < 1e-5


def test_threshold_schedule_of_the_authors_setting():
    schedule = threshold_schedule(PAPER_THRESHOLD, PAPER_EPOCHS, PAPER_RAMP_EPOCHS)
    assert len(schedule) == 50
    assert [schedule[e] for e in (0, 1, 23, 24, 25, 49)] == [200, 400, 4800, 5000, 5000, 5000]
    # the authors' loop: before each epoch, +200 while below 5,000
    cap, theirs = 0.0, []
    for _ in range(50):
        if cap < 5000:
            cap += 200
        theirs.append(cap)
    assert schedule == pytest.approx(theirs)
    assert threshold_schedule(PAPER_THRESHOLD, PAPER_EPOCHS) == schedule  # half, by default


def test_threshold_schedule_scales_to_short_runs():
    assert threshold_schedule(1.0, 10) == pytest.approx([0.2, 0.4, 0.6, 0.8] + [1.0] * 6)
    assert threshold_schedule(3.0, 3) == pytest.approx([1.5, 3.0, 3.0])
    assert threshold_schedule(2.0, 1) == [2.0]
    # ramping over every epoch: tlab's earlier schedule, threshold * e / epochs (1-based e)
    assert threshold_schedule(3.0, 3, ramp_epochs=3) == pytest.approx([1.0, 2.0, 3.0])
    for bad in (0, 4, True, 1.5):
        with pytest.raises(TlabError, match="ramp_epochs"):
            threshold_schedule(3.0, 3, ramp_epochs=bad)


def test_retraining_takes_plain_sgd_steps_on_eq4():
    """Two epochs of one whole-set batch each: two plain SGD steps on Eq. 4, by hand."""
    teacher, student = tiny(0), tiny(1)
    data = tiny_set()
    x, y = data.floats(), data.labels
    d = neuron_distance(student, teacher, x, layer=student.num_stages)
    threshold, penalty, lr = 2 * d.mean().item(), 0.3, 0.05
    retrained, history = neuron_distance_retrain(
        student,
        teacher,
        data,
        layer=student.num_stages,
        threshold=threshold,
        penalty=penalty,
        epochs=2,
        ramp_epochs=1,
        batch_size=64,
        lr=lr,
        device="cpu",
        progress=False,
    )
    assert [row["threshold"] for row in history] == [threshold, threshold]
    model = copy.deepcopy(student)
    for _ in range(2):
        loss, _ = eq4_by_hand(model, teacher, x, y, N * threshold, penalty / N**2)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad  # no momentum, no weight decay
    for (name, got), want in zip(retrained.named_parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=name)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(retrained.parameters(), student.parameters(), strict=True)
    )


def test_retraining_rejects_unknown_forms():
    teacher, student = tiny(0), tiny(1)
    kw = dict(layer=5, threshold=1.0, epochs=1, progress=False)
    with pytest.raises(TlabError, match="constraint"):
        neuron_distance_retrain(student, teacher, tiny_set(), constraint="sum", **kw)
    with pytest.raises(TlabError, match="student pass"):
        neuron_distance_retrain(student, teacher, tiny_set(), student_pass="both", **kw)
    with pytest.raises(TlabError, match="ramp_epochs"):
        neuron_distance_retrain(student, teacher, tiny_set(), ramp_epochs=2, **kw)
