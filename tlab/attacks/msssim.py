"""Multi-scale DSSIM as Wang et al. (USENIX Security 2018) computed it, usable on 32x32 images.

Wang et al. (2018, Sec. 3 and Appendix) bound the mimicry attack's perturbation by
DSSIM = (1 - MS-SSIM) / 2, with the 5-scale MS-SSIM of Wang, Simoncelli & Bovik (2003):
contrast-structure terms at scales 1-4 and luminance * contrast-structure at scale 5, raised to
the weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) and multiplied, with a 2x2 average pool
between scales. The lab's :func:`tlab.attacks.perturbation.dssim` is single-scale SSIM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tlab.attacks.perturbation import check_pair

__all__ = ["MS_WEIGHTS", "ms_dssim"]

MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli & Bovik (2003)
WINDOW, SIGMA = 11, 1.5  # Gaussian window at full size, shrunk to fit small scales
K1, K2 = 0.01, 0.03  # stabilising constants, data range 1 (pixels in [0, 1])
MIN_SIDE = 2 ** (len(MS_WEIGHTS) - 1)  # 16: the coarsest scale still has a pixel of its own
FLOOR = 1e-6  # terms are clamped here before the fractional powers


def _window(size: int, like: torch.Tensor) -> torch.Tensor:
    """1-D Gaussian of ``size`` taps, sigma ``SIGMA * size / WINDOW``, summing to 1."""
    sigma = SIGMA * size / WINDOW
    taps = torch.arange(size, device=like.device, dtype=like.dtype) - (size - 1) / 2
    g = torch.exp(-(taps**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean SSIM and contrast-structure at one scale (valid Gaussian filtering)."""
    size = min(WINDOW, *x.shape[-2:])
    g = _window(size, x)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    groups = stack.shape[1]
    stack = F.conv2d(stack, g.view(1, 1, size, 1).expand(groups, 1, size, 1), groups=groups)
    stack = F.conv2d(stack, g.view(1, 1, 1, size).expand(groups, 1, 1, size), groups=groups)
    mu_x, mu_y, xx, yy, xy = stack.chunk(5, dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = K1**2, K2**2
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (luminance * cs).mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def ms_dssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Multi-scale structural dissimilarity ``(1 - MS-SSIM(x, y)) / 2`` per pair, shape ``(N,)``.

    MS-SSIM follows Wang, Simoncelli & Bovik (2003) and is computed as in the code of Wang et
    al. (2018, Sec. 3 and Appendix; ``msssim_tf.py`` in bolunwang/translearn, whose mimicry
    attack calls it one image at a time):

    - 5 scales; between scales a 2x2 average pool of stride 2 ("SAME" padding: an odd side
      rounds up and the edge average counts only real pixels).
    - At each scale a Gaussian window of size ``k = min(11, H, W)`` (H, W at that scale) and
      sigma ``1.5 * k / 11``, taps centred on the window (half-integer offsets for even k),
      applied per channel without padding ("VALID"). On 32x32 images the scales are 32, 16, 8,
      4, 2 pixels with windows 11, 11, 8, 4, 2.
    - K1 = 0.01, K2 = 0.03 with data range 1 (the authors use 255 on 0-255 pixels: the same).
    - Each scale's SSIM and contrast-structure maps are averaged over channels and positions
      together, then ``cs_1^w1 * ... * cs_4^w4 * ssim_5^w5`` with the standard weights
      (not normalised; they sum to 1.0001).

    Differences: batched (the authors loop over images), any number of channels (theirs takes
    1 or 3), and each term is clamped to at least 1e-6 before its fractional power, where the
    authors' code gives NaN for a negative mean (only for strongly anti-correlated images; here
    MS-SSIM then goes towards 0 and DSSIM towards 0.5). No pool after the last scale (theirs
    computes one and discards it).

    ``x`` and ``y``: float images in [0, 1] of the same shape (N, C, H, W), H and W >= 16 so
    that the five scales are distinct. Differentiable (float32 or float64, CPU or CUDA).
    """
    x, y = check_pair(
        x, y, what="ms_dssim", min_side=MIN_SIDE, why="five scales, halved four times"
    )
    y = y.to(x.device, x.dtype)
    similarity = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
    for level, weight in enumerate(MS_WEIGHTS):
        if level:
            x = F.avg_pool2d(x, 2, ceil_mode=True)
            y = F.avg_pool2d(y, 2, ceil_mode=True)
        ssim, cs = _ssim_and_cs(x, y)
        term = ssim if level == len(MS_WEIGHTS) - 1 else cs
        similarity = similarity * term.clamp(min=FLOOR) ** weight
    return (1.0 - similarity) / 2.0
