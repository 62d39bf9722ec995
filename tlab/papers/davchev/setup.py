"""Davchev et al. (ICML 2019 workshop): how much adversarial robustness survives transfer.

The setup of each preset and the networks of notebooks 07 and 08, as zoo specs.

The experiment (Davchev et al. 2019, Sec. 2 and Fig. 1): a CIFAR ResNet is trained on a source
domain naturally (``nat``), with FGSM or with PGD adversarial training; it is transferred to a
target domain, where one layer, the last block or every layer trains again, cleanly or
adversarially. Each network is scored on five columns (their Table 1): clean accuracy,
black-box FGSM and PGD (examples crafted on an independently trained substitute on the target
domain, a CIFAR DenseNet), white-box FGSM and PGD.

Names. A network is ``R_<target>`` when trained on the target only and
``R_<source>-><target> <k>`` when transferred, ``<k>`` being how many layers train on the target
(Davchev's "1", "18", "56" for ResNet56). The lab calls this choice ``retrained`` (Zhang et
al.'s scratch / fine-tune / CommonInit are ``strategy`` in :mod:`tlab.core.train`). For a CIFAR
ResNet of depth ``6n + 2``:

- ``"1"``: only the new classifier trains (every stage frozen);
- ``"block"``: the last group of ``n`` residual blocks trains with the classifier, ``2n`` conv
  layers plus the classifier (Davchev's "18": 9 blocks x 2 convolutions);
- ``"all"``: every layer trains; the source only initialises (Davchev's "56").

:func:`retrained_layers` gives the numbers for a preset's depth; :func:`frozen_stages` turns a
choice into a stage count for :func:`tlab.core.models.freeze`.

Frozen stages. Davchev et al.'s transfer code freezes layers only by turning off their gradients
(``utils/helper_functions.py``, ``freeze_layers_resnet``) and trains the whole network in train
mode (``utils/experiment_builder.py``, ``run_adv_train_iter``), so the BatchNorm statistics of
frozen stages follow the target's batches. The ``paper`` preset does the same
(``TrainConfig.frozen_train_mode``, for transfers that freeze something); the other presets
keep frozen stages in eval mode, exactly the source's computation.

Units. Davchev et al. scale pixels to [-1, 1] and use eps = 0.0625 there; tlab keeps pixels in
[0, 1], where the same perturbation is 0.0625 / 2 = 0.03125 = 8/256 (about 8/255): the
``paper`` preset's eps. The ``standard`` preset uses 24/255 on its MNIST-like digits (see
:func:`setup`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tlab.checks import check_choice
from tlab.core.models import build_model
from tlab.core.train import TrainConfig
from tlab.core.zoo import ModelSpec
from tlab.errors import TlabError
from tlab.papers.evaluate import EvalSet
from tlab.presets import Knob, PresetTable, check_preset

MODES = ("nat", "fgsm", "pgd")
RETRAINED = ("1", "block", "all")
COLUMNS = ("Natural", "BB-FGSM", "BB-PGD", "WB-FGSM", "WB-PGD")
ATTACK_COLUMNS = COLUMNS[1:]
#: The stricter view of each attack column: the image is correct both clean and attacked
#: (``tlab.papers.davchev.lab`` explains both conventions; Table 1 uses ATTACK_COLUMNS).
ALSO_CLEAN_COLUMNS = tuple(f"{column} (also clean)" for column in ATTACK_COLUMNS)
PGD_STEPS = 7  # Davchev et al. 2019, Sec. 2.3 (after Madry et al. 2018)
PGD_STEP_FRACTION = 0.25  # alpha = eps / 4, no random start
PAPER_EPS = 0.0625 / 2  # Davchev's 0.0625 in [-1, 1] pixels = 8/256 in [0, 1] pixels
STANDARD_EPS = 24 / 255  # digits are MNIST-like, where budgets are larger than on CIFAR
#: A small grey letters domain for the smoke preset (rendered in seconds, small test split).
SMOKE_LETTERS = {"colour": False, "n_train": 520, "n_test": 130}


#: What each preset means for Davchev et al.'s experiment (the only place that says it).
PRESETS = PresetTable(
    "Davchev et al. 2019 (notebooks 07, 08)",
    {
        "source_domain": Knob(
            "letters", "fashion_mnist", "fashion_mnist", "cifar100", "source domain"
        ),
        "source_params": Knob(SMOKE_LETTERS, {}, {}, {}, "options of the source domain"),
        "source_n": Knob(260, 600, 600, None, "source training images (None: all)"),
        "source_epochs": Knob(1, 4, 4, 100, "epochs on the source"),
        "target_domain": Knob("digits", "digits", "digits", "cifar10", "target domain"),
        "target_n": Knob(100, 600, 600, None, "target training images (None: all)"),
        "target_epochs": Knob(1, 3, 3, 100, "epochs on the target"),
        "depth": Knob(8, 8, 8, 56, "depth of the CIFAR ResNet (6n + 2)"),
        "substitute_arch": Knob(
            "densenet-small",
            "densenet-small",
            "densenet-small",
            "densenet",
            "the black-box attacker's substitute, trained on the target",
        ),
        "substitute_epochs": Knob(1, 3, 3, 100, "epochs of the substitute"),
        "batch_size": Knob(32, 32, 32, 100, "batch size (clean + as many adversarial images)"),
        "optimizer": Knob("adam", "adam", "adam", "sgd", "optimiser"),
        "lr": Knob(2e-3, 2e-3, 2e-3, 0.05, "learning rate"),
        "head_lr": Knob(1e-2, 1e-2, 1e-2, 0.05, "learning rate when only the classifier retrains"),
        "weight_decay": Knob(0.0, 0.0, 0.0, 5e-4, "weight decay"),
        "eps": Knob(
            STANDARD_EPS,
            STANDARD_EPS,
            STANDARD_EPS,
            PAPER_EPS,
            "adversarial training budget and the table's eps ([0, 1] pixels)",
        ),
        "eps_grid": Knob(
            (STANDARD_EPS,),
            (8 / 255, STANDARD_EPS, 40 / 255),
            (8 / 255, STANDARD_EPS, 40 / 255),
            (PAPER_EPS / 2, PAPER_EPS, 2 * PAPER_EPS),
            "budgets the widgets offer",
        ),
        "eval_n": Knob(40, 150, 150, None, "target test images scored (None: all)"),
        "seeds": Knob((0,), (0,), (0, 1, 2, 3, 4), (0, 1, 2), "training seeds"),
        "frozen_train_mode": Knob(
            False,
            False,
            False,
            True,
            "a transfer's frozen stages run in train mode: BatchNorm statistics follow the "
            "target (the authors' transfer code)",
        ),
    },
)


@dataclass(frozen=True)
class Setup:
    """The sizes of one preset: domains, subsets, epochs, eps, evaluation, seeds.

    ``eps`` (in [0, 1] pixel units) is used for adversarial training and is the headline column
    of the table; ``eps_grid`` are the budgets every network is evaluated at (for the widgets).
    ``head_lr`` is the learning rate of strategy "1", where only a fresh linear classifier on
    frozen features trains (it needs larger steps than fine-tuning a whole network).
    ``frozen_train_mode``: transfers with frozen stages run them in train mode, as the authors'
    code (module docstring; ``tlab.core.train.TrainConfig.frozen_train_mode``).
    """

    preset: str
    source_domain: str
    source_params: dict[str, Any]
    source_n: int | None
    source_epochs: int
    target_domain: str
    target_params: dict[str, Any]
    target_n: int | None
    target_epochs: int
    depth: int
    substitute_arch: str
    substitute_epochs: int
    batch_size: int
    optimizer: str
    lr: float
    head_lr: float
    weight_decay: float
    eps: float
    eps_grid: tuple[float, ...]
    eval_n: int | None
    seeds: tuple[int, ...]
    frozen_train_mode: bool

    def eval_set(self) -> EvalSet:
        """The fixed target test images every network of the preset is scored on."""
        return EvalSet(
            self.target_domain, n=self.eval_n, seed=0, domain_params=dict(self.target_params)
        )

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def spec(self, role: Network | str, seed: int = 0) -> ModelSpec:
        """The zoo spec of ``role`` for ``seed``: a :class:`Network` (its source, if any, trained
        with the same seed) or ``"substitute"``, the black-box attacker's model."""
        if isinstance(role, Network):
            return network_spec(self, role, seed)
        check_choice("role (or a davchev.Network)", role, ("substitute",))
        return substitute_spec(self, seed)


def setup(preset: str) -> Setup:
    """The sizes of ``preset`` (:data:`tlab.presets.PRESETS`).

    - ``paper``: CIFAR100 -> CIFAR10, ResNet56, DenseNet-BC substitute, batch 100 (100 clean +
      100 adversarial images per step), eps 0.0625 in [-1, 1] = 8/256 in [0, 1] (Sec. 2.3).
      The paper states neither epochs nor optimiser; SGD with momentum and weight decay, as
      usual for CIFAR ResNets, for 100 epochs. Frozen stages of a transfer run in train mode,
      as in the authors' code (module docstring).
    - ``standard``: Fashion-MNIST (60k clothes images, a larger general domain with another
      label set) -> scikit-learn's handwritten digits, ResNet-8, the small DenseNet-BC as the
      substitute; subsets and epochs sized for a shared 2-core CPU; five seeds. eps = 24/255:
      the digits are MNIST-like, smooth strokes on a flat background, where the usual budgets
      are larger than on CIFAR (Madry et al. 2018 train MNIST models at 0.3); every network is
      also evaluated at 8/255 and 40/255 (``eps_grid``).
    - ``quick``: the standard sizes with one seed (seed 0).
    - ``smoke``: small grey letters -> 100 digits, one epoch, one seed, one eps (for tests; the
      numbers are noise).
    """
    return Setup(preset=check_preset(preset), target_params={}, **PRESETS.values(preset))


# ------------------------------------------------------------------------------- networks


@dataclass(frozen=True)
class Network:
    """One network of Davchev's Fig. 1.

    ``target``: how it trains on the target domain (``nat``, ``fgsm`` or ``pgd``).
    ``source``: how its source was trained, or ``""`` for no transfer (trained on the target
    only). ``retrained``: ``"1"``, ``"block"`` or ``"all"`` (see the module docstring); empty
    without transfer. ``fgsm_labels``: the labels FGSM adversarial training crafts with --
    ``"predicted"`` avoids label leaking, as Davchev et al. describe (Sec. 2.3); ``"true"`` is
    Kurakin et al.'s leaking setting, the paper's ``R_fgsm_no_ll`` (Table 1). It applies to
    every FGSM-trained model in the chain. PGD training always crafts with the true labels
    (Madry et al. 2018). The authors' released code crafts with the true labels for both
    (``utils/experiment_builder.py``, ``run_adv_train_iter``); the lab follows the paper's text.
    """

    target: str
    source: str = ""
    retrained: str = ""
    fgsm_labels: str = "predicted"

    def __post_init__(self) -> None:
        check_choice("target training", self.target, MODES)
        check_choice("FGSM training labels", self.fgsm_labels, ("true", "predicted"))
        if self.source:
            check_choice("source training", self.source, MODES)
            check_choice("layers retrained", self.retrained, RETRAINED)
        elif self.retrained:
            raise TlabError(
                f"retrained={self.retrained!r} needs a source (source='nat', 'fgsm' "
                "or 'pgd'); a network without source trains on the target only"
            )

    def label(self, depth: int) -> str:
        """Davchev's name, e.g. ``R_pgd->nat 18`` (ResNet56) or ``R_fgsm`` (no transfer)."""
        name = f"R_{self.source}->{self.target}" if self.source else f"R_{self.target}"
        if self.source:
            name += f" {retrained_layers(depth)[self.retrained]}"
        uses_fgsm = "fgsm" in (self.source, self.target)
        if uses_fgsm and self.fgsm_labels == "true":
            name += " (true labels)"
        return name


def retrained_layers(depth: int) -> dict[str, str]:
    """Davchev's layer-count name of each ``retrained`` choice for a CIFAR ResNet of ``depth``.

    ``{"1": "1", "block": "18", "all": "56"}`` for ResNet56; ``"2"`` and ``"8"`` for ResNet-8.
    """
    build_model("resnet", 2, depth=depth)  # a TlabError naming valid depths if not 6n + 2
    n = (depth - 2) // 6
    return {"1": "1", "block": str(2 * n), "all": str(depth)}


def strategy_label(depth: int, retrained: str) -> str:
    """A control's label for a ``retrained`` choice: Davchev's layer count, and the choice's
    name where it differs (``"1"``, ``"2 (block)"``, ``"8 (all)"`` for ResNet-8)."""
    layers = retrained_layers(depth)[retrained]
    return layers if layers == retrained else f"{layers} ({retrained})"


def frozen_stages(depth: int, retrained: str) -> int:
    """How many stages of a CIFAR ResNet-``depth`` stay frozen when ``retrained`` trains again
    (for :func:`tlab.core.models.freeze`; Davchev et al. 2019, Sec. 3).

    A ResNet of depth ``6n + 2`` has ``1 + 3n`` stages (the stem, then three groups of ``n``
    two-convolution blocks): ``"1"`` freezes them all (only the new classifier trains),
    ``"block"`` all but the last group's ``n`` blocks, ``"all"`` none.
    """
    check_choice("layers retrained", retrained, RETRAINED)
    stages = build_model("resnet", 2, depth=depth).num_stages  # refuses depths that are not 6n+2
    n = (depth - 2) // 6
    return {"1": stages, "block": stages - n, "all": 0}[retrained]


def _config(
    s: Setup, mode: str, seed: int, epochs: int, fgsm_labels: str, *, lr: float | None = None
) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=s.batch_size,
        optimizer=s.optimizer,
        lr=lr or s.lr,
        weight_decay=s.weight_decay,
        patience=None,
        val_fraction=0.0,
        seed=seed,
        adversarial="none" if mode == "nat" else mode,
        adv_eps=s.eps,
        adv_steps=PGD_STEPS,
        adv_alpha=None,
        adv_labels=fgsm_labels if mode == "fgsm" else "true",
    )


def source_spec(s: Setup, mode: str, seed: int = 0, *, fgsm_labels: str = "predicted") -> ModelSpec:
    """The source network on the source domain, trained ``nat``, ``fgsm`` or ``pgd``.

    PGD training crafts with the true labels (Madry et al. 2018); FGSM training with
    ``fgsm_labels``. Adversarial training uses ``(L_clean + L_adv) / 2`` (tlab.core.train).
    """
    check_choice("source training", mode, MODES)
    return ModelSpec(
        domain=s.source_domain,
        domain_params=dict(s.source_params),
        arch="resnet",
        arch_options={"depth": s.depth},
        n=s.source_n,
        train=_config(s, mode, seed, s.source_epochs, fgsm_labels),
    )


def network_spec(s: Setup, network: Network, seed: int = 0) -> ModelSpec:
    """The zoo spec of ``network`` (its source, if any, trained with the same ``seed``); a
    transfer's frozen stages run in train mode if ``s.frozen_train_mode``."""
    lr = s.head_lr if network.retrained == "1" else s.lr
    train = _config(s, network.target, seed, s.target_epochs, network.fgsm_labels, lr=lr)
    common: dict[str, Any] = dict(
        domain=s.target_domain,
        domain_params=dict(s.target_params),
        arch="resnet",
        arch_options={"depth": s.depth},
        n=s.target_n,
    )
    if not network.source:
        return ModelSpec(**common, train=train)
    frozen = frozen_stages(s.depth, network.retrained)
    return ModelSpec(
        **common,
        # nothing frozen ("all"): the mode of frozen stages is moot, the recipe stays as it was
        train=dataclasses.replace(train, frozen_train_mode=s.frozen_train_mode and frozen > 0),
        strategy="finetune",
        source=source_spec(s, network.source, seed, fgsm_labels=network.fgsm_labels),
        frozen=frozen,
    )


def substitute_spec(s: Setup, seed: int = 0) -> ModelSpec:
    """The black-box attacker's own model: a CIFAR DenseNet trained naturally on the target.

    Davchev et al. craft every black-box example on one naturally trained DenseNet (Table 1);
    the attacker never touches the networks it attacks. One substitute serves all seeds, so
    seeds vary the defenders, not the attack.
    """
    return ModelSpec(
        domain=s.target_domain,
        domain_params=dict(s.target_params),
        arch=s.substitute_arch,
        n=s.target_n,
        train=_config(s, "nat", seed, s.substitute_epochs, "predicted"),
    )


def transfer_networks(target: str = "nat", sources: Sequence[str] = MODES) -> list[Network]:
    """``R_<source>-><target> k`` for every source mode and retrained part, retrained-major."""
    return [Network(target, source, retrained) for retrained in RETRAINED for source in sources]


def baseline_networks() -> list[Network]:
    """The networks trained on the target only: R_nat, R_fgsm, R_fgsm (true labels), R_pgd."""
    return [Network("nat"), Network("fgsm"), Network("fgsm", fgsm_labels="true"), Network("pgd")]


def defence_networks(defence: str) -> list[Network]:
    """The networks of one table of Davchev's Fig. 5 (Sec. 3.2): ``R_<defence>`` trained on the
    target only, then per strategy (``"1"``, ``"block"``, ``"all"``) the defence on the source
    only (``R_<defence>->nat``), on the target only (``R_nat-><defence>``) and on both."""
    check_choice("defence", defence, MODES[1:])
    pairs = ((defence, "nat"), ("nat", defence), (defence, defence))
    return [Network(defence)] + [
        Network(target, source, retrained) for retrained in RETRAINED for source, target in pairs
    ]


# ------------------------------------------------------------------------------ the paper
