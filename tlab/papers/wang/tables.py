"""Wang et al., Sec. 4: attack success tables, PGD transfer, convergence (JSON, cached)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

import plotly.graph_objects as go
import torch
from torch import nn

from tlab.attacks import attack_copy, pgd
from tlab.attacks.mimicry import (
    mimicry_attack,
    targeted_success,
    untargeted_success,
)
from tlab.attacks.perturbation import check_budget
from tlab.cache import cached_result
from tlab.checks import check_eps
from tlab.core.device import model_device
from tlab.core.metrics import predict
from tlab.notebook.plots import image_grid
from tlab.papers.wang.crafting import (
    MimicrySettings,
    attack_pairs,
    crafted,
    crafted_untargeted,
    pairs_recipe,
)
from tlab.papers.wang.lab import ATTACK_LR, SeedLab, check_layer


def success_rate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, targeted: bool
) -> float:
    """The attack success rate (Wang et al., Sec. 4.1): the mean of the per-image verdicts."""
    hits = (targeted_success if targeted else untargeted_success)(model, images, labels)
    return float(hits.float().mean())


def _attack_recipe(lab: SeedLab, attack: MimicrySettings, **more: Any) -> dict[str, Any]:
    """What a cached attack table hashes: the students, the teacher, the attack and ``more``."""
    return {
        "students": {k: e.key for k, e in lab.students.items()},
        "teacher": lab.teacher.key,
        "attack": attack.recipe(),
        **more,
    }


def targeted_table(
    lab: SeedLab,
    layers: Sequence[int],
    budgets: Sequence[float],
    attack: MimicrySettings,
    *,
    n_pairs: int,
    pair_seed: int = 0,
) -> list[dict[str, Any]]:
    """Targeted success of every student for every (layer, budget) (Figs. 4 and 5; cached).

    ``attack`` gives every setting but K and P (steps, learning rate, budget kind, rounding;
    :meth:`~tlab.papers.wang.lab.Setup.attack` makes the preset's).

    One row per (layer, budget, student): ``success`` (fraction of pairs the student puts in
    the target's class), mean ``dssim``/``l2`` of the perturbation, ``in_budget``.
    """
    rows = []
    for layer in layers:
        for budget in budgets:
            point = replace(attack, layer=int(layer), budget=float(budget))
            recipe = _attack_recipe(lab, point, n=n_pairs, pair_seed=pair_seed)

            def compute(point: MimicrySettings = point) -> list[dict[str, Any]]:
                out = crafted(lab, point, n_pairs, pair_seed)
                common = {
                    "layer": point.layer,
                    "budget": point.budget,
                    "budget_kind": point.budget_kind,
                    "dssim": float(out["dssim"].mean()),
                    "l2": float(out["l2"].mean()),
                    "in_budget": float(out["in_budget"].float().mean()),
                }
                return [
                    {
                        **common,
                        "student": kind,
                        "frozen": lab.frozen[kind],
                        "success": success_rate(
                            e.model, out["adversarial"], out["target_label"], True
                        ),
                    }
                    for kind, e in lab.students.items()
                ]

            rows += cached_result("wang-targeted", recipe, compute)
    return rows


def untargeted_table(
    lab: SeedLab, attack: MimicrySettings, n_sources: int, n_guides: int = 5, seed: int = 0
) -> list[dict[str, Any]]:
    """Non-targeted success of every student (Sec. 4.2; cached): one row per student."""
    recipe = _attack_recipe(lab, attack, n=n_sources, guides=n_guides, seed=seed)

    def compute() -> list[dict[str, Any]]:
        out = crafted_untargeted(lab, attack, n_sources, n_guides, seed)
        return [
            {
                "student": kind,
                "frozen": lab.frozen[kind],
                "layer": attack.layer,
                "budget": attack.budget,
                "success": success_rate(e.model, out["adversarial"], out["source_label"], False),
            }
            for kind, e in lab.students.items()
        ]

    return cached_result("wang-untargeted", recipe, compute)


def pgd_transfer_table(
    lab: SeedLab, *, eps_list: Sequence[float], steps: int, n: int, seed: int = 0
) -> list[dict[str, Any]]:
    """The baseline of Sec. 4.4: a white-box attack on the teacher, sent to the students (cached).

    Untargeted L-infinity PGD (Madry et al. 2018; the paper used Carlini-Wagner, which looks for
    the smallest change that flips the teacher) against the teacher's own prediction (a letter:
    teacher and students share no labels), step eps/4, for each eps. One row per (eps, model):
    ``fooled`` = how often the teacher's letter changed, or how often a student misclassifies
    the digit; ``l2`` = mean L2 norm of the perturbation.
    """
    eps_list = [check_eps(e) for e in eps_list]
    src, _ = attack_pairs(lab, n, seed)
    recipe = {
        "students": {k: e.key for k, e in lab.students.items()},
        "teacher": lab.teacher.key,
        "eps": eps_list,
        "steps": steps,
        **pairs_recipe(lab, src, src),
    }

    def compute() -> list[dict[str, Any]]:
        teacher = lab.teacher.model
        x = lab.domain.test.floats()[src].to(model_device(teacher))
        y = lab.domain.test.labels[src]
        before = predict(teacher, x)
        rows, crafting = [], attack_copy(teacher)  # faster gradients (tlab.papers.evaluate)
        for eps in eps_list:
            adv = pgd(crafting, x, None, eps=eps, alpha=eps / 4, steps=steps)
            l2 = float((adv - x).flatten(1).norm(dim=1).mean())
            rows.append(
                {
                    "eps": eps,
                    "model": "teacher (white-box)",
                    "l2": l2,
                    "fooled": float((predict(teacher, adv) != before).float().mean()),
                }
            )
            rows += [
                {
                    "eps": eps,
                    "model": f"{kind} student (K={lab.frozen[kind]})",
                    "l2": l2,
                    "fooled": success_rate(e.model, adv.cpu(), y, False),
                }
                for kind, e in lab.students.items()
            ]
        return rows

    return cached_result("wang-pgd-transfer", recipe, compute)


def convergence(
    lab: SeedLab,
    layer: int,
    budget: float,
    *,
    steps: int,
    n_pairs: int,
    rates: Sequence[float] = (1.0, ATTACK_LR),
    pair_seed: int = 0,
) -> dict[str, Any]:
    """Mean layer-K distance after every Adadelta step, for each learning rate (cached).

    Shows why the lab departs from the paper's learning rate 1 (module docstring).
    """
    check_layer(lab.teacher.model, layer)
    src, tgt = attack_pairs(lab, n_pairs, pair_seed)
    recipe = {
        "teacher": lab.teacher.key,
        "layer": layer,
        "budget": check_budget(budget),
        "steps": steps,
        "rates": [float(r) for r in rates],
        **pairs_recipe(lab, src, tgt),
    }

    def compute() -> dict[str, Any]:
        x = lab.domain.test.floats()
        out: dict[str, Any] = {"step": list(range(1, steps + 1))}
        for rate in rates:
            result = mimicry_attack(
                lab.teacher.model,
                x[src],
                x[tgt],
                layer=layer,
                budget=budget,
                steps=steps,
                lr=float(rate),
                history=True,
            )
            # history=True: the result always has a history
            out[f"lr={rate:g}"] = cast(torch.Tensor, result.history).mean(1).tolist()
            out["start"] = float(result.start_distance.mean())
        return out

    return cached_result("wang-convergence", recipe, compute)


def pair_gallery(
    lab: SeedLab,
    images: Mapping[str, torch.Tensor],
    *,
    student: str,
    show: int = 6,
    title: str = "",
) -> go.Figure:
    """Source, crafted image and target of the first ``show`` pairs, with the student's labels."""
    model = lab.students[student].model
    test, classes = lab.domain.test, lab.domain.classes
    src, tgt = images["source"][:show], images["target"][:show]
    adv = images["adversarial"][:show]
    pred = predict(model, adv.to(model_device(model))).cpu()
    x = test.floats()
    titles = (
        [f"source: {classes[test.labels[i]]}" for i in src]
        + [
            f"{'✔' if p == test.labels[t] else '✘'} {student} says {classes[p]}"
            for p, t in zip(pred.tolist(), tgt.tolist(), strict=False)
        ]
        + [f"target: {classes[test.labels[i]]}" for i in tgt]
    )
    return image_grid(
        torch.cat([x[src], adv, x[tgt]]), titles, columns=len(src), title=title, size=120
    )
