"""The optimisation loop behind every mimicry attack and fingerprint (Wang et al., USENIX
Security 2018, Sec. 3): pixels in tanh space, Adadelta, the penalty on the budget, and the best
in-budget iterate kept; see :mod:`tlab.attacks.mimicry` for the attack it serves."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypedDict

import torch
from torch import nn

from tlab.attacks._fast.attack_copy import attack_copy
from tlab.attacks._fast.cpu_split import run_slices
from tlab.attacks._fast.source_dssim import SourceDSSIM
from tlab.attacks.msssim import ms_dssim
from tlab.attacks.perturbation import (
    BUDGET_KINDS,
    SSIM_SIGMA,
    SSIM_WINDOW,
    check_budget,
    l2_distance,
)
from tlab.checks import check_choice, check_positive_int
from tlab.core.device import model_device
from tlab.core.inputs import eval_mode
from tlab.core.models import StagedModel
from tlab.defenses.input_dropout import drop_pixels
from tlab.errors import TlabError

DEFAULT_PENALTY = 1e10  # the authors' constant lambda
DEFAULT_STEPS = 2000  # Wang et al. 2018, Sec. 4.1: 2,000 Adadelta iterations
# Adadelta's decay and epsilon as in TensorFlow, which the authors used (PyTorch's defaults are
# rho=0.9, eps=1e-6). Epsilon sets the size of the first steps: about sqrt(eps) in tanh units.
ADADELTA_RHO = 0.95
ADADELTA_EPS = 1e-8
# Pixels are x = tanh(w) / TANH_SCALE + 0.5; the scale is a hair above 2 so that the pixel
# values 0 and 1 have a finite w (the authors' code used the same constant).
TANH_SCALE = 2.0 - 1e-6

DistanceFn = Callable[[torch.Tensor], torch.Tensor]


class SearchOptions(TypedDict, total=False):
    """The optimisation settings every mimicry attack passes on to :func:`mimic_features`.

    - ``budget_kind``: ``"dssim"`` (single-scale DSSIM, P in (0, 1]), ``"ms_dssim"`` (the
      5-scale DSSIM of Wang et al.'s code, Sec. 3; looser than single-scale for the same P:
      about 14x on pixel noise (:mod:`tlab.attacks.msssim`), less on the attack's smoother
      perturbations, ``studies/wang_budget_measure.py``) or ``"l2"`` (the L2
      norm of the perturbation in [0, 1] pixel units; Fig. 11 compares it with DSSIM).
    - ``steps``, ``lr``, ``penalty``: Adadelta iterations (paper: 2,000), learning rate (1.0)
      and the penalty coefficient lambda on the budget (authors: 1e10).
    - ``input_dropout``, ``eot_samples``: beyond the paper, an attacker who knows the
      input-dropout defence averages the distance over ``eot_samples`` random pixel-dropout
      masks of ratio ``input_dropout`` at every step (expectation over transformations); the
      best iterate is chosen on that average.
    - ``seed``: seeds the dropout masks (the plain attack is deterministic).
    - ``history``: also return the distance after every step.
    - ``batch_size``: process this many pairs at a time (memory); same result.
    - ``round_pixels``: round the chosen images to whole 8-bit pixel values, as Wang et al.'s
      code does when it returns them (``np.rint`` on 0..255). The budget is checked on the
      iterate before rounding, as theirs, so a rounded image may sit slightly over P.
    """

    budget_kind: str
    steps: int
    lr: float
    penalty: float
    input_dropout: float
    eot_samples: int
    seed: int | None
    history: bool
    batch_size: int | None
    round_pixels: bool


# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MimicryResult:
    """What a mimicry run returns; every tensor has one row per attacked pair (or source).

    Attributes:
        adversarial: the crafted images (N, 3, 32, 32) in [0, 1]; a pair that never got
            within the budget keeps its source image unchanged.
        distance: layer-K L2 distance between ``adversarial`` and the target representation
            (summed over teachers for an ensemble attack), measured without input dropout.
        start_distance: the same distance for the unmodified source.
        dssim: DSSIM between ``adversarial`` and the source.
        l2: L2 distance between ``adversarial`` and the source (pixel units in [0, 1]).
        in_budget: whether some iterate met the budget (``False`` = the source was returned).
        budget, budget_kind: the constraint used (``None`` budget: unconstrained).
        history: if requested, the distance the optimiser saw after each step, (steps, N).
        target_index: non-targeted attack only: the guide image (index into the pool) whose
            representation each source ended up closest to.
    """

    adversarial: torch.Tensor
    distance: torch.Tensor
    start_distance: torch.Tensor
    dssim: torch.Tensor
    l2: torch.Tensor
    in_budget: torch.Tensor
    budget: float | None
    budget_kind: str
    history: torch.Tensor | None = None
    target_index: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.adversarial.shape[0]

    def summary(self) -> dict[str, float]:
        """Means over pairs: distances, perturbation and the fraction within budget."""
        ok = self.in_budget.float()
        return {
            "pairs": float(len(self)),
            "in_budget": ok.mean().item(),
            "start_distance": self.start_distance.mean().item(),
            "distance": self.distance.mean().item(),
            "dssim": self.dssim.mean().item(),
            "l2": self.l2.mean().item(),
        }


def _check_optimiser(steps: int, lr: float, penalty: float) -> int:
    steps = check_positive_int(steps, name="steps")
    for name, value in (("lr", lr), ("penalty", penalty)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise TlabError(
                f"{name}={value!r} must be a positive finite number "
                f"(defaults: lr=1.0, penalty={DEFAULT_PENALTY:g})"
            )
    return steps


def _check_eot(input_dropout: float, eot_samples: int) -> tuple[float, int]:
    if not (isinstance(input_dropout, (int, float)) and 0.0 <= input_dropout < 1.0):
        raise TlabError(f"input_dropout={input_dropout!r} must be a pixel drop ratio in [0, 1)")
    return float(input_dropout), check_positive_int(eot_samples, name="eot_samples")


def _same_device(models: Sequence[nn.Module]) -> torch.device:
    devices = {model_device(m) for m in models}
    if len(devices) != 1:
        raise TlabError(
            f"all teachers must live on one device, got {sorted(map(str, devices))}; "
            "move them with .to(device)"
        )
    return devices.pop()


# ---------------------------------------------------------------------------------------------
# The optimisation loop
# ---------------------------------------------------------------------------------------------


def _to_tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.atanh((x - 0.5) * TANH_SCALE)


def _from_tanh(w: torch.Tensor) -> torch.Tensor:
    # tanh saturates at +-1, where dividing by TANH_SCALE (< 2) overshoots [0, 1] by ~2.5e-7.
    # The overshoot is removed as a constant correction: the values are exactly clamp(0, 1)'s,
    # while the gradient skips clamp's mask (three passes over the batch in every backward step;
    # only saturated pixels, whose tanh gradient is ~1e-6 anyway, see a difference).
    pixels = torch.tanh(w) / TANH_SCALE + 0.5
    with torch.no_grad():
        overshoot = pixels.clamp(0.0, 1.0) - pixels
    return pixels + overshoot


class _Stopped(Exception):
    """A slice's search gave up because another slice failed or the caller was interrupted."""


def budget_penalty(perturbation: torch.Tensor, budget: float, penalty: float) -> torch.Tensor:
    """The penalty form of the budget constraint, per image: ``penalty * max(perturbation - P,
    0)^2`` (Wang et al. 2018, Sec. 3, Eq. 1: the constraint ``DSSIM <= P`` moved into the loss)."""
    return penalty * (perturbation - budget).clamp_min(0).square()


def _search(
    start: torch.Tensor,
    distance_fn: DistanceFn,
    *,
    budget: float | None,
    measure: DistanceFn,
    steps: int,
    lr: float,
    penalty: float,
    keep_history: bool,
    stop: threading.Event | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Minimise ``distance_fn`` from ``start`` under the budget; best in-budget iterate per row.

    ``measure(x)`` is the perturbation of ``x`` from ``start`` that ``budget`` bounds.
    Returns (best images, found flags, history). An iterate qualifies when its perturbation is
    ``<= budget``; Wang et al.'s code tests ``< budget`` (the two differ only for an iterate
    exactly at P). Rows never within budget keep ``start``, so they count as failures; the
    authors' code returns its initial all-zero array for them instead.
    The iterates checked are those after steps 1..steps, as in the authors' loop (the start
    itself is not a result). Gradients flow to the pixel variable only. Once ``stop`` is set
    the search raises ``_Stopped`` at its next step.
    """
    w0 = _to_tanh(start)
    delta = torch.zeros_like(w0, requires_grad=True)
    optimizer = torch.optim.Adadelta([delta], lr=lr, rho=ADADELTA_RHO, eps=ADADELTA_EPS)
    best = start.clone()
    best_distance = torch.full((start.shape[0],), math.inf, device=start.device)
    history = []
    for step in range(steps + 1):
        if stop is not None and stop.is_set():
            raise _Stopped
        last = step == steps
        with torch.set_grad_enabled(not last):
            x = _from_tanh(w0 + delta)
            distance = distance_fn(x)
            loss = distance
            if budget is not None:
                perturbation = measure(x)
                loss = loss + budget_penalty(perturbation, budget, penalty)
        if step > 0:
            d = distance.detach()
            ok = d < best_distance
            if budget is not None:
                ok &= perturbation.detach() <= budget
            best_distance = torch.where(ok, d, best_distance)
            best = torch.where(ok.view(-1, 1, 1, 1), x.detach(), best)
            if keep_history:
                history.append(d)
        if last:
            break
        (grad,) = torch.autograd.grad(loss.sum(), delta)
        delta.grad = grad
        optimizer.step()
    found = torch.isfinite(best_distance)
    return best, found, torch.stack(history) if keep_history else None


@contextlib.contextmanager
def all_eval(models: Sequence[nn.Module]) -> Iterator[None]:
    """Eval mode for several models at once, each restored on exit (see
    tlab.core.inputs.eval_mode)."""
    with contextlib.ExitStack() as stack:
        for model in models:
            stack.enter_context(eval_mode(model))
        yield


def feature_distance(
    teachers: Sequence[StagedModel],
    layers: Sequence[int],
    targets: Sequence[torch.Tensor],
    input_dropout: float,
    eot_samples: int,
    generator: torch.Generator | None,
) -> DistanceFn:
    """Per image, the sum over teachers of ``||T_K(x) - target||_2``, the distance the mimicry
    attack minimises (Wang et al. 2018, Sec. 3, Eq. 1).

    With ``input_dropout > 0`` the image is copied ``eot_samples`` times, each copy loses a
    random set of pixels, and the distance is averaged over the copies.
    """
    copies = eot_samples if input_dropout > 0.0 else 1

    def distance(x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        seen = x
        if input_dropout > 0.0:
            seen = drop_pixels(x.repeat(copies, 1, 1, 1), input_dropout, generator=generator)
        total = torch.zeros(copies, n, device=x.device)
        for teacher, layer, target in zip(teachers, layers, targets, strict=False):
            diff = teacher.features(seen, layer).reshape(copies, n, -1) - target.view(1, n, -1)
            total = total + torch.linalg.vector_norm(diff, dim=2)
        return total.mean(0)

    return distance


def mimic_features(
    teachers: Sequence[StagedModel],
    layers: Sequence[int],
    start: torch.Tensor,
    target_features: Sequence[torch.Tensor],
    *,
    budget: float | None,
    budget_kind: str = "dssim",
    steps: int = DEFAULT_STEPS,
    lr: float = 1.0,
    penalty: float = DEFAULT_PENALTY,
    input_dropout: float = 0.0,
    eot_samples: int = 1,
    seed: int | None = None,
    history: bool = False,
    batch_size: int | None = None,
    round_pixels: bool = False,
) -> MimicryResult:
    """The engine behind every attack here: move ``start`` until layer-K outputs near targets.

    Low-level: the caller checks the models, layers and images (:func:`mimicry_attack`,
    :func:`tlab.attacks.fingerprint.fingerprint_images`); the settings are checked here.
    ``target_features[j]`` holds, for
    every row of ``start``, the representation to reach at ``teachers[j].features(., layers[j])``:
    a target image's representation for the mimicry attack, zeros for fingerprinting.
    ``budget=None`` drops the perturbation constraint (every iterate qualifies). Rows are
    processed ``batch_size`` at a time (all at once by default); the result is the same
    because rows are independent.
    """
    if torch.is_inference_mode_enabled():
        raise TlabError(
            "the mimicry optimisation needs gradients, but torch.inference_mode() is "
            "active; call it outside that block"
        )
    check_choice("budget kind", budget_kind, BUDGET_KINDS)
    if budget is not None:
        budget = check_budget(budget, budget_kind)
    steps = _check_optimiser(steps, lr, penalty)
    input_dropout, eot_samples = _check_eot(input_dropout, eot_samples)
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, name="batch_size")
    device = _same_device(teachers)
    generator = None
    if input_dropout > 0.0:
        generator = torch.Generator()
        generator.manual_seed(seed if seed is not None else int(torch.randint(2**62, ()).item()))
    n = start.shape[0]
    size = n if batch_size is None else batch_size
    copies = [attack_copy(teacher) for teacher in teachers]

    def attack_rows(rows: slice, stop: threading.Event | None) -> dict[str, torch.Tensor]:
        x0 = start[rows].detach().to(device, torch.float32).contiguous()
        targets = [t[rows].detach().to(device, torch.float32) for t in target_features]
        fn = feature_distance(copies, layers, targets, input_dropout, eot_samples, generator)
        dssim_to_start = SourceDSSIM(x0, window=SSIM_WINDOW, sigma=SSIM_SIGMA)  # = dssim(., x0)
        measures: dict[str, DistanceFn] = {
            "dssim": dssim_to_start,
            "ms_dssim": lambda x: ms_dssim(x, x0),
            "l2": lambda x: l2_distance(x, x0),
        }
        measure = measures[budget_kind]
        best, found, hist = _search(
            x0,
            fn,
            budget=budget,
            measure=measure,
            steps=steps,
            lr=lr,
            penalty=penalty,
            keep_history=history,
            stop=stop,
        )
        if round_pixels:
            best = torch.round(best * 255) / 255
        clean = feature_distance(copies, layers, targets, 0.0, 1, None)
        with torch.no_grad():
            row = {
                "adversarial": best,
                "distance": clean(best),
                "start_distance": clean(x0),
                "dssim": dssim_to_start(best),
                "l2": l2_distance(best, x0),
                "in_budget": found,
            }
        if hist is not None:
            row["history"] = hist.T  # (rows, steps) while concatenating rows
        return {key: value.to(start.device) for key, value in row.items()}

    results = []
    for lo in range(0, n, size):
        rows = slice(lo, min(lo + size, n))
        results.extend(run_slices(attack_rows, rows, device, randomised=generator is not None))
    out = {key: torch.cat([row[key] for row in results]) for key in results[0]}
    history_table = out.pop("history", None)
    out["adversarial"] = out["adversarial"].to(start.dtype)
    return MimicryResult(
        **out,
        budget=budget,
        budget_kind=budget_kind,
        history=None if history_table is None else history_table.T,
    )
