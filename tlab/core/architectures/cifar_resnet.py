"""The CIFAR ResNet of He et al. (2016, Sec. 4.2), used by Davchev et al. (2019, Sec. 3).

A 3x3 convolution with 16 filters (+BatchNorm+ReLU) is followed by three groups of ``n`` basic
blocks with 16, 32 and 64 channels; the first block of groups 2 and 3 halves the resolution.
Each basic block is two 3x3 convolutions; its shortcut is the identity, or, where the shape
changes, He et al.'s parameter-free "option A": keep every second pixel and append zero channels.
Counting the stem convolution, 2 convolutions per block and the classifier gives depth
``6n + 2`` (ResNet20: n = 3, ResNet56: n = 9).

Stages: ``stem``, then one stage per block (``group{g}.block{b}``); the last block's stage also
averages over space and flattens, so it outputs the 64-dimensional vector the head reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tlab.core.architectures import parts
from tlab.core.architectures.parts import Parts, kaiming_init

GROUP_WIDTHS = (16, 32, 64)


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and append zero channels up to ``c_out``."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.extra_channels = c_out - c_in
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        same_shape = stride == 1 and c_in == c_out
        self.shortcut: nn.Module = (
            nn.Identity() if same_shape else ZeroPadShortcut(c_in, c_out, stride)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def blocks_per_group(depth: int) -> int:
    """``n`` such that ``depth = 6n + 2``; a TlabError naming valid depths otherwise."""
    return parts.blocks_per_group(
        depth, family="CIFAR ResNet", extra=2, examples="8, 14, 20, 32, 44, 56 or 110"
    )


def build(num_classes: int, *, depth: int = 20) -> Parts:
    """CIFAR ResNet-``depth`` (``depth = 6n + 2``): ``1 + 3n`` stages, 64-dimensional features."""
    n = blocks_per_group(depth)
    stem = nn.Sequential(
        nn.Conv2d(3, GROUP_WIDTHS[0], 3, padding=1, bias=False),
        nn.BatchNorm2d(GROUP_WIDTHS[0]),
        nn.ReLU(inplace=True),
    )
    stages: list[tuple[str, nn.Module]] = [("stem", stem)]
    c_in = GROUP_WIDTHS[0]
    for g, width in enumerate(GROUP_WIDTHS, 1):
        for b in range(1, n + 1):
            stride = 2 if (b == 1 and g > 1) else 1
            stages.append((f"group{g}.block{b}", BasicBlock(c_in, width, stride)))
            c_in = width
    name, last = stages[-1]
    stages[-1] = (name, nn.Sequential(last, nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    for _, module in stages:
        kaiming_init(module)
    return Parts(stages=stages, head=nn.Linear(c_in, num_classes))
