"""What an architecture builder hands to :class:`tlab.core.models.StagedModel`.

A builder returns :class:`Parts`: named stages in order, the classifier head and the per-channel
normalisation the network expects. :mod:`tlab.core.models` turns the parts into a model, so the
architecture modules never import it (no import cycle) and stay plain ``torch.nn`` code.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tlab.errors import TlabError

#: Zhang et al. (2020, Sec. 5) and Davchev et al. (2019, Sec. 3) feed the network pixels scaled
#: to [-1, 1]; (x - 0.5) / 0.5 maps tlab's [0, 1] pixels there.
HALF = (0.5, 0.5, 0.5)

#: Channel statistics that torchvision's ImageNet models were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Parts:
    """Stages (``(name, module)`` in order; the last one outputs ``(N, D)``), head and norm.

    ``input_size``: the side of the square images the network reads, for networks whose last
    stage flattens a fixed-size map into a linear layer; None for networks that pool globally
    and read any size.
    """

    stages: list[tuple[str, nn.Module]]
    head: nn.Linear
    mean: tuple[float, ...] = HALF
    std: tuple[float, ...] = HALF
    input_size: int | None = None


def kaiming_init(module: nn.Module) -> None:
    """He-normal convolutions, unit/zero BatchNorm, zero biases: the usual CIFAR-network start.

    He et al. (2015) scale each convolution's weights by its fan-out so that ReLU activations
    keep their variance through depth; BatchNorm starts as the identity.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def blocks_per_group(depth: int, *, family: str, extra: int, examples: str) -> int:
    """``n`` for a residual family whose depth is ``6n + extra`` (3 groups of ``n`` two-conv
    blocks, plus ``extra`` layers): a TlabError naming valid depths otherwise."""
    smallest = 6 + extra
    if (
        isinstance(depth, bool)
        or not isinstance(depth, int)
        or depth < smallest
        or (depth - extra) % 6
    ):
        raise TlabError(
            f"{family} depth={depth!r} is not of the form 6n+{extra} with n >= 1; "
            f"use e.g. {examples}"
        )
    return (depth - extra) // 6
