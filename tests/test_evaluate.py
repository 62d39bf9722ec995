"""Cached attack curves: white-box, black-box, and that the cache returns the same numbers."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from tlab.attacks import attack_copy
from tlab.attacks.gradient import fgsm, make_attack
from tlab.core import zoo
from tlab.core.metrics import adversarial_accuracy
from tlab.core.train import TrainConfig
from tlab.papers import evaluate
from tlab.papers.evaluate import EvalSet, attack_curve

TINY = TrainConfig(epochs=2, val_fraction=0.0)


@pytest.fixture
def models(tlab_data):
    a = zoo.get_or_train(
        zoo.ModelSpec(domain="digits", n=300, train=TINY), progress=False, device="cpu"
    )
    b = zoo.get_or_train(
        zoo.ModelSpec(domain="digits", n=300, subset_seed=1, train=TINY),
        progress=False,
        device="cpu",
    )
    return a, b


def test_whitebox_curve_falls_with_eps_and_is_cached(models, tlab_data):
    a, _ = models
    data = EvalSet("digits", n=100)
    rows = attack_curve(a, data, [0.0, 8 / 255, 32 / 255])
    assert [r["eps"] for r in rows] == pytest.approx([0.0, 8 / 255, 32 / 255])
    assert rows[0]["adversarial_accuracy"] == 1.0  # eps 0 changes nothing on correct inputs
    assert rows[2]["adversarial_accuracy"] < rows[0]["adversarial_accuracy"]
    assert all(r["n_total"] == 100 for r in rows)
    files = list((tlab_data / "results").glob("attack-curve-*.json"))
    assert len(files) == 1
    assert attack_curve(a, data, [0.0, 8 / 255, 32 / 255]) == rows


def test_blackbox_curve_uses_the_source_and_differs_from_whitebox(models):
    a, b = models
    data = EvalSet("digits", n=100)
    white = attack_curve(b, data, [16 / 255])
    black = attack_curve(b, data, [16 / 255], source=a)
    self_black = attack_curve(b, data, [16 / 255], source=b)
    assert self_black[0]["adversarial_accuracy"] == pytest.approx(white[0]["adversarial_accuracy"])
    assert black[0]["clean_accuracy"] == white[0]["clean_accuracy"]
    assert black[0]["adversarial_accuracy"] != white[0]["adversarial_accuracy"]
    # attack= and its hyperparameters reach the attack. Not "PGD <= FGSM": on these tiny models
    # 5 PGD steps beat FGSM by 0-4 of ~80 images, a margin the training precision can flip.
    pgd = attack_curve(b, data, [16 / 255], attack="pgd", alpha=4 / 255, steps=5)
    x, y = data.tensors()
    direct = adversarial_accuracy(
        b.model, x, y, make_attack("pgd", eps=16 / 255, alpha=4 / 255, steps=5)
    )
    assert pgd == [{"eps": 16 / 255, **direct.summary()}]
    one_small_step = attack_curve(b, data, [16 / 255], attack="pgd", alpha=1 / 255, steps=1)
    assert one_small_step[0]["adversarial_accuracy"] > white[0]["adversarial_accuracy"] + 0.1


def test_crafted_fgsm_gives_each_budgets_own_set_and_keeps_them(models, monkeypatch):
    """A grid crafted together equals FGSM crafted budget by budget, in the grid's order, and
    later single requests read the kept sets instead of crafting again."""
    a, _ = models
    data = EvalSet("digits", n=60)
    monkeypatch.setattr(evaluate, "_CRAFTED", OrderedDict())
    grid = [16 / 255, 0.0, 4 / 255]
    together = evaluate.crafted_fgsm(a, data, grid)
    x, y = data.tensors()
    crafter = attack_copy(a.model)  # what every crafted set is crafted on
    for eps, examples in zip(grid, together, strict=True):
        assert torch.equal(examples, fgsm(crafter, x, y, eps=eps)), eps
    assert len(evaluate._CRAFTED) == len(grid)
    calls = []
    monkeypatch.setattr(evaluate, "make_attack", lambda *args, **kw: calls.append(args))
    assert evaluate.crafted_examples(a, data, "fgsm", 4 / 255) is together[2]
    assert calls == []


def test_pgd_sets_are_kept_on_disk_and_fgsm_sets_only_in_memory(models, monkeypatch, tlab_data):
    """A PGD set crafted once is read back in a new session (an empty memory) without crafting;
    an FGSM set, cheap to craft again, leaves no file."""
    a, _ = models
    data = EvalSet("digits", n=40)
    monkeypatch.setattr(evaluate, "_CRAFTED", OrderedDict())
    settings = {"alpha": 2 / 255, "steps": 3}
    first = evaluate.crafted_examples(a, data, "pgd", 8 / 255, **settings)
    evaluate.crafted_examples(a, data, "fgsm", 8 / 255)
    assert len(list((tlab_data / "results").glob("crafted-*.safetensors"))) == 1
    monkeypatch.setattr(evaluate, "_CRAFTED", OrderedDict())  # a new kernel
    monkeypatch.setattr(evaluate, "make_attack", lambda *a, **k: pytest.fail("crafted again"))
    again = evaluate.crafted_examples(a, data, "pgd", 8 / 255, **settings)
    assert torch.equal(again, first)
    with pytest.raises(pytest.fail.Exception, match="crafted again"):  # another budget: a miss
        evaluate.crafted_examples(a, data, "pgd", 4 / 255, **settings)
