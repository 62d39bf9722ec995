"""Wang et al.: attack pairs and the mimicry attack's crafted images (cached as tensors)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch

from tlab.attacks.mimicry import (
    mimicry_attack_ensemble,
    mimicry_untargeted,
)
from tlab.cache import cached_tensors
from tlab.checks import check_positive_int
from tlab.core.device import model_device
from tlab.core.metrics import predict
from tlab.core.zoo import ZooEntry
from tlab.errors import TlabError
from tlab.papers.wang.lab import MimicrySettings, SeedLab, check_layer, check_student


def _correct_everywhere(lab: SeedLab) -> torch.Tensor:
    """Indices of test images that every student of ``lab`` classifies correctly."""
    x, y = lab.domain.test.floats(), lab.domain.test.labels
    ok = torch.ones(len(y), dtype=torch.bool)
    for name, entry in lab.students.items():
        check_student(lab.teacher.model, entry.model, len(lab.domain.classes), name=name)
        ok &= predict(entry.model, x.to(model_device(entry.model))).cpu() == y
    return ok.nonzero().flatten()


def attack_pairs(lab: SeedLab, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random (source, target) test-image pairs of different classes (Sec. 4.1).

    As in the paper, only images the students classify correctly are used (here: correctly
    classified by every student of ``lab``, so that all students face the same pairs and one
    crafted image serves them all). Returns two index tensors into ``lab.domain.test``.
    """
    n = check_positive_int(n, name="number of pairs")
    pool = _correct_everywhere(lab)
    if len(pool) < 2:
        raise TlabError(
            "fewer than 2 test images are classified correctly by every student: "
            "there is no target set to attack; train the students longer"
        )
    labels = lab.domain.test.labels
    g = torch.Generator().manual_seed(int(seed))
    src = pool[torch.randint(len(pool), (4 * n,), generator=g)]
    tgt = pool[torch.randint(len(pool), (4 * n,), generator=g)]
    keep = (labels[src] != labels[tgt]).nonzero().flatten()[:n]
    if len(keep) < n:
        raise TlabError(
            f"could only draw {len(keep)} of {n} pairs of different classes; ask for fewer pairs"
        )
    return src[keep], tgt[keep]


def pairs_recipe(lab: SeedLab, src: torch.Tensor, tgt: torch.Tensor) -> dict[str, Any]:
    return {
        "domain": lab.domain.name,
        "domain_params": lab.domain.params,
        "source": src.tolist(),
        "target": tgt.tolist(),
    }


def crafted(
    lab: SeedLab,
    attack: MimicrySettings,
    n_pairs: int,
    pair_seed: int = 0,
    *,
    teachers: Sequence[ZooEntry] | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Targeted mimicry images for ``n_pairs`` pairs of ``lab`` (cached on disk).

    Attacks ``lab.teacher`` at ``attack.layer`` (or, with ``teachers``, all of them at once:
    the joint ensemble attack of notebook 11). Returns ``adversarial``, ``source``/``target``
    (test indices), ``target_label``, ``distance``, ``dssim``, ``l2`` and ``in_budget``.
    """
    teachers = [lab.teacher] if teachers is None else list(teachers)
    for t in teachers:
        check_layer(t.model, attack.layer)
    src, tgt = attack_pairs(lab, n_pairs, pair_seed)
    recipe = {
        "teachers": [t.key for t in teachers],
        "attack": attack.recipe(),
        "seed": seed,
        **pairs_recipe(lab, src, tgt),
    }

    def compute() -> dict[str, torch.Tensor]:
        x = lab.domain.test.floats()
        result = mimicry_attack_ensemble(
            [t.model for t in teachers],
            x[src],
            x[tgt],
            layers=[attack.layer] * len(teachers),
            budget=attack.budget,
            **attack.options(seed),
        )
        return {
            "adversarial": result.adversarial,
            "source": src,
            "target": tgt,
            "target_label": lab.domain.test.labels[tgt],
            "distance": result.distance,
            "start_distance": result.start_distance,
            "dssim": result.dssim,
            "l2": result.l2,
            "in_budget": result.in_budget,
        }

    return cached_tensors("wang-mimicry", recipe, compute)


def crafted_untargeted(
    lab: SeedLab, attack: MimicrySettings, n_sources: int, n_guides: int = 5, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Non-targeted mimicry (Sec. 3, Eq. 2): each source mimics the closest of ``n_guides``.

    The guides are ``n_guides`` correctly classified test images of distinct classes (the paper
    used 5); a source is never guided by an image of its own class. Cached like
    :func:`crafted`; returns ``adversarial``, ``source``, ``source_label``, ``guide``, ...
    """
    n_guides = check_positive_int(n_guides, name="n_guides")
    classes = len(lab.domain.classes)
    if not 2 <= n_guides <= classes:
        raise TlabError(f"n_guides={n_guides} must be in 2..{classes} (one guide per class)")
    src, _ = attack_pairs(lab, n_sources, seed)
    pool = _correct_everywhere(lab)
    labels = lab.domain.test.labels
    g = torch.Generator().manual_seed(int(seed) + 7919)
    chosen_classes = torch.randperm(classes, generator=g)[:n_guides]
    missing = [c for c in chosen_classes.tolist() if not bool((labels[pool] == c).any())]
    if missing:
        raise TlabError(
            f"no correctly classified test image of class(es) {missing} to guide the "
            "non-targeted attack; use fewer guides or better-trained students"
        )
    guides = torch.stack(
        [
            pool[labels[pool] == c][
                torch.randint(int((labels[pool] == c).sum()), (1,), generator=g)
            ][0]
            for c in chosen_classes.tolist()
        ]
    )
    check_layer(lab.teacher.model, attack.layer)
    recipe = {
        "teacher": lab.teacher.key,
        "attack": attack.recipe(),
        "guides": guides.tolist(),
        **pairs_recipe(lab, src, src),
    }

    def compute() -> dict[str, torch.Tensor]:
        x = lab.domain.test.floats()
        result = mimicry_untargeted(
            lab.teacher.model,
            x[src],
            x[guides],
            layer=attack.layer,
            budget=attack.budget,
            source_labels=labels[src],
            pool_labels=labels[guides],
            **attack.options(),
        )
        return {
            "adversarial": result.adversarial,
            "source": src,
            "source_label": labels[src],
            # mimicry_untargeted always sets target_index
            "guide": guides[cast(torch.Tensor, result.target_index).cpu()],
            "distance": result.distance,
            "dssim": result.dssim,
            "l2": result.l2,
            "in_budget": result.in_budget,
        }

    return cached_tensors("wang-untargeted", recipe, compute)
