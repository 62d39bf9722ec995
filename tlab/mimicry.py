"""Internal-representation mimicry: Wang et al.'s attack on transfer learning (USENIX Sec. 2018).

Setting (Wang et al. 2018, Sec. 3): a student S copies the first K layers of a public teacher T,
freezes them and trains new layers on top. Whatever the student's later layers are, an input x'
whose layer-K representation equals that of a target image x_t is classified like x_t. With
white-box access to the teacher only, the attacker therefore solves

    min_x'  || T_K(x') - T_K(x_t) ||_2    subject to   DSSIM(x', x_s) <= P,

starting from a source image x_s. The constraint goes into the loss with the penalty method
(Sec. 3, "Solving the Optimization Function"):

    || T_K(x') - T_K(x_t) ||_2  +  lambda * max(DSSIM(x', x_s) - P, 0)^2,

minimised with Adadelta (learning rate 1) over pixels written in tanh space, so that every
iterate is a valid image. Following the authors' released code, the distance is the plain
(non-squared) L2 norm, lambda is a constant 1e10 with no schedule, and the returned image is the
iterate with the smallest layer-K distance among those within the budget.

In tlab "layer K" is the output of stage K of a :class:`~tlab.models.StagedModel`
(``teacher.features(x, K)``); ``K = teacher.num_stages`` is the vector the classifier reads,
Wang et al.'s layer N-1 (the deep-layer feature extractor).

Everything here is batched: one call attacks many (source, target) pairs at once. The model is
in eval mode (batch-norm uses running statistics, dropout is off) and each pair's loss is summed,
not averaged, so with Adadelta's per-pixel updates every pair follows exactly the path it would
follow alone. The loop runs on a frozen copy of each teacher rewritten for speed (batch norms
folded, pools before ReLUs, the CPU's faster channels-last layout; :mod:`tlab.attack_copy`) and
measures DSSIM with the source's statistics filtered once (:mod:`tlab.source_dssim`): the same
functions, several times faster. On a CPU a big batch is split into one slice per core
(:data:`ROWS_PER_CPU_THREAD`). The non-targeted attack (Sec. 3, Eq. 2) expands each source into
one pair per guide image and keeps the closest in-budget result.

Beyond the paper, for the defenses notebook: ``input_dropout``/``eot_samples`` put the input
dropout defense inside the crafting loop (expectation over transformations; Wang et al. Sec. 6.1
name this countermeasure), and :func:`mimicry_attack_ensemble` mimics several teachers at once
(the attack on an ensemble of students that Sec. 6.3 leaves open).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from pytorch_msssim import ssim
from torch import nn

from tlab.attack_copy import attack_copy
from tlab.attacks import check_images, check_labels, eval_mode
from tlab.checks import check_choice, check_positive_int
from tlab.defenses import drop_pixels
from tlab.device import model_device, torch_threads
from tlab.errors import TlabError
from tlab.metrics import predict
from tlab.models import StagedModel
from tlab.source_dssim import SourceDSSIM

__all__ = [
    "BUDGET_KINDS",
    "DEFAULT_PENALTY",
    "DEFAULT_STEPS",
    "IMAGE_SHAPE",
    "ROWS_PER_CPU_THREAD",
    "SSIM_WINDOW",
    "MimicryResult",
    "cpu_slices",
    "dssim",
    "l2_distance",
    "mimic_features",
    "mimicry_attack",
    "mimicry_attack_ensemble",
    "mimicry_untargeted",
    "targeted_success",
    "untargeted_success",
]

IMAGE_SHAPE = (3, 32, 32)
BUDGET_KINDS = ("dssim", "l2")
DEFAULT_PENALTY = 1e10      # the authors' constant lambda
DEFAULT_STEPS = 2000        # Wang et al. 2018, Sec. 4.1: 2,000 Adadelta iterations
SSIM_WINDOW = 11            # the Gaussian window of the SSIM paper (Z. Wang et al. 2004)
SSIM_SIGMA = 1.5
# Adadelta's decay and epsilon as in TensorFlow, which the authors used (PyTorch's defaults are
# rho=0.9, eps=1e-6). Epsilon sets the size of the first steps: about sqrt(eps) in tanh units.
ADADELTA_RHO = 0.95
ADADELTA_EPS = 1e-8
# Pixels are x = tanh(w) / TANH_SCALE + 0.5; the scale is a hair above 2 so that the pixel
# values 0 and 1 have a finite w (the authors' code used the same constant).
TANH_SCALE = 2.0 - 1e-6
MAX_L2 = math.sqrt(math.prod(IMAGE_SHAPE))  # ||1 - 0||_2 over a whole 3x32x32 image

DistanceFn = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Perturbation measures
# ---------------------------------------------------------------------------------------------


def dssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural dissimilarity ``(1 - SSIM(x, y)) / 2`` of each image pair, shape ``(N,)``.

    Wang et al. (2018, Sec. 3 and Appendix) measure perturbation with DSSIM: 0 for identical
    images, growing as luminance, contrast and local structure diverge (at most 1, for an
    inverted image). SSIM comes from ``pytorch_msssim`` and is differentiable, so it can sit in
    the attack's loss.

    Single-scale, not multi-scale: the paper used TensorFlow's 5-scale MS-SSIM on 224-pixel
    images. MS-SSIM halves the image four times and filters every scale with the 11-pixel window,
    which needs a side of more than (11 - 1) * 2**4 = 160 pixels; on 32x32 images it is not
    defined, so tlab uses SSIM at the one full scale. The window is the standard Gaussian of
    size 11 and sigma 1.5 (as in the authors' code), applied without padding ("valid"), so SSIM
    averages a 22x22 map of local comparisons per channel and then over the channels.

    ``x`` and ``y``: float images in [0, 1] of the same shape (N, C, H, W), H and W >= 11.
    """
    x = check_images(x, name="x")
    y = check_images(y, name="y")
    if x.shape != y.shape:
        raise TlabError(f"dssim(x, y) needs two batches of the same shape, got {tuple(x.shape)} "
                        f"and {tuple(y.shape)}")
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise TlabError(f"dssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (the "
                        f"SSIM window), got {tuple(x.shape[-2:])}")
    similarity = ssim(x, y.to(x.device, x.dtype), data_range=1.0, size_average=False,
                      win_size=SSIM_WINDOW, win_sigma=SSIM_SIGMA)
    return (1.0 - similarity) / 2.0


def l2_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||x - y||_2`` per image over all pixels (in [0, 1] units), shape ``(N,)``."""
    return torch.linalg.vector_norm((x - y).flatten(1), dim=1)


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


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _check_batch(x: object, name: str) -> torch.Tensor:
    images = check_images(x, name=name)
    if tuple(images.shape[1:]) != IMAGE_SHAPE or images.shape[0] == 0:
        raise TlabError(f"{name} must hold at least one image shaped {IMAGE_SHAPE} (N, 3, 32, 32) "
                        f"with pixels in [0, 1], got shape {tuple(images.shape)}")
    return images


def _check_pairs(sources: object, targets: object) -> tuple[torch.Tensor, torch.Tensor]:
    src = _check_batch(sources, "sources")
    tgt = _check_batch(targets, "targets")
    if src.shape[0] != tgt.shape[0]:
        raise TlabError(f"sources ({src.shape[0]}) and targets ({tgt.shape[0]}) must have the same "
                        "length: pair i is (sources[i], targets[i])")
    return src, tgt


def _check_teacher(teacher: object, layer: object, name: str = "teacher") -> int:
    if not isinstance(teacher, StagedModel):
        raise TlabError(f"{name} must be a StagedModel (tlab.models.build_model, the zoo), got "
                        f"{type(teacher).__name__}; the attack reads its stage outputs")
    n = teacher.num_stages
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= n:
        raise TlabError(f"layer={layer!r} is outside the valid range 1..{n} for this "
                        f"{teacher.arch!r} {name} (stages {teacher.describe_stages()}); "
                        f"layer={n} is the vector its classifier reads (Wang's layer N-1)")
    return layer


def _check_budget(budget: object, kind: str) -> float:
    check_choice("budget kind", kind, BUDGET_KINDS)
    top = 1.0 if kind == "dssim" else MAX_L2
    if (not isinstance(budget, (int, float)) or isinstance(budget, bool)
            or not 0.0 < float(budget) <= top):
        example = "0.003 (Wang et al.'s Face budget)" if kind == "dssim" else "2.0"
        raise TlabError(f"budget={budget!r} is outside (0, {top:.4g}] for a {kind!r} budget; "
                        f"e.g. {example}")
    return float(budget)


def _check_optimiser(steps: int, lr: float, penalty: float) -> int:
    steps = check_positive_int(steps, name="steps")
    for name, value in (("lr", lr), ("penalty", penalty)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise TlabError(f"{name}={value!r} must be a positive finite number "
                            f"(defaults: lr=1.0, penalty={DEFAULT_PENALTY:g})")
    return steps


def _check_eot(input_dropout: float, eot_samples: int) -> tuple[float, int]:
    if not (isinstance(input_dropout, (int, float)) and 0.0 <= input_dropout < 1.0):
        raise TlabError(f"input_dropout={input_dropout!r} must be a pixel drop ratio in [0, 1)")
    return float(input_dropout), check_positive_int(eot_samples, name="eot_samples")


def _same_device(models: Sequence[nn.Module]) -> torch.device:
    devices = {model_device(m) for m in models}
    if len(devices) != 1:
        raise TlabError(f"all teachers must live on one device, got {sorted(map(str, devices))}; "
                        "move them with .to(device)")
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


def _search(start: torch.Tensor, distance_fn: DistanceFn, *, budget: float | None,
            measure: DistanceFn, steps: int, lr: float, penalty: float, keep_history: bool,
            stop: threading.Event | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Minimise ``distance_fn`` from ``start`` under the budget; best in-budget iterate per row.

    ``measure(x)`` is the perturbation of ``x`` from ``start`` that ``budget`` bounds.
    Returns (best images, found flags, history). Rows never within budget keep ``start``.
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
                loss = loss + penalty * (perturbation - budget).clamp_min(0).square()
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
def _all_eval(models: Sequence[nn.Module]) -> Iterator[None]:
    """Eval mode for several models at once, each restored on exit (see tlab.attacks.eval_mode)."""
    with contextlib.ExitStack() as stack:
        for model in models:
            stack.enter_context(eval_mode(model))
        yield


def _distance_fn(teachers: Sequence[StagedModel], layers: Sequence[int],
                 targets: Sequence[torch.Tensor], input_dropout: float, eot_samples: int,
                 generator: torch.Generator | None) -> DistanceFn:
    """Per image, the sum over teachers of ``||T_K(x) - target||_2``.

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


# ---------------------------------------------------------------------------------------------
# Sharing a batch out over the CPU cores
# ---------------------------------------------------------------------------------------------

#: On a CPU, a batch with at least this many rows per torch thread is split into one slice per
#: thread, each attacked in its own Python thread computing with one torch thread. Measured on
#: 2 cores (narrow VGG teacher, ms per pair and step, median of 4; split vs one batch on two
#: threads): 512 pairs 0.162 vs 0.186, 128 pairs 0.171 vs 0.180, 64 pairs 0.195 vs 0.190,
#: 32 pairs 0.253 vs 0.224. A batch of small operations keeps two threads only partly busy
#: (each operation waits for both; the Python between operations runs on one core); two
#: independent slices do not wait for each other, once each is big enough.
ROWS_PER_CPU_THREAD = 64


def cpu_slices(rows: int, device: torch.device, *, randomised: bool) -> int:
    """How many slices :func:`mimic_features` splits ``rows`` rows into (1 = no split).

    Only on a CPU, and never for a randomised attack (input dropout in the loop): its random
    draws would then depend on the number of cores.
    """
    if device.type != "cpu" or randomised:
        return 1
    return max(1, min(torch.get_num_threads(), rows // ROWS_PER_CPU_THREAD))


_RowsAttack = Callable[[slice, threading.Event | None], dict[str, torch.Tensor]]


def _run_slices(attack_rows: _RowsAttack, rows: slice, device: torch.device, *,
                randomised: bool) -> list[dict[str, torch.Tensor]]:
    """``attack_rows`` on ``rows``, split over the CPU cores when :func:`cpu_slices` says so.

    Rows are independent, so the slices' results are each row's own result (up to float
    rounding, as between any two thread counts); they come back in row order. If one slice
    fails, or the caller is interrupted (Ctrl-C in a notebook), the other slices stop at their
    next step and the error propagates.
    """
    count = cpu_slices(rows.stop - rows.start, device, randomised=randomised)
    if count == 1:
        return [attack_rows(rows, None)]
    edges = torch.linspace(rows.start, rows.stop, count + 1).round().long().tolist()
    slices = [slice(a, b) for a, b in itertools.pairwise(edges)]
    stop = threading.Event()
    with torch_threads(1), ThreadPoolExecutor(count, thread_name_prefix="tlab-mimicry") as pool:
        futures = [pool.submit(attack_rows, part, stop) for part in slices]
        try:
            return [future.result() for future in futures]
        except BaseException:
            stop.set()
            raise


def mimic_features(teachers: Sequence[StagedModel], layers: Sequence[int], start: torch.Tensor,
                   target_features: Sequence[torch.Tensor], *, budget: float | None,
                   budget_kind: str = "dssim", steps: int = DEFAULT_STEPS, lr: float = 1.0,
                   penalty: float = DEFAULT_PENALTY, input_dropout: float = 0.0,
                   eot_samples: int = 1, seed: int | None = None, history: bool = False,
                   batch_size: int | None = None) -> MimicryResult:
    """The engine behind every attack here: move ``start`` until layer-K outputs near targets.

    Low-level: the caller checks the models, layers and images (:func:`mimicry_attack`,
    :func:`tlab.fingerprint.fingerprint_images`); the settings are checked here.
    ``target_features[j]`` holds, for
    every row of ``start``, the representation to reach at ``teachers[j].features(., layers[j])``:
    a target image's representation for the mimicry attack, zeros for fingerprinting.
    ``budget=None`` drops the perturbation constraint (every iterate qualifies). Rows are
    processed ``batch_size`` at a time (all at once by default); the result is the same
    because rows are independent.
    """
    if torch.is_inference_mode_enabled():
        raise TlabError("the mimicry optimisation needs gradients, but torch.inference_mode() is "
                        "active; call it outside that block")
    check_choice("budget kind", budget_kind, BUDGET_KINDS)
    if budget is not None:
        budget = _check_budget(budget, budget_kind)
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
        fn = _distance_fn(copies, layers, targets, input_dropout, eot_samples, generator)
        dssim_to_start = SourceDSSIM(x0, window=SSIM_WINDOW, sigma=SSIM_SIGMA)  # = dssim(., x0)
        measure = dssim_to_start if budget_kind == "dssim" else lambda x: l2_distance(x, x0)
        best, found, hist = _search(x0, fn, budget=budget, measure=measure, steps=steps,
                                    lr=lr, penalty=penalty, keep_history=history, stop=stop)
        clean = _distance_fn(copies, layers, targets, 0.0, 1, None)
        with torch.no_grad():
            row = {"adversarial": best, "distance": clean(best), "start_distance": clean(x0),
                   "dssim": dssim_to_start(best),
                   "l2": l2_distance(best, x0), "in_budget": found}
        if hist is not None:
            row["history"] = hist.T          # (rows, steps) while concatenating rows
        return {key: value.to(start.device) for key, value in row.items()}

    results = []
    for lo in range(0, n, size):
        rows = slice(lo, min(lo + size, n))
        results.extend(_run_slices(attack_rows, rows, device, randomised=generator is not None))
    out = {key: torch.cat([row[key] for row in results]) for key in results[0]}
    history_table = out.pop("history", None)
    out["adversarial"] = out["adversarial"].to(start.dtype)
    return MimicryResult(**out, budget=budget, budget_kind=budget_kind,
                         history=None if history_table is None else history_table.T)


# ---------------------------------------------------------------------------------------------
# Public attacks
# ---------------------------------------------------------------------------------------------


def _target_features(teachers: Sequence[StagedModel], layers: Sequence[int],
                     targets: torch.Tensor, batch_size: int | None) -> list[torch.Tensor]:
    """Each teacher's layer-K representation of the target images (computed once)."""
    size = targets.shape[0] if batch_size is None else batch_size
    features = []
    with _all_eval(teachers), torch.no_grad():
        for teacher, layer in zip(teachers, layers, strict=True):
            device = model_device(teacher)
            parts = [teacher.features(targets[lo:lo + size].to(device, torch.float32), layer)
                     for lo in range(0, targets.shape[0], size)]
            features.append(torch.cat(parts))
    return features


def mimicry_attack_ensemble(teachers: Sequence[StagedModel], sources: torch.Tensor,
                            targets: torch.Tensor, *, layers: Sequence[int], budget: float,
                            budget_kind: str = "dssim", steps: int = DEFAULT_STEPS,
                            lr: float = 1.0, penalty: float = DEFAULT_PENALTY,
                            input_dropout: float = 0.0, eot_samples: int = 1,
                            seed: int | None = None, history: bool = False,
                            batch_size: int | None = None) -> MimicryResult:
    """Targeted mimicry of several teachers at once: minimise the sum of their layer distances.

    Beyond the paper: Wang et al. (2018, Sec. 6.3) propose an ensemble of students built from
    different teachers as a defense and suggest, without testing it, that an attacker could
    sum the representation distances of all teachers; this is that attack (in the spirit of
    He et al. 2017, who broke ensembles of defenses by optimising against all members).
    ``layers[j]`` is the layer attacked in ``teachers[j]``; the other arguments are those of
    :func:`mimicry_attack`. All teachers must be on one device.
    """
    teachers = list(teachers)
    layers = list(layers)
    if not teachers or len(teachers) != len(layers):
        raise TlabError(f"need at least one teacher and one layer per teacher, got "
                        f"{len(teachers)} teacher(s) and {len(layers)} layer(s)")
    for j, (teacher, layer) in enumerate(zip(teachers, layers, strict=True)):
        _check_teacher(teacher, layer, name=f"teachers[{j}]")
    src, tgt = _check_pairs(sources, targets)
    budget = _check_budget(budget, budget_kind)
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, name="batch_size")
    features = _target_features(teachers, layers, tgt, batch_size)
    return mimic_features(teachers, layers, src, features, budget=budget,
                          budget_kind=budget_kind, steps=steps, lr=lr, penalty=penalty,
                          input_dropout=input_dropout, eot_samples=eot_samples, seed=seed,
                          history=history, batch_size=batch_size)


def mimicry_attack(teacher: StagedModel, sources: torch.Tensor, targets: torch.Tensor, *,
                   layer: int, budget: float, budget_kind: str = "dssim",
                   steps: int = DEFAULT_STEPS, lr: float = 1.0, penalty: float = DEFAULT_PENALTY,
                   input_dropout: float = 0.0, eot_samples: int = 1, seed: int | None = None,
                   history: bool = False, batch_size: int | None = None) -> MimicryResult:
    """Targeted mimicry attack (Wang et al. 2018, Sec. 3, Eq. 1), batched over pairs.

    Pair i turns ``sources[i]`` into an image whose ``teacher.features(., layer)`` is as close
    as possible (L2) to that of ``targets[i]`` while ``DSSIM(x', sources[i]) <= budget``.
    A student that froze the teacher's first ``layer`` stages then tends to classify it as the
    target's class.

    Args:
        teacher: the white-box teacher (its device is used; mode restored afterwards; its
            parameters receive no gradient).
        sources, targets: float images (N, 3, 32, 32) in [0, 1]; pairs are independent.
        layer: K, the stage whose output is mimicked, 1..teacher.num_stages.
        budget: P. For ``budget_kind="dssim"`` in (0, 1] (paper: 0.003 Face, 0.005 Iris);
            for ``"l2"`` the L2 norm of the perturbation in [0, 1] pixel units (Wang et al.,
            Fig. 11, compare the two constraints side by side).
        steps, lr, penalty: Adadelta iterations (paper: 2000), learning rate (1.0) and the
            penalty coefficient lambda (authors: 1e10).
        input_dropout, eot_samples: beyond the paper, an adaptive attack on the input dropout
            defense: each step averages the distance over ``eot_samples`` random pixel-dropout
            masks of ratio ``input_dropout`` (expectation over transformations). The best
            iterate is then chosen on that average.
        seed: seeds the dropout masks (only used with ``input_dropout > 0``; the plain attack
            is deterministic).
        history: also return the distance after every step.
        batch_size: process this many pairs at a time (memory), same result.

    Returns a :class:`MimicryResult`. Pairs whose iterates never met the budget get their
    source back and ``in_budget=False``.
    """
    return mimicry_attack_ensemble(
        [teacher], sources, targets, layers=[layer], budget=budget, budget_kind=budget_kind,
        steps=steps, lr=lr, penalty=penalty, input_dropout=input_dropout,
        eot_samples=eot_samples, seed=seed, history=history, batch_size=batch_size)


def mimicry_untargeted(teacher: StagedModel, sources: torch.Tensor, target_pool: torch.Tensor, *,
                       layer: int, budget: float, source_labels: torch.Tensor | None = None,
                       pool_labels: torch.Tensor | None = None, budget_kind: str = "dssim",
                       steps: int = DEFAULT_STEPS, lr: float = 1.0,
                       penalty: float = DEFAULT_PENALTY, input_dropout: float = 0.0,
                       eot_samples: int = 1, seed: int | None = None, history: bool = False,
                       batch_size: int | None = None) -> MimicryResult:
    """Non-targeted mimicry (Wang et al. 2018, Sec. 3, Eq. 2): the closest of several targets.

    Each source is attacked towards every image of ``target_pool`` (the paper used 5 guide
    images, one per class) in one batched run, and keeps the in-budget result with the
    smallest layer-K distance. With ``source_labels`` and ``pool_labels`` (class indices of the
    student's task) a source is never paired with a guide of its own class. Success means the
    student predicts anything but the source class (:func:`untargeted_success`).

    ``result.target_index`` says which guide each source ended up mimicking; for a source
    without any in-budget result it is the guide whose representation the source was already
    closest to. Other arguments as in :func:`mimicry_attack`.
    """
    src = _check_batch(sources, "sources")
    pool = _check_batch(target_pool, "target_pool")
    if (source_labels is None) != (pool_labels is None):
        raise TlabError("pass both source_labels and pool_labels (to skip guides of the source's "
                        "own class) or neither")
    allowed = torch.ones(src.shape[0], pool.shape[0], dtype=torch.bool)
    if source_labels is not None:
        s_lab = check_labels(source_labels, src.shape[0], name="source_labels").cpu()
        p_lab = check_labels(pool_labels, pool.shape[0], name="pool_labels").cpu()
        allowed = s_lab.view(-1, 1) != p_lab.view(1, -1)
        lonely = (~allowed.any(1)).nonzero().flatten()
        if lonely.numel():
            raise TlabError(f"source(s) {lonely.tolist()[:5]} have no guide image of another "
                            "class in target_pool; add guides of other classes")
    pairs = allowed.nonzero()
    src_idx, pool_idx = pairs[:, 0], pairs[:, 1]
    result = mimicry_attack(
        teacher, src[src_idx.to(src.device)], pool[pool_idx.to(pool.device)], layer=layer,
        budget=budget, budget_kind=budget_kind, steps=steps, lr=lr, penalty=penalty,
        input_dropout=input_dropout, eot_samples=eot_samples, seed=seed, history=history,
        batch_size=batch_size)
    # Choose per source: the smallest distance among in-budget pairs, else among all its pairs.
    n, m = allowed.shape
    dist = result.distance.cpu()
    ok = result.in_budget.cpu()
    table = torch.full((n, m), math.inf)
    table[src_idx, pool_idx] = torch.where(ok, dist, torch.full_like(dist, math.inf))
    fallback = torch.full((n, m), math.inf)
    fallback[src_idx, pool_idx] = dist
    has_ok = torch.isfinite(table).any(1)
    choice = torch.where(has_ok, table.argmin(1), fallback.argmin(1))
    pair_of = torch.full((n, m), -1, dtype=torch.long)
    pair_of[src_idx, pool_idx] = torch.arange(len(pairs))
    chosen = pair_of[torch.arange(n), choice]
    pick = chosen.to(result.distance.device)
    return MimicryResult(
        adversarial=result.adversarial[pick.to(result.adversarial.device)],
        distance=result.distance[pick], start_distance=result.start_distance[pick],
        dssim=result.dssim[pick], l2=result.l2[pick], in_budget=result.in_budget[pick],
        budget=result.budget, budget_kind=result.budget_kind,
        history=None if result.history is None else result.history[:, pick],
        target_index=choice.to(result.distance.device),
    )


# ---------------------------------------------------------------------------------------------
# Success
# ---------------------------------------------------------------------------------------------


def targeted_success(student: nn.Module, adversarial: torch.Tensor,
                     target_labels: torch.Tensor) -> torch.Tensor:
    """Per image: does the (black-box) student predict the target's class? Bool ``(N,)``.

    Wang et al. (2018, Sec. 4.1) count a targeted attempt as a success when the student
    classifies the perturbed source as the class of the target image.
    """
    predicted = predict(student, check_images(adversarial, name="adversarial"))
    labels = check_labels(target_labels, predicted.shape[0], name="target_labels")
    return predicted == labels.to(predicted.device)


def untargeted_success(student: nn.Module, adversarial: torch.Tensor,
                       source_labels: torch.Tensor) -> torch.Tensor:
    """Per image: does the student predict anything but the source's class? Bool ``(N,)``."""
    predicted = predict(student, check_images(adversarial, name="adversarial"))
    labels = check_labels(source_labels, predicted.shape[0], name="source_labels")
    return predicted != labels.to(predicted.device)
