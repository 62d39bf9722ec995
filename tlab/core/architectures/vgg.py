"""A plain VGG-style CNN (Simonyan & Zisserman, 2015) sized for 32x32 input and a CPU.

Wang et al. (2018, Sec. 4) attack students built from VGG-style teachers (e.g. VGG-Face, 16
layers) at several depths K. This network gives the lab a plain chain of many stages for the
same layer sweeps, small enough to train in a classroom: each convolution stage is 3x3 conv ->
BatchNorm -> ReLU, and every second stage ends with 2x2 max-pooling; a fully connected stage
(flatten -> Linear -> BatchNorm -> ReLU -> dropout) produces the vector the head reads.

Stages: ``conv1`` ... ``conv{len(widths)}``, then ``fc``. Input must be 32x32.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from tlab.checks import check_counts
from tlab.core.architectures.parts import Parts, kaiming_init
from tlab.errors import TlabError

DEFAULT_WIDTHS = (16, 16, 32, 32, 64, 64, 128, 128)
INPUT_SIZE = 32


def build(
    num_classes: int,
    *,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    fc_width: int = 256,
    dropout: float = 0.5,
) -> Parts:
    """VGG-style network with ``len(widths)`` convolution stages and one FC stage (9 by default)."""
    conv_widths = check_counts(
        widths, name="VGG widths (channels per convolution stage)", most=10, example=DEFAULT_WIDTHS
    )
    if isinstance(fc_width, bool) or not isinstance(fc_width, int) or fc_width < 1:
        raise TlabError(f"VGG fc_width={fc_width!r} must be an integer >= 1 (e.g. 256)")
    if not 0.0 <= dropout < 1.0:
        raise TlabError(f"VGG dropout={dropout!r} must be in [0, 1)")
    stages: list[tuple[str, nn.Module]] = []
    c_in, size = 3, INPUT_SIZE
    for i, width in enumerate(conv_widths, 1):
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        if i % 2 == 0:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        stages.append((f"conv{i}", nn.Sequential(*layers)))
        c_in = width
    fc = nn.Sequential(
        nn.Flatten(),
        nn.Linear(c_in * size * size, fc_width),
        nn.BatchNorm1d(fc_width),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    )
    stages.append(("fc", fc))
    for _, module in stages:
        kaiming_init(module)
    return Parts(stages=stages, head=nn.Linear(fc_width, num_classes), input_size=INPUT_SIZE)
