"""tlab.attacks._fast.source_dssim: DSSIM to fixed sources equals pytorch_msssim's, gradient too."""

from __future__ import annotations

import pytest
import torch
from pytorch_msssim import ssim

from tlab.attacks._fast.source_dssim import SourceDSSIM, banded_window


def library_dssim(x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    return (1 - ssim(x, source, data_range=1.0, size_average=False, win_size=11, win_sigma=1.5)) / 2


def images(seed: int, n: int = 5, shape=(3, 32, 32)) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_values_and_gradients_match_pytorch_msssim(layout):
    source = images(0).contiguous(memory_format=layout)
    near = (source + 0.05 * (images(1) - 0.5)).clamp(0, 1)
    for x in (images(2), near, source.clone()):
        x = x.contiguous(memory_format=layout)
        mine_x = x.clone().requires_grad_()
        theirs_x = x.clone().requires_grad_()
        mine = SourceDSSIM(source, window=11, sigma=1.5)(mine_x)
        theirs = library_dssim(theirs_x, source)
        assert mine.shape == (5,)
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
        weights = torch.arange(1.0, 6.0)  # a different weight per image: no cross-talk
        (g_mine,) = torch.autograd.grad((mine * weights).sum(), mine_x)
        (g_theirs,) = torch.autograd.grad((theirs * weights).sum(), theirs_x)
        torch.testing.assert_close(g_mine, g_theirs, rtol=1e-4, atol=1e-7)


def test_identical_images_have_zero_dssim_and_grayscale_works():
    source = images(3, n=2, shape=(1, 20, 24))
    measure = SourceDSSIM(source, window=11, sigma=1.5)
    assert measure(source).abs().max().item() < 1e-6
    torch.testing.assert_close(measure(1 - source), library_dssim(1 - source, source))


def test_the_source_is_not_differentiated_or_changed():
    source = images(4).requires_grad_()
    kept = source.detach().clone()
    measure = SourceDSSIM(source, window=11, sigma=1.5)
    x = images(5).requires_grad_()
    measure(x).sum().backward()
    assert source.grad is None and x.grad is not None
    assert torch.equal(source.detach(), kept)


def test_banded_window_is_a_valid_correlation_in_the_right_orientation():
    window = torch.tensor([1.0, 2.0, 4.0])  # asymmetric: a flipped band would show
    signal = torch.arange(6.0) ** 2
    band = banded_window(window, 6)
    assert band.shape == (4, 6)
    expected = torch.nn.functional.conv1d(signal.view(1, 1, 6), window.view(1, 1, 3)).flatten()
    torch.testing.assert_close(band @ signal, expected)
