"""Cached evaluations that notebooks plot: adversarial accuracy against eps, white- or black-box.

An :class:`EvalSet` fixes which test images are used (a seeded, class-balanced subset of a
domain's test split), so that every curve of a notebook and every rerun measures the same
inputs. Results are cached by :mod:`tlab.cache`, keyed by the zoo keys of the models involved,
the evaluation set and the attack, so a warm notebook and a widget re-render read them from disk.

Every attack here crafts on :func:`tlab.attacks.attack_copy` of the attacked model (batch norms
folded, channels-last on the CPU: the same function within float rounding, and faster to
differentiate, see ``benchmarks/attacks.py``) and scores on the model itself.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tlab.attacks import attack_copy, fgsm_budgets, make_attack
from tlab.cache import cached_result, cached_tensors
from tlab.core.data import load_domain
from tlab.core.device import model_device
from tlab.core.metrics import blackbox_accuracy
from tlab.core.tensorsets import class_balanced_subset
from tlab.core.zoo import ZooEntry
from tlab.errors import TlabError


@dataclass(frozen=True)
class EvalSet:
    """``n`` test images of ``domain`` (all of them if ``n`` is None), chosen with ``seed``."""

    domain: str
    n: int | None = None
    seed: int = 0
    domain_params: dict[str, Any] = field(default_factory=dict)

    def tensors(
        self, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images as floats in [0, 1] and labels, on ``device``."""
        test = load_domain(self.domain, **self.domain_params).test
        if self.n is not None and self.n < len(test):
            test = class_balanced_subset(test, self.n, seed=self.seed)
        return test.floats(device), test.labels.to(device)

    def recipe(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "n": self.n,
            "seed": self.seed,
            "domain_params": self.domain_params,
        }


def attack_curve(
    target: ZooEntry,
    data: EvalSet,
    eps_list: Sequence[float],
    *,
    attack: str = "fgsm",
    source: ZooEntry | None = None,
    labels: str = "true",
    alpha_fraction: float | None = None,
    **hyper: Any,
) -> list[dict[str, float]]:
    """One row per eps: clean and adversarial accuracy of ``target`` (cached).

    White-box when ``source`` is None: the attack sees ``target`` (Zhang et al. 2020, Sec.
    3.4.1). Black-box otherwise: examples are crafted on ``source`` and only scored on
    ``target`` (Sec. 3.4.2). Only the inputs ``target`` classifies correctly are attacked
    (Sec. 4.2); ``adversarial_accuracy_all`` also counts the others as wrong. ``hyper`` goes to
    the attack (e.g. ``alpha``, ``steps`` for PGD); ``alpha_fraction`` sets PGD's step size to
    that fraction of each eps instead (Davchev et al. 2019 use eps / 4).
    """
    recipe = {
        "target": target.key,
        "source": None if source is None else source.key,
        "data": data.recipe(),
        "attack": attack,
        "labels": labels,
        "hyper": hyper,
        "alpha_fraction": alpha_fraction,
        "eps": [float(e) for e in eps_list],
    }

    def compute() -> list[dict[str, float]]:
        device = next(target.model.parameters()).device
        x, y = data.tensors(device)
        attacker = attack_copy(target.model if source is None else source.model.to(device))
        rows = []
        for eps in eps_list:
            step = {} if alpha_fraction is None else {"alpha": max(alpha_fraction * eps, 1e-6)}
            attack_fn = make_attack(attack, labels=labels, eps=float(eps), **step, **hyper)
            result = blackbox_accuracy(attacker, target.model, x, y, attack_fn)
            rows.append({"eps": float(eps), **result.summary()})
        return rows

    return cached_result("attack-curve", recipe, compute)


#: Black-box example sets crafted this session, by (attacker, evaluation set, attack, eps,
#: settings). The least recently used set goes when there are more than :data:`MAX_CRAFTED`
#: (about 4 MB each at 300 images; a notebook's widgets reuse a few dozen at most). FGSM sets
#: (one gradient per image) stay in memory only; sets of iterative attacks are also kept on disk
#: (:func:`tlab.cache.cached_tensors`): PGD-7 on Davchev's DenseNet substitute costs seconds
#: per budget, and notebooks 07 and 08 attack with the same sets.
_CRAFTED: OrderedDict[str, torch.Tensor] = OrderedDict()
MAX_CRAFTED = 48


def _crafted_recipe(
    attacker: ZooEntry, data: EvalSet, attack: str, eps: float, hyper: Any
) -> dict[str, Any]:
    return {
        "attacker": attacker.key,
        "data": data.recipe(),
        "attack": attack,
        "eps": float(eps),
        "hyper": hyper,
    }


def _crafted_key(attacker: ZooEntry, data: EvalSet, attack: str, eps: float, hyper: Any) -> str:
    return json.dumps(_crafted_recipe(attacker, data, attack, eps, hyper), sort_keys=True)


def _keep(key: str, examples: torch.Tensor) -> torch.Tensor:
    """Store a crafted set in :data:`_CRAFTED`, dropping the least recently used beyond
    :data:`MAX_CRAFTED`."""
    _CRAFTED[key] = examples
    while len(_CRAFTED) > MAX_CRAFTED:
        _CRAFTED.popitem(last=False)
    return examples


def crafted_examples(
    attacker: ZooEntry, data: EvalSet, attack: str, eps: float, **hyper: Any
) -> torch.Tensor:
    """Adversarial versions of every image of ``data``, crafted on ``attacker`` with the true
    labels, kept for the session (on the attacker's device; the least recently used sets beyond
    :data:`MAX_CRAFTED` are dropped and crafted again if asked for).

    FGSM, and PGD without a random start, are deterministic per image (the attacker runs in
    eval mode and the summed loss makes each image's gradient its own), so the set crafted once
    gives every target exactly what :func:`tlab.core.metrics.blackbox_accuracy` would craft for
    it on the images that target classifies correctly (Zhang et al. 2020, Sec. 3.4.2; Davchev
    et al. 2019, Table 1's black-box columns). ``hyper`` goes to the attack (e.g. PGD's
    ``alpha`` and ``steps``). Sets of attacks other than FGSM are read from disk when a
    notebook crafted them before (:data:`_CRAFTED`).
    """
    key = _crafted_key(attacker, data, attack, eps, hyper)
    if key in _CRAFTED:
        _CRAFTED.move_to_end(key)
        return _CRAFTED[key]
    device = model_device(attacker.model)

    def craft() -> torch.Tensor:
        x, y = data.tensors(device)
        return make_attack(attack, eps=float(eps), **hyper)(attack_copy(attacker.model), x, y)

    if attack == "fgsm":
        return _keep(key, craft())
    recipe = _crafted_recipe(attacker, data, attack, eps, hyper)
    stored = cached_tensors("crafted", recipe, lambda: {"examples": craft()})
    return _keep(key, stored["examples"].to(device))


def crafted_fgsm(
    attacker: ZooEntry, data: EvalSet, eps_list: Sequence[float]
) -> list[torch.Tensor]:
    """``crafted_examples(attacker, data, "fgsm", eps)`` for every eps of ``eps_list``; the sets
    not kept yet are crafted together from one input gradient (:func:`tlab.attacks.fgsm_budgets`,
    the same images as one FGSM per eps)."""
    keys = [_crafted_key(attacker, data, "fgsm", eps, {}) for eps in eps_list]
    missing = {
        key: float(eps) for key, eps in zip(keys, eps_list, strict=True) if key not in _CRAFTED
    }
    if missing:
        x, y = data.tensors(model_device(attacker.model))
        crafted = fgsm_budgets(attack_copy(attacker.model), x, y, eps_list=list(missing.values()))
        for key, examples in zip(missing, crafted, strict=True):
            _keep(key, examples)
    return [crafted_examples(attacker, data, "fgsm", eps) for eps in eps_list]


def eps_index(grid: Sequence[float], eps: float) -> int:
    """Where ``eps`` is in ``grid`` (a clear error listing the evaluated budgets if absent)."""
    for i, value in enumerate(grid):
        if abs(value - eps) < 1e-9:
            return i
    choices = ", ".join(f"{v * 255:g}/255" for v in grid)
    raise TlabError(f"eps={eps!r} was not evaluated; the evaluated eps are {choices}")
