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

In tlab "layer K" is the output of stage K of a :class:`~tlab.core.models.StagedModel`
(``teacher.features(x, K)``); ``K = teacher.num_stages`` is the vector the classifier reads,
Wang et al.'s layer N-1 (the deep-layer feature extractor).

Everything here is batched: one call attacks many (source, target) pairs at once. The model is in
eval mode (batch-norm uses running statistics, dropout is off) and each pair's loss is summed, not
averaged, so with Adadelta's per-pixel updates every pair follows exactly the path it would follow
alone. The loop runs on a frozen copy of each teacher rewritten for speed (batch norms folded, pools
before ReLUs, the CPU's faster channels-last layout; :mod:`tlab.attacks._fast.attack_copy`) and
measures DSSIM with the source's statistics filtered once (:mod:`tlab.attacks._fast.source_dssim`):
the same functions, several times faster. On a CPU a big batch is split into one slice per core
(:data:`tlab.attacks._fast.cpu_split.ROWS_PER_CPU_THREAD`). The non-targeted attack (Sec. 3, Eq. 2)
expands each source into one pair per guide image and keeps the closest in-budget result.

Beyond the paper, for the defenses notebook: ``input_dropout``/``eot_samples`` put the input
dropout defense inside the crafting loop (expectation over transformations; Wang et al. Sec. 6.1
name this countermeasure), and :func:`mimicry_attack_ensemble` mimics several teachers at once
(the attack on an ensemble of students that Sec. 6.3 leaves open).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Unpack

import torch
from torch import nn

from tlab.attacks.mimicry_loop import (
    MimicryResult,
    SearchOptions,
    all_eval,
    mimic_features,
)
from tlab.attacks.perturbation import (
    IMAGE_SHAPE,
    check_budget,
)
from tlab.checks import check_positive_int, check_stage
from tlab.core.device import model_device
from tlab.core.inputs import check_images, check_labels
from tlab.core.metrics import predict
from tlab.core.models import StagedModel
from tlab.errors import TlabError

__all__ = [
    "mimicry_attack",
    "mimicry_attack_ensemble",
    "mimicry_untargeted",
    "targeted_success",
    "untargeted_success",
]


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _check_batch(x: object, name: str) -> torch.Tensor:
    images = check_images(x, name=name)
    if tuple(images.shape[1:]) != IMAGE_SHAPE or images.shape[0] == 0:
        raise TlabError(
            f"{name} must hold at least one image shaped {IMAGE_SHAPE} (N, 3, 32, 32) "
            f"with pixels in [0, 1], got shape {tuple(images.shape)}"
        )
    return images


def _check_pairs(sources: object, targets: object) -> tuple[torch.Tensor, torch.Tensor]:
    src = _check_batch(sources, "sources")
    tgt = _check_batch(targets, "targets")
    if src.shape[0] != tgt.shape[0]:
        raise TlabError(
            f"sources ({src.shape[0]}) and targets ({tgt.shape[0]}) must have the same "
            "length: pair i is (sources[i], targets[i])"
        )
    return src, tgt


def _check_teacher(teacher: object, layer: object, name: str = "teacher") -> int:
    if not isinstance(teacher, StagedModel):
        raise TlabError(
            f"{name} must be a StagedModel (tlab.core.models.build_model, the zoo), "
            f"got {type(teacher).__name__}; the attack reads its stage outputs"
        )
    n = teacher.num_stages
    return check_stage(
        layer,
        n,
        name="layer",
        first=1,
        hint=(
            f"for this {teacher.arch!r} {name}, stages {teacher.describe_stages()}; "
            f"layer={n} is the vector its classifier reads (Wang's layer N-1)"
        ),
    )


# ---------------------------------------------------------------------------------------------
# Public attacks
# ---------------------------------------------------------------------------------------------


def _target_features(
    teachers: Sequence[StagedModel],
    layers: Sequence[int],
    targets: torch.Tensor,
    batch_size: int | None,
) -> list[torch.Tensor]:
    """Each teacher's layer-K representation of the target images (computed once)."""
    size = targets.shape[0] if batch_size is None else batch_size
    features = []
    with all_eval(teachers), torch.no_grad():
        for teacher, layer in zip(teachers, layers, strict=True):
            device = model_device(teacher)
            parts = [
                teacher.features(targets[lo : lo + size].to(device, torch.float32), layer)
                for lo in range(0, targets.shape[0], size)
            ]
            features.append(torch.cat(parts))
    return features


def mimicry_attack_ensemble(
    teachers: Sequence[StagedModel],
    sources: torch.Tensor,
    targets: torch.Tensor,
    *,
    layers: Sequence[int],
    budget: float,
    **options: Unpack[SearchOptions],
) -> MimicryResult:
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
        raise TlabError(
            f"need at least one teacher and one layer per teacher, got "
            f"{len(teachers)} teacher(s) and {len(layers)} layer(s)"
        )
    for j, (teacher, layer) in enumerate(zip(teachers, layers, strict=True)):
        _check_teacher(teacher, layer, name=f"teachers[{j}]")
    src, tgt = _check_pairs(sources, targets)
    budget = check_budget(budget, options.get("budget_kind", "dssim"))
    batch_size = options.get("batch_size")
    if batch_size is not None:
        options["batch_size"] = check_positive_int(batch_size, name="batch_size")
    features = _target_features(teachers, layers, tgt, options.get("batch_size"))
    return mimic_features(teachers, layers, src, features, budget=budget, **options)


def mimicry_attack(
    teacher: StagedModel,
    sources: torch.Tensor,
    targets: torch.Tensor,
    *,
    layer: int,
    budget: float,
    **options: Unpack[SearchOptions],
) -> MimicryResult:
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
        options: the optimisation settings of :class:`~tlab.attacks.mimicry_loop.SearchOptions`
            (``budget_kind``, ``steps``, ``lr``, ``penalty``, the adaptive attacker's
            ``input_dropout`` and ``eot_samples``, ``seed``, ``history``, ``batch_size``).

    Returns a :class:`MimicryResult`. Pairs whose iterates never met the budget get their
    source back and ``in_budget=False``.
    """
    return mimicry_attack_ensemble(
        [teacher],
        sources,
        targets,
        layers=[layer],
        budget=budget,
        **options,
    )


def mimicry_untargeted(
    teacher: StagedModel,
    sources: torch.Tensor,
    target_pool: torch.Tensor,
    *,
    layer: int,
    budget: float,
    source_labels: torch.Tensor | None = None,
    pool_labels: torch.Tensor | None = None,
    **options: Unpack[SearchOptions],
) -> MimicryResult:
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
        raise TlabError(
            "pass both source_labels and pool_labels (to skip guides of the source's "
            "own class) or neither"
        )
    allowed = torch.ones(src.shape[0], pool.shape[0], dtype=torch.bool)
    if source_labels is not None:
        s_lab = check_labels(source_labels, src.shape[0], name="source_labels").cpu()
        p_lab = check_labels(pool_labels, pool.shape[0], name="pool_labels").cpu()
        allowed = s_lab.view(-1, 1) != p_lab.view(1, -1)
        lonely = (~allowed.any(1)).nonzero().flatten()
        if lonely.numel():
            raise TlabError(
                f"source(s) {lonely.tolist()[:5]} have no guide image of another "
                "class in target_pool; add guides of other classes"
            )
    pairs = allowed.nonzero()
    src_idx, pool_idx = pairs[:, 0], pairs[:, 1]
    result = mimicry_attack(
        teacher,
        src[src_idx.to(src.device)],
        pool[pool_idx.to(pool.device)],
        layer=layer,
        budget=budget,
        **options,
    )
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
        distance=result.distance[pick],
        start_distance=result.start_distance[pick],
        dssim=result.dssim[pick],
        l2=result.l2[pick],
        in_budget=result.in_budget[pick],
        budget=result.budget,
        budget_kind=result.budget_kind,
        history=None if result.history is None else result.history[:, pick],
        target_index=choice.to(result.distance.device),
    )


# ---------------------------------------------------------------------------------------------
# Success
# ---------------------------------------------------------------------------------------------


def targeted_success(
    student: nn.Module, adversarial: torch.Tensor, target_labels: torch.Tensor
) -> torch.Tensor:
    """Per image: does the (black-box) student predict the target's class? Bool ``(N,)``.

    Wang et al. (2018, Sec. 4.1) count a targeted attempt as a success when the student
    classifies the perturbed source as the class of the target image.
    """
    predicted = predict(student, check_images(adversarial, name="adversarial"))
    labels = check_labels(target_labels, predicted.shape[0], name="target_labels")
    return predicted == labels.to(predicted.device)


def untargeted_success(
    student: nn.Module, adversarial: torch.Tensor, source_labels: torch.Tensor
) -> torch.Tensor:
    """Per image: does the student predict anything but the source's class? Bool ``(N,)``."""
    predicted = predict(student, check_images(adversarial, name="adversarial"))
    labels = check_labels(source_labels, predicted.shape[0], name="source_labels")
    return predicted != labels.to(predicted.device)
