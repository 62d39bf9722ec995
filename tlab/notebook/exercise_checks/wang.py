"""Exercises of Wang et al.'s notebooks (09, 10, 11): the mimicry objective, the fingerprint
test, input dropout's vote and the adaptive attacker's EOT distance."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from tlab.attacks.fingerprint import GINI_THRESHOLD, gini, student_gini
from tlab.attacks.mimicry_loop import budget_penalty, feature_distance
from tlab.attacks.msssim import ms_dssim
from tlab.core.models import StagedModel
from tlab.defenses import input_dropout
from tlab.defenses.input_dropout import drop_pixels
from tlab.notebook.exercise_checks._common import finite_tensor
from tlab.notebook.exercises import check, expect


def mimicry_loss(
    teacher: StagedModel,
    layer: int,
    x: torch.Tensor,
    x_source: torch.Tensor,
    target: torch.Tensor,
    budget: float,
    penalty: float,
) -> torch.Tensor:
    """tlab's penalised mimicry objective per image (Wang et al. 2018, Sec. 3, Eq. 1), from the
    attack's own pieces: :func:`~tlab.attacks.mimicry_loop.feature_distance` plus
    :func:`~tlab.attacks.mimicry_loop.budget_penalty` on the 5-scale DSSIM."""
    distance = feature_distance([teacher], [layer], [target], 0.0, 1, None)(x)
    return distance + budget_penalty(ms_dssim(x, x_source), budget, penalty)


def eot_distance(
    teacher: StagedModel,
    layer: int,
    x: torch.Tensor,
    target: torch.Tensor,
    ratio: float,
    samples: int,
) -> torch.Tensor:
    """tlab's adaptive attacker's layer-K distance per image, the mean over ``samples`` random
    pixel-dropout masks (:func:`~tlab.attacks.mimicry_loop.feature_distance`; Wang et al. 2018,
    Sec. 6.1), with the exercise's signature."""
    return feature_distance([teacher], [layer], [target], ratio, samples, None)(x)


def find_teacher(student: nn.Module, fingerprints: Mapping[str, torch.Tensor]) -> str | None:
    """The candidate whose fingerprint images give the student's softmax output the smallest
    mean Gini coefficient (:func:`tlab.attacks.fingerprint.student_gini`), if that is below
    :data:`GINI_THRESHOLD`; else ``None`` (Wang et al. 2018, Sec. 5.1)."""
    scores = {name: float(student_gini(student, x).mean()) for name, x in fingerprints.items()}
    best = min(scores, key=scores.__getitem__)
    return best if scores[best] < GINI_THRESHOLD else None


def majority_vote(votes: torch.Tensor) -> torch.Tensor:
    """tlab's vote of input dropout (:func:`tlab.defenses.input_dropout.majority_vote`) with the
    exercise's signature: the class most of the votes ``(3, N)`` agree on, a tie at random."""
    return input_dropout.majority_vote(votes, torch.Generator().manual_seed(0))


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
            inside = finite_tensor(
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
    """A made-up 'student' whose 10 logits are 15x the first 10 pixels of a 1x4x4 image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 15 * x.flatten(1)[:, :10]


def _prints(*first_pixels: float) -> torch.Tensor:
    images = torch.full((3, 1, 4, 4), 0.25)
    for i, value in enumerate(first_pixels):
        images.view(3, -1)[:, i] = value
    return images


def check_find_teacher(my_find: Callable[..., str | None]) -> bool:
    """The fingerprint test (notebook 10) on constructed cases: the candidate with the smallest
    Gini wins if it is below 0.1, wherever it sits in the mapping; none below 0.1 -> None."""
    student = _Readout()
    flat, nearly, peaked, two = _prints(), _prints(0.27), _prints(1.0), _prints(1.0, 1.0)
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
            zero = finite_tensor(my_eot(teacher, layer, x, target, 0.0, 4), (n,), "distances")
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
