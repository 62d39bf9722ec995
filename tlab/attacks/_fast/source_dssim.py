"""DSSIM to a fixed batch of source images, for optimisation loops that call it thousands of times.

The mimicry attack (Wang et al. 2018, Sec. 3) constrains ``DSSIM(x', x_s) <= P`` at every one of
its iterations, and the source ``x_s`` never changes. SSIM (Z. Wang et al. 2004) compares
Gaussian-filtered local statistics of the two images: the means ``mu_x``, ``mu_s``, the
variances and the covariance. Two of the five filtered maps depend on the source alone, so this
class filters them once; the three that depend on ``x`` (``x``, ``x*x``, ``x*s``) are filtered
at every call.

The Gaussian window is ``pytorch_msssim``'s (the library :func:`tlab.attacks.perturbation.dssim`
calls), and the filtering is the same "valid" separable filtering that library does with two
depthwise convolutions; here each 1-D pass is a matrix product with a banded matrix (row ``i``
holds the window at columns ``i .. i + window - 1``). A depthwise convolution with an 11-tap kernel
and a handful of channels keeps the CPU's vector units mostly idle; the banded product does about
three times the multiplications but runs as one dense matrix multiply, so forward and backward are
about twice as fast for one image and for a batch. Only the five-line SSIM formula is restated so
that the source's statistics can be kept. ``tests/test_source_dssim.py`` checks values and gradients
against ``pytorch_msssim.ssim``. Forward and backward on 3x32x32 images, 2 CPU threads, best of
three (``benchmarks/mimicry.py`` measures the attack as a whole): 128 images 12.2 ms through
``pytorch_msssim.ssim``, 8.9 ms with the source filtered once but convolutions, 4.1 ms here; one
image 1.31, 0.61 and 0.37 ms.
"""

from __future__ import annotations

import torch
from pytorch_msssim import SSIM

__all__ = ["SSIM_K1", "SSIM_K2", "SourceDSSIM", "banded_window"]

SSIM_K1, SSIM_K2 = 0.01, 0.03  # the SSIM paper's stabilising constants (pytorch_msssim's too)


def banded_window(window: torch.Tensor, size: int) -> torch.Tensor:
    """The matrix ``B`` with ``B @ v`` = "valid" correlation of ``v`` (length ``size``) with
    ``window``: shape ``(size - len(window) + 1, size)``, row ``i`` = window at ``i``."""
    taps = window.numel()
    rows = size - taps + 1
    band = torch.zeros(rows, size, dtype=window.dtype, device=window.device)
    for i in range(rows):
        band[i, i : i + taps] = window.flatten()
    return band


class SourceDSSIM:
    """``(1 - SSIM(x, source)) / 2`` per image, with the source's statistics filtered once.

    ``source``: images (N, C, H, W) in [0, 1], H and W at least ``window``. Calling the object
    on ``x`` of the same shape (any memory layout) returns shape ``(N,)``, differentiable in
    ``x``; single-scale SSIM with a ``window``-tap Gaussian of width ``sigma``, no padding, data
    range 1, averaged over the map and then the channels -- exactly what
    ``pytorch_msssim.ssim(x, source, data_range=1, size_average=False)`` computes.
    """

    def __init__(self, source: torch.Tensor, *, window: int, sigma: float) -> None:
        gauss = SSIM(data_range=1.0, win_size=window, win_sigma=sigma, channel=1).win
        gauss = gauss.to(source.device, source.dtype)
        height, width = source.shape[-2:]
        self._down = banded_window(gauss, height)  # filters along H: (H', H)
        self._across = banded_window(gauss, width).T.contiguous()  # along W: (W, W')
        self._c1 = SSIM_K1**2
        self._c2 = SSIM_K2**2
        with torch.no_grad():
            self._source = source.detach().contiguous()
            self._mean = self._filter(self._source)
            mean_sq = self._mean.square()
            self._mean_sq_c1 = mean_sq + self._c1
            self._variance_c2 = self._filter(self._source.square()) - mean_sq + self._c2

    def _filter(self, maps: torch.Tensor) -> torch.Tensor:
        """Gaussian-filter every (H, W) map of ``maps`` without padding -> (..., H', W')."""
        return self._down @ (maps @ self._across)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean_x = self._filter(x)
        second_x = self._filter(x * x)
        cross = self._filter(x * self._source)
        mean_x_sq = mean_x.square()
        mean_product = mean_x * self._mean
        variance_x = second_x - mean_x_sq
        covariance = cross - mean_product
        contrast_structure = (2 * covariance + self._c2) / (variance_x + self._variance_c2)
        luminance = (2 * mean_product + self._c1) / (mean_x_sq + self._mean_sq_c1)
        similarity = (luminance * contrast_structure).flatten(2).mean(-1).mean(-1)
        return (1.0 - similarity) / 2.0
