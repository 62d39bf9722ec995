"""Input dropout with a majority vote (Wang et al., USENIX Sec. 2018, Sec. 6.1).

:func:`dropout_vote_predict` drops random input pixels at test time, predicts several times and
takes the majority vote. Cheap and needs no retraining, but costs accuracy, and an attacker can put
the same dropout in the crafting loop (``input_dropout`` in
:func:`tlab.attacks.mimicry.mimicry_attack`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tlab.checks import check_positive_int
from tlab.core.inputs import check_images
from tlab.core.metrics import predict
from tlab.errors import TlabError


def _check_ratio(ratio: object) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio < 1.0:
        raise TlabError(
            f"ratio={ratio!r} must be the fraction of pixels to drop, in [0, 1) "
            "(Wang et al. 2018, Fig. 7, sweep 0 to about 0.5)"
        )
    return float(ratio)


def drop_pixels(
    x: torch.Tensor, ratio: float, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``x`` with each pixel (all its channels together) set to 0 with probability ``ratio``.

    Wang et al. (2018, Sec. 6.1) describe the defense as dropping a fraction of randomly chosen
    input pixels. Kept pixels are left as they are: no ``1 / (1 - ratio)`` rescaling as in
    inverted dropout, which would brighten the image beyond the [0, 1] range the model knows
    (the paper does not mention rescaling). The masks come from ``generator`` (a CPU generator;
    ``None`` = torch's global one) and are drawn on the CPU, so a seed gives the same masks on
    every device. Differentiable in ``x``.
    """
    ratio = _check_ratio(ratio)
    n, _, h, w = x.shape
    keep = torch.rand((n, 1, h, w), generator=generator) >= ratio
    return x * keep.to(device=x.device, dtype=x.dtype)


def dropout_vote_predict(
    model: nn.Module,
    x: torch.Tensor,
    ratio: float,
    votes: int = 3,
    seed: int = 0,
    *,
    batch_size: int = 256,
) -> torch.Tensor:
    """Majority vote of ``votes`` predictions on independently pixel-dropped copies of ``x``.

    Wang et al. (2018, Sec. 6.1): 3 predictions per image; the class predicted most often wins,
    and a tie (all 3 different) is broken at random. Ties are broken with a generator seeded by
    ``seed``, which also draws the dropout masks, so a call is reproducible. ``ratio=0`` gives
    the plain prediction. Returns int64 class indices ``(N,)`` on ``x``'s device.
    """
    x = check_images(x)
    ratio = _check_ratio(ratio)
    votes = check_positive_int(votes, name="votes")
    generator = torch.Generator().manual_seed(int(seed))
    copies = torch.cat([drop_pixels(x, ratio, generator=generator) for _ in range(votes)])
    predictions = predict(model, copies, batch_size=batch_size).view(votes, x.shape[0])
    return majority_vote(predictions, generator)


def majority_vote(predictions: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per column of ``predictions`` (``(votes, N)`` class indices), the class voted most often;
    a tie is broken at random with ``generator`` (a CPU generator). Wang et al. (2018, Sec. 6.1).
    """
    num_classes = int(predictions.max().item()) + 1 if predictions.numel() else 1
    counts = F.one_hot(predictions, num_classes).sum(0).float()  # (N, classes)
    # Counts are integers: noise below 1 only reorders classes that tie for the most votes.
    jitter = torch.rand(counts.shape, generator=generator).to(counts.device) * 0.5
    return (counts + jitter).argmax(1)
