"""CIFAR DenseNet-BC (Huang et al., 2017), the black-box source of Davchev et al. (2019, Sec. 3).

The paper names "DenseNet 121", but its authors' code trains a CIFAR variant: growth rate 12,
four dense blocks of 6, 12, 24 and 16 layers (DenseNet-121's block sizes), a 3x3 convolution stem
with ``2 * growth`` filters and no initial max-pool. tlab follows the code.

"BC" = Bottleneck + Compression. Every dense layer is BN-ReLU-conv1x1 (``4 * growth`` filters)
then BN-ReLU-conv3x3 (``growth`` filters), and its output is concatenated to its input, so each
layer sees the features of all earlier layers of its block. Between blocks, a transition
(BN-ReLU-conv1x1 keeping a ``compression`` fraction of the channels, then 2x2 average pooling)
shrinks channels and resolution. A final BN-ReLU precedes global average pooling.

Stages: ``stem``, then ``dense{i}`` = dense block i followed by its transition; the last stage
(the last block) ends with the final BN-ReLU and pooling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tlab.checks import check_counts
from tlab.core.architectures.parts import Parts, kaiming_init
from tlab.errors import TlabError

DAVCHEV_BLOCKS = (6, 12, 24, 16)
SMALL_BLOCKS = (2, 4, 6, 4)


class DenseLayer(nn.Module):
    """Bottleneck dense layer: adds ``growth`` channels to its input."""

    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv1(F.relu(self.bn1(x)))
        new = self.conv2(F.relu(self.bn2(new)))
        return torch.cat([x, new], dim=1)


def _transition(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.AvgPool2d(2),
    )


def build(
    num_classes: int,
    *,
    blocks: Sequence[int] = DAVCHEV_BLOCKS,
    growth: int = 12,
    compression: float = 0.5,
) -> Parts:
    """DenseNet-BC with one stage per dense block (+ a stem): ``len(blocks) + 1`` stages."""
    # at most 5 blocks: a 32x32 input allows 4 halvings
    layer_counts = check_counts(
        blocks, name="DenseNet blocks (layers per dense block)", most=5, example=DAVCHEV_BLOCKS
    )
    if isinstance(growth, bool) or not isinstance(growth, int) or growth < 1:
        raise TlabError(f"DenseNet growth={growth!r} must be an integer >= 1 (12 in Davchev)")
    if not 0.0 < compression <= 1.0:
        raise TlabError(f"DenseNet compression={compression!r} must be in (0, 1] (0.5 for -BC)")
    channels = 2 * growth
    stages: list[tuple[str, nn.Module]] = [
        ("stem", nn.Conv2d(3, channels, 3, padding=1, bias=False))
    ]
    for i, count in enumerate(layer_counts, 1):
        layers: list[nn.Module] = []
        for _ in range(count):
            layers.append(DenseLayer(channels, growth))
            channels += growth
        if i < len(layer_counts):
            reduced = max(1, int(channels * compression))
            layers.append(_transition(channels, reduced))
            channels = reduced
        else:
            layers += [
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            ]
        stages.append((f"dense{i}", nn.Sequential(*layers)))
    for _, module in stages:
        kaiming_init(module)
    return Parts(stages=stages, head=nn.Linear(channels, num_classes))
