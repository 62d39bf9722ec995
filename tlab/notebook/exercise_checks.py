"""Behaviour checks of the notebooks' exercises, and tlab's versions the cells fall back to.

Each ``check_*`` states what a correct function *does* (stays in the eps-ball, freezes exactly
k stages, equals a definition on numbers the notebook never shows, ...) and hands the test to
:func:`tlab.notebook.exercises.check`. None compares the student's result with tlab's call of
the same function. The small reference implementations below (``davchev_loss``,
``mimicry_loss``, ``eot_distance``, ``find_teacher``, ...) are what :func:`~tlab.notebook.
exercises.use` falls back to where tlab has no function of that shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlab.attacks.fingerprint import GINI_THRESHOLD, gini
from tlab.attacks.gradient import fgsm, pgd
from tlab.attacks.msssim import ms_dssim
from tlab.core.metrics import accuracy
from tlab.core.models import StagedModel
from tlab.defenses.input_dropout import drop_pixels
from tlab.notebook.exercises import check, expect

# ------------------------------------------------------------------ tlab's versions (fall-backs)


def pgd_attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int
) -> torch.Tensor:
    """tlab's PGD (:func:`tlab.attacks.gradient.pgd`) with the exercise's signature."""
    return pgd(model, x, y, eps=eps, alpha=alpha, steps=steps)


def adversarial_accuracy_of(row: Mapping[str, Any], i: int) -> float:
    """White-box adversarial accuracy on correctly classified inputs at the i-th eps, from a
    cached evaluation's per-image lists (Zhang et al. 2020, Sec. 4.2)."""
    attacked = sum(row["correct"])
    return (attacked - sum(row["wb_fooled"][i])) / attacked if attacked else float("nan")


def davchev_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The FGSM adversarial-training loss of Davchev et al. (2019, Sec. 2.3): FGSM examples of
    the batch crafted with the model's predicted labels against the current weights, and the
    mean of the clean and the adversarial cross-entropy. Returns ``(loss, x_adv)``."""
    x_adv = fgsm(model, x, None, eps=eps)
    loss = (F.cross_entropy(model(x), y) + F.cross_entropy(model(x_adv), y)) / 2
    return loss, x_adv


def mimicry_loss(
    teacher: StagedModel,
    layer: int,
    x: torch.Tensor,
    x_source: torch.Tensor,
    target: torch.Tensor,
    budget: float,
    penalty: float,
) -> torch.Tensor:
    """Wang et al.'s (2018, Sec. 3) penalised mimicry objective per image:
    ``||T_K(x) - target||_2 + penalty * max(DSSIM(x, x_source) - budget, 0)^2`` (5-scale DSSIM,
    :func:`tlab.attacks.msssim.ms_dssim`)."""
    distance = (teacher.features(x, layer).flatten(1) - target.flatten(1)).norm(dim=1)
    excess = (ms_dssim(x, x_source) - budget).clamp_min(0)
    return distance + penalty * excess.square()


def eot_distance(
    teacher: StagedModel,
    layer: int,
    x: torch.Tensor,
    target: torch.Tensor,
    ratio: float,
    samples: int,
) -> torch.Tensor:
    """The adaptive attacker's layer-K distance per image: the mean over ``samples`` random
    pixel-dropout masks of ratio ``ratio`` (expectation over transformations)."""
    copies = [drop_pixels(x, ratio) if ratio > 0 else x for _ in range(samples)]
    flat = target.flatten(1)
    return torch.stack(
        [(teacher.features(c, layer).flatten(1) - flat).norm(dim=1) for c in copies]
    ).mean(0)


def find_teacher(student: nn.Module, fingerprints: Mapping[str, torch.Tensor]) -> str | None:
    """The candidate whose fingerprint images give the student's softmax output the smallest
    mean Gini coefficient, if that is below :data:`GINI_THRESHOLD`; else ``None`` (Wang et al.
    2018, Sec. 5.1)."""
    with torch.no_grad():
        scores = {n: float(gini(student(x).softmax(1)).mean()) for n, x in fingerprints.items()}
    best = min(scores, key=scores.__getitem__)
    return best if scores[best] < GINI_THRESHOLD else None


def majority_vote(votes: torch.Tensor) -> torch.Tensor:
    """The class at least two of 3 votes (shape ``(3, N)``) agree on, else the first vote."""
    a, b, c = votes
    return torch.where((b == c) & (a != b), b, a)


# ------------------------------------------------------------------ checks


def _finite_tensor(value: object, shape: tuple[int, ...], what: str) -> torch.Tensor:
    expect(isinstance(value, torch.Tensor), f"return a torch.Tensor ({what})")
    assert isinstance(value, torch.Tensor)
    expect(tuple(value.shape) == shape, f"{what}: expected shape {shape}, got {tuple(value.shape)}")
    expect(bool(torch.isfinite(value).all()), f"{what}: the result holds NaN or inf")
    return value


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
        adv = _finite_tensor(my_pgd(model, x, y, eps, alpha, steps), tuple(x.shape), "images")
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


def _input_shape(model: StagedModel) -> tuple[int, int, int]:
    side = model.input_size or 32
    return int(model.mean.shape[1]), side, side


def check_freeze(
    my_freeze: Callable[[StagedModel, int], object],
    build: Callable[[], StagedModel],
    depths: list[int],
) -> bool:
    """Fine-tuning with k frozen stages (notebook 02): after one SGD step on the trainable
    parameters, exactly the first k stages are unchanged and every later stage and the head
    changed."""

    def one_depth(k: int) -> None:
        model = build()
        out = my_freeze(model, k)
        model = out if isinstance(out, StagedModel) else model
        before = [[p.detach().clone() for p in s.parameters()] for s in model.stages]
        head = [p.detach().clone() for p in model.head.parameters()]
        trainable = [p for p in model.parameters() if p.requires_grad]
        expect(trainable, f"k={k}: no parameter is left trainable")
        generator = torch.Generator().manual_seed(k)
        x = torch.rand((8, *_input_shape(model)), generator=generator)
        y = torch.randint(model.num_classes, (8,), generator=generator)
        optimizer = torch.optim.SGD(trainable, lr=0.5)
        model.train()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        for i, (stage, old) in enumerate(zip(model.stages, before, strict=True)):
            if not old:
                continue
            moved = any(not torch.equal(p, q) for p, q in zip(stage.parameters(), old, strict=True))
            state = "changed" if moved else "stayed as it was"
            expect(moved == (i >= k), f"k={k}: stage {i + 1} {state} after a training step")
        head_moved = any(
            not torch.equal(p, q) for p, q in zip(model.head.parameters(), head, strict=True)
        )
        expect(head_moved, f"k={k}: the classifier head did not train")

    def test() -> str:
        for k in depths:
            one_depth(k)
        return f"for k in {depths}, one training step changes exactly the stages after the first k"

    return check(
        "fine-tuning with k frozen stages",
        test,
        hint="set requires_grad to False on every parameter of model.stages[:k] and to True on "
        "those of model.stages[k:] and model.head (stages count from the input).",
    )


def check_adversarial_accuracy(my_adv_accuracy: Callable[[dict[str, Any], int], float]) -> bool:
    """Adversarial accuracy on correctly classified inputs (notebook 03), on made-up rows."""
    rows = [
        (
            {"correct": [1, 1, 0, 1, 0], "wb_fooled": [[0, 0, 0, 0, 0], [1, 0, 0, 1, 0]]},
            [1.0, 1 / 3],
        ),
        ({"correct": [1, 0, 1, 1], "wb_fooled": [[0, 0, 1, 0], [1, 0, 1, 1]]}, [2 / 3, 0.0]),
    ]

    def test() -> str:
        for row, expected in rows:
            for i, value in enumerate(expected):
                got = float(my_adv_accuracy(row, i))
                expect(
                    abs(got - value) < 1e-9,
                    f"on {row} at eps index {i}: {got:.4f}, expected {value:.4f}",
                )
        return (
            "on made-up per-image results, the fraction of correctly classified inputs that survive"
        )

    return check(
        "adversarial accuracy",
        test,
        hint="the denominator counts only the correctly classified inputs (the attacked ones); "
        "the fooled ones among them are lost.",
    )


def _gamma_definition(a_b: np.ndarray, a_w: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a_w > 0, (a_b - a_w) / np.where(a_w > 0, a_w, 1.0), np.nan)


def check_gamma(my_gamma: Callable[[Any, Any], Any], *, seed: int = 0) -> bool:
    """gamma (notebook 04) on numbers of its own: equal to (a_b - a_w) / a_w, NaN where a_w = 0,
    element-wise on arrays."""
    rng = np.random.default_rng(seed)
    a_b = np.concatenate([[0.5, 0.2, 0.9, 0.3], rng.uniform(0, 1, 6)])
    a_w = np.concatenate([[0.4, 0.25, 0.9, 0.0], rng.uniform(0.05, 1, 6)])

    def test() -> str:
        got = np.asarray(my_gamma(a_b, a_w), dtype=float)
        expect(got.shape == a_b.shape, f"one gamma per pair of accuracies, shape {a_b.shape}")
        want = _gamma_definition(a_b, a_w)
        expect(
            np.array_equal(np.isnan(got), np.isnan(want)), "gamma must be NaN exactly where a_w = 0"
        )
        ok = ~np.isnan(want)
        worst = int(np.argmax(np.abs(got[ok] - want[ok])))
        expect(
            np.allclose(got[ok], want[ok]),
            f"a_b = {a_b[ok][worst]:.3f}, a_w = {a_w[ok][worst]:.3f} gives {got[ok][worst]:.4f}",
        )
        return f"matches the definition on {len(a_b)} pairs of accuracies, NaN where a_w = 0"

    return check(
        "gamma",
        test,
        hint="gamma = (a_b - a_w) / a_w divides by the WHITE-box accuracy; where a_w = 0 return "
        "NaN (np.where), element-wise on numpy arrays.",
    )


def check_gradient_norms(
    my_norms: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
) -> bool:
    """Input-gradient norms (notebook 06): for a batch, each image's norm equals the L2 norm of
    the gradient of that image's own loss, computed on the image alone."""

    def own(i: int) -> float:
        xi = x[i : i + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xi), y[i : i + 1]), xi)
        return float(grad.norm())

    def test() -> str:
        model.eval()
        got = _finite_tensor(my_norms(model, x, y), (len(x),), "norms").detach()
        for i in range(min(len(x), 8)):
            want = own(i)
            expect(
                abs(float(got[i]) - want) <= 1e-4 * want + 1e-7,
                f"image {i}: {float(got[i]):.4g}, its own gradient has norm {want:.4g}",
            )
        return f"each of {len(x)} norms is that of the image's own loss gradient"

    return check(
        "input-gradient norms",
        test,
        hint="a loss averaged over the batch divides every image's gradient by the batch size: "
        "sum the per-image losses (reduction='sum') and take the norm per image (flatten(1)).",
    )


class _Linear(nn.Module):
    """A tiny linear classifier on 3x8x8 images, for checks that need exact losses."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def check_adversarial_loss(
    my_loss: Callable[..., tuple[torch.Tensor, torch.Tensor]], *, eps: float = 8 / 255
) -> bool:
    """Davchev's adversarial-training loss (notebook 07): the mean of the clean and the
    adversarial cross-entropy, FGSM examples within eps crafted with the predicted labels,
    differentiable down to the weights."""

    def test() -> str:
        model = _Linear()
        generator = torch.Generator().manual_seed(1)
        x = torch.rand((16, 3, 8, 8), generator=generator)
        with torch.no_grad():
            predicted = model(x).argmax(1)
        y = (predicted + 1) % 4  # labels that disagree with the model
        loss, x_adv = my_loss(model, x, y, eps)
        _finite_tensor(x_adv, tuple(x.shape), "x_adv")
        expect(
            isinstance(loss, torch.Tensor) and loss.dim() == 0, "return the loss as a 0-dim tensor"
        )
        expect(float((x_adv - x).abs().amax()) <= eps + 1e-6, "x_adv leaves the eps-ball")
        expect(
            float((x_adv - x).abs().amax()) >= eps - 1e-6, "x_adv is not an FGSM step of size eps"
        )
        with torch.no_grad():
            clean, adv = F.cross_entropy(model(x), y), F.cross_entropy(model(x_adv), y)
            away = F.cross_entropy(model(x_adv), predicted) > F.cross_entropy(model(x), predicted)
        expect(
            bool(away), "x_adv must push away from the model's own prediction (predicted labels)"
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
        hint="x_adv = attacks.fgsm(model, x, None, eps=eps) crafts with the predicted labels; "
        "then average F.cross_entropy on the clean and on the adversarial batch, true labels y.",
    )


def check_normalise(my_normalise: Callable[[np.ndarray], np.ndarray], *, seed: int = 0) -> bool:
    """Per-column min-max normalisation (notebook 08), on a table of its own."""
    rng = np.random.default_rng(seed)
    table = np.column_stack([rng.uniform(0.2, 0.9, 5), [0.3] * 5, rng.uniform(0, 0.1, 5)])

    def test() -> str:
        got = np.asarray(my_normalise(table.copy()), dtype=float)
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


def check_mimicry_loss(
    my_loss: Callable[..., torch.Tensor],
    teacher: StagedModel,
    layer: int,
    sources: torch.Tensor,
    targets: torch.Tensor,
    *,
    budget: float,
) -> bool:
    """The mimicry objective (notebook 09): the layer-K distance within the DSSIM budget, plus
    penalty * (DSSIM - P)^2 above it, differentiable in the image."""
    penalty, n = 10.0, len(sources)
    target = teacher.features(targets, layer).detach()

    def distance(x: torch.Tensor) -> torch.Tensor:
        return (teacher.features(x, layer).flatten(1) - target.flatten(1)).norm(dim=1)

    def test() -> str:
        with torch.no_grad():
            inside = _finite_tensor(
                my_loss(teacher, layer, sources, sources, target, budget, penalty), (n,), "loss"
            )
            expect(
                torch.allclose(inside, distance(sources), rtol=1e-4, atol=1e-4),
                "within the budget the loss must be the layer-K distance "
                "||T_K(x) - T_K(x_t)||_2 alone",
            )
            noise = torch.randn(sources.shape, generator=torch.Generator().manual_seed(0))
            noisy = (sources + 0.3 * noise.to(sources.device)).clamp(0, 1)
            excess = (ms_dssim(noisy, sources) - budget).clamp_min(0)
            outside = my_loss(teacher, layer, noisy, sources, target, budget, penalty)
            want = distance(noisy) + penalty * excess.square()
            expect(
                torch.allclose(outside, want, rtol=1e-3, atol=1e-4),
                "above the budget add penalty * (DSSIM - P)^2, the 5-scale DSSIM (ms_dssim)",
            )
        x = noisy.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(
            my_loss(teacher, layer, x, sources, target, budget, penalty).sum(), x
        )
        expect(
            bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0,
            "the loss must be differentiable in x",
        )
        return (
            "distance alone within P, distance + penalty * excess^2 above it (mean excess "
            f"{float(excess.mean()):.3f}), differentiable"
        )

    return check(
        "mimicry objective",
        test,
        hint="distance = (teacher.features(x, layer) - target).flatten(1).norm(dim=1); "
        "excess = (ms_dssim(x, x_source) - budget).clamp_min(0); "
        "loss = distance + penalty * excess ** 2.",
    )


class _Readout(nn.Module):
    """A made-up 'student' whose 10 logits are 10x the first 10 pixels of a 1x4x4 image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10 * x.flatten(1)[:, :10]


def _prints(*first_pixels: float) -> torch.Tensor:
    images = torch.full((3, 1, 4, 4), 0.5)
    for i, value in enumerate(first_pixels):
        images.view(3, -1)[:, i] = value
    return images


def check_find_teacher(my_find: Callable[..., str | None]) -> bool:
    """The fingerprint test (notebook 10) on constructed cases: the candidate with the smallest
    Gini wins if it is below 0.1, wherever it sits in the mapping; none below 0.1 -> None."""
    student = _Readout()
    flat, nearly, peaked, two = _prints(), _prints(0.53), _prints(1.5), _prints(1.5, 1.5)
    cases = [
        ({"a": peaked, "b": flat, "c": two}, "b"),
        ({"a": nearly, "b": flat, "c": peaked}, "b"),
        ({"a": flat, "b": peaked}, "a"),
        ({"a": peaked, "b": two}, None),
    ]

    def test() -> str:
        for prints, want in cases:
            scores = {
                k: round(float(gini(student(v).softmax(1)).mean()), 3) for k, v in prints.items()
            }
            got = my_find(student, prints)
            expect(got == want, f"with mean Gini {scores} you answer {got!r}, not {want!r}")
        return f"{len(cases)} constructed cases, including one where no candidate is below 0.1"

    return check(
        "fingerprint test",
        test,
        hint="for each candidate, the mean Gini of softmax(student(images)); the smallest one "
        "wins only if it is below GINI_THRESHOLD (0.1); otherwise return None.",
    )


def check_vote(my_vote: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """The majority vote of input dropout (notebook 11)."""
    votes = torch.tensor([[1, 3, 5, 2, 4], [1, 4, 6, 2, 7], [2, 3, 7, 2, 7]])

    def test() -> str:
        result = my_vote(votes)
        expect(isinstance(result, torch.Tensor) and result.shape == (5,), "one class per image")
        expect(
            result[[0, 1, 3, 4]].tolist() == [1, 3, 2, 7],
            f"two votes out of three win: {result.tolist()}",
        )
        expect(int(result[2]) in (5, 6, 7), "a three-way tie must return one of the three votes")
        return "two agreeing votes win; a three-way tie returns one of the votes"

    return check("majority vote", test, hint="compare the votes pairwise: a == b, a == c, b == c.")


def check_eot_distance(
    my_eot: Callable[..., torch.Tensor],
    teacher: StagedModel,
    layer: int,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    ratio: float,
) -> bool:
    """The EOT distance (notebook 11): with ratio 0 it is the plain layer-K distance; with
    dropout it is an average over masks (close to a long Monte Carlo average, and less spread
    the more samples it takes); differentiable in x."""
    n, flat = len(x), target.flatten(1)

    def plain(images: torch.Tensor) -> torch.Tensor:
        return (teacher.features(images, layer).flatten(1) - flat).norm(dim=1)

    def spread(samples: int) -> float:
        runs = []
        for seed in range(4):
            torch.manual_seed(seed)
            runs.append(my_eot(teacher, layer, x, target, ratio, samples).detach())
        return float(torch.stack(runs).std(0).mean())

    def test() -> str:
        with torch.no_grad():
            zero = _finite_tensor(my_eot(teacher, layer, x, target, 0.0, 4), (n,), "distances")
            expect(
                torch.allclose(zero, plain(x), rtol=1e-4, atol=1e-4),
                "with ratio 0 the result must be the plain layer-K distance",
            )
            torch.manual_seed(123)
            long_run = torch.stack([plain(drop_pixels(x, ratio)) for _ in range(128)]).mean(0)
            torch.manual_seed(7)
            yours = my_eot(teacher, layer, x, target, ratio, 32)
            error = float(((yours - long_run).abs() / long_run).mean())
            expect(
                error < 0.1,
                f"with 32 masks your distance is {error:.0%} away from the mean over 128 masks",
            )
            one, many = spread(1), spread(16)
            expect(
                many < 0.5 * one,
                f"16 masks spread as much as 1 ({many:.3g} vs {one:.3g}): "
                "average over `samples` masks",
            )
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(my_eot(teacher, layer, xg, target, ratio, 4).sum(), xg)
        expect(float(grad.abs().sum()) > 0, "the distance must be differentiable in x")
        return (
            f"plain distance at ratio 0; at ratio {ratio:g} a mean over masks "
            f"({error:.1%} from a 128-mask average)"
        )

    return check(
        "EOT distance",
        test,
        hint="draw `samples` masked copies with drop_pixels(x, ratio), compute the layer-K "
        "distance of each copy, and average the distances (not the images) over the copies.",
    )
