"""Notebook 01's exercise: PGD (Madry et al. 2018), checked by what PGD must do."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tlab.attacks.gradient import fgsm, pgd
from tlab.core.metrics import accuracy
from tlab.notebook.exercise_checks._common import finite_tensor
from tlab.notebook.exercises import check, expect

#: Float slack on a pixel's distance to its clean value.
PIXEL_SLACK = 1e-6
#: Relative float slack on the mean margin (on a linear model PGD and FGSM reach the same
#: corner of the eps-ball, by different float sums).
MARGIN_SLACK = 1e-4
#: Share of the images on which PGD must lower the true class's margin (gradients can vanish
#: on a few saturated images).
MARGIN_LOWERED = 0.9


def pgd_attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int
) -> torch.Tensor:
    """tlab's PGD (:func:`tlab.attacks.gradient.pgd`) with the exercise's signature."""
    return pgd(model, x, y, eps=eps, alpha=alpha, steps=steps)


@torch.no_grad()
def true_class_margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per image, the true class's logit minus the largest other logit: positive when the
    image is classified correctly, lower the closer an attack has pushed it to a mistake
    (unlike the cross-entropy it does not round to 0 on confidently classified images)."""
    model.eval()
    logits = model(x)
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return true - others.amax(dim=1)


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
    """PGD (notebook 01, Sec. 1; Madry et al. 2018, Sec. 2), by what it must do with
    ``(eps, alpha, steps)``:

    - every pixel within eps of the clean image and in [0, 1] (the projection);
    - a single step of ``alpha = eps / 4`` from the clean image moves no pixel by more than
      eps / 4 (steps of size alpha, not one jump of eps as FGSM);
    - it climbs the loss: the true class's margin drops on at least 90 % of the images;
    - it is at least as strong as FGSM with the same eps: no higher mean margin, and no more
      images left correct (one image of slack).

    Doing nothing, descending instead of ascending, and FGSM each fail one of these.
    """
    shape = tuple(x.shape)

    def test() -> str:
        adv = finite_tensor(my_pgd(model, x, y, eps, alpha, steps), shape, "images")
        moved = float((adv - x).abs().amax())
        expect(
            moved <= eps + PIXEL_SLACK,
            f"a pixel moved by {moved * 255:.2f}/255, more than eps = {eps * 255:.2f}/255",
        )
        expect(float(adv.min()) >= 0 and float(adv.max()) <= 1, "a pixel left [0, 1]")
        step = eps / 4
        one_step = finite_tensor(my_pgd(model, x, y, eps, step, 1), shape, "images (steps=1)")
        first = float((one_step - x).abs().amax())
        expect(
            first <= step + PIXEL_SLACK,
            f"with steps=1 and alpha = eps/4 = {step * 255:.2f}/255 a pixel moved by "
            f"{first * 255:.2f}/255: start from the clean image, and each step moves a pixel "
            "by at most alpha",
        )
        clean, yours = true_class_margins(model, x, y), true_class_margins(model, adv, y)
        lowered = float((yours < clean).float().mean())
        expect(
            lowered >= MARGIN_LOWERED,
            f"your attack lowered the true class's margin (its logit minus the largest other) "
            f"on only {lowered:.0%} of the {len(y)} images: an attack climbs the loss of the "
            "true label",
        )
        x_fgsm = fgsm(model, x, y, eps=eps)
        mine, fgsm_mean = float(yours.mean()), float(true_class_margins(model, x_fgsm, y).mean())
        expect(
            mine <= fgsm_mean + MARGIN_SLACK * (1 + abs(fgsm_mean)),
            f"mean margin {mine:.2f} under your attack, {fgsm_mean:.2f} under FGSM with the same "
            f"eps: {steps} steps should get further than one",
        )
        left, fgsm_left = accuracy(model, adv, y), accuracy(model, x_fgsm, y)
        expect(
            left <= fgsm_left + 1 / len(y) + 1e-9,
            f"your attack leaves {left:.0%} correct, FGSM with the same eps only {fgsm_left:.0%}",
        )
        return (
            f"max |x_adv - x| = {moved * 255:.2f}/255 <= eps, pixels in [0, 1], one step moves "
            f"<= alpha; the margin dropped on {lowered:.0%} of the {len(y)} images, to a mean "
            f"of {mine:.2f} under your PGD vs {fgsm_mean:.2f} under FGSM; accuracy {left:.0%} "
            f"vs {fgsm_left:.0%}"
        )

    return check(
        "PGD",
        test,
        hint="start from the clean image; each of the `steps` steps moves by alpha along the sign "
        "of the gradient of the cross-entropy with the true labels (up the loss), then clips "
        "the total perturbation x_adv - x to [-eps, eps] and the image to [0, 1]; put the "
        "model in eval mode.",
    )
