"""The notebooks' exercise helpers and behaviour checks: a correct function passes, a plausible
wrong one fails with a hint, nbgrader's stub reports "not solved yet"."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from tlab.attacks.fingerprint import GINI_THRESHOLD, gini
from tlab.attacks.msssim import ms_dssim
from tlab.core.models import build_model, freeze
from tlab.defenses.input_dropout import drop_pixels
from tlab.notebook import exercise_checks as ec
from tlab.notebook import exercises
from tlab.notebook.exercises import NotQuite


def stub(*_args, **_kwargs):
    raise NotImplementedError()


@contextlib.contextmanager
def rejected(match: str = ".*"):
    """A check given a wrong answer, as nbgrader grades it (``TLAB_GRADING=1``): it raises
    :class:`NotQuite` with ``match`` in its message (interactively it prints it and returns
    False, see ``test_check_reports_solved_unsolved_and_wrong``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(exercises.GRADING_ENV, "1")
        with pytest.raises(NotQuite, match=match):
            yield


@pytest.fixture(autouse=True)
def fresh_registry():
    exercises.STATE.clear()
    yield
    exercises.STATE.clear()


# ---------------------------------------------------------------- helpers


def test_check_reports_solved_unsolved_and_wrong(capsys):
    assert exercises.check("ex", lambda: "fine", hint="h") is True
    assert "Correct (ex): fine" in capsys.readouterr().out
    assert exercises.check("ex", stub, hint="h") is False
    assert "not solved yet" in capsys.readouterr().out

    def wrong() -> str:
        exercises.expect(False, "it is wrong")
        return "never"

    assert exercises.check("ex", wrong, hint="look here") is False
    printed = capsys.readouterr()
    assert "Not quite (ex): it is wrong\nHint: look here" in printed.err and not printed.out
    assert exercises.STATE["ex"] != exercises.SOLVED


def test_while_grading_an_unsolved_or_wrong_exercise_fails_its_check(monkeypatch):
    monkeypatch.setenv(exercises.GRADING_ENV, "1")
    with pytest.raises(NotQuite, match="not solved yet"):
        exercises.check("ex", stub, hint="h")
    assert exercises.STATE["ex"] != exercises.SOLVED

    def wrong() -> str:
        exercises.expect(False, "it is wrong")
        return "never"

    with pytest.raises(NotQuite, match=r"it is wrong[\s\S]*Hint: look here") as failed:
        exercises.check("ex", wrong, hint="look here")
    # IPython shows the message alone, no traceback through tlab's checks
    assert failed.value._render_traceback_() == [f"NotQuite: {failed.value}"]
    assert exercises.check("ex", lambda: "fine", hint="h") is True


def test_check_lets_other_errors_through():
    def broken() -> str:
        raise TypeError("a bug in the student's code")

    with pytest.raises(TypeError):
        exercises.check("ex", broken, hint="h")


def test_use_falls_back_until_solved(capsys):
    def mine():
        return "mine"

    def tlabs():
        return "tlab"

    assert exercises.use("ex", mine, tlabs, "thing") is tlabs
    assert "not solved yet: the cells below use tlab's thing" in capsys.readouterr().out
    exercises.check("ex", lambda: exercises.expect(False, "wrong") or "", hint="h")
    assert exercises.use("ex", mine, tlabs, "thing") is tlabs
    assert "'ex' did not pass its check: the cells below use tlab's" in capsys.readouterr().out
    exercises.check("ex", lambda: "ok", hint="h")
    assert exercises.use("ex", mine, tlabs, "thing") is mine


def test_reveal(capsys):
    assert exercises.reveal("q", stub, "FT", choices=("FT", "Scratch"), measured="m") is None
    assert "not solved yet (no prediction made)" in capsys.readouterr().out
    assert exercises.reveal("q", lambda: "FT", "FT", choices=("FT", "Scratch"), measured="m")
    assert (
        exercises.reveal("q", lambda: "Scratch", "FT", choices=("FT", "Scratch"), measured="m")
        is False
    )
    # an answer outside the choices is said in red and Run All goes on; graded, it fails
    assert (
        exercises.reveal("q", lambda: "ft?", "FT", choices=("FT", "Scratch"), measured="m") is None
    )
    assert "predict one of ['FT', 'Scratch'], not 'ft?'" in capsys.readouterr().err
    with rejected("predict one of"):
        exercises.reveal("q", lambda: "ft?", "FT", choices=("FT", "Scratch"), measured="m")


# ---------------------------------------------------------------- PGD (01)


@pytest.fixture(scope="module")
def trained_linear():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    x = torch.rand(64, 3, 8, 8)
    y = model(x).argmax(1).detach()
    return model.eval(), x, y


def _signed_steps(model, x, y, eps, alpha, steps, *, start, direction=1.0, project=True):
    """A family of plausible student attacks: ``steps`` signed-gradient steps from ``start``."""
    adv = start.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(adv), y, reduction="sum"), adv)
        adv = adv.detach() + direction * alpha * grad.sign()
        adv = (x + (adv - x).clamp(-eps, eps) if project else adv).clamp(0, 1)
    return adv


WRONG_PGD = {
    "no projection": (
        lambda m, x, y, e, a, s: _signed_steps(m, x, y, e, a, s, start=x, project=False),
        "more than eps",
    ),
    "FGSM": (lambda m, x, y, e, a, s: _signed_steps(m, x, y, e, e, 1, start=x), "with steps=1"),
    "random start": (
        lambda m, x, y, e, a, s: _signed_steps(
            m, x, y, e, a, s, start=(x + torch.empty_like(x).uniform_(-e, e)).clamp(0, 1)
        ),
        "start from the clean image",
    ),
    "does nothing": (lambda m, x, y, e, a, s: x.clone(), "lowered the true class's margin"),
    "descends": (
        lambda m, x, y, e, a, s: _signed_steps(m, x, y, e, a, s, start=x, direction=-1.0),
        "lowered the true class's margin",
    ),
    "one step only": (
        lambda m, x, y, e, a, s: _signed_steps(m, x, y, e, a, 1, start=x),
        "under FGSM",
    ),
}


@pytest.mark.parametrize("name", WRONG_PGD)
def test_pgd_check_rejects_a_plausible_wrong_attack_saying_what_is_wrong(trained_linear, name):
    """Found by running the student copy by hand (session 15): the check used to pass FGSM, an
    attack that does nothing and one that descends the loss."""
    model, x, y = trained_linear
    attack, problem = WRONG_PGD[name]
    with rejected(problem):
        ec.check_pgd(attack, model, x, y, eps=8 / 255, alpha=2 / 255, steps=10)


def test_pgd_check(trained_linear, capsys):
    model, x, y = trained_linear
    kw = dict(eps=4 / 255, alpha=1 / 255, steps=10)
    assert ec.check_pgd(ec.pgd_attack, model, x, y, **kw)
    assert ec.check_pgd(WRONG_PGD["no projection"][0], model, x, y, **kw) is False
    assert "Not quite (PGD): a pixel moved by" in capsys.readouterr().err
    assert ec.check_pgd(stub, model, x, y, **kw) is False


# ---------------------------------------------------------------- frozen stages (02)


def small_dtn():
    torch.manual_seed(0)
    return build_model("dtn", 10)


def test_freeze_check():
    assert ec.check_freeze(freeze, small_dtn, [0, 2, 4])

    def off_by_one(model, k):
        return freeze(model, min(k + 1, model.num_stages))

    with rejected("stage"):
        ec.check_freeze(off_by_one, small_dtn, [0, 2])

    def no_return(model, k):  # freezes the right stages, forgets `return model`
        freeze(model, k)

    with rejected("return the model"):  # the cell after it would fail on None
        ec.check_freeze(no_return, small_dtn, [1])
    assert ec.check_freeze(stub, small_dtn, [1]) is False


# ---------------------------------------------------------------- accuracy (03), gamma (04)


def test_adversarial_accuracy_check():
    assert ec.check_adversarial_accuracy(ec.adversarial_accuracy_of)

    def over_all(row, i):
        return 1 - sum(row["wb_fooled"][i]) / len(row["correct"])

    with rejected():
        ec.check_adversarial_accuracy(over_all)


def test_gamma_check():
    from tlab.core.metrics import gamma

    assert ec.check_gamma(gamma)
    with rejected("Hint: gamma"):
        ec.check_gamma(lambda a_b, a_w: (a_b - a_w) / np.where(a_b > 0, a_b, 1))
    with rejected("NaN"):
        ec.check_gamma(lambda a_b, a_w: (a_b - a_w) / np.maximum(a_w, 1e-3))
    assert ec.check_gamma(stub) is False


def test_gamma_check_rejects_writing_into_its_inputs():
    """Found by probing: NaN written into the caller's a_w gave the right gamma and passed."""

    def in_place(a_b, a_w):
        a_w[a_w == 0] = np.nan
        return (a_b - a_w) / a_w

    with rejected("changed the accuracies it was given"):
        ec.check_gamma(in_place)


# ---------------------------------------------------------------- gradient norms (06)


def test_gradient_norms_check(trained_linear):
    from tlab.core.metrics import input_gradient_norms

    model, x, y = trained_linear
    assert ec.check_gradient_norms(input_gradient_norms, model, x[:8], y[:8])

    def averaged(model, x, y):
        x = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
        return grad.flatten(1).norm(dim=1)

    with rejected("averaging the loss over the batch"):
        ec.check_gradient_norms(averaged, model, x[:8], y[:8])


def test_gradient_norms_check_wants_the_model_in_eval_mode():
    """The check hands the model over in train mode (found by probing: it used to put the model
    in eval mode itself, so a function that forgot to passed)."""
    from tlab.core.metrics import input_gradient_norms

    model = small_dtn()
    x, y = torch.rand(4, 3, 32, 32), torch.arange(4)
    assert ec.check_gradient_norms(input_gradient_norms, model, x, y)

    def in_train_mode(model, x, y):
        x = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x), y, reduction="sum")
        return torch.autograd.grad(loss, x)[0].flatten(1).norm(dim=1)

    with rejected("eval mode"):
        ec.check_gradient_norms(in_train_mode, model, x, y)


# ---------------------------------------------------------------- adversarial training (07)


def test_adversarial_loss_check():
    assert ec.check_adversarial_loss(ec.davchev_loss)

    def adversarial_only(model, x, y, eps):
        from tlab.attacks import fgsm

        x_adv = fgsm(model, x, None, eps=eps)
        return F.cross_entropy(model(x_adv), y), x_adv

    def true_labels(model, x, y, eps):
        from tlab.attacks import fgsm

        x_adv = fgsm(model, x, y, eps=eps)
        return (F.cross_entropy(model(x), y) + F.cross_entropy(model(x_adv), y)) / 2, x_adv

    with rejected("L_clean"):
        ec.check_adversarial_loss(adversarial_only)
    with rejected("predict"):
        ec.check_adversarial_loss(true_labels)

    def unclamped(model, x, y, eps):  # an FGSM of one's own that forgets [0, 1]
        x_in = x.clone().requires_grad_(True)
        predicted = model(x).argmax(1)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_in), predicted), x_in)
        x_adv = (x + eps * grad.sign()).detach()
        return (F.cross_entropy(model(x), y) + F.cross_entropy(model(x_adv), y)) / 2, x_adv

    with rejected(r"\[0, 1\]"):
        ec.check_adversarial_loss(unclamped)
    assert ec.check_adversarial_loss(stub) is False

    def own_fgsm(model, x, y, eps):  # written by hand, mean-reduced loss: a correct answer
        x_adv = unclamped(model, x, y, eps)[1].clamp(0, 1)
        return (F.cross_entropy(model(x), y) + F.cross_entropy(model(x_adv), y)) / 2, x_adv

    assert ec.check_adversarial_loss(own_fgsm)


@pytest.mark.parametrize("eps", [8 / 255, 8 / 255 / 3])  # the visible and the hidden check
@pytest.mark.parametrize("random_start", [False, True])
def test_adversarial_loss_check_rejects_pgd_in_place_of_fgsm(eps, random_start):
    from tlab.attacks import pgd

    def with_pgd(model, x, y, eps):
        x_adv = pgd(model, x, None, eps=eps, alpha=eps / 4, steps=7, random_start=random_start)
        return (F.cross_entropy(model(x), y) + F.cross_entropy(model(x_adv), y)) / 2, x_adv

    with rejected("ONE signed-gradient step"):
        ec.check_adversarial_loss(with_pgd, eps=eps)
    assert ec.check_adversarial_loss(ec.davchev_loss, eps=eps)


# ---------------------------------------------------------------- normalisation (08)


def test_normalise_check():
    from tlab.core.metrics import minmax_normalise_columns

    assert ec.check_normalise(minmax_normalise_columns)
    with rejected():
        ec.check_normalise(lambda v: (v - v.min()) / (v.max() - v.min()))  # whole table

    def in_place(table):
        spread = table.max(0) - table.min(0)
        table -= table.min(0)
        table /= np.where(spread > 0, spread, 1)
        return table

    with rejected("changed the table it was given"):
        ec.check_normalise(in_place)


# ---------------------------------------------------------------- mimicry (09), fingerprint (10)


@pytest.fixture(scope="module")
def teacher_and_images():
    torch.manual_seed(0)
    teacher = build_model("dtn", 10).eval()
    images = torch.rand(4, 3, 32, 32)
    return teacher, images[:2], images[2:]


def test_mimicry_loss_check(teacher_and_images):
    teacher, sources, targets = teacher_and_images
    layer = teacher.num_stages
    assert ec.check_mimicry_loss(ec.mimicry_loss, teacher, layer, sources, targets, budget=0.01)

    def linear_penalty(teacher, layer, x, x_source, target, budget, penalty):
        distance = (teacher.features(x, layer).flatten(1) - target.flatten(1)).norm(dim=1)
        return distance + penalty * (ms_dssim(x, x_source) - budget).clamp_min(0)

    def no_clamp(teacher, layer, x, x_source, target, budget, penalty):
        distance = (teacher.features(x, layer).flatten(1) - target.flatten(1)).norm(dim=1)
        return distance + penalty * (ms_dssim(x, x_source) - budget).square()

    def no_penalty(teacher, layer, x, x_source, target, budget, penalty):
        return (teacher.features(x, layer).flatten(1) - target.flatten(1)).norm(dim=1)

    def detached(teacher, layer, x, x_source, target, budget, penalty):
        return ec.mimicry_loss(teacher, layer, x.detach(), x_source, target, budget, penalty)

    with rejected("squared excess"):
        ec.check_mimicry_loss(linear_penalty, teacher, layer, sources, targets, budget=0.01)
    with rejected("within the budget"):
        ec.check_mimicry_loss(no_clamp, teacher, layer, sources, targets, budget=0.01)
    # found by probing (session 15): no penalty at all passed the visible check where DSSIM's
    # excess was small; a detached x raised autograd's own error instead of a hint
    with rejected("penalty term"):
        ec.check_mimicry_loss(no_penalty, teacher, layer, sources, targets, budget=0.01)
    with rejected("differentiable"):
        ec.check_mimicry_loss(detached, teacher, layer, sources, targets, budget=0.01)
    assert ec.check_mimicry_loss(stub, teacher, layer, sources, targets, budget=0.01) is False


def test_find_teacher_check():
    assert ec.check_find_teacher(ec.find_teacher)

    def no_threshold(student, prints):
        from tlab.attacks.fingerprint import gini

        return min(prints, key=lambda k: float(gini(student(prints[k]).softmax(1)).mean()))

    with rejected("None"):
        ec.check_find_teacher(no_threshold)
    assert ec.check_find_teacher(stub) is False


def _teacher_by(score):
    """A fingerprint test that ranks candidates by ``score(student, images)``, 0.1 cut-off."""

    def find(student, prints):
        with torch.no_grad():
            scores = {name: float(score(student, images)) for name, images in prints.items()}
        best = min(scores, key=scores.__getitem__)
        return best if scores[best] < GINI_THRESHOLD else None

    return find


WRONG_GINI = {  # found by probing the check with plausible mistakes (session 15)
    "of the logits": lambda s, x: gini(s(x)).mean(),
    "summed over the images": lambda s, x: gini(s(x).softmax(1)).sum(),
    "of the first image": lambda s, x: gini(s(x[:1]).softmax(1)).mean(),
    "of the worst image": lambda s, x: gini(s(x).softmax(1)).max(),
    "of the mean softmax": lambda s, x: gini(s(x).softmax(1).mean(0)),
}


@pytest.mark.parametrize("name", WRONG_GINI)
def test_find_teacher_check_rejects_a_gini(name):
    with rejected("you answer"):
        ec.check_find_teacher(_teacher_by(WRONG_GINI[name]))


# ---------------------------------------------------------------- input dropout (11)


def test_vote_check():
    assert ec.check_vote(ec.majority_vote)
    with rejected():
        ec.check_vote(lambda votes: votes[0])


def test_eot_check(teacher_and_images):
    teacher, x, targets = teacher_and_images
    layer = teacher.num_stages
    target = teacher.features(targets, layer).detach()
    assert ec.check_eot_distance(ec.eot_distance, teacher, layer, x, target, ratio=0.3)

    def one_mask(teacher, layer, x, target, ratio, samples):
        seen = drop_pixels(x, ratio) if ratio > 0 else x
        return (teacher.features(seen, layer).flatten(1) - target.flatten(1)).norm(dim=1)

    def summed(teacher, layer, x, target, ratio, samples):
        return samples * ec.eot_distance(teacher, layer, x, target, ratio, samples)

    with rejected(r"spread|masks"):
        ec.check_eot_distance(one_mask, teacher, layer, x, target, ratio=0.3)
    with rejected():
        ec.check_eot_distance(summed, teacher, layer, x, target, ratio=0.3)

    def averaged_images(teacher, layer, x, target, ratio, samples):  # what 11 warns against
        mean = torch.stack([drop_pixels(x, ratio) for _ in range(samples)]).mean(0)
        return (teacher.features(mean, layer).flatten(1) - target.flatten(1)).norm(dim=1)

    with rejected("a distance of an average"):  # passed the looser check (probe, session 15)
        ec.check_eot_distance(averaged_images, teacher, layer, x, target, ratio=0.3)
    assert ec.check_eot_distance(stub, teacher, layer, x, target, ratio=0.3) is False


# ---------------------------------------------------------------- a batch run's table (12)


def test_mean_difference_check():
    from tlab.runs.sweep_results import mean_difference

    assert ec.check_mean_difference(mean_difference)
    assert ec.check_mean_difference(mean_difference, seed=1)
    with rejected("n_B = "):  # the difference of the means of another seed
        ec.check_mean_difference(
            lambda w, by, a, b: w[a].groupby(w[by]).max() - w[b].groupby(w[by]).max()
        )
    with rejected("Series"):  # one number for the whole table
        ec.check_mean_difference(lambda w, by, a, b: float((w[a] - w[b]).mean()))
    with rejected("increasing order"):  # in the order the table lists them: the reveal misreads
        ec.check_mean_difference(
            lambda w, by, a, b: pd.Series(
                {n: (w[a] - w[b])[w[by] == n].mean() for n in w[by].unique()}
            )
        )
    assert ec.check_mean_difference(stub) is False


@pytest.mark.parametrize("seed", [0, 1])  # the visible and the hidden check
def test_mean_difference_check_rejects_the_run_s_column_names_typed_in(seed):
    """Found by probing: the made-up table used the run's column names, so an answer that
    ignored its arguments passed."""

    def typed_in(wide, by, better, worse):
        return (wide["clean_ft0"] - wide["clean_scratch"]).groupby(wide["N_B"]).mean()

    def by_position(wide, by, better, worse):
        return (wide.iloc[:, 1] - wide.iloc[:, 2]).groupby(wide.iloc[:, 0]).mean()

    with rejected("read the column names from the arguments"):
        ec.check_mean_difference(typed_in, seed=seed)
    with rejected():
        ec.check_mean_difference(by_position, seed=seed)
