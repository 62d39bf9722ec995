"""A frozen copy of a model, rewritten to be cheaper for attacks that only need input gradients.

Wang et al.'s mimicry attack (2018, Sec. 3) and the fingerprinting of Sec. 5.1 run thousands of
forward and backward passes through the teacher's first K layers, always in eval mode, never
touching the weights. Three rewrites leave the function unchanged (up to float rounding, about
1e-6) and make those passes cheaper:

- **Batch-norm folding.** In eval mode a BatchNorm layer is a fixed per-channel affine map, so
  a convolution (or linear layer) followed directly by one computes the same function as a
  single convolution with rescaled weights and a bias. PyTorch's own
  ``torch.nn.utils.fusion`` does the arithmetic; this module finds the pairs that sit next to
  each other in an ``nn.Sequential`` (tlab's VGG and DTN stages, torchvision's VGG). Layers
  arranged otherwise (a ResNet block's ``conv1``/``bn1`` attributes, DenseNet's pre-activation
  BatchNorm) are left as they are: still correct, just not folded.
- **Pooling before the ReLU.** A ReLU directly followed by a max-pool computes the same values
  and the same input gradient as the pool followed by the ReLU (a non-decreasing function
  commutes with max, and both orders send the gradient to the same pixel), but the second order
  rectifies and back-propagates through a quarter of the values. On the lab's narrow VGG teacher
  this takes about 6 % off a batched attack step (measured with the profiler on 64 pairs).
- **Channels-last layout on the CPU.** oneDNN computes the input gradient of a convolution with
  few channels about 3x faster when images are stored NHWC instead of NCHW (measured on the
  lab's narrow VGG teacher: 0.64 vs 2.47 ms for 32 images, 3 -> 8 channels), while PyTorch's
  batch-norm backward pass is slower in that layout, so the rewrites compound. One step of
  the mimicry attack on 32 pairs, per pair: 0.63 ms as is, 0.55 ms folded, 0.55 ms
  channels-last, 0.33 ms both. The copy switches layout itself, after the input normalisation:
  a per-channel operation on 3-channel NHWC images is about 4x slower than on NCHW ones, so the
  attack's own pixel arithmetic (tanh, DSSIM, Adadelta) stays in the ordinary layout (4 % of a
  batched step). On a GPU the layout is left alone (not measured there).

``benchmarks/mimicry.py`` measures what the copy buys end to end.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from tlab.core.device import model_device
from tlab.core.models import StagedModel

__all__ = ["ChannelsLast", "attack_copy", "fold_batch_norms", "pool_before_relu"]

ModelT = TypeVar("ModelT", bound=nn.Module)

# (layer type, batch-norm type that may follow it, the torch function folding the pair)
_FOLDABLE: tuple[tuple[type[nn.Module], type[nn.Module], Callable[..., nn.Module]], ...] = (
    (nn.Conv2d, nn.BatchNorm2d, fuse_conv_bn_eval),
    (nn.Linear, nn.BatchNorm1d, fuse_linear_bn_eval),
)


class ChannelsLast(nn.Module):
    """Pass images on in the channels-last (NHWC) memory layout; the values are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)


def _fold_pair(first: nn.Module, second: nn.Module) -> nn.Module | None:
    """``first`` with ``second`` (a batch norm) folded in, or None if the pair does not fold."""
    for layer_type, norm_type, fold in _FOLDABLE:
        if (
            isinstance(first, layer_type)
            and type(second) is norm_type
            and second.running_mean is not None
            and second.running_var is not None
        ):
            return fold(first, second)
    return None


def fold_batch_norms(model: nn.Module) -> int:
    """Fold, in place, every eval-mode BatchNorm that directly follows a conv/linear layer.

    Only pairs adjacent inside an ``nn.Sequential`` are folded; the batch norm is replaced by
    ``nn.Identity`` so indices stay valid. ``model`` must be in eval mode. Returns how many
    pairs were folded.
    """
    folded = 0
    for sequence in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(sequence) - 1):
            merged = _fold_pair(sequence[i], sequence[i + 1])
            if merged is not None:
                sequence[i] = merged
                sequence[i + 1] = nn.Identity()
                folded += 1
    return folded


def pool_before_relu(model: nn.Module) -> int:
    """Swap, in place, every ``nn.ReLU`` directly followed by an ``nn.MaxPool2d``.

    Only pairs adjacent inside an ``nn.Sequential``; the function and its gradient are unchanged
    (see the module docstring). Returns how many pairs were swapped.
    """
    swapped = 0
    for sequence in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(sequence) - 1):
            if type(sequence[i]) is nn.ReLU and type(sequence[i + 1]) is nn.MaxPool2d:
                sequence[i], sequence[i + 1] = sequence[i + 1], sequence[i]
                swapped += 1
    return swapped


def attack_copy(model: ModelT) -> ModelT:
    """An eval-mode, frozen copy of ``model``: batch norms folded, pools before ReLUs, fast layout.

    The copy computes ``model``'s eval-mode function (within float rounding) and its parameters
    have ``requires_grad=False``: gradients flow to the input only. It takes images in any
    layout; on a CPU the first stage of a tlab model (:class:`StagedModel`) starts by switching
    them to channels-last, and its weights are stored that way (any other module keeps its layout:
    only its batch norms are folded and its pools moved). ``model`` is untouched.
    """
    duplicate = copy.deepcopy(model).eval()
    duplicate.requires_grad_(False)
    fold_batch_norms(duplicate)
    pool_before_relu(duplicate)
    if isinstance(duplicate, StagedModel) and model_device(model).type == "cpu":
        duplicate.stages[0] = nn.Sequential(ChannelsLast(), duplicate.stages[0])
        duplicate.to(memory_format=torch.channels_last)
    return duplicate
