"""Tests for tlab.core.metrics: counts on a model whose right/wrong set is known, black-box vs
white-box, gamma, input-gradient norms against a per-example autograd loop, min-max tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tlab.attacks.gradient import fgsm, make_attack
from tlab.core.metrics import (
    accuracy,
    adversarial_accuracy,
    blackbox_accuracy,
    gamma,
    input_gradient_norms,
    minmax_normalise_columns,
    predict,
)
from tlab.errors import TlabError


class NearestBrightness(nn.Module):
    """Predicts the class whose centre (0.1, 0.5, 0.9) is nearest to the mean pixel value."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("centres", torch.tensor([0.1, 0.5, 0.9]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.flatten(1).mean(dim=1, keepdim=True)
        return -((mean - self.centres) ** 2) * 100


class Brighten:
    """A stand-in attack adding 0.4 to every pixel; records which inputs it was given."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []
        self.models: list[nn.Module] = []

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        self.models.append(model)
        return (x + 0.4).clamp(0, 1)


def constant_images(values: list[float]) -> torch.Tensor:
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()


def make_problem(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    templates = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) - 0.5
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = 0.5 + 0.3 * templates[y] + 0.15 * torch.randn(n, 3, 8, 8, generator=g)
    return x.clamp(0, 1), y


def train_tiny(seed: int, steps: int = 40) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 4),
    )
    x, y = make_problem(256, seed=100 + seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def models() -> tuple[nn.Module, nn.Module]:
    return train_tiny(0), train_tiny(1)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return make_problem(96, seed=7)


# --- predict / accuracy -------------------------------------------------------------------


def test_predict_and_accuracy_match_manual(models, data):
    model, _ = models
    x, y = data
    with torch.no_grad():
        manual = model(x).argmax(1)
    assert torch.equal(predict(model, x, batch_size=10), manual)
    assert accuracy(model, x, y, batch_size=7) == pytest.approx((manual == y).float().mean().item())
    with pytest.raises(TlabError, match="one label per image"):
        accuracy(model, x, y[:5])


def test_predict_restores_mode(models, data):
    model, _ = models
    model.train()
    try:
        predict(model, data[0][:8])
        assert all(m.training for m in model.modules())
    finally:
        model.eval()


# --- adversarial accuracy -----------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [256, 2])
def test_adversarial_accuracy_counts(batch_size):
    model = NearestBrightness()
    x = constant_images([0.1, 0.1, 0.5, 0.5, 0.9, 0.9])
    y = torch.tensor([0, 1, 1, 1, 2, 0])  # correct: images 0, 2, 3, 4
    # Brightened by 0.4: 0.1 -> 0.5 (class 1), 0.5 -> 0.9 (class 2), 0.9 -> 1.0 (class 2);
    # so of the attacked images only image 4 stays correct.
    attack = Brighten()
    result = adversarial_accuracy(model, x, y, attack, batch_size=batch_size, keep_examples=True)
    assert (result.n_total, result.n_clean_correct, result.n_adversarial_correct) == (6, 4, 1)
    assert result.clean_accuracy == pytest.approx(4 / 6)
    assert result.adversarial_accuracy == pytest.approx(1 / 4)
    assert result.adversarial_accuracy_all == pytest.approx(1 / 6)
    assert result.attacked_indices.tolist() == [0, 2, 3, 4]
    assert torch.equal(torch.cat(attack.seen), x[[0, 2, 3, 4]])  # only correct inputs attacked
    assert torch.equal(result.adversarial_images, (x[[0, 2, 3, 4]] + 0.4).clamp(0, 1))
    assert result.adversarial_predictions.tolist() == [1, 2, 2, 2]
    assert result.summary()["n_clean_correct"] == 4


def test_adversarial_accuracy_nothing_correct_is_nan():
    model = NearestBrightness()
    x = constant_images([0.1, 0.9])
    result = adversarial_accuracy(model, x, torch.tensor([2, 0]), Brighten())
    assert result.n_clean_correct == 0 and math.isnan(result.adversarial_accuracy)
    assert result.adversarial_accuracy_all == 0.0 and result.clean_accuracy == 0.0


def test_adversarial_accuracy_with_fgsm_matches_manual(models, data):
    model, _ = models
    x, y = data
    attack = make_attack("fgsm", eps=0.04)
    result = adversarial_accuracy(model, x, y, attack, batch_size=32)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    x_adv = fgsm(model, x[correct], y[correct], eps=0.04)
    with torch.no_grad():
        still = int((model(x_adv).argmax(1) == y[correct]).sum())
    assert result.n_clean_correct == int(correct.sum()) > 0
    assert result.n_adversarial_correct == still
    assert result.n_adversarial_correct < result.n_clean_correct  # the attack does something
    assert result.adversarial_accuracy_all == pytest.approx(
        result.adversarial_accuracy * result.clean_accuracy
    )


# --- black-box ----------------------------------------------------------------------------


def test_blackbox_same_model_equals_whitebox(models, data):
    model, _ = models
    x, y = data
    attack = make_attack("pgd", eps=0.04, alpha=0.01, steps=5)
    white = adversarial_accuracy(model, x, y, attack, keep_examples=True)
    black = blackbox_accuracy(model, model, x, y, attack, keep_examples=True)
    assert white.summary() == black.summary()
    assert torch.equal(white.adversarial_images, black.adversarial_images)


def test_blackbox_crafts_on_source_and_scores_on_target(models, data):
    source, target = models
    x, y = data
    attack = Brighten()
    result = blackbox_accuracy(source, target, x, y, attack)
    assert all(m is source for m in attack.models)
    with torch.no_grad():
        correct = target(x).argmax(1) == y
        adv = (x[correct] + 0.4).clamp(0, 1)
        still = int((target(adv).argmax(1) == y[correct]).sum())
    assert result.attacked_indices.tolist() == correct.nonzero().squeeze(1).tolist()
    assert result.n_adversarial_correct == still
    # A real transfer attack: FGSM crafted on the source lowers the target's accuracy.
    fgsm_result = blackbox_accuracy(source, target, x, y, make_attack("fgsm", eps=0.1))
    assert fgsm_result.adversarial_accuracy < 1.0


def test_attack_returning_wrong_shape_is_reported(models, data):
    model, _ = models
    x, y = data
    with pytest.raises(TlabError, match="shaped like its input"):
        adversarial_accuracy(model, x, y, lambda m, xb, yb: xb[:1])


# --- gamma --------------------------------------------------------------------------------


def test_gamma_values_and_zero_policy():
    assert gamma(0.6, 0.3) == pytest.approx(1.0)
    assert gamma(0.2, 0.4) == pytest.approx(-0.5)
    assert gamma(0.4, 0.4) == 0.0
    assert math.isnan(gamma(0.3, 0.0))
    table = gamma(np.array([0.6, 0.1, 0.5]), np.array([0.3, 0.2, 0.0]))
    assert np.allclose(table[:2], [1.0, -0.5]) and np.isnan(table[2])
    with pytest.raises(TlabError, match="divide percentages by 100"):
        gamma(60.0, 30.0)


# --- input-gradient norms -----------------------------------------------------------------


def test_gradient_norms_match_per_example_autograd(models, data):
    model, _ = models
    x, y = data
    x, y = x[:12], y[:12]
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    try:
        norms = input_gradient_norms(model, x, y, batch_size=5)
        assert all(m.training for m in model.modules())
        assert all(p.grad is None for p in model.parameters())
        assert [p.requires_grad for p in model.parameters()] == flags
    finally:
        model.eval()
    manual = []
    for i in range(len(x)):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xi), y[i : i + 1]), xi)
        manual.append(g.norm().item())
    assert norms.shape == (12,)
    assert torch.allclose(norms, torch.tensor(manual), rtol=1e-4, atol=1e-7)
    assert norms.std() > 0


# --- min-max tables -----------------------------------------------------------------------


def test_minmax_normalise_dataframe():
    df = pd.DataFrame(
        {"Natural": [0.9, 0.8, 0.85], "WB-PGD": [0.1, 0.4, np.nan], "BB-FGSM": [0.5, 0.5, 0.5]},
        index=["R_nat", "R_fgsm", "R_pgd"],
    )
    out = minmax_normalise_columns(df)
    assert list(out.index) == list(df.index) and list(out.columns) == list(df.columns)
    assert out["Natural"].tolist() == pytest.approx([1.0, 0.0, 0.5])
    assert out["WB-PGD"].iloc[:2].tolist() == pytest.approx([0.0, 1.0])
    assert np.isnan(out["WB-PGD"].iloc[2])
    assert out["BB-FGSM"].tolist() == [0.0, 0.0, 0.0]  # no spread -> 0
    with pytest.raises(TlabError, match="set_index"):
        minmax_normalise_columns(df.reset_index())


def test_minmax_normalise_array():
    rng = np.random.default_rng(0)
    table = rng.uniform(20, 90, size=(7, 5))
    out = minmax_normalise_columns(table)
    assert out.min(axis=0) == pytest.approx(np.zeros(5))
    assert out.max(axis=0) == pytest.approx(np.ones(5))
    assert (np.argsort(out, axis=0) == np.argsort(table, axis=0)).all()
    with pytest.raises(TlabError, match="2-D"):
        minmax_normalise_columns(table[0])
