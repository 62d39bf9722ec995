"""Recipes shared by notebooks 09-11 (Wang et al., USENIX Security 2018): models and cached runs.

The three Wang notebooks study one lab setting, so that an attack crafted in notebook 09 is the
attack notebook 11 defends against:

- the **teacher** is a public model trained on the large "general" domain ``letters`` (26
  classes; Wang et al. used VGG-Face or ImageNet models, Sec. 4.1). In the lab it is a narrow
  VGG-style network (``NARROW_VGG``, 5 stages: 4 convolution stages and one FC stage), small
  enough to train on a CPU in seconds. At the ``paper`` preset it is torchvision's ImageNet
  ResNet-18, adapted to the lab's 32-pixel letters (this needs its weights in the torch hub
  cache; see :class:`~tlab.errors.WeightsUnavailableError`);
- **students** learn the target domain ``digits`` (10 classes, a few hundred images) from a copy
  of the teacher whose first K stages are frozen (Sec. 2.1): ``deep`` (K = N-1, only the new
  classifier trains), ``mid`` (K = N-2, a middle stage: the FC stage trains too) and ``full``
  (K = 0, everything is fine-tuned). tlab's "layer K" is the output of stage K, and Wang's
  layer N-1 is ``num_stages``.

Expensive results are cached on disk: the crafted images as safetensors (:func:`crafted`),
success tables and fingerprints as JSON through :func:`tlab.results.cached_result`. A warm
notebook and every widget re-render read them back in milliseconds.

One deliberate departure from the paper, stated in the notebooks: Wang et al. ran 2,000
Adadelta steps at learning rate 1 per image pair on a GPU. A classroom CPU affords a few hundred,
so the lab uses learning rate ``ATTACK_LR = 10`` (Adadelta's first steps are tiny, about
``sqrt(eps)``, and a larger rate shortens that warm-up); notebook 09 shows both rates' progress.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

from tlab.attacks import pgd
from tlab.checks import check_choice, check_eps, check_positive_int
from tlab.data import Domain, TensorSet, class_balanced_subset, load_domain
from tlab.defenses import (
    EnsembleModel,
    dropout_vote_predict,
    neuron_distance,
    neuron_distance_retrain,
)
from tlab.device import model_device
from tlab.errors import TlabError
from tlab.fingerprint import GINI_THRESHOLD, fingerprint_images, student_gini
from tlab.metrics import predict
from tlab.mimicry import (
    BUDGET_KINDS,
    MAX_L2,
    mimicry_attack,
    mimicry_attack_ensemble,
    mimicry_untargeted,
)
from tlab.models import StagedModel, build_model
from tlab.plots import image_grid
from tlab.presets import by_preset, check_preset
from tlab.results import cached_result, cached_tensors
from tlab.train import TrainConfig
from tlab.zoo import ModelSpec, ZooEntry, get_or_train

__all__ = [
    "ATTACK_LR",
    "CANDIDATES",
    "NARROW_VGG",
    "STUDENT_DOMAIN",
    "STUDENT_KINDS",
    "TEACHER_DOMAIN",
    "Attack",
    "WangLab",
    "attack_pairs",
    "candidate_specs",
    "check_budget",
    "check_layer",
    "check_student",
    "convergence",
    "crafted",
    "crafted_untargeted",
    "dropout_table",
    "ensemble_table",
    "feature_scale",
    "fingerprint_set",
    "fingerprint_table",
    "frozen_layer",
    "gini_heatmap",
    "lab_training_set",
    "layer_figure",
    "load_lab",
    "neuron_distance_table",
    "num_stages",
    "pair_gallery",
    "pgd_transfer_table",
    "student_spec",
    "targeted_table",
    "teacher_spec",
    "untargeted_table",
]

TEACHER_DOMAIN = "letters"
STUDENT_DOMAIN = "digits"
NARROW_VGG: dict[str, Any] = {"widths": [8, 8, 16, 16], "fc_width": 64}
STUDENT_KINDS = ("deep", "mid", "full")
ATTACK_LR = 10.0


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def check_budget(budget: object, kind: str = "dssim") -> float:
    """``budget`` as a float if it is a valid perturbation budget P of that kind.

    DSSIM budgets lie in (0, 1] (Wang et al. 2018, Sec. 4.2 use 0.0005 to 0.01); L2 budgets in
    (0, ``MAX_L2``], pixels in [0, 1].
    """
    check_choice("budget kind", kind, BUDGET_KINDS)
    top = 1.0 if kind == "dssim" else MAX_L2
    if (not isinstance(budget, (int, float)) or isinstance(budget, bool)
            or not 0.0 < float(budget) <= top):
        raise TlabError(f"budget P={budget!r} is outside (0, {top:.4g}] for a {kind!r} budget; "
                        f"Wang et al. used DSSIM budgets 0.0005 to 0.01 (0.003 for Face)")
    return float(budget)


def check_layer(teacher: StagedModel, layer: object) -> int:
    """``layer`` if it names one of the teacher's stages (1..num_stages), else a TlabError."""
    n = teacher.num_stages
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= n:
        raise TlabError(f"layer K={layer!r} is outside the teacher's stages 1..{n} "
                        f"({teacher.describe_stages()}); K={n} is Wang's layer N-1")
    return layer


def check_student(teacher: StagedModel, student: object, num_classes: int,
                  name: str = "student") -> StagedModel:
    """``student`` if it could have been copied from ``teacher`` and solves a ``num_classes`` task.

    Same architecture and stage names as the teacher, a head with one output per class.
    """
    if not isinstance(student, StagedModel):
        raise TlabError(f"{name} must be a StagedModel from the zoo, got {type(student).__name__}")
    if student.arch != teacher.arch or student.stage_names != teacher.stage_names:
        raise TlabError(f"{name} ({student.arch!r}, stages {student.describe_stages()}) was not "
                        f"copied from this {teacher.arch!r} teacher ({teacher.describe_stages()})")
    if student.head.out_features != num_classes:
        raise TlabError(f"{name}'s head has {student.head.out_features} outputs but the target "
                        f"domain has {num_classes} classes; pass the student trained on it")
    return student


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def _teacher_arch(preset: str) -> tuple[str, dict[str, Any]]:
    return by_preset(preset, quick=("vgg", NARROW_VGG), standard=("vgg", NARROW_VGG),
                     paper=("tv_resnet18", {"weights": "imagenet"}))


def teacher_spec(preset: str, seed: int = 0, *, arch: str = "", options: dict | None = None
                 ) -> ModelSpec:
    """The public teacher on ``letters`` for ``preset`` (training seed ``seed``).

    ``arch``/``options`` replace the preset's architecture (notebook 10 builds a pool of
    candidate teachers this way). At ``paper`` the default teacher is torchvision's ImageNet
    ResNet-18, fine-tuned on all letters.
    """
    check_preset(preset)
    default_arch, default_options = _teacher_arch(preset)
    arch = arch or default_arch
    options = dict(default_options if options is None and arch == default_arch else options or {})
    epochs = by_preset(preset, quick=4, standard=8, paper=10)
    lr = 1e-4 if options.get("weights") == "imagenet" else 3e-3
    return ModelSpec(domain=TEACHER_DOMAIN, arch=arch, arch_options=options,
                     n=by_preset(preset, quick=2000, standard=4000, paper=None),
                     train=TrainConfig(epochs=epochs, batch_size=64, lr=lr, patience=None,
                                       val_fraction=0.0, seed=seed))


def num_stages(spec: ModelSpec) -> int:
    """How many stages the spec's architecture has (built without weights)."""
    options = {k: v for k, v in spec.arch_options.items() if k != "weights"}
    return build_model(spec.arch, 2, **options).num_stages


def frozen_layer(kind: str, stages: int) -> int:
    """K for a student kind (Wang et al. 2018, Sec. 2.1) of a teacher with ``stages`` stages."""
    check_choice("student kind", kind, STUDENT_KINDS)
    return {"deep": stages, "mid": stages - 1, "full": 0}[kind]


def student_spec(teacher: ModelSpec, frozen: int, preset: str, seed: int = 0) -> ModelSpec:
    """A student on ``digits`` copied from ``teacher`` with its first ``frozen`` stages frozen.

    Every student sees the same data, all ~1,200 training digits, so that the kinds differ only
    in what they freeze. A deep-layer feature extractor only trains a new linear classifier
    and gets a larger learning rate; the others fine-tune more weights, more gently.
    """
    stages = num_stages(teacher)
    if isinstance(frozen, bool) or not isinstance(frozen, int) or not 0 <= frozen <= stages:
        raise TlabError(f"frozen={frozen!r} must be in 0..{stages} (the teacher's stages)")
    lr = 1e-2 if frozen == stages else 3e-3
    return ModelSpec(domain=STUDENT_DOMAIN, arch=teacher.arch, arch_options=teacher.arch_options,
                     strategy="finetune", source=teacher, frozen=frozen,
                     train=TrainConfig(epochs=by_preset(preset, quick=4, standard=10, paper=20),
                                       batch_size=32, lr=lr, patience=None, val_fraction=0.0,
                                       seed=seed))


@dataclass
class WangLab:
    """A teacher, its students (by kind) and the students' domain, as the notebooks use them."""

    teacher: ZooEntry
    students: dict[str, ZooEntry]
    frozen: dict[str, int]
    domain: Domain
    seed: int

    @property
    def num_stages(self) -> int:
        return self.teacher.model.num_stages

    def accuracy(self) -> dict[str, float]:
        """Clean test accuracy of every student (from the zoo's metadata)."""
        return {k: e.meta["metrics"]["test_accuracy"] for k, e in self.students.items()}


def load_lab(preset: str, seed: int = 0, *, kinds: Sequence[str] = STUDENT_KINDS,
             device: torch.device | str | None = None, progress: bool = False) -> WangLab:
    """The teacher of ``seed`` and one student per kind, from the zoo (trained on a miss)."""
    t_spec = teacher_spec(preset, seed)
    stages = num_stages(t_spec)
    frozen = {k: frozen_layer(k, stages) for k in kinds}
    teacher = get_or_train(t_spec, device=device, progress=progress)
    students = {k: get_or_train(student_spec(t_spec, frozen[k], preset, seed), device=device,
                                progress=progress) for k in kinds}
    return WangLab(teacher=teacher, students=students, frozen=frozen,
                   domain=load_domain(STUDENT_DOMAIN), seed=seed)


# ---------------------------------------------------------------------------------------------
# Attack pairs and crafted images (cached as tensors)
# ---------------------------------------------------------------------------------------------


def _correct_everywhere(lab: WangLab) -> torch.Tensor:
    """Indices of test images that every student of ``lab`` classifies correctly."""
    x, y = lab.domain.test.floats(), lab.domain.test.labels
    ok = torch.ones(len(y), dtype=torch.bool)
    for name, entry in lab.students.items():
        check_student(lab.teacher.model, entry.model, len(lab.domain.classes), name=name)
        ok &= predict(entry.model, x.to(model_device(entry.model))).cpu() == y
    return ok.nonzero().flatten()


def attack_pairs(lab: WangLab, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random (source, target) test-image pairs of different classes (Sec. 4.1).

    As in the paper, only images the students classify correctly are used (here: correctly
    classified by every student of ``lab``, so that all students face the same pairs and one
    crafted image serves them all). Returns two index tensors into ``lab.domain.test``.
    """
    n = check_positive_int(n, name="number of pairs")
    pool = _correct_everywhere(lab)
    if len(pool) < 2:
        raise TlabError("fewer than 2 test images are classified correctly by every student: "
                        "there is no target set to attack; train the students longer")
    labels = lab.domain.test.labels
    g = torch.Generator().manual_seed(int(seed))
    src = pool[torch.randint(len(pool), (4 * n,), generator=g)]
    tgt = pool[torch.randint(len(pool), (4 * n,), generator=g)]
    keep = (labels[src] != labels[tgt]).nonzero().flatten()[:n]
    if len(keep) < n:
        raise TlabError(f"could only draw {len(keep)} of {n} pairs of different classes; "
                        "ask for fewer pairs")
    return src[keep], tgt[keep]


@dataclass(frozen=True)
class Attack:
    """Settings of one mimicry run: the layer K, the budget P and the optimiser.

    ``input_dropout``/``eot_samples`` make it the adaptive attack of notebook 11 (dropout in
    the crafting loop). ``lr`` defaults to ``ATTACK_LR`` (see the module docstring).
    """

    layer: int
    budget: float
    steps: int
    budget_kind: str = "dssim"
    lr: float = ATTACK_LR
    input_dropout: float = 0.0
    eot_samples: int = 1

    def __post_init__(self) -> None:
        check_budget(self.budget, self.budget_kind)
        check_positive_int(self.steps, name="steps")

    def recipe(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _pairs_recipe(lab: WangLab, src: torch.Tensor, tgt: torch.Tensor) -> dict[str, Any]:
    return {"domain": lab.domain.name, "domain_params": lab.domain.params,
            "source": src.tolist(), "target": tgt.tolist()}


def crafted(lab: WangLab, attack: Attack, n_pairs: int, pair_seed: int = 0, *,
            teachers: Sequence[ZooEntry] | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Targeted mimicry images for ``n_pairs`` pairs of ``lab`` (cached on disk).

    Attacks ``lab.teacher`` at ``attack.layer`` (or, with ``teachers``, all of them at once:
    the joint ensemble attack of notebook 11). Returns ``adversarial``, ``source``/``target``
    (test indices), ``target_label``, ``distance``, ``dssim``, ``l2`` and ``in_budget``.
    """
    teachers = [lab.teacher] if teachers is None else list(teachers)
    for t in teachers:
        check_layer(t.model, attack.layer)
    src, tgt = attack_pairs(lab, n_pairs, pair_seed)
    recipe = {"teachers": [t.key for t in teachers], "attack": attack.recipe(), "seed": seed,
              **_pairs_recipe(lab, src, tgt)}

    def compute() -> dict[str, torch.Tensor]:
        x = lab.domain.test.floats()
        result = mimicry_attack_ensemble(
            [t.model for t in teachers], x[src], x[tgt], layers=[attack.layer] * len(teachers),
            budget=attack.budget, budget_kind=attack.budget_kind, steps=attack.steps,
            lr=attack.lr, input_dropout=attack.input_dropout, eot_samples=attack.eot_samples,
            seed=seed)
        return {"adversarial": result.adversarial, "source": src, "target": tgt,
                "target_label": lab.domain.test.labels[tgt], "distance": result.distance,
                "start_distance": result.start_distance, "dssim": result.dssim,
                "l2": result.l2, "in_budget": result.in_budget}

    return cached_tensors("wang-mimicry", recipe, compute)


def crafted_untargeted(lab: WangLab, attack: Attack, n_sources: int, n_guides: int = 5,
                       seed: int = 0) -> dict[str, torch.Tensor]:
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
        raise TlabError(f"no correctly classified test image of class(es) {missing} to guide the "
                        "non-targeted attack; use fewer guides or better-trained students")
    guides = torch.stack([pool[labels[pool] == c][torch.randint(
        int((labels[pool] == c).sum()), (1,), generator=g)][0] for c in chosen_classes.tolist()])
    check_layer(lab.teacher.model, attack.layer)
    recipe = {"teacher": lab.teacher.key, "attack": attack.recipe(), "guides": guides.tolist(),
              **_pairs_recipe(lab, src, src)}

    def compute() -> dict[str, torch.Tensor]:
        x = lab.domain.test.floats()
        result = mimicry_untargeted(
            lab.teacher.model, x[src], x[guides], layer=attack.layer, budget=attack.budget,
            source_labels=labels[src], pool_labels=labels[guides],
            budget_kind=attack.budget_kind, steps=attack.steps, lr=attack.lr)
        return {"adversarial": result.adversarial, "source": src, "source_label": labels[src],
                # mimicry_untargeted always sets target_index
                "guide": guides[cast(torch.Tensor, result.target_index).cpu()],
                "distance": result.distance,
                "dssim": result.dssim, "l2": result.l2, "in_budget": result.in_budget}

    return cached_tensors("wang-untargeted", recipe, compute)


# ---------------------------------------------------------------------------------------------
# Success tables (JSON, cached)
# ---------------------------------------------------------------------------------------------


def _success(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             targeted: bool) -> float:
    predicted = predict(model, images.to(model_device(model))).cpu()
    hits = predicted == labels if targeted else predicted != labels
    return float(hits.float().mean())


def targeted_table(lab: WangLab, layers: Sequence[int], budgets: Sequence[float], *, steps: int,
                   n_pairs: int, pair_seed: int = 0,
                   budget_kind: str = "dssim") -> list[dict[str, Any]]:
    """Targeted success of every student for every (layer, budget) (Figs. 4 and 5; cached).

    One row per (layer, budget, student): ``success`` (fraction of pairs the student puts in
    the target's class), mean ``dssim``/``l2`` of the perturbation, ``in_budget``.
    """
    rows = []
    for layer in layers:
        for budget in budgets:
            attack = Attack(layer=int(layer), budget=float(budget), steps=steps,
                            budget_kind=budget_kind)
            recipe = {"students": {k: e.key for k, e in lab.students.items()},
                      "teacher": lab.teacher.key, "attack": attack.recipe(), "n": n_pairs,
                      "pair_seed": pair_seed}

            def compute(attack: Attack = attack) -> list[dict[str, Any]]:
                out = crafted(lab, attack, n_pairs, pair_seed)
                common = {"layer": attack.layer, "budget": attack.budget,
                          "budget_kind": attack.budget_kind,
                          "dssim": float(out["dssim"].mean()), "l2": float(out["l2"].mean()),
                          "in_budget": float(out["in_budget"].float().mean())}
                return [{**common, "student": kind, "frozen": lab.frozen[kind],
                         "success": _success(e.model, out["adversarial"], out["target_label"],
                                             True)}
                        for kind, e in lab.students.items()]

            rows += cached_result("wang-targeted", recipe, compute)
    return rows


def untargeted_table(lab: WangLab, attack: Attack, n_sources: int, n_guides: int = 5,
                     seed: int = 0) -> list[dict[str, Any]]:
    """Non-targeted success of every student (Sec. 4.2; cached): one row per student."""
    recipe = {"students": {k: e.key for k, e in lab.students.items()}, "teacher": lab.teacher.key,
              "attack": attack.recipe(), "n": n_sources, "guides": n_guides, "seed": seed}

    def compute() -> list[dict[str, Any]]:
        out = crafted_untargeted(lab, attack, n_sources, n_guides, seed)
        return [{"student": kind, "frozen": lab.frozen[kind], "layer": attack.layer,
                 "budget": attack.budget,
                 "success": _success(e.model, out["adversarial"], out["source_label"], False)}
                for kind, e in lab.students.items()]

    return cached_result("wang-untargeted", recipe, compute)


def pgd_transfer_table(lab: WangLab, *, eps_list: Sequence[float], steps: int, n: int,
                       seed: int = 0) -> list[dict[str, Any]]:
    """The baseline of Sec. 4.4: a white-box attack on the teacher, sent to the students (cached).

    Untargeted L-infinity PGD (Madry et al. 2018; the paper used Carlini-Wagner, which looks for
    the smallest change that flips the teacher) against the teacher's own prediction (a letter:
    teacher and students share no labels), step eps/4, for each eps. One row per (eps, model):
    ``fooled`` = how often the teacher's letter changed, or how often a student misclassifies
    the digit; ``l2`` = mean L2 norm of the perturbation.
    """
    eps_list = [check_eps(e) for e in eps_list]
    src, _ = attack_pairs(lab, n, seed)
    recipe = {"students": {k: e.key for k, e in lab.students.items()}, "teacher": lab.teacher.key,
              "eps": eps_list, "steps": steps, **_pairs_recipe(lab, src, src)}

    def compute() -> list[dict[str, Any]]:
        teacher = lab.teacher.model
        x = lab.domain.test.floats()[src].to(model_device(teacher))
        y = lab.domain.test.labels[src]
        before = predict(teacher, x)
        rows = []
        for eps in eps_list:
            adv = pgd(teacher, x, None, eps=eps, alpha=eps / 4, steps=steps)
            l2 = float((adv - x).flatten(1).norm(dim=1).mean())
            rows.append({"eps": eps, "model": "teacher (white-box)", "l2": l2,
                         "fooled": float((predict(teacher, adv) != before).float().mean())})
            rows += [{"eps": eps, "model": f"{kind} student (K={lab.frozen[kind]})", "l2": l2,
                      "fooled": _success(e.model, adv.cpu(), y, False)}
                     for kind, e in lab.students.items()]
        return rows

    return cached_result("wang-pgd-transfer", recipe, compute)


def convergence(lab: WangLab, layer: int, budget: float, *, steps: int, n_pairs: int,
                rates: Sequence[float] = (1.0, ATTACK_LR), pair_seed: int = 0) -> dict[str, Any]:
    """Mean layer-K distance after every Adadelta step, for each learning rate (cached).

    Shows why the lab departs from the paper's learning rate 1 (module docstring).
    """
    check_layer(lab.teacher.model, layer)
    src, tgt = attack_pairs(lab, n_pairs, pair_seed)
    recipe = {"teacher": lab.teacher.key, "layer": layer, "budget": check_budget(budget),
              "steps": steps, "rates": [float(r) for r in rates], **_pairs_recipe(lab, src, tgt)}

    def compute() -> dict[str, Any]:
        x = lab.domain.test.floats()
        out: dict[str, Any] = {"step": list(range(1, steps + 1))}
        for rate in rates:
            result = mimicry_attack(lab.teacher.model, x[src], x[tgt], layer=layer,
                                    budget=budget, steps=steps, lr=float(rate), history=True)
            # history=True: the result always has a history
            out[f"lr={rate:g}"] = cast(torch.Tensor, result.history).mean(1).tolist()
            out["start"] = float(result.start_distance.mean())
        return out

    return cached_result("wang-convergence", recipe, compute)


def pair_gallery(lab: WangLab, images: Mapping[str, torch.Tensor], *, student: str,
                 show: int = 6, title: str = "") -> go.Figure:
    """Source, crafted image and target of the first ``show`` pairs, with the student's labels."""
    model = lab.students[student].model
    test, classes = lab.domain.test, lab.domain.classes
    src, tgt = images["source"][:show], images["target"][:show]
    adv = images["adversarial"][:show]
    pred = predict(model, adv.to(model_device(model))).cpu()
    x = test.floats()
    titles = ([f"source: {classes[test.labels[i]]}" for i in src]
              + [f"{'✔' if p == test.labels[t] else '✘'} {student} says {classes[p]}"
                 for p, t in zip(pred.tolist(), tgt.tolist(), strict=False)]
              + [f"target: {classes[test.labels[i]]}" for i in tgt])
    return image_grid(torch.cat([x[src], adv, x[tgt]]), titles, columns=len(src), title=title,
                      size=120)


# ---------------------------------------------------------------------------------------------
# Fingerprinting (notebook 10)
# ---------------------------------------------------------------------------------------------

#: Notebook 10's pool of candidate teachers: (name, architecture options, training seed).
#: Three narrow VGGs that differ only in their training seed (like Wang et al.'s two releases
#: of InceptionV3, Sec. 5.1) and a VGG of another shape.
CANDIDATES: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("vgg-a seed 0", NARROW_VGG, 0),
    ("vgg-a seed 1", NARROW_VGG, 1),
    ("vgg-b seed 0", {"widths": [8, 16, 16, 32], "fc_width": 96}, 0),
    ("vgg-a seed 2", NARROW_VGG, 2),
)


def candidate_specs(preset: str, count: int = 0) -> dict[str, ModelSpec]:
    """The first ``count`` candidate teachers (all of them for 0), as zoo specs on ``letters``."""
    check_preset(preset)
    count = count or len(CANDIDATES)
    if isinstance(count, bool) or not isinstance(count, int) or not 2 <= count <= len(CANDIDATES):
        raise TlabError(f"count={count!r} must be in 2..{len(CANDIDATES)} candidate teachers")
    return {name: teacher_spec(preset, seed, arch="vgg", options=options)
            for name, options, seed in CANDIDATES[:count]}


def fingerprint_set(candidate: ZooEntry, n_images: int, *, steps: int,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """``n_images`` fingerprint images of a candidate teacher (Sec. 5.1; cached tensors).

    Each starts from seeded noise and is optimised until the candidate's last-stage
    representation is (nearly) the zero vector; ``distance`` is what is left of it.
    A candidate that cannot read the lab's 3x32x32 images is refused with a TlabError.
    """
    recipe = {"candidate": candidate.key, "n": n_images, "steps": steps, "seed": seed,
              "lr": ATTACK_LR}

    def compute() -> dict[str, torch.Tensor]:
        result = fingerprint_images(candidate.model, n_images, steps=steps, lr=ATTACK_LR,
                                    seed=seed)
        return {"images": result.adversarial, "distance": result.distance,
                "start_distance": result.start_distance}

    if not isinstance(candidate, ZooEntry):
        raise TlabError("a candidate must be a ZooEntry (tlab.zoo.get_or_train)")
    return cached_tensors("wang-fingerprint-images", recipe, compute)


def fingerprint_table(candidates: Mapping[str, ZooEntry], students: Mapping[str, ZooEntry], *,
                      n_images: int, steps: int, seed: int = 0) -> dict[str, Any]:
    """Mean Gini coefficient of each student's softmax on each candidate's fingerprints (cached).

    Returns ``{"candidates": [...], "students": [...], "gini": rows x columns}`` (Fig. 6).
    """
    if not candidates or not students:
        raise TlabError("fingerprint_table needs at least one candidate teacher and one student")
    recipe = {"candidates": {k: e.key for k, e in candidates.items()},
              "students": {k: e.key for k, e in students.items()}, "n": n_images,
              "steps": steps, "seed": seed}

    def compute() -> dict[str, Any]:
        matrix = []
        for entry in candidates.values():
            images = fingerprint_set(entry, n_images, steps=steps, seed=seed)["images"]
            matrix.append([float(student_gini(s.model, images.to(model_device(s.model))).mean())
                           for s in students.values()])
        return {"candidates": list(candidates), "students": list(students), "gini": matrix}

    return cached_result("wang-fingerprint", recipe, compute)


# ---------------------------------------------------------------------------------------------
# Defenses (notebook 11)
# ---------------------------------------------------------------------------------------------


def dropout_table(lab: WangLab, kind: str, attack: Attack, ratios: Sequence[float], *,
                  n_pairs: int, pair_seed: int = 0, untargeted: Attack | None = None,
                  adaptive: Attack | None = None, votes: int = 3,
                  seed: int = 0) -> list[dict[str, Any]]:
    """Input dropout with a majority vote (Sec. 6.1, Fig. 7), per dropout ratio (cached).

    Rows: ``ratio``, clean ``accuracy`` of the defended student on the whole test split,
    ``targeted`` success of ``attack``'s images, ``untargeted`` success (if ``untargeted``
    is given; its images come from :func:`crafted_untargeted` with ``n_pairs`` sources) and
    ``adaptive``: targeted success of images crafted with dropout inside the loop (EOT).
    """
    student = lab.students[kind]
    ratios = [float(r) for r in ratios]
    recipe = {"student": student.key, "teacher": lab.teacher.key, "attack": attack.recipe(),
              "ratios": ratios, "n": n_pairs, "pair_seed": pair_seed, "votes": votes,
              "seed": seed, "untargeted": untargeted and untargeted.recipe(),
              "adaptive": adaptive and adaptive.recipe()}

    def compute() -> list[dict[str, Any]]:
        model = student.model
        dev = model_device(model)
        x, y = lab.domain.test.floats(dev), lab.domain.test.labels.to(dev)
        plain = crafted(lab, attack, n_pairs, pair_seed)
        sets = {"targeted": (plain["adversarial"], plain["target_label"], True)}
        if untargeted is not None:
            out = crafted_untargeted(lab, untargeted, n_pairs, seed=pair_seed)
            sets["untargeted"] = (out["adversarial"], out["source_label"], False)
        if adaptive is not None:
            out = crafted(lab, adaptive, n_pairs, pair_seed, seed=seed)
            sets["adaptive"] = (out["adversarial"], out["target_label"], True)
        rows = []
        for ratio in ratios:
            row = {"ratio": ratio, "accuracy": float(
                (dropout_vote_predict(model, x, ratio, votes, seed) == y).float().mean())}
            for name, (images, labels, targeted) in sets.items():
                predicted = dropout_vote_predict(model, images.to(dev), ratio, votes, seed).cpu()
                hits = predicted == labels if targeted else predicted != labels
                row[name] = float(hits.float().mean())
            rows.append(row)
        return rows

    return cached_result("wang-dropout", recipe, compute)


def feature_scale(lab: WangLab, layer: int) -> float:
    """Median L2 norm of the teacher's layer-K representation of the students' training images.

    Neuron-distance thresholds (Sec. 6.2) are given as multiples of it.
    """
    check_layer(lab.teacher.model, layer)
    teacher = lab.teacher.model
    with torch.no_grad():
        x = lab.domain.train.floats(model_device(teacher))[:512]
        teacher.eval()
        return float(teacher.features(x, layer).flatten(1).norm(dim=1).median())


def neuron_distance_table(lab: WangLab, kind: str, attack: Attack, thresholds: Sequence[float],
                          *, n_pairs: int, pair_seed: int = 0, epochs: int = 10,
                          n_prints: int = 2, fingerprint_steps: int = 300,
                          seed: int = 0) -> list[dict[str, Any]]:
    """Neuron-distance retraining (Sec. 6.2, Fig. 8) at several thresholds (cached).

    ``thresholds`` are multiples of :func:`feature_scale` at ``attack.layer``; 0 means the
    undefended student. For each, the retrained student's clean ``accuracy``, the targeted
    ``success`` of ``attack``'s images (crafted on the original teacher, which is all the
    attacker has), the mean ``distance`` from the teacher at layer K and the ``gini`` of the
    true teacher's fingerprint (Sec. 6.2: retraining also hides the teacher). The retrained
    students are not kept, only these numbers.
    """
    student = lab.students[kind]
    thresholds = [float(t) for t in thresholds]
    if any(t < 0 or not math.isfinite(t) for t in thresholds):
        raise TlabError(f"thresholds={thresholds} must be >= 0 (multiples of the feature scale)")
    recipe = {"student": student.key, "teacher": lab.teacher.key, "attack": attack.recipe(),
              "thresholds": thresholds, "n": n_pairs, "pair_seed": pair_seed, "epochs": epochs,
              "fp": [n_prints, fingerprint_steps], "seed": seed}

    def compute() -> list[dict[str, Any]]:
        adv = crafted(lab, attack, n_pairs, pair_seed)
        prints = fingerprint_set(lab.teacher, n_prints, steps=fingerprint_steps,
                                 seed=seed)["images"]
        scale = feature_scale(lab, attack.layer)
        test = lab.domain.test
        rows = []
        for t in thresholds:
            model = student.model
            if t > 0:
                model, _ = neuron_distance_retrain(
                    student.model, lab.teacher.model, lab_training_set(lab, kind),
                    layer=attack.layer, threshold=t * scale, epochs=epochs, seed=seed,
                    device=model_device(student.model), progress=False)
            dev = model_device(model)
            rows.append({
                "threshold": t, "threshold_abs": t * scale,
                "accuracy": float((predict(model, test.floats(dev)).cpu() == test.labels)
                                  .float().mean()),
                "success": _success(model, adv["adversarial"], adv["target_label"], True),
                "distance": float(neuron_distance(model, lab.teacher.model, test.floats(dev),
                                                  layer=attack.layer).mean()),
                "gini": float(student_gini(model, prints.to(dev)).mean())})
        return rows

    return cached_result("wang-neuron-distance", recipe, compute)


def lab_training_set(lab: WangLab, kind: str) -> TensorSet:
    """The training images the student of ``kind`` was trained on (its zoo recipe's subset)."""
    spec = lab.students[kind].meta["spec"]
    train = lab.domain.train
    return train if spec["n"] is None else class_balanced_subset(train, spec["n"],
                                                                 seed=spec["subset_seed"])


def ensemble_table(labs: Sequence[WangLab], kind: str, attack: Attack, *, n_pairs: int,
                   pair_seed: int = 0) -> list[dict[str, Any]]:
    """An ensemble of students from different teachers (Sec. 6.3), and a joint attack (cached).

    Two attacks on the same pairs: mimicking the first teacher only (what breaks its own
    student) and mimicking all teachers at once (the sum of their layer distances; beyond the
    paper). Rows: ``attack``, ``model`` (each member alone or the ensemble), ``success``.
    """
    if len(labs) < 2:
        raise TlabError("an ensemble needs students of at least 2 different teachers")
    members = {f"student of teacher {i}": lab.students[kind] for i, lab in enumerate(labs)}
    joint_lab = WangLab(teacher=labs[0].teacher, students=members,
                        frozen=dict.fromkeys(members, labs[0].frozen[kind]),
                        domain=labs[0].domain, seed=labs[0].seed)
    recipe = {"members": {k: e.key for k, e in members.items()},
              "teachers": [lab.teacher.key for lab in labs], "attack": attack.recipe(),
              "n": n_pairs, "pair_seed": pair_seed}

    def compute() -> list[dict[str, Any]]:
        ensemble = EnsembleModel([e.model for e in members.values()]).eval()
        runs = {"mimic teacher 0 only": crafted(joint_lab, attack, n_pairs, pair_seed),
                "joint: mimic all teachers": crafted(joint_lab, attack, n_pairs, pair_seed,
                                                     teachers=[lab.teacher for lab in labs])}
        rows = []
        for name, out in runs.items():
            for member, entry in members.items():
                rows.append({"attack": name, "model": member, "success": _success(
                    entry.model, out["adversarial"], out["target_label"], True)})
            rows.append({"attack": name, "model": "ensemble (mean of softmax)",
                         "success": _success(ensemble, out["adversarial"], out["target_label"],
                                             True),
                         "dssim": float(out["dssim"].mean())})
        return rows

    return cached_result("wang-ensemble", recipe, compute)


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

_COLOURS = {"deep": "#d62728", "mid": "#ff7f0e", "full": "#1f77b4"}


def layer_figure(rows: Sequence[Mapping[str, Any]], *, budget: float, highlight: int | None = None,
                 students: Sequence[str] | None = None, title: str = "") -> go.Figure:
    """Targeted success against the attacked layer, one line per student (Wang et al., Fig. 5).

    A dotted vertical line in the student's colour marks its last frozen layer K; ``highlight``
    draws a grey band at one attacked layer (the widget's choice).
    """
    fig = go.Figure()
    picked = [r for r in rows if math.isclose(r["budget"], budget)]
    names = students or list(dict.fromkeys(r["student"] for r in picked))
    for name in names:
        mine = sorted((r for r in picked if r["student"] == name), key=lambda r: r["layer"])
        if not mine:
            continue
        colour = _COLOURS.get(name)
        k = mine[0]["frozen"]
        fig.add_trace(go.Scatter(x=[r["layer"] for r in mine],
                                 y=[100 * r["success"] for r in mine], mode="lines+markers",
                                 name=f"{name} (K={k})", line=dict(color=colour)))
        if k > 0:
            fig.add_vline(x=k, line=dict(color=colour, dash="dot", width=2))
    if highlight is not None:
        fig.add_vrect(x0=highlight - 0.3, x1=highlight + 0.3, fillcolor="grey", opacity=0.15,
                      line_width=0)
    fig.update_layout(title=title or f"Targeted success vs attacked layer (P = {budget:g}); "
                                     "dotted: each student's last frozen layer K",
                      xaxis_title="attacked layer K of the teacher",
                      yaxis_title="targeted success (%)", yaxis_range=[-3, 103], height=420)
    fig.update_xaxes(dtick=1)
    return fig


def gini_heatmap(table: Mapping[str, Any], *, title: str = "") -> go.Figure:
    """The fingerprint matrix (Fig. 6): rows = candidate teachers, columns = students.

    Cells below :data:`GINI_THRESHOLD` (0.1: "this candidate is the teacher") are marked.
    """
    z = np.asarray(table["gini"], dtype=float)
    text = [[f"{v:.3f}{' ✔' if v < GINI_THRESHOLD else ''}" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=table["students"], y=table["candidates"], text=text,
                               texttemplate="%{text}", zmin=0, zmax=1, colorscale="Viridis",
                               colorbar=dict(title="Gini")))
    fig.update_layout(title=title or f"Gini coefficient of the student's output on each "
                                     f"candidate's fingerprint (✔: below {GINI_THRESHOLD})",
                      xaxis_title="student (built from ...)", yaxis_title="candidate teacher",
                      yaxis_autorange="reversed", height=120 + 70 * len(z), width=820)
    return fig
