"""DTN: the small digit network of Zhang et al. (KDD 2020, Sec. 5, "DTN").

Three strided 5x5 convolution blocks halve the 32x32 input three times (32 -> 16 -> 8 -> 4);
each block is convolution -> BatchNorm -> channel dropout -> ReLU, with dropout growing with
depth (0.1, 0.3, 0.5). A fully connected block turns the 256x4x4 map into a 512-vector, and the
head maps that vector to the classes. The paper counts 5 layers (3 convolutions, the fully
connected layer and the classifier); tlab counts 4 stages plus the head.
"""

from __future__ import annotations

from torch import nn

from tlab.core.architectures.parts import Parts

#: (in channels, out channels, channel-dropout probability) of the three convolution blocks.
CONV_BLOCKS = ((3, 64, 0.1), (64, 128, 0.3), (128, 256, 0.5))
FEATURE_DIM = 512


def _conv_block(c_in: int, c_out: int, p: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=5, stride=2, padding=2),
        nn.BatchNorm2d(c_out),
        nn.Dropout2d(p),
        nn.ReLU(inplace=True),
    )


def build(num_classes: int) -> Parts:
    """DTN for 3x32x32 input: stages ``conv1``, ``conv2``, ``conv3``, ``fc``; takes no options."""
    stages: list[tuple[str, nn.Module]] = [
        (f"conv{i}", _conv_block(c_in, c_out, p))
        for i, (c_in, c_out, p) in enumerate(CONV_BLOCKS, 1)
    ]
    last_channels = CONV_BLOCKS[-1][1]
    fc = nn.Sequential(
        nn.Flatten(),
        nn.Linear(last_channels * 4 * 4, FEATURE_DIM),
        nn.BatchNorm1d(FEATURE_DIM),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
    )
    stages.append(("fc", fc))
    return Parts(stages=stages, head=nn.Linear(FEATURE_DIM, num_classes), input_size=32)
