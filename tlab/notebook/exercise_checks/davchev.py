"""Exercises of Davchev et al.'s notebooks (07, 08): the adversarial-training loss, min-max
normalisation of a robustness table."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlab.core.train import TrainConfig, training_loss
from tlab.notebook.exercise_checks._common import finite_tensor
from tlab.notebook.exercises import check, expect


def davchev_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """tlab's adversarial-training loss (:func:`tlab.core.train.training_loss`, FGSM crafted
    with the predicted labels; Davchev et al. 2019, Sec. 2.3) with the exercise's signature:
    ``(loss, x_adv)``."""
    config = TrainConfig(adversarial="fgsm", adv_eps=eps, adv_labels="predicted")
    loss, _, x_adv = training_loss(model, x, y, config)
    assert x_adv is not None  # adversarial training always crafts a batch
    return loss, x_adv


class _TinyMLP(nn.Module):
    """A small non-linear classifier on 3x8x8 images, for checks that need exact losses and
    gradients. Non-linear on purpose: on a linear model several PGD steps land (nearly) where
    one FGSM step does, so a PGD answer to an FGSM exercise would pass."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.hidden = nn.Linear(3 * 8 * 8, 32)
        self.fc = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.hidden(x.flatten(1))))


#: Gradient entries smaller than this fraction of their image's largest are left out of the
#: "one FGSM step" test: their sign may differ with the order of float operations.
TINY_GRADIENT = 1e-6


def _fgsm_step_mismatches(
    model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, eps: float, labels: torch.Tensor
) -> int:
    """Pixels (with a non-negligible gradient) where ``x_adv`` is not one signed-gradient step of
    size eps from ``x`` on the loss at ``labels``, clipped to [0, 1] (Goodfellow et al.'s FGSM,
    as Davchev et al. 2019, Sec. 2.2 use it)."""
    x_in = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x_in), labels, reduction="sum"), x_in)
    step = (x + eps * grad.sign()).clamp(0, 1)
    largest = grad.abs().flatten(1).amax(1).clamp_min(1e-30).view(-1, 1, 1, 1)
    clear = grad.abs() >= TINY_GRADIENT * largest
    return int(((x_adv.detach() - step).abs() > 1e-6)[clear].sum())


def check_adversarial_loss(
    my_loss: Callable[..., tuple[torch.Tensor, torch.Tensor]], *, eps: float = 8 / 255
) -> bool:
    """Davchev's adversarial-training loss (notebook 07): the mean of the clean and the
    adversarial cross-entropy, FGSM examples within eps crafted with the predicted labels,
    differentiable down to the weights."""

    def test() -> str:
        model = _TinyMLP()
        generator = torch.Generator().manual_seed(1)
        x = torch.rand((32, 3, 8, 8), generator=generator)
        with torch.no_grad():
            predicted = model(x).argmax(1)
        y = (predicted + 1) % 4  # labels that disagree with the model
        loss, x_adv = my_loss(model, x, y, eps)
        finite_tensor(x_adv, tuple(x.shape), "x_adv")
        expect(
            isinstance(loss, torch.Tensor) and loss.dim() == 0, "return the loss as a 0-dim tensor"
        )
        expect(float((x_adv - x).abs().amax()) <= eps + 1e-6, "x_adv leaves the eps-ball")
        expect(
            float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1,
            "x_adv must stay an image: a pixel left [0, 1]",
        )
        expect(
            float((x_adv - x).abs().amax()) >= eps - 1e-6, "x_adv is not an FGSM step of size eps"
        )
        with torch.no_grad():
            clean, adv = F.cross_entropy(model(x), y), F.cross_entropy(model(x_adv), y)
            away = F.cross_entropy(model(x_adv), predicted) > F.cross_entropy(model(x), predicted)
        expect(
            bool(away), "x_adv must push away from the model's own prediction (predicted labels)"
        )
        off = _fgsm_step_mismatches(model, x, x_adv, eps, predicted)
        expect(
            off == 0,
            f"x_adv is not ONE signed-gradient step of size eps from x: {off} pixels differ from "
            "it (several steps, as PGD takes, or a random start move them elsewhere)",
        )
        expect(
            abs(float(loss.detach()) - float(clean + adv) / 2) < 1e-5,
            f"loss {float(loss.detach()):.4f}, but (L_clean + L_adv) / 2 = "
            f"{float(clean + adv) / 2:.4f}",
        )
        loss.backward()
        expect(
            model.fc.weight.grad is not None and bool(model.fc.weight.grad.abs().sum() > 0),
            "loss.backward() must reach the weights",
        )
        return (
            "x_adv within eps, crafted from the predictions; loss = (L_clean + L_adv) / 2, "
            "differentiable"
        )

    return check(
        "adversarial-training loss",
        test,
        hint="craft the FGSM batch against the model's own predictions, not the true labels "
        "(Sec. 2.3: no label leaking; tlab's FGSM does that when given no labels); the loss "
        "averages the clean and the adversarial cross-entropy, both with the true labels.",
    )


def check_normalise(my_normalise: Callable[[np.ndarray], np.ndarray], *, seed: int = 0) -> bool:
    """Per-column min-max normalisation (notebook 08), on a table of its own."""
    rng = np.random.default_rng(seed)
    table = np.column_stack([rng.uniform(0.2, 0.9, 5), [0.3] * 5, rng.uniform(0, 0.1, 5)])

    def test() -> str:
        given = table.copy()
        got = np.asarray(my_normalise(given), dtype=float)
        expect(
            np.array_equal(given, table),
            "your function changed the table it was given (in the notebook that is the run's "
            "robustness table): return a new array, leave the input as it is",
        )
        expect(got.shape == table.shape, "one value per cell")
        for j in (0, 2):
            col = table[:, j]
            want = (col - col.min()) / (col.max() - col.min())
            expect(np.allclose(got[:, j], want), f"column {j}: {np.round(got[:, j], 3).tolist()}")
        expect(np.allclose(got[:, 1], 0), "a column without spread must become all 0")
        return "each column's minimum maps to 0 and its maximum to 1; a flat column to 0"

    return check(
        "min-max normalisation",
        test,
        hint="work per column (axis=0): (v - min) / (max - min), 0 where max == min.",
    )
