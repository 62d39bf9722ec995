"""Exercises of Zhang et al.'s notebooks (02, 03, 04, 06): freezing stages, adversarial
accuracy, gamma, input-gradient norms."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlab.core.models import StagedModel
from tlab.notebook.exercise_checks._common import finite_tensor
from tlab.notebook.exercises import check, expect


def adversarial_accuracy_of(row: Mapping[str, Any], i: int) -> float:
    """White-box adversarial accuracy on correctly classified inputs at the i-th eps, from a
    cached evaluation's per-image lists (Zhang et al. 2020, Sec. 4.2)."""
    attacked = sum(row["correct"])
    return (attacked - sum(row["wb_fooled"][i])) / attacked if attacked else float("nan")


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
        out = my_freeze(build(), k)
        expect(
            isinstance(out, StagedModel),
            f"k={k}: return the model (the cells below use what your function returns), "
            f"not {type(out).__name__}",
        )
        assert isinstance(out, StagedModel)
        model = out
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
        given_b, given_w = a_b.copy(), a_w.copy()
        got = np.asarray(my_gamma(given_b, given_w), dtype=float)
        expect(
            np.array_equal(given_b, a_b) and np.array_equal(given_w, a_w),
            "your function changed the accuracies it was given (in the notebook that is the "
            "run's own table): compute on new arrays, leave the inputs as they are",
        )
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
        model.train()  # as a model may arrive; the norms are those of the model in eval mode
        try:
            got = finite_tensor(my_norms(model, x, y), (len(x),), "norms").detach()
        finally:
            model.eval()
        for i in range(min(len(x), 8)):
            want = own(i)
            expect(
                abs(float(got[i]) - want) <= 1e-4 * want + 1e-7,
                f"image {i}: {float(got[i]):.4g}, its own gradient (model in eval mode) has "
                f"norm {want:.4g}",
            )
        return f"each of {len(x)} norms is that of the image's own loss gradient"

    return check(
        "input-gradient norms",
        test,
        hint="an image's norm must not depend on the other images of the batch: think about what "
        "averaging the loss over the batch does to each image's gradient; one norm per image, "
        "with the model in eval mode (dropout and BatchNorm as at test time).",
    )
