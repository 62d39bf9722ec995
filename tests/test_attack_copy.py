"""tlab.attacks._fast.attack_copy: the frozen, batch-norm-folded copy the mimicry attack runs on."""

from __future__ import annotations

from copy import deepcopy

import pytest
import torch
from conftest import SMALL_VGG
from torch import nn

from tlab.attacks._fast.attack_copy import (
    ChannelsLast,
    attack_copy,
    fold_batch_norms,
    pool_before_relu,
)
from tlab.core.models import build_model


def _with_learned_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            c = module.num_features
            module.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            module.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            module.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            module.bias.data.copy_(torch.rand(c, generator=g) - 0.5)
    return model


@pytest.mark.parametrize(
    "arch, options, left",
    [
        ("vgg", SMALL_VGG, 0),  # four conv stages and the fc stage's Linear + BatchNorm1d
        ("dtn", {}, 0),
        ("resnet20", {}, 18),  # only the stem folds; blocks keep bn1/bn2 as attributes
    ],
)
def test_copy_computes_the_eval_function_of_every_stage(arch, options, left):
    torch.manual_seed(0)
    model = _with_learned_statistics(build_model(arch, 10, **options)).eval()
    x = torch.rand(6, 3, 32, 32)
    copy = attack_copy(model)
    norms = (nn.BatchNorm1d, nn.BatchNorm2d)
    assert sum(isinstance(m, norms) for m in model.modules()) > left
    assert sum(isinstance(m, norms) for m in copy.modules()) == left
    with torch.no_grad():
        for k in range(1, model.num_stages + 1):
            torch.testing.assert_close(
                copy.features(x, k), model.features(x, k), rtol=1e-4, atol=1e-4
            )


def test_copy_is_frozen_in_eval_mode_and_leaves_the_model_untouched():
    torch.manual_seed(0)
    model = _with_learned_statistics(build_model("vgg", 5, **SMALL_VGG)).train()
    model.stages[0][0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = attack_copy(model)
    assert not copy.training
    assert not any(p.requires_grad for p in copy.parameters())
    assert model.training and model.stages[1][0].weight.requires_grad
    assert isinstance(model.stages[0][1], nn.BatchNorm2d)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_input_gradient_of_the_copy_matches_the_model():
    torch.manual_seed(1)
    model = _with_learned_statistics(build_model("vgg", 5, **SMALL_VGG), seed=1).eval()
    copy = attack_copy(model)
    x = torch.rand(4, 3, 32, 32)
    grads = []
    for net in (model, copy):
        xi = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(net.features(xi, 3).square().sum(), xi)
        grads.append(grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)


def test_cpu_copies_switch_to_channels_last_after_the_normalisation():
    model = build_model("vgg", 5, **SMALL_VGG)
    copy_ = attack_copy(model)
    assert isinstance(copy_.stages[0][0], ChannelsLast)
    assert copy_.stages[1][0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 32, 32)
    assert copy_.features(x, 0).is_contiguous()  # normalised, NCHW
    assert copy_.features(x, 1).is_contiguous(memory_format=torch.channels_last)
    assert not isinstance(model.stages[0][0], ChannelsLast)


def test_batch_norm_without_running_statistics_is_not_folded():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4, track_running_stats=False),
        nn.Conv2d(4, 4, 3),
        nn.BatchNorm2d(4),
    ).eval()
    x = torch.rand(2, 3, 12, 12)
    expected = net(x)
    assert fold_batch_norms(net) == 1
    assert isinstance(net[1], nn.BatchNorm2d) and isinstance(net[3], nn.Identity)
    torch.testing.assert_close(net(x), expected, rtol=1e-4, atol=1e-5)


def test_pooling_before_the_relu_keeps_values_and_input_gradients_exactly():
    torch.manual_seed(2)
    block = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
    )
    with torch.no_grad():
        block[0].bias.fill_(-0.3)  # many windows with only negative values
        block[3].bias.fill_(-0.5)
    swapped = deepcopy(block)
    assert pool_before_relu(swapped) == 2
    assert [type(m) for m in swapped] == [nn.Conv2d, nn.MaxPool2d, nn.ReLU] * 2
    x = torch.rand(5, 3, 16, 16)
    outputs, grads = [], []
    for net in (block, swapped):
        xi = x.clone().requires_grad_()
        out = net(xi)
        (grad,) = torch.autograd.grad((out * torch.arange(out.numel()).view_as(out)).sum(), xi)
        outputs.append(out)
        grads.append(grad)
    assert (outputs[0] == 0).float().mean() > 0.1
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(grads[0], grads[1])


def test_attack_copy_of_the_vgg_teacher_pools_before_its_relus():
    copy_ = attack_copy(build_model("vgg", 5, **SMALL_VGG))
    order = [type(m) for stage in copy_.stages for m in stage]
    assert order.count(nn.MaxPool2d) == 2
    assert all(order[i + 1] is nn.ReLU for i, kind in enumerate(order) if kind is nn.MaxPool2d)


def test_a_module_that_is_not_a_tlab_model_is_copied_frozen_and_keeps_its_layout():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten()).eval()
    plain[1].running_mean.uniform_(-1, 1)
    plain[1].running_var.uniform_(0.5, 2)
    copy = attack_copy(plain)
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(copy(x), plain(x), atol=1e-5)
    assert isinstance(copy[1], nn.Identity)  # the batch norm was folded into the convolution
    assert not any(p.requires_grad for p in copy.parameters())
    assert copy(x).is_contiguous()  # no channels-last switch outside a StagedModel
