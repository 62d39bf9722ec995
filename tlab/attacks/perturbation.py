"""How far a perturbed image is from the original: DSSIM and L2, and the budget P on them.

Wang et al. (USENIX Security 2018, Sec. 3 and Appendix) bound the mimicry attack's change to
an image by its structural dissimilarity DSSIM; the lab also offers the L2 distance.
"""

from __future__ import annotations

import math

import torch
from pytorch_msssim import ssim

from tlab.checks import check_choice
from tlab.core.inputs import check_images
from tlab.errors import TlabError

IMAGE_SHAPE = (3, 32, 32)
#: How a budget P measures a perturbation: single-scale DSSIM (:func:`dssim`), the authors'
#: 5-scale DSSIM (:func:`tlab.attacks.msssim.ms_dssim`) or the L2 norm in [0, 1] pixels.
BUDGET_KINDS = ("dssim", "ms_dssim", "l2")
DSSIM_KINDS = ("dssim", "ms_dssim")
SSIM_WINDOW = 11  # the Gaussian window of the SSIM paper (Z. Wang et al. 2004)
SSIM_SIGMA = 1.5
MAX_L2 = math.sqrt(math.prod(IMAGE_SHAPE))  # ||1 - 0||_2 over a whole 3x32x32 image


def dssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural dissimilarity ``(1 - SSIM(x, y)) / 2`` of each image pair, shape ``(N,)``.

    Wang et al. (2018, Sec. 3 and Appendix) measure perturbation with DSSIM: 0 for identical
    images, growing as luminance, contrast and local structure diverge (at most 1, for an
    inverted image). SSIM comes from ``pytorch_msssim`` and is differentiable, so it can sit in
    the attack's loss.

    Single-scale: the window is the standard Gaussian of size 11 and sigma 1.5, applied without
    padding ("valid"), so SSIM averages a 22x22 map of local comparisons per channel and then
    over the channels. The authors used a 5-scale MS-SSIM whose window shrinks to fit small
    scales: that is :func:`tlab.attacks.msssim.ms_dssim`. On pixel noise it is about 0.07 of
    this DSSIM (``tests/test_msssim.py``), so the same budget P is about 14x tighter here.

    ``x`` and ``y``: float images in [0, 1] of the same shape (N, C, H, W), H and W >= 11.
    """
    x, y = check_pair(x, y, what="dssim", min_side=SSIM_WINDOW, why="the SSIM window")
    similarity = ssim(
        x,
        y.to(x.device, x.dtype),
        data_range=1.0,
        size_average=False,
        win_size=SSIM_WINDOW,
        win_sigma=SSIM_SIGMA,
    )
    return (1.0 - similarity) / 2.0


def check_pair(
    x: object, y: object, *, what: str, min_side: int, why: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two image batches of the same shape with sides of at least ``min_side`` pixels."""
    x, y = check_images(x, name="x"), check_images(y, name="y")
    if x.shape != y.shape:
        raise TlabError(
            f"{what}(x, y) needs two batches of the same shape, got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    if min(x.shape[-2:]) < min_side:
        raise TlabError(
            f"{what} needs images of at least {min_side}x{min_side} pixels ({why}), "
            f"got {tuple(x.shape[-2:])}"
        )
    return x, y


def l2_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||x - y||_2`` per image over all pixels (in [0, 1] units), shape ``(N,)``."""
    return torch.linalg.vector_norm((x - y).flatten(1), dim=1)


def check_budget(budget: object, kind: str = "dssim") -> float:
    """``budget`` as a float if it is a valid perturbation budget P of that kind.

    DSSIM budgets lie in (0, 1] (Wang et al. 2018, Sec. 4.2 use 0.0005 to 0.01); L2 budgets in
    (0, ``MAX_L2``], pixels in [0, 1].
    """
    check_choice("budget kind", kind, BUDGET_KINDS)
    top = 1.0 if kind in DSSIM_KINDS else MAX_L2
    if (
        not isinstance(budget, (int, float))
        or isinstance(budget, bool)
        or not 0.0 < float(budget) <= top
    ):
        example = (
            "Wang et al. used DSSIM budgets 0.0005 to 0.01 (0.003 for Face)"
            if kind in DSSIM_KINDS
            else "e.g. 2.0"
        )
        raise TlabError(
            f"budget P={budget!r} is outside (0, {top:.4g}] for a {kind!r} budget; {example}"
        )
    return float(budget)
