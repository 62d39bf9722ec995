"""Wide residual networks (Zagoruyko & Komodakis, 2016), the "WideRes" of Zhang et al. (2020,
Sec. 5 and 6.4), which uses WRN-28-10 without dropout.

Pre-activation blocks: BatchNorm and ReLU come *before* each 3x3 convolution. A 3x3 stem
convolution with 16 filters is followed by three groups of ``n`` blocks with ``16k``, ``32k`` and
``64k`` channels (``k`` = width); groups 2 and 3 start by halving the resolution. Where a block
changes the shape, its shortcut is a 1x1 convolution applied to the pre-activated input. A final
BatchNorm-ReLU precedes global average pooling. Depth ``6n + 4`` counts the stem, two
convolutions per block, the three shortcut convolutions and the classifier.

Stages: ``stem`` (the bare convolution), one stage per block (``group{g}.block{b}``); the last
block's stage also applies the final BatchNorm-ReLU and the pooling, so it outputs ``64k``
features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tlab.core.architectures import parts
from tlab.core.architectures.parts import Parts, kaiming_init
from tlab.errors import TlabError


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3, plus identity or 1x1-conv shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        same_shape = stride == 1 and c_in == c_out
        self.shortcut = None if same_shape else nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


def blocks_per_group(depth: int) -> int:
    """``n`` such that ``depth = 6n + 4``; a TlabError naming valid depths otherwise."""
    return parts.blocks_per_group(
        depth, family="WideResNet", extra=4, examples="10, 16, 22, 28 or 40"
    )


def build(num_classes: int, *, depth: int = 16, width: int = 2, dropout: float = 0.0) -> Parts:
    """WRN-``depth``-``width``: ``1 + 3n`` stages and ``64 * width`` features (``n = (depth-4)/6``).

    The default WRN-16-2 (0.7M parameters) trains on a CPU; ``wrn-28-10`` is Zhang et al.'s.
    ``dropout`` is the probability between the two convolutions of each block (0 as in Zhang).
    """
    n = blocks_per_group(depth)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise TlabError(f"WideResNet width={width!r} must be an integer >= 1 (e.g. 2, 4, 10)")
    if not 0.0 <= dropout < 1.0:
        raise TlabError(f"WideResNet dropout={dropout!r} must be in [0, 1)")
    stages: list[tuple[str, nn.Module]] = [("stem", nn.Conv2d(3, 16, 3, padding=1, bias=False))]
    c_in = 16
    for g, base in enumerate((16, 32, 64), 1):
        for b in range(1, n + 1):
            stride = 2 if (b == 1 and g > 1) else 1
            stages.append((f"group{g}.block{b}", PreActBlock(c_in, base * width, stride, dropout)))
            c_in = base * width
    name, last = stages[-1]
    final = nn.Sequential(
        last, nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    stages[-1] = (name, final)
    for _, module in stages:
        kaiming_init(module)
    return Parts(stages=stages, head=nn.Linear(c_in, num_classes))
