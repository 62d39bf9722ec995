"""Davchev et al. (ICML 2019 workshop): how much adversarial robustness survives transfer.

The recipes and the evaluation table shared by notebooks 07 and 08.

The experiment (Davchev et al. 2019, Sec. 2 and Fig. 1): a CIFAR ResNet is trained on a source
domain naturally (``nat``), with FGSM or with PGD adversarial training; it is transferred to a
target domain with one of three strategies and trained there, cleanly or adversarially. Each
network is scored on five columns (their Table 1): clean accuracy, black-box FGSM and PGD
(examples crafted on an independently trained substitute on the target domain, a CIFAR
DenseNet), white-box FGSM and PGD.

Names. A network is ``R_<target>`` when trained on the target only and
``R_<source>-><target> <k>`` when transferred, ``<k>`` being how many layers train on the target
(Davchev's "1", "18", "56" for ResNet56). For a CIFAR ResNet of depth ``6n + 2``:

- ``"1"``: only the new classifier trains (every stage frozen);
- ``"block"``: the last group of ``n`` residual blocks trains with the classifier, ``2n`` conv
  layers plus the classifier (Davchev's "18": 9 blocks x 2 convolutions);
- ``"all"``: every layer trains; the source only initialises (Davchev's "56").

:func:`strategy_layers` gives the numbers for a preset's depth; :func:`frozen_stages` (through
``tlab.models.davchev_frozen_stages``) turns a strategy into a stage count for ``freeze``.

Units. Davchev et al. scale pixels to [-1, 1] and use eps = 0.0625 there; tlab keeps pixels in
[0, 1], where the same perturbation is 0.0625 / 2 = 0.03125 = 8/256 (about 8/255): the
``paper`` preset's eps. The ``standard`` preset uses 24/255 on its MNIST-like digits (see
:func:`setup`).

Accuracy convention of the table. As in Davchev's Table 1, every number is a fraction of *all*
evaluation images: an image counts as correct under an attack only if the network classifies it
correctly both clean and after the attack (``adversarial_accuracy_all`` of
:mod:`tlab.metrics`), so an attack column never exceeds Natural. On images the network gets
right, the true and the predicted label coincide, so this table does not depend on the label an
attack uses. Label leaking (Kurakin et al. 2017; Davchev Sec. 2.3) shows on the images the
network gets *wrong*; :func:`label_leaking` attacks every image, with either label.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from tlab.attacks import fgsm, make_attack, pgd
from tlab.checks import check_choice
from tlab.errors import TlabError
from tlab.evaluate import EvalSet, eps_index
from tlab.metrics import accuracy, adversarial_accuracy, predict
from tlab.models import build_model, davchev_frozen_stages
from tlab.presets import by_preset, check_preset
from tlab.results import cached_result
from tlab.train import TrainConfig
from tlab.zoo import ModelSpec, ZooEntry, get_or_train

MODES = ("nat", "fgsm", "pgd")
STRATEGIES = ("1", "block", "all")
COLUMNS = ("Natural", "BB-FGSM", "BB-PGD", "WB-FGSM", "WB-PGD")
ATTACK_COLUMNS = COLUMNS[1:]
PGD_STEPS = 7            # Davchev et al. 2019, Sec. 2.3 (after Madry et al. 2018)
PGD_STEP_FRACTION = 0.25  # alpha = eps / 4, no random start
PAPER_EPS = 0.0625 / 2   # Davchev's 0.0625 in [-1, 1] pixels = 8/256 in [0, 1] pixels
STANDARD_EPS = 24 / 255  # digits are MNIST-like: 8/255 barely transfers black-box there
#: A small grey letters domain for the quick preset (rendered in seconds, small test split).
QUICK_LETTERS = {"colour": False, "n_train": 520, "n_test": 130}

_STRATEGY_ALIASES = {"1": "head", "block": "last_group", "all": "all"}


@dataclass(frozen=True)
class Setup:
    """The sizes of one preset: domains, subsets, epochs, eps, evaluation, seeds.

    ``eps`` (in [0, 1] pixel units) is used for adversarial training and is the headline column
    of the table; ``eps_grid`` are the budgets every network is evaluated at (for the widgets).
    ``head_lr`` is the learning rate of strategy "1", where only a fresh linear classifier on
    frozen features trains (it needs larger steps than fine-tuning a whole network).
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

    def eval_set(self) -> EvalSet:
        """The fixed target test images every network of the preset is scored on."""
        return EvalSet(self.target_domain, n=self.eval_n, seed=0,
                       domain_params=dict(self.target_params))

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def setup(preset: str) -> Setup:
    """The sizes of ``preset`` ("quick", "standard" or "paper").

    - ``paper``: CIFAR100 -> CIFAR10, ResNet56, DenseNet-BC substitute, batch 100 (100 clean +
      100 adversarial images per step), eps 0.0625 in [-1, 1] = 8/256 in [0, 1] (Sec. 2.3).
      The paper states neither epochs nor optimiser; SGD with momentum and weight decay, as
      usual for CIFAR ResNets, for 100 epochs.
    - ``standard``: Fashion-MNIST (60k clothes images, a larger general domain with another
      label set) -> scikit-learn's handwritten digits, ResNet-8, the small DenseNet-BC as the
      substitute; subsets and epochs sized for a shared 2-core CPU; three seeds. eps = 24/255:
      the digits are MNIST-like, and at 8/255 the substitute's examples hardly transfer
      (a naturally trained ResNet-8 keeps ~87% of its ~88% clean accuracy under black-box FGSM,
      measured), so the black-box columns could not tell the networks apart.
    - ``quick``: small grey letters -> 100 digits, one epoch, one seed, one eps (for tests; the
      numbers are noise).
    """
    check_preset(preset)
    eps = by_preset(preset, quick=STANDARD_EPS, standard=STANDARD_EPS, paper=PAPER_EPS)
    return Setup(
        preset=preset,
        source_domain=by_preset(preset, quick="letters", standard="fashion_mnist",
                                paper="cifar100"),
        source_params=by_preset(preset, quick=QUICK_LETTERS, standard={}, paper={}),
        source_n=by_preset(preset, quick=260, standard=600, paper=None),
        source_epochs=by_preset(preset, quick=1, standard=4, paper=100),
        target_domain=by_preset(preset, quick="digits", standard="digits", paper="cifar10"),
        target_params={},
        target_n=by_preset(preset, quick=100, standard=600, paper=None),
        target_epochs=by_preset(preset, quick=1, standard=3, paper=100),
        depth=by_preset(preset, quick=8, standard=8, paper=56),
        substitute_arch=by_preset(preset, quick="densenet-small", standard="densenet-small",
                                  paper="densenet"),
        substitute_epochs=by_preset(preset, quick=1, standard=3, paper=100),
        batch_size=by_preset(preset, quick=32, standard=32, paper=100),
        optimizer=by_preset(preset, quick="adam", standard="adam", paper="sgd"),
        lr=by_preset(preset, quick=2e-3, standard=2e-3, paper=0.05),
        head_lr=by_preset(preset, quick=1e-2, standard=1e-2, paper=0.05),
        weight_decay=by_preset(preset, quick=0.0, standard=0.0, paper=5e-4),
        eps=eps,
        eps_grid=by_preset(preset, quick=(eps,), standard=(8 / 255, eps, 40 / 255),
                           paper=(PAPER_EPS / 2, eps, 2 * PAPER_EPS)),
        eval_n=by_preset(preset, quick=40, standard=150, paper=None),
        seeds=by_preset(preset, quick=(0,), standard=(0, 1, 2), paper=(0, 1, 2)),
    )


# ------------------------------------------------------------------------------- networks


@dataclass(frozen=True)
class Network:
    """One network of Davchev's Fig. 1.

    ``target``: how it trains on the target domain (``nat``, ``fgsm`` or ``pgd``).
    ``source``: how its source was trained, or ``""`` for no transfer (trained on the target
    only). ``strategy``: ``"1"``, ``"block"`` or ``"all"`` (see the module docstring); empty
    without transfer. ``fgsm_labels``: the labels FGSM adversarial training crafts with --
    ``"predicted"`` avoids label leaking, as Davchev et al. describe (Sec. 2.3); ``"true"`` is
    Kurakin et al.'s leaking setting. It applies to every FGSM-trained model in the chain.
    """

    target: str
    source: str = ""
    strategy: str = ""
    fgsm_labels: str = "predicted"

    def __post_init__(self) -> None:
        check_choice("target training", self.target, MODES)
        check_choice("FGSM training labels", self.fgsm_labels, ("true", "predicted"))
        if self.source:
            check_choice("source training", self.source, MODES)
            check_choice("transfer strategy", self.strategy, STRATEGIES)
        elif self.strategy:
            raise TlabError(f"strategy={self.strategy!r} needs a source (source='nat', 'fgsm' "
                            "or 'pgd'); a network without source trains on the target only")

    def label(self, depth: int) -> str:
        """Davchev's name, e.g. ``R_pgd->nat 18`` (ResNet56) or ``R_fgsm`` (no transfer)."""
        name = f"R_{self.source}->{self.target}" if self.source else f"R_{self.target}"
        if self.source:
            name += f" {strategy_layers(depth)[self.strategy]}"
        uses_fgsm = "fgsm" in (self.source, self.target)
        if uses_fgsm and self.fgsm_labels == "true":
            name += " (true labels)"
        return name


def strategy_layers(depth: int) -> dict[str, str]:
    """Davchev's layer-count name of each strategy for a CIFAR ResNet of ``depth``.

    ``{"1": "1", "block": "18", "all": "56"}`` for ResNet56; ``"2"`` and ``"8"`` for ResNet-8.
    """
    build_model("resnet", 2, depth=depth)  # a TlabError naming valid depths if not 6n + 2
    n = (depth - 2) // 6
    return {"1": "1", "block": str(2 * n), "all": str(depth)}


def frozen_stages(depth: int, strategy: str) -> int:
    """How many stages of a ResNet-``depth`` a strategy freezes (for ``tlab.models.freeze``)."""
    check_choice("transfer strategy", strategy, STRATEGIES)
    return davchev_frozen_stages(build_model("resnet", 2, depth=depth), _STRATEGY_ALIASES[strategy])


def _config(s: Setup, mode: str, seed: int, epochs: int, fgsm_labels: str, *,
            lr: float | None = None) -> TrainConfig:
    return TrainConfig(
        epochs=epochs, batch_size=s.batch_size, optimizer=s.optimizer, lr=lr or s.lr,
        weight_decay=s.weight_decay, patience=None, val_fraction=0.0, seed=seed,
        adversarial="none" if mode == "nat" else mode, adv_eps=s.eps, adv_steps=PGD_STEPS,
        adv_alpha=None, adv_labels=fgsm_labels if mode == "fgsm" else "true")


def source_spec(s: Setup, mode: str, seed: int = 0, *, fgsm_labels: str = "predicted") -> ModelSpec:
    """The source network on the source domain, trained ``nat``, ``fgsm`` or ``pgd``.

    PGD training crafts with the true labels (Madry et al. 2018); FGSM training with
    ``fgsm_labels``. Adversarial training uses ``(L_clean + L_adv) / 2`` (tlab.train).
    """
    check_choice("source training", mode, MODES)
    return ModelSpec(domain=s.source_domain, domain_params=dict(s.source_params), arch="resnet",
                     arch_options={"depth": s.depth}, n=s.source_n,
                     train=_config(s, mode, seed, s.source_epochs, fgsm_labels))


def network_spec(s: Setup, network: Network, seed: int = 0) -> ModelSpec:
    """The zoo spec of ``network`` (its source, if any, trained with the same ``seed``)."""
    lr = s.head_lr if network.strategy == "1" else s.lr
    common: dict[str, Any] = dict(
        domain=s.target_domain, domain_params=dict(s.target_params), arch="resnet",
        arch_options={"depth": s.depth}, n=s.target_n,
        train=_config(s, network.target, seed, s.target_epochs, network.fgsm_labels, lr=lr))
    if not network.source:
        return ModelSpec(**common)
    source = source_spec(s, network.source, seed, fgsm_labels=network.fgsm_labels)
    return ModelSpec(**common, strategy="finetune", source=source,
                     frozen=frozen_stages(s.depth, network.strategy))


def substitute_spec(s: Setup, seed: int = 0) -> ModelSpec:
    """The black-box attacker's own model: a CIFAR DenseNet trained naturally on the target.

    Davchev et al. craft every black-box example on one naturally trained DenseNet (Table 1);
    the attacker never touches the networks it attacks. One substitute serves all seeds, so
    seeds vary the defenders, not the attack.
    """
    return ModelSpec(domain=s.target_domain, domain_params=dict(s.target_params),
                     arch=s.substitute_arch, n=s.target_n,
                     train=_config(s, "nat", seed, s.substitute_epochs, "predicted"))


def transfer_networks(target: str = "nat", sources: Sequence[str] = MODES) -> list[Network]:
    """``R_<source>-><target> k`` for every source mode and strategy, strategy-major order."""
    return [Network(target, source, strategy) for strategy in STRATEGIES for source in sources]


def baseline_networks() -> list[Network]:
    """The networks trained on the target only: R_nat, R_fgsm, R_fgsm (true labels), R_pgd."""
    return [Network("nat"), Network("fgsm"), Network("fgsm", fgsm_labels="true"), Network("pgd")]


# ----------------------------------------------------------------------------- evaluation


def _attack(name: str, eps: float):
    if name == "fgsm":
        return make_attack("fgsm", eps=eps)
    return make_attack("pgd", eps=eps, alpha=max(PGD_STEP_FRACTION * eps, 1e-6), steps=PGD_STEPS)


_BLACKBOX: dict[tuple[str, str, str, float], torch.Tensor] = {}


def blackbox_examples(substitute: ZooEntry, data: EvalSet, attack: str, eps: float
                      ) -> torch.Tensor:
    """Adversarial versions of every evaluation image, crafted on the substitute (true labels).

    FGSM and PGD without random start are deterministic per image (the substitute runs in eval
    mode), so crafting the whole set once gives every network the examples
    ``tlab.metrics.blackbox_accuracy`` would craft for it; they are kept for this session.
    """
    key = (substitute.key, json.dumps(data.recipe(), sort_keys=True), attack, float(eps))
    if key not in _BLACKBOX:
        device = next(substitute.model.parameters()).device
        x, y = data.tensors(device)
        _BLACKBOX[key] = _attack(attack, eps)(substitute.model, x, y)
    return _BLACKBOX[key]


def evaluate(spec: ModelSpec, substitute: ModelSpec, s: Setup,
             eps_list: Sequence[float] | None = None, *,
             device: torch.device | str | None = None, progress: bool = False) -> dict[str, Any]:
    """The five columns of Davchev's Table 1 for one network at each eps of ``eps_list``.

    ``spec`` is the network, ``substitute`` the black-box attacker's model; ``eps_list``
    defaults to the preset's ``eps_grid``. Cached by the two zoo keys and the settings, so a
    warm call reads one small file and loads no model; on a miss the models come from the zoo
    (trained if needed). Returns ``{"eps": [...], "Natural": a, "BB-FGSM": [...],
    "BB-PGD": [...], "WB-FGSM": [...], "WB-PGD": [...]}``, accuracies as fractions of all
    evaluation images (see the module docstring).
    """
    data = s.eval_set()
    eps_list = [float(e) for e in (s.eps_grid if eps_list is None else eps_list)]
    recipe = {"network": spec.key(), "substitute": substitute.key(), "data": data.recipe(),
              "eps": eps_list, "pgd_steps": PGD_STEPS, "alpha_fraction": PGD_STEP_FRACTION}

    def compute() -> dict[str, Any]:
        model = get_or_train(spec, device=device, progress=progress).model
        attacker = get_or_train(substitute, device=device, progress=progress)
        x, y = data.tensors(next(model.parameters()).device)
        clean_ok = predict(model, x) == y
        row: dict[str, Any] = {"eps": eps_list, "Natural": clean_ok.float().mean().item()}
        for attack in ("fgsm", "pgd"):
            bb, wb = [], []
            for eps in eps_list:
                x_bb = blackbox_examples(attacker, data, attack, eps).to(x.device)
                bb.append((clean_ok & (predict(model, x_bb) == y)).float().mean().item())
                wb.append(adversarial_accuracy(model, x, y, _attack(attack, eps))
                          .adversarial_accuracy_all)
            row[f"BB-{attack.upper()}"], row[f"WB-{attack.upper()}"] = bb, wb
        return row

    return cached_result("davchev-row", recipe, compute)


def label_leaking(spec: ModelSpec, s: Setup, *, device: torch.device | str | None = None,
                  progress: bool = False) -> dict[str, float]:
    """Clean and white-box accuracy on *every* evaluation image, true vs predicted labels.

    Kurakin et al. (2017; Davchev Sec. 2.3): a network FGSM-trained with true labels can score
    higher on FGSM examples made with the true label than on the clean images, because the
    perturbation carries the label. With the network's own prediction as the label the effect
    disappears. Cached; accuracies at the preset's ``eps`` (PGD with true labels for reference).
    """
    data = s.eval_set()
    recipe = {"network": spec.key(), "data": data.recipe(), "eps": s.eps,
              "pgd_steps": PGD_STEPS, "alpha_fraction": PGD_STEP_FRACTION}

    def compute() -> dict[str, float]:
        model = get_or_train(spec, device=device, progress=progress).model
        x, y = data.tensors(next(model.parameters()).device)
        step = PGD_STEP_FRACTION * s.eps
        return {"clean": accuracy(model, x, y),
                "fgsm_true_labels": accuracy(model, fgsm(model, x, y, eps=s.eps), y),
                "fgsm_predicted_labels": accuracy(model, fgsm(model, x, None, eps=s.eps), y),
                "pgd_true_labels": accuracy(model, pgd(model, x, y, eps=s.eps, alpha=step,
                                                       steps=PGD_STEPS), y)}

    return cached_result("davchev-label-leaking", recipe, compute)


@dataclass(frozen=True)
class Lab:
    """One preset's networks: zoo entries and cached table rows, trained/evaluated on demand."""

    setup: Setup
    device: torch.device | str | None = None
    progress: bool = False

    def source(self, mode: str, seed: int = 0, *, fgsm_labels: str = "predicted") -> ZooEntry:
        """The source network trained ``mode`` on the source domain."""
        return get_or_train(source_spec(self.setup, mode, seed, fgsm_labels=fgsm_labels),
                            device=self.device, progress=self.progress)

    def substitute(self) -> ZooEntry:
        """The black-box attacker's DenseNet on the target domain."""
        return get_or_train(substitute_spec(self.setup), device=self.device,
                            progress=self.progress)

    def entry(self, network: Network, seed: int = 0) -> ZooEntry:
        """The trained ``network`` (from the zoo, or trained now)."""
        return get_or_train(network_spec(self.setup, network, seed), device=self.device,
                            progress=self.progress)

    def row(self, network: Network, seed: int = 0) -> dict[str, Any]:
        """:func:`evaluate` for ``network`` trained with ``seed``.

        The first seed of the preset is evaluated at every eps of ``eps_grid`` (the widgets
        read those); other seeds only at the training eps, which is all the claims need.
        """
        s = self.setup
        grid = s.eps_grid if seed == s.seeds[0] else (s.eps,)
        return evaluate(network_spec(s, network, seed), substitute_spec(s), s, grid,
                        device=self.device, progress=self.progress)

    def table(self, networks: Iterable[Network], seed: int = 0, eps: float | None = None
              ) -> pd.DataFrame:
        """Davchev's Table 1 for ``networks`` at ``eps`` (default: the training eps), in [0, 1]."""
        return table({n.label(self.setup.depth): self.row(n, seed) for n in networks},
                     self.setup.eps if eps is None else eps)

    def leaking(self, network: Network, seed: int = 0) -> dict[str, float]:
        """:func:`label_leaking` for ``network`` trained with ``seed``."""
        return label_leaking(network_spec(self.setup, network, seed), self.setup,
                             device=self.device, progress=self.progress)


def table(rows: dict[str, dict[str, Any]], eps: float) -> pd.DataFrame:
    """Rows from :func:`evaluate` as a table at ``eps`` (index: network, columns: COLUMNS)."""
    out = {}
    for name, row in rows.items():
        index = eps_index(row["eps"], eps)
        out[name] = {"Natural": row["Natural"],
                     **{column: row[column][index] for column in ATTACK_COLUMNS}}
    return pd.DataFrame.from_dict(out, orient="index", columns=list(COLUMNS))
