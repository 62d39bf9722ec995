"""Models with one interface: an ordered list of stages, then a linear head.

Every tlab network is a :class:`StagedModel`. Pixels enter in [0, 1]; the model normalises them
itself (buffers ``mean``/``std``), runs its stages in order and applies ``head`` to the last
stage's ``(N, D)`` output. "Layer K" means "the output of stage K" everywhere in the lab, so one
integer describes all three papers' settings:

- Zhang et al. (2020, Sec. 3.1) fine-tune a copy of the source model; their released code keeps
  the restored layers frozen, i.e. ``freeze(model, k)`` with a large ``k`` (and trainable
  BatchNorm for WideResNet: ``train_bn=True``), but trains with the whole network in train mode
  (``tlab.core.train.TrainConfig.frozen_train_mode``).
- Davchev et al. (2019, Sec. 3) unfreeze "1", "18" or "56" layers of ResNet56; see
  :func:`tlab.papers.davchev.frozen_stages`.
- Wang et al. (2018, Sec. 3) copy the teacher's first K layers into the student and freeze them:
  deep-layer feature extractor ``K = num_stages`` (Wang's N-1: all but the classifier),
  mid-layer ``K < num_stages``, full fine-tuning ``K = 0``.

Build models by name with :func:`build_model`; :func:`list_models` lists the names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tlab.checks import check_positive_int, check_stage
from tlab.core.architectures import (
    cifar_resnet,
    densenet,
    dtn,
    torchvision_models,
    vgg,
    wide_resnet,
)
from tlab.core.architectures.parts import Parts
from tlab.errors import TlabError, UnknownNameError

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class StagedModel(nn.Module):
    """``head(stage_n(... stage_1((x - mean) / std)))`` with access to every stage's output.

    Attributes:
        stages: the blocks in order; the last one ends with pooling/flattening -> ``(N, D)``.
        head: the classifier ``nn.Linear(D, num_classes)``.
        stage_names: one readable name per stage (``"stem"``, ``"group3.block9"``, ...).
        arch: the name the model was built under (see :func:`list_models`).
        options: every option of that architecture, with the value used (defaults included).
        frozen_stages: how many leading stages :func:`freeze` froze (0 = none).
        frozen_bn_trains: the ``train_bn`` flag of the last :func:`freeze` call.
    """

    # buffers, registered in __init__ (declared here for type checkers)
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        arch: str,
        parts: Parts,
        options: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__()
        if not parts.stages:
            raise TlabError(f"model {arch!r} needs at least one stage")
        self.stages = nn.ModuleList(module for _, module in parts.stages)
        self.stage_names = tuple(name for name, _ in parts.stages)
        self.head = parts.head
        self.arch = arch
        self.options: dict[str, Any] = dict(options or {})
        self.frozen_stages = 0
        self.frozen_bn_trains = False
        self.input_size = parts.input_size
        self.register_buffer(
            "mean", torch.tensor(parts.mean, dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(parts.std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def describe_stages(self) -> str:
        """``"1:stem, 2:group1.block1, ..."``: the k that :func:`freeze`/``features`` accept."""
        return ", ".join(f"{i}:{name}" for i, name in enumerate(self.stage_names, 1))

    def features(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """The output of stage ``k`` for pixels ``x`` in [0, 1] (``k = 0``: normalised input)."""
        k = _check_stage_count(self, k, what="features(x, k)")
        self.check_input_shape(x)
        out = (x - self.mean) / self.std
        for stage in self.stages[:k]:
            out = stage(out)
        return out

    def check_input_shape(self, x: torch.Tensor) -> None:
        """A clear error, naming the shape this model reads, for a batch it cannot read."""
        channels, side = self.mean.shape[1], self.input_size
        if (
            x.dim() == 4
            and x.shape[1] == channels
            and (side is None or tuple(x.shape[2:]) == (side, side))
        ):
            return
        wanted = f"(N, {channels}, {side}, {side})" if side else f"(N, {channels}, H, W)"
        raise TlabError(
            f"{self.arch!r} reads images shaped {wanted}; got {tuple(x.shape)}"
            + (
                f": resize them to {side}x{side} (tlab's domains are 32x32)"
                if side and x.dim() == 4
                else ""
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for pixels ``x`` in [0, 1], shape ``(N, C, H, W)``."""
        return self.head(self.features(x, self.num_stages))

    def train(self, mode: bool = True) -> StagedModel:
        """Set train/eval mode; frozen stages stay in eval mode unless frozen with ``train_bn``.

        Keeping a frozen stage in eval mode means its BatchNorm layers normalise with the
        running statistics learned on the source (and never update them) and its dropout is
        off, so the stage computes exactly the function it computed in the source model.
        ``self.stages.train()`` afterwards puts the frozen stages in train mode too (what
        ``tlab.core.train.fit`` does with ``TrainConfig(frozen_train_mode=True)``).
        """
        super().train(mode)
        if mode and not self.frozen_bn_trains:
            for stage in self.stages[: self.frozen_stages]:
                stage.eval()
        return self

    def extra_repr(self) -> str:
        return (
            f"arch={self.arch!r}, num_stages={self.num_stages}, frozen_stages={self.frozen_stages}"
        )


def _check_stage_count(model: StagedModel, k: int, *, what: str) -> int:
    n = model.num_stages
    return check_stage(
        k,
        n,
        name=f"{what}: k",
        hint=(
            f"for {model.arch!r}, whose {n} stages are {model.describe_stages()}; k counts stages "
            f"from the input: k=0 means no stage, k={n} means every stage up to the head"
        ),
    )


def freeze(model: StagedModel, k: int, *, train_bn: bool = False) -> StagedModel:
    """Freeze the first ``k`` stages of ``model`` (in place) and make the rest trainable.

    ``k = 0`` trains everything, ``k = model.num_stages`` trains only the head (Wang et al.'s
    deep-layer feature extractor, Davchev et al.'s strategy "1"). Parameters of stages
    ``1..k`` get ``requires_grad=False``; those of later stages and of the head get ``True``.

    BatchNorm and dropout, three behaviours (Zhang et al. 2020, Sec. 3.2, and their code):
      - ``train_bn=False`` (default): frozen stages stay in eval mode even after
        ``model.train()``; their BatchNorm running statistics do not change and their dropout is
        off, so each frozen stage computes exactly what it computed in the source model.
      - ``train_bn=False`` and training with ``TrainConfig(frozen_train_mode=True)``
        (``tlab.core.train``): every weight of the frozen stages is fixed, but they run in train
        mode, so their BatchNorm running statistics adapt to the training batches and their
        dropout is active. This is how Zhang et al.'s released code fine-tunes the DTN (restored
        parameters get no gradient, the whole model is put in train mode).
      - ``train_bn=True``: BatchNorm layers inside frozen stages keep learning: their affine
        weight/bias stay trainable and, in train mode, their running statistics update (and
        dropout in those stages is active, as in ordinary training). Only convolution and
        linear weights are fixed. This is how Zhang et al.'s released code fine-tunes
        WideResNet (BatchNorm variables were left trainable).

    Returns ``model`` itself; ``model.frozen_stages`` records ``k``. Create the optimiser after
    freezing (or pass it only parameters with ``requires_grad``).
    """
    if not isinstance(model, StagedModel):
        raise TlabError(
            f"freeze() needs a StagedModel from tlab.core.models.build_model, "
            f"got {type(model).__name__}"
        )
    k = _check_stage_count(model, k, what="freeze(model, k)")
    for index, stage in enumerate(model.stages):
        frozen = index < k
        for param in stage.parameters():
            param.requires_grad_(not frozen)
        if frozen and train_bn:
            for module in stage.modules():
                if isinstance(module, _BATCH_NORMS):
                    for param in module.parameters():
                        param.requires_grad_(True)
    for param in model.head.parameters():
        param.requires_grad_(True)
    model.frozen_stages = k
    model.frozen_bn_trains = bool(train_bn)
    model.train(model.training)
    return model


def replace_head(model: StagedModel, num_classes: int) -> StagedModel:
    """Give ``model`` (in place) a fresh, trainable ``nn.Linear(D, num_classes)`` head.

    The stages (and their frozen state) are untouched; the new head lives on the old head's
    device and dtype. Use it when the target domain has a different label set.
    """
    if not isinstance(model, StagedModel):
        raise TlabError(f"replace_head() needs a StagedModel, got {type(model).__name__}")
    num_classes = check_positive_int(num_classes, name="num_classes")
    old = model.head
    model.head = nn.Linear(old.in_features, num_classes).to(
        device=old.weight.device, dtype=old.weight.dtype
    )
    return model


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Spec:
    """A registered name: which builder, which of its options are fixed by the name."""

    builder: Callable[..., Parts]
    description: str
    fixed: Mapping[str, object] = field(default_factory=dict)


_REGISTRY: dict[str, _Spec] = {
    "dtn": _Spec(dtn.build, "Zhang et al.'s digit network: 3 conv blocks + FC (4 stages)"),
    "resnet": _Spec(cifar_resnet.build, "CIFAR ResNet, depth = 6n+2 (He et al.; Davchev et al.)"),
    "resnet20": _Spec(
        cifar_resnet.build, "CIFAR ResNet-20 (0.27M parameters, 10 stages)", {"depth": 20}
    ),
    "resnet56": _Spec(
        cifar_resnet.build, "CIFAR ResNet-56, Davchev et al.'s network (28 stages)", {"depth": 56}
    ),
    "wrn": _Spec(wide_resnet.build, "pre-activation WideResNet, depth = 6n+4, width k"),
    "wrn-16-2": _Spec(
        wide_resnet.build,
        "WideResNet-16-2 (0.7M parameters, CPU-friendly)",
        {"depth": 16, "width": 2},
    ),
    "wrn-28-10": _Spec(
        wide_resnet.build,
        "WideResNet-28-10, Zhang et al.'s WideRes (36.5M)",
        {"depth": 28, "width": 10},
    ),
    "densenet": _Spec(
        densenet.build, "CIFAR DenseNet-BC, growth 12, blocks [6, 12, 24, 16] (Davchev's source)"
    ),
    "densenet-small": _Spec(
        densenet.build,
        "CIFAR DenseNet-BC, blocks [2, 4, 6, 4] (CPU-friendly)",
        {"blocks": densenet.SMALL_BLOCKS},
    ),
    "vgg": _Spec(vgg.build, "plain VGG-style CNN, 8 conv stages + FC stage, for layer sweeps"),
    "tv_resnet18": _Spec(
        torchvision_models.build_resnet18, "torchvision ResNet-18 (ImageNet teacher), 5 stages"
    ),
    "tv_vgg16": _Spec(
        torchvision_models.build_vgg16, "torchvision VGG-16 (ImageNet teacher), 7 stages"
    ),
}


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(_REGISTRY)


def _spec(arch: str) -> _Spec:
    if not isinstance(arch, str) or arch not in _REGISTRY:
        raise UnknownNameError("model", arch, list_models())
    return _REGISTRY[arch]


def model_options(arch: str) -> dict[str, object]:
    """The options ``arch`` takes in :func:`build_model`, with their defaults."""
    spec = _spec(arch)
    params = inspect.signature(spec.builder).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in spec.fixed
    }


def describe_model(arch: str) -> str:
    """One line about ``arch`` (for notebooks and error messages)."""
    return _spec(arch).description


def build_model(arch: str, num_classes: int, **options: object) -> StagedModel:
    """A freshly initialised model called ``arch`` with a ``num_classes``-way head.

    ``options`` are architecture-specific (see :func:`model_options`), e.g.
    ``build_model("resnet", 10, depth=32)``, ``build_model("wrn", 10, depth=28, width=10)``,
    ``build_model("tv_resnet18", 10, weights="imagenet")``.
    """
    spec = _spec(arch)
    num_classes = check_positive_int(num_classes, name="num_classes")
    allowed = model_options(arch)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = (
            ", ".join(f"{name}={default!r}" for name, default in allowed.items()) or "no options"
        )
        raise TlabError(
            f"model {arch!r} does not take option(s) {', '.join(unknown)}; it takes: {takes}"
        )
    resolved = {**allowed, **spec.fixed, **options}
    parts = spec.builder(num_classes, **resolved)
    return StagedModel(arch, parts, resolved)
