"""Gradient attacks on image classifiers: FGSM and PGD under an L-infinity budget.

Every attack is one plain function that works on any ``nn.Module`` mapping images in [0, 1]
to logits. Conventions shared by all of them:

- ``eps`` (and ``alpha``) are in [0, 1] pixel units. Zhang et al. (2020) and Davchev et al.
  (2019) state eps for pixels scaled to [-1, 1], so their values must be halved here
  (Zhang's eps = 0.125 becomes 0.0625; Davchev's 0.0625 becomes 0.03125 = 8/256).
- The computation runs on the model's device; the result comes back on the input's device,
  with the input's dtype, detached, clamped to [0, 1] and within ``eps`` of the input.
- The model is switched to eval mode while the attack runs (dropout off, batch-norm running
  statistics used) and every submodule's own mode is restored afterwards, also on error.
- Only the input receives a gradient (``torch.autograd.grad``): the parameters' ``.grad`` and
  ``requires_grad`` flags are left as they were, so an attack can run in the middle of training.
- ``y=None`` attacks the model's own prediction on the clean input instead of the true label.
  Kurakin et al. (2017) showed that a one-step attack using the true label "leaks" it, so an
  FGSM-trained model can score higher on adversarial than on clean inputs; Davchev et al.
  (2019, Sec. 2.3) use the predicted label to avoid that effect.
- ``targeted=True`` reads ``y`` as the labels to reach and steps *down* their loss.

:func:`make_attack` binds hyperparameters to an attack name, returning an :class:`Attack`
callable ``attack(model, x, y) -> x_adv`` that notebooks, metrics and training code pass around.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tlab.checks import check_choice, check_eps, check_positive_int
from tlab.core.device import model_device
from tlab.core.inputs import check_images, check_labels, eval_mode, input_gradient
from tlab.core.metrics import DEFAULT_BATCH_SIZE
from tlab.errors import TlabError

__all__ = ["Attack", "fgsm", "fgsm_budgets", "list_attacks", "make_attack", "pgd"]


def _check_alpha(alpha: float) -> float:
    value = float(alpha)
    if not (math.isfinite(value) and value > 0):
        raise TlabError(
            f"alpha={alpha!r} must be a step size > 0 in [0, 1] pixel units "
            "(Davchev et al. use alpha = eps / 4)"
        )
    return value


def _check_batch_size(batch_size: int | None) -> int | None:
    return None if batch_size is None else check_positive_int(batch_size, name="batch_size")


def _prepare(x: object, y: object, *, targeted: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    images = check_images(x)
    if y is None:
        if targeted:
            raise TlabError("targeted=True needs y = the target labels (one per image)")
        return images, None
    return images, check_labels(y, images.shape[0])


def _chunked(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    batch_size: int | None,
    attack_chunk: Callable[[torch.Tensor, torch.Tensor | None, slice], torch.Tensor],
) -> torch.Tensor:
    """Run ``attack_chunk`` on slices of ``x`` on the model's device, in eval mode.

    Each chunk is moved to the device once and its result moved back to ``x``'s device, so a
    large CPU set can be attacked on a GPU with bounded memory.
    """
    device = model_device(model)
    n = x.shape[0]
    size = n if batch_size is None else batch_size
    pieces = []
    with eval_mode(model):
        for start in range(0, n, size):
            part = slice(start, start + size)
            xb = x[part].detach().to(device)
            yb = None if y is None else y[part].to(device)
            pieces.append(attack_chunk(xb, yb, part).to(x.device))
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


# ---------------------------------------------------------------------------------------------
# Attacks
# ---------------------------------------------------------------------------------------------


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    eps: float,
    targeted: bool = False,
    batch_size: int | None = DEFAULT_BATCH_SIZE,
) -> torch.Tensor:
    """Fast Gradient Sign Method: one step of size ``eps`` along the sign of the input gradient.

    Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015. Untargeted,
    each pixel moves by ``eps`` in the direction that raises the cross-entropy of ``y``; targeted,
    in the direction that lowers the cross-entropy of the target ``y``. This is the attack of
    Zhang et al. (2020, Sec. 3.3), with true labels, in both their white-box and black-box
    settings, and one of Davchev et al.'s (2019, Sec. 2.3) two threat models.

    Args:
        model: any classifier taking images in [0, 1]; its device is used.
        x: images (N, C, H, W) in [0, 1], on any device.
        y: true labels (N,) (untargeted), target labels (targeted), or ``None`` to use the
            model's own predictions on ``x`` (avoids label leaking; untargeted only).
        eps: L-infinity budget in [0, 1] pixel units (halve a paper's [-1, 1] value).
        targeted: step towards ``y`` instead of away from it.
        batch_size: attack at most this many images at a time (``None``: all at once). Each
            image's perturbation is its own (eval mode, summed loss), so this bounds memory
            without changing the result (``tlab.core.metrics.DEFAULT_BATCH_SIZE``).

    Returns:
        Adversarial images, same shape, dtype and device as ``x``.
    """
    (adversarial,) = fgsm_budgets(
        model, x, y, eps_list=[eps], targeted=targeted, batch_size=batch_size
    )
    return adversarial


def fgsm_budgets(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    eps_list: Sequence[float],
    targeted: bool = False,
    batch_size: int | None = DEFAULT_BATCH_SIZE,
) -> list[torch.Tensor]:
    """:func:`fgsm` at several budgets, from one input gradient per image.

    FGSM's direction, the sign of the input gradient at the clean image, does not depend on
    ``eps``; only the step's length does. So a whole grid of budgets (Zhang et al. 2020, Fig. 3's
    eps axis) costs one forward and backward pass instead of one per budget, and each result is
    exactly (bit for bit) what :func:`fgsm` returns for that ``eps`` alone.

    Args:
        eps_list: the budgets, in [0, 1] pixel units.
        model, x, y, targeted, batch_size: as in :func:`fgsm`.

    Returns:
        One adversarial batch per budget, in ``eps_list``'s order, each as :func:`fgsm`'s.
    """
    budgets = [check_eps(eps) for eps in eps_list]
    batch_size = _check_batch_size(batch_size)
    x, y = _prepare(x, y, targeted=targeted)
    if not any(budgets) or x.shape[0] == 0:
        return [x.detach().clone() for _ in budgets]

    def attack_chunk(xb: torch.Tensor, yb: torch.Tensor | None, _part: slice) -> torch.Tensor:
        grad, _labels = input_gradient(model, xb, yb, check_range=True)
        direction = grad.sign()
        adversarial = []
        for eps in budgets:
            step = eps * direction
            adv = xb - step if targeted else xb + step
            adversarial.append(adv.clamp_(0.0, 1.0))
        return torch.stack(adversarial, dim=1)  # (images, budgets, C, H, W)

    stacked = _chunked(model, x, y, batch_size, attack_chunk)
    return [stacked[:, i] for i in range(len(budgets))]


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = False,
    targeted: bool = False,
    seed: int | None = None,
    batch_size: int | None = DEFAULT_BATCH_SIZE,
) -> torch.Tensor:
    """Projected Gradient Descent: ``steps`` signed-gradient steps of size ``alpha``, each
    followed by projection onto the L-infinity ball of radius ``eps`` around ``x`` and onto
    the valid pixel range [0, 1].

    Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018
    (iterated FGSM with an optional uniformly random start inside the ball). Davchev et al.
    (2019, Sec. 2.2-2.3) use 7 steps, ``alpha = eps / 4`` and no random start, for both
    adversarial training and white-box evaluation.

    Each step is ``x' <- clip_[0,1](x + clip_[-eps,eps](x' + alpha * sign(g) - x))`` (minus the
    step when targeted), the usual projection order.

    Args:
        model, x, y, eps, targeted, batch_size: as in :func:`fgsm`.
        alpha: step size in [0, 1] pixel units, > 0.
        steps: number of gradient steps, >= 1.
        random_start: start from ``x`` plus uniform noise in [-eps, eps] (then clamped).
        seed: seeds the random start (a ``torch.Generator`` on ``x``'s device), so the same
            seed gives the same result; ``None`` uses torch's global generator. Unused without
            ``random_start`` (the attack is then deterministic).

    Returns:
        Adversarial images, same shape, dtype and device as ``x``.
    """
    eps = check_eps(eps)
    if eps > 0.0:  # at eps 0 nothing moves, whatever the step (alpha = eps / 4 is then 0)
        alpha = _check_alpha(alpha)
    steps = check_positive_int(steps, name="steps")
    batch_size = _check_batch_size(batch_size)
    x, y = _prepare(x, y, targeted=targeted)
    if eps == 0.0 or x.shape[0] == 0:
        return x.detach().clone()

    noise = None
    if random_start:
        generator = None
        if seed is not None:
            generator = torch.Generator(device=x.device)
            generator.manual_seed(int(seed))
        # Drawn for the whole input at once, so chunking does not change the noise.
        noise = torch.empty_like(x).uniform_(-eps, eps, generator=generator)

    def attack_chunk(xb: torch.Tensor, yb: torch.Tensor | None, part: slice) -> torch.Tensor:
        labels = yb
        if noise is None:
            adv = xb
        else:
            if labels is None:  # predicted labels come from the clean input, not the noisy one
                with torch.no_grad():
                    labels = model(xb).argmax(dim=1)
            adv = (xb + noise[part].to(xb.device)).clamp_(0.0, 1.0)
        for step in range(steps):
            grad, labels = input_gradient(model, adv, labels, check_range=step == 0)
            move = alpha * grad.sign()
            adv = adv - move if targeted else adv + move
            delta = (adv - xb).clamp_(-eps, eps)
            adv = (xb + delta).clamp_(0.0, 1.0)
        return adv

    return _chunked(model, x, y, batch_size, attack_chunk)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

_ATTACKS: dict[str, Callable[..., torch.Tensor]] = {"fgsm": fgsm, "pgd": pgd}
_LABEL_SOURCES = ("true", "predicted")


def list_attacks() -> list[str]:
    """Names accepted by :func:`make_attack`."""
    return sorted(_ATTACKS)


def _hyperparameters(function: Callable[..., torch.Tensor]) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in inspect.signature(function).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


@dataclass(frozen=True)
class Attack:
    """An attack with its hyperparameters bound: ``attack(model, x, y) -> x_adv``.

    ``labels="predicted"`` ignores the ``y`` passed at call time and attacks the model's own
    prediction (the label-leaking switch, Kurakin et al. 2017; Davchev et al. 2019, Sec. 2.3).
    Build one with :func:`make_attack`.
    """

    name: str
    hyper: dict[str, Any] = field(default_factory=dict)
    labels: str = "true"

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        labels = None if self.labels == "predicted" else y
        return _ATTACKS[self.name](model, x, labels, **self.hyper)

    def describe(self) -> str:
        """A short human label, e.g. ``pgd(eps=0.0313, alpha=0.00781, steps=7)``."""
        parts = [
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.hyper.items()
        ]
        if self.labels == "predicted":
            parts.append("labels=predicted")
        return f"{self.name}({', '.join(parts)})"


def make_attack(name: str, *, labels: str = "true", **hyper: Any) -> Attack:
    """Bind hyperparameters to a named attack (see :func:`list_attacks`).

    Example: ``make_attack("pgd", eps=8 / 255, alpha=2 / 255, steps=7)``. Hyperparameters are
    the attack function's keyword arguments; they are checked here, so a bad value fails when
    the attack is made rather than deep inside a training loop.

    Args:
        name: ``"fgsm"`` or ``"pgd"``.
        labels: ``"true"`` attacks the labels passed at call time; ``"predicted"`` attacks the
            model's predictions instead (no label leaking).
        **hyper: keyword arguments of the attack function (``eps``, ``alpha``, ``steps``, ...).
    """
    check_choice("attack", name, list_attacks())
    check_choice("label source", labels, _LABEL_SOURCES)
    params = _hyperparameters(_ATTACKS[name])
    unknown = sorted(set(hyper) - set(params))
    if unknown:
        raise TlabError(
            f"attack {name!r} has no hyperparameter {', '.join(unknown)}; "
            f"valid ones: {', '.join(params)}"
        )
    required = [k for k, p in params.items() if p.default is inspect.Parameter.empty]
    missing = [k for k in required if k not in hyper]
    if missing:
        raise TlabError(f"attack {name!r} needs {', '.join(missing)} (e.g. eps=8/255)")
    if labels == "predicted" and hyper.get("targeted", False):
        raise TlabError("a targeted attack needs the target labels; use labels='true'")
    if "eps" in hyper:
        hyper["eps"] = check_eps(hyper["eps"])
    if "alpha" in hyper:
        hyper["alpha"] = _check_alpha(hyper["alpha"])
    if "steps" in hyper:
        hyper["steps"] = check_positive_int(hyper["steps"], name="steps")
    if "batch_size" in hyper:
        hyper["batch_size"] = _check_batch_size(hyper["batch_size"])
    return Attack(name=name, hyper=hyper, labels=labels)
