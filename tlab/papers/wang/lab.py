"""Wang et al.'s lab setting (notebooks 09-11): the teacher, the students, checks and presets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tlab.attacks.mimicry_loop import SearchOptions
from tlab.attacks.perturbation import check_budget
from tlab.checks import check_choice, check_positive_int, check_stage
from tlab.core.data import Domain, load_domain
from tlab.core.models import StagedModel, build_model
from tlab.core.train import TrainConfig
from tlab.core.zoo import ModelSpec, ZooEntry, get_or_train
from tlab.errors import TlabError
from tlab.presets import Knob, PresetTable, check_preset

TEACHER_DOMAIN = "letters"
STUDENT_DOMAIN = "digits"
NARROW_VGG: dict[str, Any] = {"widths": [8, 8, 16, 16], "fc_width": 64}
STUDENT_KINDS = ("deep", "mid", "full")
ATTACK_LR = 10.0


def check_layer(teacher: StagedModel, layer: object) -> int:
    """``layer`` if it names one of the teacher's stages (1..num_stages), else a TlabError."""
    n = teacher.num_stages
    return check_stage(
        layer,
        n,
        name="layer K",
        first=1,
        hint=(f"the teacher's stages {teacher.describe_stages()}; K={n} is Wang's layer N-1"),
    )


def check_student(
    teacher: StagedModel, student: object, num_classes: int, name: str = "student"
) -> StagedModel:
    """``student`` if it could have been copied from ``teacher`` and solves a ``num_classes`` task.

    Same architecture and stage names as the teacher, a head with one output per class.
    """
    if not isinstance(student, StagedModel):
        raise TlabError(f"{name} must be a StagedModel from the zoo, got {type(student).__name__}")
    if student.arch != teacher.arch or student.stage_names != teacher.stage_names:
        raise TlabError(
            f"{name} ({student.arch!r}, stages {student.describe_stages()}) was not "
            f"copied from this {teacher.arch!r} teacher ({teacher.describe_stages()})"
        )
    if student.head.out_features != num_classes:
        raise TlabError(
            f"{name}'s head has {student.head.out_features} outputs but the target "
            f"domain has {num_classes} classes; pass the student trained on it"
        )
    return student


#: What each preset means for Wang et al.'s experiments (the only place that says it): the
#: models here, and the attack sizes notebooks 09-11 take as defaults for their parameters.
PRESETS = PresetTable(
    "Wang et al. 2018 (notebooks 09-11)",
    {
        "teacher_arch": Knob(
            ("vgg", NARROW_VGG),
            ("vgg", NARROW_VGG),
            ("vgg", NARROW_VGG),
            ("tv_resnet18", {"weights": "imagenet"}),
            "teacher architecture",
        ),
        "teacher_epochs": Knob(4, 8, 8, 10, "epochs of the teacher on letters"),
        "teacher_n": Knob(2000, 4000, 4000, None, "letters the teacher trains on (None: all)"),
        "student_epochs": Knob(4, 10, 10, 20, "epochs of each student on digits"),
        "seeds": Knob(1, 1, 5, 3, "teacher/student seeds the claims average over"),
        "pairs": Knob(8, 20, 20, 200, "(source, target) image pairs per attack"),
        "steps": Knob(100, 250, 250, 2000, "optimiser steps per mimicry attack"),
        "extra_budgets": Knob(
            [0.001],
            [0.001, 0.03],
            [0.001, 0.03],
            [0.0005, 0.001, 0.005, 0.03],
            "DSSIM budgets 09's sweep adds to the widget's",
        ),
        "candidates": Knob(3, 4, 4, 4, "candidate teachers fingerprinted (notebook 10)"),
        "fingerprint_images": Knob(2, 3, 3, 10, "fingerprint images per candidate"),
        "fingerprint_steps": Knob(150, 400, 400, 2000, "optimiser steps per fingerprint image"),
        "eot_samples": Knob(2, 4, 4, 8, "dropout samples per step of the adaptive attacker (11)"),
        "retrain_epochs": Knob(3, 6, 6, 20, "epochs of neuron-distance retraining (11)"),
        "attack_lr": Knob(
            ATTACK_LR,
            ATTACK_LR,
            ATTACK_LR,
            1.0,
            "Adadelta learning rate of attacks and fingerprints (paper: 1)",
        ),
        "budget_kind": Knob(
            "ms_dssim",
            "ms_dssim",
            "ms_dssim",
            "ms_dssim",
            "what the budget P bounds: the authors' 5-scale DSSIM (tlab.attacks.msssim)",
        ),
        "round_pixels": Knob(
            False,
            False,
            False,
            True,
            "crafted images rounded to whole 8-bit pixels (the authors' code)",
        ),
        "extra_thresholds": Knob(
            [],
            [0.02, 0.05, 0.1, 1.0],
            [0.02, 0.05, 0.1, 1.0],
            [0.02, 0.05, 0.1, 0.5, 1.0],
            "neuron-distance thresholds 11's sweep adds",
        ),
    },
)


def teacher_spec(
    preset: str, seed: int = 0, *, arch: str = "", options: dict | None = None
) -> ModelSpec:
    """The public teacher on ``letters`` for ``preset`` (training seed ``seed``).

    ``arch``/``options`` replace the preset's architecture (notebook 10 builds a pool of
    candidate teachers this way). At ``paper`` the default teacher is torchvision's ImageNet
    ResNet-18, fine-tuned on all letters.
    """
    check_preset(preset)
    p = PRESETS.values(preset)
    default_arch, default_options = p["teacher_arch"]
    arch = arch or default_arch
    options = dict(default_options if options is None and arch == default_arch else options or {})
    epochs = p["teacher_epochs"]
    lr = 1e-4 if options.get("weights") == "imagenet" else 3e-3
    return ModelSpec(
        domain=TEACHER_DOMAIN,
        arch=arch,
        arch_options=options,
        n=p["teacher_n"],
        train=TrainConfig(
            epochs=epochs, batch_size=64, lr=lr, patience=None, val_fraction=0.0, seed=seed
        ),
    )


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
    frozen = check_stage(frozen, stages, name="frozen", hint="the teacher's stages")
    lr = 1e-2 if frozen == stages else 3e-3
    return ModelSpec(
        domain=STUDENT_DOMAIN,
        arch=teacher.arch,
        arch_options=teacher.arch_options,
        strategy="finetune",
        source=teacher,
        frozen=frozen,
        train=TrainConfig(
            epochs=PRESETS.values(preset)["student_epochs"],
            batch_size=32,
            lr=lr,
            patience=None,
            val_fraction=0.0,
            seed=seed,
        ),
    )


@dataclass(frozen=True)
class MimicrySettings:
    """Settings of one mimicry run: the layer K, the budget P and the optimiser.

    ``input_dropout``/``eot_samples`` make it the adaptive attack of notebook 11 (dropout in
    the crafting loop). ``lr`` defaults to ``ATTACK_LR`` (see the module docstring);
    ``round_pixels`` rounds the crafted images to whole 8-bit pixel values as the authors' code
    does (:class:`~tlab.attacks.mimicry_loop.SearchOptions`). :meth:`Setup.attack` makes the
    preset's settings.
    """

    layer: int
    budget: float
    steps: int
    budget_kind: str = "dssim"
    lr: float = ATTACK_LR
    input_dropout: float = 0.0
    eot_samples: int = 1
    round_pixels: bool = False

    def __post_init__(self) -> None:
        check_budget(self.budget, self.budget_kind)
        check_positive_int(self.steps, name="steps")

    def recipe(self) -> dict[str, Any]:
        """What a cache key hashes (``round_pixels`` only when set, so that recipes from before
        it existed keep their keys)."""
        recipe = dict(self.__dict__)
        if not self.round_pixels:
            del recipe["round_pixels"]
        return recipe

    def options(self, seed: int | None = None) -> SearchOptions:
        """The optimisation settings the attack functions take (everything but K and P);
        ``seed`` seeds the adaptive attacker's dropout masks."""
        return SearchOptions(
            seed=seed,
            budget_kind=self.budget_kind,
            steps=self.steps,
            lr=self.lr,
            input_dropout=self.input_dropout,
            eot_samples=self.eot_samples,
            round_pixels=self.round_pixels,
        )


@dataclass
class SeedLab:
    """One seed's teacher, its students (by kind) and the students' domain: what an attack,
    a fingerprint or a defence of notebooks 09-11 works on."""

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


@dataclass(frozen=True)
class Setup:
    """What one preset means for Wang et al.'s experiments (the values of :data:`PRESETS`):
    the teacher and students to train and the attack, fingerprint and defence sizes notebooks
    09-11 take as defaults for their parameters. ``seeds`` is how many seeds the claims use."""

    preset: str
    teacher_arch: tuple[str, dict[str, Any]]
    teacher_epochs: int
    teacher_n: int | None
    student_epochs: int
    seeds: int
    pairs: int
    steps: int
    extra_budgets: list[float]
    candidates: int
    fingerprint_images: int
    fingerprint_steps: int
    eot_samples: int
    retrain_epochs: int
    extra_thresholds: list[float]
    attack_lr: float
    budget_kind: str
    round_pixels: bool

    def spec(self, role: str, seed: int = 0) -> ModelSpec:
        """The zoo spec of ``role`` for ``seed``: ``"teacher"`` or a student kind of
        :data:`STUDENT_KINDS` (copied from the teacher of the same seed, Sec. 2.1)."""
        check_choice("role", role, ("teacher", *STUDENT_KINDS))
        teacher = teacher_spec(self.preset, seed)
        if role == "teacher":
            return teacher
        return student_spec(teacher, frozen_layer(role, num_stages(teacher)), self.preset, seed)

    def attack(self, layer: int, budget: float, steps: int = 0, **extra: Any) -> MimicrySettings:
        """The preset's mimicry settings at layer K and budget P (``steps`` 0: the preset's;
        ``extra``: ``budget_kind`` to replace the preset's, ``input_dropout``, ``eot_samples``)."""
        settings: dict[str, Any] = {
            "budget_kind": self.budget_kind,
            "lr": self.attack_lr,
            "round_pixels": self.round_pixels,
        }
        return MimicrySettings(
            layer=layer, budget=budget, steps=steps or self.steps, **{**settings, **extra}
        )


def setup(preset: str) -> Setup:
    """The :class:`Setup` of ``preset`` (:data:`tlab.presets.PRESETS`)."""
    return Setup(preset=check_preset(preset), **PRESETS.values(preset))


@dataclass(frozen=True)
class Lab:
    """One setup's teachers and students, trained on demand through the zoo. The cached
    experiments (:mod:`~tlab.papers.wang.tables`, :mod:`~tlab.papers.wang.fingerprinting`,
    :mod:`~tlab.papers.wang.defending`) take the :class:`SeedLab` of one seed."""

    setup: Setup
    device: torch.device | str | None = None
    progress: bool = False

    def entry(self, role: str, seed: int = 0) -> ZooEntry:
        """The trained model of ``role`` (from the zoo, or trained now)."""
        return get_or_train(self.setup.spec(role, seed), device=self.device, progress=self.progress)

    def seed(self, seed: int = 0, kinds: Sequence[str] = STUDENT_KINDS) -> SeedLab:
        """The teacher of ``seed`` and one student per kind in ``kinds``."""
        teacher = self.entry("teacher", seed)
        stages = teacher.model.num_stages
        return SeedLab(
            teacher=teacher,
            students={kind: self.entry(kind, seed) for kind in kinds},
            frozen={kind: frozen_layer(kind, stages) for kind in kinds},
            domain=load_domain(STUDENT_DOMAIN),
            seed=seed,
        )
