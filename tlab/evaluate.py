"""Cached evaluations that notebooks plot: adversarial accuracy against eps, white- or black-box.

An :class:`EvalSet` fixes which test images are used (a seeded, class-balanced subset of a
domain's test split), so that every curve of a notebook and every rerun measures the same
inputs. Results are cached by :mod:`tlab.results`, keyed by the zoo keys of the models involved,
the evaluation set and the attack, so a warm notebook and a widget re-render read them from disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tlab.attacks import make_attack
from tlab.data import class_balanced_subset, load_domain
from tlab.errors import TlabError
from tlab.metrics import adversarial_accuracy, blackbox_accuracy
from tlab.results import cached_result
from tlab.zoo import ZooEntry


@dataclass(frozen=True)
class EvalSet:
    """``n`` test images of ``domain`` (all of them if ``n`` is None), chosen with ``seed``."""

    domain: str
    n: int | None = None
    seed: int = 0
    domain_params: dict[str, Any] = field(default_factory=dict)

    def tensors(self, device: torch.device | str | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images as floats in [0, 1] and labels, on ``device``."""
        test = load_domain(self.domain, **self.domain_params).test
        if self.n is not None and self.n < len(test):
            test = class_balanced_subset(test, self.n, seed=self.seed)
        return test.floats(device), test.labels.to(device)

    def recipe(self) -> dict[str, Any]:
        return {"domain": self.domain, "n": self.n, "seed": self.seed,
                "domain_params": self.domain_params}


def attack_curve(target: ZooEntry, data: EvalSet, eps_list: Sequence[float], *,
                 attack: str = "fgsm", source: ZooEntry | None = None, labels: str = "true",
                 alpha_fraction: float | None = None, **hyper: Any) -> list[dict[str, float]]:
    """One row per eps: clean and adversarial accuracy of ``target`` (cached).

    White-box when ``source`` is None: the attack sees ``target`` (Zhang et al. 2020, Sec.
    3.4.1). Black-box otherwise: examples are crafted on ``source`` and only scored on
    ``target`` (Sec. 3.4.2). Only the inputs ``target`` classifies correctly are attacked
    (Sec. 4.2); ``adversarial_accuracy_all`` also counts the others as wrong. ``hyper`` goes to
    the attack (e.g. ``alpha``, ``steps`` for PGD); ``alpha_fraction`` sets PGD's step size to
    that fraction of each eps instead (Davchev et al. 2019 use eps / 4).
    """
    recipe = {"target": target.key, "source": None if source is None else source.key,
              "data": data.recipe(), "attack": attack, "labels": labels, "hyper": hyper,
              "alpha_fraction": alpha_fraction,
              "eps": [float(e) for e in eps_list]}

    def compute() -> list[dict[str, float]]:
        device = next(target.model.parameters()).device
        x, y = data.tensors(device)
        rows = []
        for eps in eps_list:
            step = {} if alpha_fraction is None else {"alpha": max(alpha_fraction * eps, 1e-6)}
            attack_fn = make_attack(attack, labels=labels, eps=float(eps), **step, **hyper)
            if source is None:
                result = adversarial_accuracy(target.model, x, y, attack_fn)
            else:
                result = blackbox_accuracy(source.model.to(device), target.model, x, y, attack_fn)
            rows.append({"eps": float(eps), **result.summary()})
        return rows

    return cached_result("attack-curve", recipe, compute)


def eps_index(grid: Sequence[float], eps: float) -> int:
    """Where ``eps`` is in ``grid`` (a clear error listing the evaluated budgets if absent)."""
    for i, value in enumerate(grid):
        if abs(value - eps) < 1e-9:
            return i
    choices = ", ".join(f"{v * 255:g}/255" for v in grid)
    raise TlabError(f"eps={eps!r} was not evaluated; the evaluated eps are {choices}")
