"""Training: ``fit`` and the transfer strategies the papers compare.

Strategies (Zhang et al. 2020, Sec. 3.2 and Fig. 1; Davchev et al. 2019, Sec. 2; Wang et al.
2018, Sec. 2.1):

- ``scratch``: model B starts from random weights and sees only domain B.
- ``finetune``: model B starts as a copy of a source model A; the first ``frozen`` stages keep
  A's weights (``frozen=0``: everything trains, the source only initialises). The classifier is
  kept when A and B share the label set, otherwise replaced by a fresh one. Zhang's released code
  froze every restored layer; Davchev's "1 / 18 / 56" and Wang's deep / mid / full feature
  extractors are all points on this one ``frozen`` axis.
- ``commoninit``: model B (and, separately, its attacker A) start from a common model C trained
  on a third domain; everything but the classifier is copied, the classifier is new.

Frozen stages never receive a gradient. How they *run* while the rest trains is a training
choice, ``TrainConfig.frozen_train_mode``:

- ``False`` (default): they stay in eval mode, so each computes exactly what it computed in the
  source model (BatchNorm uses the source's running statistics, dropout is off);
- ``True``: they run in train mode like the rest of the network, as in Zhang et al.'s released
  code (its ``train.py`` calls ``model.train()`` on the whole model after freezing the restored
  weights): BatchNorm running statistics of frozen stages move towards domain B's batches and
  their dropout is active, although their weights stay fixed.

A model frozen with ``train_bn=True`` (see ``tlab.core.models.freeze``) also trains the
BatchNorm scale and shift of its frozen stages, and always runs them in train mode: the
authors' WideResNet setting.

Adversarial training (Goodfellow et al. 2015; Madry et al. 2018; Davchev et al. 2019,
Sec. 2.3) follows the order of Davchev et al.'s code for each batch: the clean pass first, in
train mode (it updates the BatchNorm running statistics), then adversarial copies of the same
images crafted against the current weights in eval mode (so with the statistics the clean pass
has just updated), then the adversarial pass in train mode; the loss is
``(L_clean + L_adv) / 2``, each a mean cross-entropy. Crafting with the *true* labels can leak
them into the perturbation (Kurakin et al. 2017, "label leaking"); ``adv_labels="predicted"``
crafts with the model's own predictions instead.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tlab.attacks.gradient import fgsm, pgd
from tlab.checks import check_choice, check_eps, check_positive_int
from tlab.core.device import autocast_for, pick_device, training_dtype
from tlab.core.models import StagedModel, build_model, freeze, replace_head
from tlab.core.tensorsets import DeviceBatches, TensorSet
from tlab.errors import TlabError

STRATEGIES = ("scratch", "finetune", "commoninit")
OPTIMIZERS = ("sgd", "adam")
ADVERSARIAL_MODES = ("none", "fgsm", "pgd")
LABEL_MODES = ("true", "predicted")

#: The version of the adversarial training step, written into the recipe of adversarially trained
#: models only (see :meth:`TrainConfig.as_dict`). Recipes without it were trained by the first
#: step, which crafted the adversarial batch before the clean pass; 2 is Davchev et al.'s order,
#: clean pass first. Bumping it gives every adversarially trained model a new zoo key and leaves
#: the keys of the other models alone.
ADVERSARIAL_STEP_VERSION = 2

#: Fields added after zoo entries were first stored: :meth:`TrainConfig.as_dict` leaves each out
#: while it holds its default, so that recipes written before it existed keep their zoo keys.
_LATER_FIELDS = ("frozen_train_mode",)


@dataclass(frozen=True)
class TrainConfig:
    """Everything about *how* a model is trained (part of a zoo key).

    Defaults follow Zhang et al. 2020, Sec. 4.3 where a CPU allows (batch 128, early stopping on
    validation accuracy); epochs and patience are kept small for a classroom CPU, presets raise
    them. ``adv_eps`` is in [0, 1] pixel units; ``adv_alpha=None`` means ``adv_eps / 4`` with
    ``adv_steps=7`` and no random start, Davchev et al.'s PGD training settings.
    ``frozen_train_mode=True`` runs the frozen stages in train mode (their BatchNorm running
    statistics adapt to the training data, their dropout is active; their weights stay fixed),
    as Zhang et al.'s released code does; the default keeps them in eval mode (module docstring).
    """

    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    patience: int | None = 5
    val_fraction: float = 0.1
    seed: int = 0
    adversarial: str = "none"
    adv_eps: float = 8 / 255
    adv_steps: int = 7
    adv_alpha: float | None = None
    adv_labels: str = "true"
    frozen_train_mode: bool = False

    def __post_init__(self) -> None:
        check_positive_int(self.epochs, name="epochs")
        check_positive_int(self.batch_size, name="batch_size")
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("adversarial training mode", self.adversarial, ADVERSARIAL_MODES)
        check_choice("adversarial label mode", self.adv_labels, LABEL_MODES)
        check_eps(self.adv_eps, name="adv_eps")
        check_positive_int(self.adv_steps, name="adv_steps")
        if self.patience is not None:
            check_positive_int(self.patience, name="patience")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TlabError(f"lr={self.lr!r} must be a positive number, e.g. 1e-3")
        if not 0.0 <= self.val_fraction < 1.0:
            raise TlabError(f"val_fraction={self.val_fraction!r} must be in [0, 1), e.g. 0.1")
        if not isinstance(self.frozen_train_mode, bool):
            raise TlabError(
                f"frozen_train_mode={self.frozen_train_mode!r} must be True (frozen stages run in "
                "train mode, as Zhang et al.'s code) or False (they stay in eval mode)"
            )

    def as_dict(self) -> dict[str, Any]:
        """The recipe that goes into a zoo key (``tlab.core.zoo.ModelSpec.key``).

        Every field, except that fields added later are left out at their default value (so
        older recipes hash as before), and adversarial recipes carry
        ``adv_step_version`` (:data:`ADVERSARIAL_STEP_VERSION`).
        """
        recipe = asdict(self)
        for item in fields(self):
            if item.name in _LATER_FIELDS and recipe[item.name] == item.default:
                del recipe[item.name]
        if self.adversarial != "none":
            recipe["adv_step_version"] = ADVERSARIAL_STEP_VERSION
        return recipe


@dataclass
class FitResult:
    """What ``fit`` measured: one row per epoch, and which epoch's weights were kept."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = float("nan")
    stopped_early: bool = False
    seconds: float = 0.0


#: Devices where PyTorch has fused SGD and Adam kernels (one pass over each parameter per step).
FUSED_DEVICES = ("cpu", "cuda")


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum or Adam over the *trainable* parameters only.

    On CPUs and CUDA GPUs the optimiser is PyTorch's fused implementation: the same update rule
    as the default one (which loops over the parameters in Python), computed in one kernel per
    parameter: 924 instead of 277 Adam steps per second on the DTN on a 2-core Xeon
    (``python benchmarks/run.py``, row "Adam step on the DTN"). The result agrees with the
    loop's up to float rounding, as between two CPUs (``tests/test_train.py``).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TlabError("every parameter is frozen: nothing to train; lower `frozen`")
    fused = all(p.device.type in FUSED_DEVICES and p.dtype == torch.float32 for p in params)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            fused=fused or None,
        )
    return torch.optim.Adam(
        params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None
    )


def _adversarial_batch(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig
) -> torch.Tensor:
    """Adversarial copies of a batch against the current weights (attacks run in eval mode)."""
    labels = y if config.adv_labels == "true" else None
    if config.adversarial == "fgsm":
        return fgsm(model, x, labels, eps=config.adv_eps)
    alpha = config.adv_alpha if config.adv_alpha is not None else config.adv_eps / 4
    return pgd(model, x, labels, eps=config.adv_eps, alpha=alpha, steps=config.adv_steps)


def training_loss(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The loss of one training step: ``(loss, clean logits, adversarial batch or None)``.

    Clean pass first (in train mode, BatchNorm statistics see the clean batch), then, with
    adversarial training, the batch's adversarial copies crafted against the current weights
    and the mean of the clean and the adversarial cross-entropy (Davchev et al. 2019, Sec. 2.3;
    their code's ``run_adv_train_iter``). Differentiable down to the weights.
    """
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    if config.adversarial == "none":
        return loss, logits, None
    x_adv = _adversarial_batch(model, x, y, config)
    return (loss + F.cross_entropy(model(x_adv), y)) / 2, logits, x_adv


def _train_mode(model: StagedModel, config: TrainConfig) -> None:
    """Train mode for an epoch of :func:`fit`; frozen stages too if ``config.frozen_train_mode``.

    ``model.train()`` keeps frozen stages in eval mode (``tlab.core.models.StagedModel.train``);
    Zhang et al.'s released code instead calls ``model.train()`` on a plain PyTorch module, which
    switches every layer, frozen ones included.
    """
    model.train()
    if config.frozen_train_mode:
        model.stages.train()


@torch.no_grad()
def _validate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Validation accuracy and mean cross-entropy, in eval mode."""
    model.eval()
    logits = torch.cat([model(chunk) for chunk in x.split(512)]).float()
    return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))


def _better(row: dict[str, float], best_accuracy: float, best_loss: float) -> bool:
    """Is this epoch better than the best so far: accuracy first, validation loss on ties."""
    if row["val_accuracy"] != best_accuracy:
        return row["val_accuracy"] > best_accuracy
    return row["val_loss"] < best_loss


def fit(
    model: StagedModel,
    train: TensorSet,
    val: TensorSet | None,
    config: TrainConfig,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    description: str = "training",
) -> FitResult:
    """Train ``model`` in place and keep the weights of the best validation epoch.

    Early stopping: training ends after ``config.patience`` epochs without a better validation epoch
    (Zhang et al. 2020, Sec. 4.3 used a patience of 50 epochs on GPUs). "Better" means a higher
    validation accuracy or, at equal accuracy, a lower validation loss: with a small validation set
    the accuracy moves in coarse steps, and without the tie-break the very first epoch that reaches
    a plateau would be kept however much training improved after it. With no validation set the last
    epoch's weights are kept. Frozen stages (see ``tlab.core.models.freeze``) receive no gradient
    and, unless ``config.frozen_train_mode``, stay in eval mode. With adversarial training each step
    runs the clean pass, then crafts, then runs the adversarial pass (module docstring; Davchev et
    al.'s order). The step (adversarial crafting included) runs under autocast
    in ``tlab.core.device.training_dtype(device)``: bfloat16 on GPUs and on CPUs with native
    bfloat16 units unless ``TLAB_PRECISION=float32``.
    """
    device = pick_device(device)
    model.to(device)
    torch.manual_seed(config.seed)
    optimizer = make_optimizer(model, config)
    # float16 (CUDA without bfloat16) needs loss scaling; bfloat16 has float32's range.
    scaler = torch.amp.GradScaler(device.type, enabled=training_dtype(device) == torch.float16)
    batches = DeviceBatches(train, config.batch_size, device=device, shuffle=True, seed=config.seed)
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    if val is not None and len(val):
        val_x, val_y = val.floats(device), val.labels.to(device)

    result = FitResult()
    best_state: dict[str, torch.Tensor] | None = None
    best_val_loss = math.inf
    epochs_without_gain = 0
    start = time.perf_counter()
    bar = tqdm(
        range(1, config.epochs + 1),
        desc=description,
        unit="epoch",
        disable=not progress,
        leave=False,
    )
    for epoch in bar:
        _train_mode(model, config)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        seen = 0
        for x, y in batches:
            with autocast_for(device):
                loss, logits, _ = training_loss(model, x, y, config)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach().float() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        row = {
            "epoch": epoch,
            "train_loss": float(loss_sum) / seen,
            "train_accuracy": int(correct) / seen,
        }
        if val_x is not None and val_y is not None:
            row["val_accuracy"], row["val_loss"] = _validate(model, val_x, val_y)
        result.history.append(row)
        bar.set_postfix({k: round(v, 3) for k, v in row.items() if k != "epoch"})
        if val_x is None:
            continue
        if best_state is None or _better(row, result.best_val_accuracy, best_val_loss):
            result.best_val_accuracy, result.best_epoch = row["val_accuracy"], epoch
            best_val_loss = row["val_loss"]
            best_state = copy.deepcopy(model.state_dict())
            epochs_without_gain = 0
        else:
            epochs_without_gain += 1
            if config.patience is not None and epochs_without_gain >= config.patience:
                result.stopped_early = True
                break
    if best_state is None:
        result.best_epoch = len(result.history)
    else:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def prepare_model(
    strategy: str,
    *,
    arch: str,
    num_classes: int,
    source: StagedModel | None = None,
    frozen: int = 0,
    train_bn: bool = False,
    seed: int = 0,
    arch_options: dict[str, Any] | None = None,
) -> StagedModel:
    """The untrained model B of a strategy (Zhang et al. 2020, Sec. 3.2, Fig. 1).

    ``scratch`` builds ``arch`` at random (seeded). ``finetune`` copies ``source`` (its weights
    are never modified), replaces the classifier if the label count differs, then freezes the
    first ``frozen`` stages. ``commoninit`` copies ``source`` (the common model C) with a new
    classifier; ``frozen`` applies too but is normally 0.
    """
    check_choice("strategy", strategy, STRATEGIES)
    if strategy == "scratch":
        if source is not None:
            raise TlabError(
                "strategy 'scratch' takes no source model; use 'finetune' or 'commoninit'"
            )
        if frozen:
            raise TlabError("strategy 'scratch' has no source weights to freeze; use frozen=0")
        torch.manual_seed(seed)
        return build_model(arch, num_classes, **(arch_options or {}))
    if source is None:
        raise TlabError(
            f"strategy {strategy!r} needs a source model (model A, or C for commoninit)"
        )
    if source.arch != arch:
        raise TlabError(
            f"source model is a {source.arch!r}, not {arch!r}: the strategies copy "
            "weights between models of the same architecture"
        )
    model = copy.deepcopy(source)
    torch.manual_seed(seed)
    if strategy == "commoninit" or model.head.out_features != num_classes:
        model = replace_head(model, num_classes)
    return freeze(model, frozen, train_bn=train_bn)
