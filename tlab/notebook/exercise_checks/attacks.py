"""Notebook 01's exercise: PGD (Madry et al. 2018), checked against FGSM."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tlab.attacks.gradient import fgsm, pgd
from tlab.core.metrics import accuracy
from tlab.notebook.exercise_checks._common import finite_tensor
from tlab.notebook.exercises import check, expect


def pgd_attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int
) -> torch.Tensor:
    """tlab's PGD (:func:`tlab.attacks.gradient.pgd`) with the exercise's signature."""
    return pgd(model, x, y, eps=eps, alpha=alpha, steps=steps)


def check_pgd(
    my_pgd: Callable[..., torch.Tensor],
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
) -> bool:
    """PGD (notebook 01): every image stays in the eps-ball and in [0, 1], and the attack fools
    at least as many of the images as FGSM with the same eps (one image of slack)."""

    def test() -> str:
        adv = finite_tensor(my_pgd(model, x, y, eps, alpha, steps), tuple(x.shape), "images")
        moved = float((adv - x).abs().amax())
        expect(moved <= eps + 1e-6, f"a pixel moved by {moved * 255:.2f}/255 > eps")
        expect(float(adv.min()) >= 0 and float(adv.max()) <= 1, "a pixel left [0, 1]")
        yours, one_step = accuracy(model, adv, y), accuracy(model, fgsm(model, x, y, eps=eps), y)
        expect(
            yours <= one_step + 1 / len(y) + 1e-9,
            f"your attack leaves {yours:.0%} correct, FGSM with the same eps only {one_step:.0%}",
        )
        return (
            f"max |x_adv - x| = {moved * 255:.2f}/255 <= eps, pixels in [0, 1]; accuracy "
            f"{yours:.0%} under your PGD vs {one_step:.0%} under FGSM"
        )

    return check(
        "PGD",
        test,
        hint="after every step of size alpha along sign(grad), clip the total perturbation "
        "x_adv - x to [-eps, eps], then the image to [0, 1]; use the true labels and the model "
        "in eval mode.",
    )
