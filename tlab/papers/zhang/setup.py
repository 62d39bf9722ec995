"""Zhang et al. (KDD 2020), "Two Sides of the Same Coin": the setup of each preset and the zoo
specs of its models.

Shared by notebooks 02-06. The experiment (Zhang et al. 2020, Sec. 3, Fig. 1): a source model A
is trained on a large domain A; a target model B on a small domain B is built with one of three
strategies -- ``Scratch`` (random start), ``FT`` (start from A; the first ``frozen`` stages keep
A's weights, see :mod:`tlab.core.train`) or ``CommonInit`` (A and B both start from a model C of a
third domain). B is then attacked with FGSM crafted on B itself (white-box, Sec. 3.4.1) or on
its A (black-box, no query to B, Sec. 3.4.2); ``gamma = (a_b - a_w) / a_w`` compares the two
(Sec. 3.5).

Roles. :data:`ROLES` names every model of one seed: ``"A"`` (the source), ``"C"`` (the common
initialiser, one for all seeds: a public model), ``"A_ci"`` (A's counterpart started from C,
the attacker of CommonInit), ``"Scratch"``, ``"FT"`` (with a ``frozen`` depth) and
``"CommonInit"``. ``"A on B"`` is A applied to B unchanged (same digit labels): where FT starts.

Default domains (the study in ``docs/zhang_default.md``): A = colour SynDigits, B = grey
SynDigits of another draw (MNIST-like), C = colour letters; n_B = 100 (90 train + 10
validation images). The ``paper`` preset uses the paper's real tasks (Sec. 4.1,
:data:`PAPER_TASKS`).

Units. tlab keeps pixels in [0, 1]; Zhang et al. scale them to [-1, 1], so the paper's eps is
twice tlab's for the same perturbation: the paper's 4/255 ... 32/255 are 2/255 ... 16/255 here,
and its 0.125 is 0.0625 (:func:`paper_eps_to_pixels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tlab.checks import check_choice, check_eps, check_stage
from tlab.core.data import parse_domain
from tlab.core.models import build_model
from tlab.core.train import TrainConfig
from tlab.core.zoo import ModelSpec
from tlab.errors import TlabError
from tlab.papers.evaluate import EvalSet
from tlab.presets import Knob, PresetTable, check_preset

ROLES = ("A", "C", "A_ci", "Scratch", "FT", "CommonInit")
TARGET_ROLES = ("Scratch", "FT", "CommonInit")

#: The paper's tasks (Sec. 4.1, Table 1) for the ``paper`` preset: task -> (A, B, C, n_A, n_B,
#: n_C); None = the whole training split. SVHN includes "extra" (604K). S->Syn samples Table 1's
#: 4.8K SynDigits images; CIFAR->STL uses the 9 classes CIFAR10 and STL10 share (45K / 4.5K,
#: all of them) and all of ImageNet32 (1.28M) with its own 1,000 classes, which C alone needs
#: (Sec. 3.2: A and B take C's weights except the classifier; Sec. 4.3).
PAPER_TASKS: dict[str, tuple[str, str, str | None, int | None, int, int | None]] = {
    "M->U": ("mnist", "usps", "svhn:extra=true", None, 74, None),
    "U->M": ("usps", "mnist", "svhn:extra=true", None, 600, None),
    "S->M": ("svhn:extra=true", "mnist", None, None, 600, None),
    "S->Syn": ("svhn:extra=true", "synnumbers", "mnist", None, 4800, None),
    "CIFAR->STL": ("cifar10_9", "stl10_9", "imagenet32", None, 4500, None),
}
#: The network of each paper task (``"name:key=value"``, as :func:`tlab.core.models.build_model`
#: takes it): DTN for the digit tasks, WideResNet-28-10 for CIFAR->STL (Sec. 4.3).
PAPER_ARCHS: dict[str, str] = dict.fromkeys(PAPER_TASKS, "dtn") | {
    "CIFAR->STL": "wrn:depth=28,width=10"
}
#: The paper's FGSM budgets, in its [-1, 1] pixel units (Sec. 5, Figs. 3-5).
PAPER_EPS_SIGNED = (2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255, 0.125)
#: Below this white-box accuracy, gamma rests on a handful of images (one image more or less
#: moves it by a lot): claims report such cases apart.
RELIABLE_WB = 0.05
DEFAULT_SOURCE = "syndigits"
DEFAULT_TARGET = "syndigits:colour=false,seed=1,n_test=500"
DEFAULT_COMMON = "letters"


def paper_eps_to_pixels(eps_signed: float) -> float:
    """A budget in the paper's [-1, 1] pixel space as the same perturbation in [0, 1] pixels."""
    return float(eps_signed) / 2


@dataclass(frozen=True)
class Setup:
    """Everything about one preset's experiment except the seed.

    Domains are ``"name:key=value,..."`` strings (see :func:`tlab.core.data.parse_domain`);
    ``common`` may be ``""`` (no CommonInit, e.g. the paper's S->M). ``n_a`` / ``n_b`` / ``n_c``
    count the images before the 10 % validation split used for early stopping. ``eps_grid`` are the
    FGSM budgets every B model is evaluated at, in [0, 1] pixel units; ``frozen`` the FT depths the
    claims compare (every depth 0..``max_frozen`` can be asked for). ``eval_n`` test images of
    B (None: the whole test split) are attacked. ``ft_frozen_train_mode``: FT runs its frozen
    stages in train mode, as Zhang et al.'s released code does (BatchNorm statistics follow B,
    dropout on; ``tlab.core.train.TrainConfig.frozen_train_mode``).
    """

    preset: str
    source: str
    target: str
    common: str
    arch: str
    arch_options: dict[str, Any]
    n_a: int | None
    n_b: int
    n_c: int | None
    train_a: TrainConfig
    train_b: TrainConfig
    eps_grid: tuple[float, ...]
    eval_n: int | None
    seeds: tuple[int, ...]
    frozen: tuple[int, ...]
    c_seed: int = 0
    ft_frozen_train_mode: bool = False

    def __post_init__(self) -> None:
        check_preset(self.preset)
        for eps in self.eps_grid:
            check_eps(eps)
        if not self.seeds:
            raise TlabError("a setup needs at least one seed, e.g. seeds=[0, 1, 2]")
        for k in self.frozen:
            self.check_frozen(k)

    @property
    def max_frozen(self) -> int:
        """How many stages the architecture has (freezing all of them trains only the head)."""
        return len(build_model(self.arch, 10, **self.arch_options).stages)

    def check_frozen(self, frozen: int) -> int:
        """``frozen`` if it is a valid FT depth for this architecture, else a clear error."""
        top = self.max_frozen
        return check_stage(
            frozen,
            top,
            name="frozen",
            hint=(
                f"{self.arch} has {top} stages: 0 = fine-tune everything, {top} = only the "
                f"classifier trains"
            ),
        )

    def panel_depths(self, asked: Sequence[int] = ()) -> list[int]:
        """The FT depths a notebook's widgets offer: ``asked`` plus the claims' depths; by
        default every depth where the preset table says so, else the claims' depths."""
        if asked:
            return sorted({self.check_frozen(k) for k in asked} | set(self.frozen))
        if PRESETS.values(self.preset)["panels_show_every_depth"]:
            return list(range(self.max_frozen + 1))
        return list(self.frozen)

    def with_(self, **changes: Any) -> Setup:
        """A copy with some fields changed (the ablations of notebook 05)."""
        return replace(self, **changes)

    def eval_set(self) -> EvalSet:
        """The fixed test images of B every model is scored on."""
        name, params = parse_domain(self.target)
        return EvalSet(name, n=self.eval_n, seed=0, domain_params=params)

    # ------------------------------------------------------------------ zoo specs

    def _spec(
        self, domain: str, n: int | None, seed: int, train: TrainConfig, **strategy: Any
    ) -> ModelSpec:
        name, params = parse_domain(domain)
        return ModelSpec(
            domain=name,
            domain_params=params,
            arch=self.arch,
            arch_options=dict(self.arch_options),
            n=n,
            subset_seed=seed,
            train=replace(train, seed=seed),
            **strategy,
        )

    def spec(self, role: str, seed: int = 0, frozen: int = 0) -> ModelSpec:
        """The zoo spec of ``role`` (see :data:`ROLES`) for ``seed``.

        ``seed`` picks the class-balanced subsets, the initialisation and the batch order; the
        domains are fixed. ``frozen`` only applies to ``"FT"``.
        """
        check_choice("role", role, ROLES)
        if role != "FT" and frozen:
            raise TlabError(f"frozen={frozen} only applies to role 'FT', not {role!r}")
        if role in ("C", "A_ci", "CommonInit") and not self.common:
            raise TlabError(
                "this setup has no common domain C, so no CommonInit; set `common`, e.g. 'letters'"
            )
        if role == "A":
            return self._spec(self.source, self.n_a, seed, self.train_a)
        if role == "C":
            return self._spec(self.common, self.n_c, self.c_seed, self.train_a)
        if role == "A_ci":
            return self._spec(
                self.source,
                self.n_a,
                seed,
                self.train_a,
                strategy="commoninit",
                source=self.spec("C"),
            )
        if role == "Scratch":
            return self._spec(self.target, self.n_b, seed, self.train_b)
        if role == "FT":
            k = self.check_frozen(frozen)
            return self._spec(
                self.target,
                self.n_b,
                seed,
                replace(self.train_b, frozen_train_mode=self.ft_frozen_train_mode and k > 0),
                strategy="finetune",
                source=self.spec("A", seed),
                frozen=k,
            )
        return self._spec(
            self.target, self.n_b, seed, self.train_b, strategy="commoninit", source=self.spec("C")
        )

    def attacker(self, role: str, seed: int = 0) -> ModelSpec:
        """The source model whose FGSM examples attack ``role`` black-box (Sec. 3.4.2).

        A for Scratch (which never saw A: the baseline) and FT; A_ci for CommonInit.
        """
        return self.spec("A_ci" if role == "CommonInit" else "A", seed)


#: What each preset means for Zhang et al.'s experiment (the only place that says it). At
#: ``paper`` the sizes of A, B and C come from the task (:data:`PAPER_TASKS`).
PRESETS = PresetTable(
    "Zhang et al. 2020 (notebooks 02-06)",
    {
        "n_a": Knob(1000, 2000, 2000, None, "images of A and of C (paper: the task's)"),
        "n_b": Knob(100, 100, 100, None, "images of B, 10 % for validation (paper: the task's)"),
        "batch_size": Knob(32, 32, 32, 128, "batch size"),
        "epochs_a": Knob(10, 10, 10, 200, "epochs of A and C"),
        "patience_a": Knob(None, None, None, 50, "early-stopping patience of A and C (None: off)"),
        "epochs_b": Knob(20, 60, 60, 300, "epochs of the models of B"),
        "patience_b": Knob(5, 15, 15, 50, "early-stopping patience of the models of B"),
        "optimizer": Knob("adam", "adam", "adam", "sgd", "optimiser (SGD: momentum 0.9, Sec. 4.3)"),
        "lr": Knob(1e-3, 1e-3, 1e-3, 1e-2, "learning rate"),
        "weight_decay": Knob(0.0, 0.0, 0.0, 5e-4, "weight decay"),
        "eps": Knob(
            (2 / 255, 4 / 255, 8 / 255, 16 / 255),
            (2 / 255, 4 / 255, 8 / 255, 16 / 255),
            (2 / 255, 4 / 255, 8 / 255, 16 / 255),
            tuple(paper_eps_to_pixels(e) for e in PAPER_EPS_SIGNED),
            "FGSM budgets in [0, 1] pixels (the paper's, halved)",
        ),
        "eval_n": Knob(300, None, None, None, "test images of B attacked (None: all)"),
        "seeds": Knob((0,), (0,), (0, 1, 2, 3, 4), (0, 1, 2), "training seeds"),
        "frozen_train_mode": Knob(
            False,
            False,
            False,
            True,
            "FT's frozen stages run in train mode: BatchNorm statistics follow B, dropout on "
            "(the authors' code)",
        ),
        "panels_show_every_depth": Knob(
            False,
            False,
            True,
            False,
            "the widgets of 04 and 06 offer every FT depth, not only the claims' depths",
        ),
    },
)


def _train_config(p: dict[str, Any], *, epochs: int, patience: int | None) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=p["batch_size"],
        patience=patience,
        val_fraction=0.1,
        optimizer=p["optimizer"],
        lr=p["lr"],
        weight_decay=p["weight_decay"],
    )


def setup(
    preset: str,
    *,
    task: str = "",
    source: str = "",
    target: str = "",
    common: str = "",
    n_a: int = 0,
    n_b: int = 0,
    eps: Sequence[float] = (),
    seeds: Sequence[int] = (),
    frozen: Sequence[int] = (),
) -> Setup:
    """The experiment of ``preset``; every knob left at 0 / "" / () takes the preset's value.

    - ``smoke`` (the test suite): the default domains, small A and C, one seed, few epochs.
      Numbers are noise.
    - ``quick`` (the default): the standard sizes with seed 0 only, and FT at the claims'
      depths only.
    - ``standard``: the default domains at the size the study chose (``docs/zhang_default.md``):
      n_A = n_C = 2000, n_B = 100, Adam, A 10 epochs, B up to 60 epochs with patience 15;
      seeds 0-4; FT frozen 0 and 4; eps 2, 4, 8, 16/255.
    - ``paper``: a task of :data:`PAPER_TASKS` (``task``, default ``"M->U"``), real datasets,
      the task's network (:data:`PAPER_ARCHS`: DTN, or WideResNet-28-10 for CIFAR->STL), SGD
      lr 0.01 momentum 0.9 weight decay 5e-4 (Sec. 4.3's grid), batch 128, early stopping
      with patience 50; the paper's eps converted to [0, 1] pixels; FT's frozen stages run in
      train mode, as in the authors' code.

    ``eps`` is in [0, 1] pixel units; ``frozen`` the FT depths the claims compare.
    """
    p = PRESETS.values(preset)
    if task and preset != "paper":
        raise TlabError(
            f"task={task!r} picks one of the paper's real tasks; it needs "
            "preset='paper' (the other presets use the embedded domains)"
        )
    arch_options: dict[str, Any] = {}
    arch = "dtn"
    if preset == "paper":
        task = task or "M->U"
        check_choice("task", task, tuple(PAPER_TASKS))
        p_source, p_target, p_common, p_na, p_nb, p_nc = PAPER_TASKS[task]
        arch, arch_options = parse_domain(PAPER_ARCHS[task])
    else:
        p_source, p_target, p_common = DEFAULT_SOURCE, DEFAULT_TARGET, DEFAULT_COMMON
        p_na = p_nc = p["n_a"]
        p_nb = p["n_b"]
    train_a = _train_config(p, epochs=p["epochs_a"], patience=p["patience_a"])
    train_b = _train_config(p, epochs=p["epochs_b"], patience=p["patience_b"])
    return Setup(
        preset=preset,
        source=source or p_source,
        target=target or p_target,
        common=_common_domain(common, p_common),
        arch=arch,
        arch_options=arch_options,
        n_a=n_a or p_na,
        n_b=n_b or p_nb,
        n_c=p_nc,
        train_a=train_a,
        train_b=train_b,
        eps_grid=tuple(float(e) for e in (eps or p["eps"])),
        eval_n=p["eval_n"],
        seeds=tuple(int(s) for s in (seeds or p["seeds"])),
        frozen=tuple(int(k) for k in (frozen or (0, 4))),
        ft_frozen_train_mode=p["frozen_train_mode"],
    )


def _common_domain(given: str, preset_value: str | None) -> str:
    """C: ``given``, or the preset's; ``"none"`` (or a task without C) turns CommonInit off."""
    if given:
        return "" if given == "none" else given
    return preset_value or ""


def role_label(role: str, frozen: int = 0) -> str:
    """``"FT (frozen 4)"`` for FT, the role itself otherwise."""
    return f"FT (frozen {frozen})" if role == "FT" else role
