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
    penalty, n = 10.0, len(sources)  # within the budget the penalty must not matter
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
            expect(bool((excess > 0).all()), "(the check's noisy images must exceed the budget)")
            # a penalty that makes its term as large as the distance, so that no term can hide
            # in the other's float tolerance; and twice that, to see the term alone
            strong = float(distance(noisy).mean() / excess.square().mean())
            once = my_loss(teacher, layer, noisy, sources, target, budget, strong)
            twice = my_loss(teacher, layer, noisy, sources, target, budget, 2 * strong)
            term = finite_tensor(twice - once, (n,), "loss")
            expect(
                torch.allclose(term, strong * excess.square(), rtol=1e-3, atol=1e-5),
                "above the budget the penalty term must grow with the penalty as penalty times "
                "the squared excess of that image's 5-scale DSSIM over P",
            )
            expect(
                torch.allclose(once, distance(noisy) + strong * excess.square(), rtol=1e-3),
                "above the budget the loss is the layer-K distance plus the penalty term",
            )
        x = noisy.clone().requires_grad_(True)
        value = my_loss(teacher, layer, x, sources, target, budget, penalty)
        expect(
            value.requires_grad,
            "the loss must be differentiable in x: no detach(), no torch.no_grad() inside",
        )
        (grad,) = torch.autograd.grad(value.sum(), x, allow_unused=True)
        grad = torch.zeros_like(x) if grad is None else grad
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
        hint="one value per image: the L2 distance between x's and the target's layer-K features "
        "(Eq. 1), plus, only where the image's 5-scale DSSIM to its source exceeds the budget P, "
        "the penalty times the square of that excess (Sec. 3, penalty form).",
    )


class _Readout(nn.Module):
    """A made-up 'student': its 10 logits are 15 x (pixel - 0.25) + 40 for the first 10 pixels
    of a 1x4x4 image. The offset leaves the softmax as it is, and keeps the logits far from it:
    their own Gini is about 0 for every image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 15 * (x.flatten(1)[:, :10] - 0.25) + 40


def _image(peak: int | None = None, pixel: float = 0.25) -> torch.Tensor:
    """One 1x4x4 fingerprint image: flat (the uniform softmax), or ``pixel`` at class
    ``peak``'s pixel (0.35: a softmax Gini of 0.23; 1.0: nearly one-hot)."""
    image = torch.full((1, 1, 4, 4), 0.25)
    if peak is not None:
        image.view(-1)[peak] = pixel
    return image


def _prints(*images: torch.Tensor) -> torch.Tensor:
    return torch.cat(images)


def _find_teacher_cases() -> list[tuple[dict[str, torch.Tensor], str | None]]:
    """(candidates' fingerprint images, the right answer). Each candidate's images differ, so
    that the mean of the per-image Gini differs from the sum, the largest, the first image's,
    and the Gini of the mean softmax, each on the other side of 0.1 in one case."""
    flat, peaked = _image(), _prints(*[_image(0, 1.0)] * 3)
    return [
        # mean 0.077 < 0.1: "a" (the sum and the largest, 0.23, are above 0.1)
        ({"a": _prints(flat, flat, _image(0, 0.35)), "b": peaked}, "a"),
        # mean 0.155 > 0.1: no teacher (the first image alone gives 0)
        ({"a": _prints(flat, _image(0, 0.35), _image(0, 0.35)), "b": peaked}, None),
        # each image 0.115, mean 0.115 > 0.1: no teacher (the mean softmax gives 0.089)
        ({"a": _prints(*[_image(k, 0.31) for k in range(3)]), "b": peaked}, None),
        # the smallest wins wherever it sits in the mapping
        ({"a": peaked, "b": _prints(*[_image(0, 0.27)] * 3), "c": _prints(flat, flat, flat)}, "c"),
        # the logits' own Gini is about 0 for every candidate: only the softmax tells
        ({"a": peaked}, None),
    ]


def check_find_teacher(my_find: Callable[..., str | None]) -> bool:
    """The fingerprint test (notebook 10; Wang et al. 2018, Sec. 5.1) on constructed cases: the
    candidate whose images give the smallest mean Gini of the student's softmax output wins if
    it is below 0.1; none below 0.1 -> None."""
    student = _Readout()

    def test() -> str:
        cases = _find_teacher_cases()
        for prints, want in cases:
            got = my_find(student, prints)
            means = {
                name: round(float(gini(student(images).softmax(1)).mean()), 3)
                for name, images in prints.items()
            }
            expect(
                got == want,
                f"for candidates whose images' mean Gini is {means} you answer {got!r}, "
                f"not {want!r}",
            )
        return f"{len(cases)} constructed cases, two where no candidate is below 0.1"

    return check(
        "fingerprint test",
        test,
        hint="score each candidate by the Gini coefficient of the student's output probabilities "
        "for each of its images, averaged over its images; think about which candidate wins, "
        "and when none does (GINI_THRESHOLD).",
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


#: The EOT check: masks in the student's average and in the reference one, and the largest
#: mean relative difference allowed. Averaging the images or their features before taking the
#: distance comes out 3-11 % low on notebook 11's teachers (seeds 0 and 1, smoke); a correct
#: average of 64 masks stays within 1.3 % of a 512-mask one, and 256 masks halve that noise.
EOT_SAMPLES, LONG_RUN, EOT_TOLERANCE = 256, 1024, 0.02


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
            long_run = torch.stack([plain(drop_pixels(x, ratio)) for _ in range(LONG_RUN)]).mean(0)
            torch.manual_seed(7)
            yours = my_eot(teacher, layer, x, target, ratio, EOT_SAMPLES)
            error = float(((yours - long_run) / long_run).mean())
            expect(
                abs(error) < EOT_TOLERANCE,
                f"with {EOT_SAMPLES} masks your distances are on average {error:+.1%} from a "
                f"{LONG_RUN}-mask average of the distances (a distance of an average is "
                "smaller than the average of the distances)",
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
            f"({error:+.1%} from a {LONG_RUN}-mask average)"
        )

    return check(
        "EOT distance",
        test,
        hint="draw `samples` masked copies with drop_pixels(x, ratio), compute the layer-K "
        "distance of each copy, and average the distances (not the images) over the copies.",
    )
