"""tlab.core.models: the stage interface, freezing, heads, registry and every architecture."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from tlab.core.architectures import dtn as dtn_module
from tlab.core.architectures.parts import HALF, IMAGENET_MEAN, IMAGENET_STD
from tlab.core.models import (
    StagedModel,
    build_model,
    freeze,
    list_models,
    model_options,
    replace_head,
)
from tlab.errors import TlabError, UnknownNameError, WeightsUnavailableError

NUM_CLASSES = 5
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)

# (name, options, expected number of stages) for every model cheap enough to train on a CPU in
# a test. Depth formulas: CIFAR ResNet 1 + 3n (depth 6n+2), WRN 1 + 3n (depth 6n+4),
# DenseNet 1 + len(blocks), VGG len(widths) + 1.
SMALL = [
    ("dtn", {}, 4),
    ("resnet20", {}, 1 + 3 * 3),
    ("resnet56", {}, 1 + 3 * 9),
    ("resnet", {"depth": 8}, 1 + 3 * 1),
    ("wrn", {"depth": 10, "width": 1}, 1 + 3 * 1),
    ("wrn-16-2", {}, 1 + 3 * 2),
    ("densenet", {"blocks": [1, 2], "growth": 4}, 1 + 2),
    ("densenet-small", {}, 1 + 4),
    ("vgg", {}, 8 + 1),
    ("vgg", {"widths": [4, 4, 8], "fc_width": 16, "dropout": 0.2}, 3 + 1),
    ("tv_resnet18", {}, 5),
]
BIG = ["wrn-28-10", "densenet", "tv_vgg16"]  # built once each, in dedicated tests below
IDS = [f"{name}-custom" if opts else name for name, opts, _ in SMALL]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: one thread is faster


def make(name: str, options: dict, seed: int = 0) -> StagedModel:
    torch.manual_seed(seed)
    return build_model(name, NUM_CLASSES, **options)


def images(n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def sgd_steps(model: StagedModel, steps: int = 3, batch: int = 4) -> None:
    """A few SGD steps in train mode on random data (only parameters that require grad)."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    gen = torch.Generator().manual_seed(7)
    for _ in range(steps):
        x = torch.rand(batch, 3, 32, 32, generator=gen)
        y = torch.randint(0, model.num_classes, (batch,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_registry_is_fully_covered_by_these_tests() -> None:
    assert {name for name, _, _ in SMALL} | set(BIG) == set(list_models())


# --------------------------------------------------------------------------- shapes, features


@pytest.mark.parametrize("name,options,stages", SMALL, ids=IDS)
def test_forward_and_features_of_every_stage(name: str, options: dict, stages: int) -> None:
    model = make(name, options).eval()
    x = images()
    assert model.num_stages == stages == len(model.stage_names) == len(set(model.stage_names))
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (2, NUM_CLASSES)
        normalised = model.features(x, 0)
        assert torch.allclose(normalised, (x - model.mean) / model.std)
        previous = normalised
        for k in range(1, stages + 1):
            out = model.features(x, k)
            assert torch.allclose(out, model.stages[k - 1](previous), atol=1e-6)
            previous = out
        assert previous.shape == (2, model.head.in_features)
        assert torch.allclose(model.head(model.features(x, stages)), logits, atol=1e-6)


@pytest.mark.parametrize("name,options,stages", SMALL, ids=IDS)
def test_channels_last_gives_same_output(name: str, options: dict, stages: int) -> None:
    model = make(name, options).eval()
    x = images()
    with torch.no_grad():
        expected = model(x)
        model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, atol=1e-5)


def test_state_dict_round_trip_and_deepcopy() -> None:
    source = make("densenet-small", {}, seed=0)
    sgd_steps(source, steps=1)
    rebuilt = make("densenet-small", {}, seed=1)
    rebuilt.load_state_dict(source.state_dict())
    twin = copy.deepcopy(freeze(source, 2))
    assert twin.frozen_stages == 2 and twin.options == source.options
    x = images()
    expected = source.eval()(x)
    assert torch.equal(rebuilt.eval()(x), expected)
    assert torch.equal(twin.eval()(x), expected)


def test_normalisation_is_inside_the_model() -> None:
    half = build_model("resnet20", 10)
    assert torch.equal(half.mean.flatten(), torch.tensor(HALF))
    assert torch.equal(half.std.flatten(), torch.tensor(HALF))
    x = images()
    assert torch.allclose(half.features(x, 0), 2 * x - 1)  # [0, 1] -> [-1, 1] as in Zhang/Davchev
    teacher = build_model("tv_resnet18", 10)
    assert torch.allclose(teacher.mean.flatten(), torch.tensor(IMAGENET_MEAN))
    assert torch.allclose(teacher.std.flatten(), torch.tensor(IMAGENET_STD))


# --------------------------------------------------------------------------- freeze


def _mid(stages: int) -> int:
    return stages // 2


@pytest.mark.parametrize("where", ["none", "mid", "all"])
@pytest.mark.parametrize("name,options,stages", SMALL, ids=IDS)
def test_freeze_fixes_first_k_stages(name: str, options: dict, stages: int, where: str) -> None:
    model = make(name, options)
    k = {"none": 0, "mid": _mid(stages), "all": stages}[where]
    x = images()
    before_features = model.eval().features(x, k).detach()
    assert freeze(model, k) is model and model.frozen_stages == k
    for i, stage in enumerate(model.stages):
        assert all(p.requires_grad == (i >= k) for p in stage.parameters())
    assert all(p.requires_grad for p in model.head.parameters())

    before = [snapshot(stage) for stage in model.stages]
    head_before = snapshot(model.head)
    sgd_steps(model)
    assert model.training
    for i, stage in enumerate(model.stages):
        after = snapshot(stage)
        if i < k:
            # weights, BN running statistics and counters all untouched; stage kept in eval mode
            assert same(after, before[i]), f"frozen stage {i + 1} changed"
            assert not any(m.training for m in stage.modules())
        elif any(True for _ in stage.parameters()):
            assert any(not torch.equal(after[n], before[i][n]) for n, _ in stage.named_parameters())
            for m_name, m in stage.named_modules():
                if isinstance(m, BATCH_NORMS):
                    key = f"{m_name}.running_mean"
                    assert not torch.equal(after[key], before[i][key])
    assert not same(snapshot(model.head), head_before)
    # Still in train mode, the frozen stages compute exactly the source function.
    assert torch.equal(model.features(x, k).detach(), before_features)


@pytest.mark.parametrize("name,options,stages", SMALL, ids=IDS)
def test_freeze_with_train_bn_keeps_batchnorm_learning(
    name: str, options: dict, stages: int
) -> None:
    model = make(name, options)
    freeze(model, stages, train_bn=True)  # every stage frozen, BatchNorm keeps learning
    bns = [
        (i, n, m)
        for i, s in enumerate(model.stages)
        for n, m in s.named_modules()
        if isinstance(m, BATCH_NORMS)
    ]
    assert bns, "every small model has BatchNorm layers"
    bn_params = {id(p) for _, _, m in bns for p in m.parameters()}
    for p in model.stages.parameters():
        assert p.requires_grad == (id(p) in bn_params)
    before = [snapshot(stage) for stage in model.stages]
    sgd_steps(model)
    assert all(m.training for _, _, m in bns)
    after = [snapshot(stage) for stage in model.stages]
    for i, m_name, _ in bns:
        for suffix in ("running_mean", "running_var", "weight", "bias"):
            key = f"{m_name}.{suffix}" if m_name else suffix
            assert not torch.equal(after[i][key], before[i][key]), f"{key} of stage {i + 1} froze"
    for i, stage in enumerate(model.stages):
        for m_name, m in stage.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                key = f"{m_name}.weight" if m_name else "weight"
                assert torch.equal(after[i][key], before[i][key]), f"frozen {key} changed"


def test_refreezing_updates_flags_and_modes() -> None:
    model = make("resnet20", {})
    freeze(model, 10)
    freeze(model, 3)
    model.train()
    assert model.frozen_stages == 3
    assert [s.training for s in model.stages] == [False] * 3 + [True] * 7
    assert [all(p.requires_grad for p in s.parameters()) for s in model.stages] == [False] * 3 + [
        True
    ] * 7
    model.eval()
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("bad", [-1, 11, 2.0, True, "3"])
def test_freeze_out_of_range_names_range_and_stages(bad: object) -> None:
    model = build_model("resnet20", 10)
    with pytest.raises(TlabError) as info:
        freeze(model, bad)
    message = str(info.value)
    assert "0..10" in message and "'resnet20'" in message
    assert "1:stem" in message and "10:group3.block3" in message
    assert model.frozen_stages == 0 and all(p.requires_grad for p in model.parameters())
    with pytest.raises(TlabError, match=r"0\.\.10"):
        model.features(images(), bad)


def test_freeze_rejects_plain_modules() -> None:
    with pytest.raises(TlabError, match="StagedModel"):
        freeze(nn.Linear(2, 2), 0)


# --------------------------------------------------------------------------- replace_head


@pytest.mark.parametrize("name,options,stages", SMALL, ids=IDS)
def test_replace_head_keeps_stages(name: str, options: dict, stages: int) -> None:
    model = make(name, options)
    freeze(model, _mid(stages))
    stages_before = snapshot(model.stages)
    old_head = model.head
    assert replace_head(model, 3) is model
    assert model.head is not old_head
    assert (model.head.in_features, model.head.out_features) == (old_head.in_features, 3)
    assert all(p.requires_grad for p in model.head.parameters())
    assert same(snapshot(model.stages), stages_before)
    assert model.frozen_stages == _mid(stages)
    assert model.eval()(images()).shape == (2, 3)


def test_replace_head_rejects_bad_class_count() -> None:
    with pytest.raises(TlabError, match="num_classes"):
        replace_head(build_model("dtn", 10), 0)


# --------------------------------------------------------------------------- registry errors


def test_unknown_arch_lists_models() -> None:
    with pytest.raises(UnknownNameError) as info:
        build_model("resnet57", 10)
    assert all(name in str(info.value) for name in list_models())


@pytest.mark.parametrize(
    "name,bad,expected",
    [
        ("resnet56", "width", ["no"]),
        ("resnet", "widht", ["depth=20"]),
        ("dtn", "depth", ["no options"]),
        ("wrn", "growth", ["depth=16", "width=2", "dropout=0.0"]),
        ("tv_vgg16", "pretrained", ["weights=None"]),
    ],
)
def test_unknown_option_lists_valid_options(name: str, bad: str, expected: list[str]) -> None:
    with pytest.raises(TlabError) as info:
        build_model(name, 10, **{bad: 1})
    message = str(info.value)
    assert bad in message and all(e in message for e in expected)


def test_model_options_exclude_what_the_name_fixes() -> None:
    assert model_options("resnet") == {"depth": 20}
    assert model_options("resnet56") == {}
    assert model_options("wrn-28-10") == {"dropout": 0.0}
    assert set(model_options("densenet-small")) == {"growth", "compression"}


@pytest.mark.parametrize(
    "name,options",
    [
        ("resnet", {"depth": 21}),
        ("wrn", {"depth": 17}),
        ("wrn", {"width": 0}),
        ("densenet", {"blocks": []}),
        ("densenet", {"compression": 0.0}),
        ("vgg", {"widths": [8, 0]}),
        ("vgg", {"widths": [4] * 11}),
        ("tv_resnet18", {"weights": "imagenet21k"}),
    ],
)
def test_bad_option_values_are_explained(name: str, options: dict) -> None:
    with pytest.raises(TlabError):
        build_model(name, 10, **options)


def test_bad_num_classes() -> None:
    with pytest.raises(TlabError, match="num_classes"):
        build_model("dtn", 0)


# --------------------------------------------------------------------------- reference models


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_dtn_matches_zhang_layer_list() -> None:
    model = build_model("dtn", 10)
    conv_blocks = [(3, 64, 0.1), (64, 128, 0.3), (128, 256, 0.5)]
    expected = sum(5 * 5 * c_in * c_out + c_out + 2 * c_out for c_in, c_out, _ in conv_blocks)
    expected += 256 * 4 * 4 * 512 + 512 + 2 * 512  # Linear(4096 -> 512) + BatchNorm1d
    expected += 512 * 10 + 10  # classifier
    assert _count(model) == expected
    assert model.stage_names == ("conv1", "conv2", "conv3", "fc")
    for stage, (c_in, c_out, p) in zip(model.stages[:3], conv_blocks, strict=True):
        conv, bn, drop, relu = stage
        assert (
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
        ) == (c_in, c_out, (5, 5), (2, 2), (2, 2))
        assert isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)
        assert isinstance(drop, nn.Dropout2d) and drop.p == p
    assert [type(m) for m in model.stages[3]] == [
        nn.Flatten,
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Dropout,
    ]
    assert model.stages[3][4].p == 0.5 and dtn_module.FEATURE_DIM == model.head.in_features == 512


@pytest.mark.parametrize("name,expected", [("resnet20", 0.27e6), ("resnet56", 0.85e6)])
def test_cifar_resnet_parameter_counts(name: str, expected: float) -> None:
    # He et al. (2016), Table 6: ResNet-20 0.27M, ResNet-56 0.85M parameters (10 classes)
    assert _count(build_model(name, 10)) == pytest.approx(expected, rel=0.01)


def test_option_a_shortcut_has_no_parameters() -> None:
    model = build_model("resnet20", 10)
    block = model.stages[4]  # group2.block1: 16 -> 32 channels, stride 2
    assert model.stage_names[4] == "group2.block1"
    assert not list(block.shortcut.parameters())
    x = torch.randn(2, 16, 32, 32)
    padded = block.shortcut(x)
    assert padded.shape == (2, 32, 16, 16)
    assert torch.equal(padded[:, :16], x[:, :, ::2, ::2]) and not padded[:, 16:].any()


def test_wrn_28_10_once() -> None:
    torch.manual_seed(0)
    model = build_model("wrn-28-10", 10).eval()
    # Zagoruyko & Komodakis (2016), Table: WRN-28-10 has 36.5M parameters
    assert _count(model) == pytest.approx(36.5e6, rel=0.01)
    assert model.num_stages == 1 + 3 * 4 == len(model.stage_names)
    x = images()
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (2, 10)
        assert model.features(x, 1).shape == (2, 16, 32, 32)
        assert model.features(x, 5).shape == (2, 160, 32, 32)  # end of group 1 (16 * 10)
        last = model.features(x, model.num_stages)
        assert last.shape == (2, 640) == (2, model.head.in_features)
        assert torch.allclose(model.head(last), logits, atol=1e-5)


def test_densenet_full_once() -> None:
    torch.manual_seed(0)
    model = build_model("densenet", 10).eval()
    assert model.options["blocks"] == (6, 12, 24, 16) and model.options["growth"] == 12
    channels = 24  # stem: 2 * growth
    for i, layers in enumerate((6, 12, 24, 16)):
        channels += 12 * layers
        if i < 3:
            channels //= 2  # compression 0.5
    assert model.head.in_features == channels
    assert model.num_stages == 5
    x = images()
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (2, 10)
        shapes = [tuple(model.features(x, k).shape) for k in range(1, 6)]
        assert shapes[:4] == [(2, 24, 32, 32), (2, 48, 16, 16), (2, 96, 8, 8), (2, 192, 4, 4)]
        assert shapes[4] == (2, channels)
        assert torch.allclose(model.head(model.features(x, 5)), logits, atol=1e-5)


def test_tv_vgg16_once() -> None:
    torch.manual_seed(0)
    model = build_model("tv_vgg16", 10)
    assert model.stage_names == ("block1", "block2", "block3", "block4", "block5", "fc6", "fc7")
    assert (model.head.in_features, model.head.out_features) == (4096, 10)
    x = images()
    model.eval()
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (2, 10)
        sizes = [32 // 2**k for k in range(1, 6)]
        for k, (c, s) in enumerate(zip((64, 128, 256, 512, 512), sizes, strict=True), 1):
            assert model.features(x, k).shape == (2, c, s, s)
        assert model.features(x, 7).shape == (2, 4096)
        assert torch.allclose(model.head(model.features(x, 7)), logits, atol=1e-5)
        frozen_out = model.features(x, 5)
    freeze(model, 5)  # every convolution frozen, FC layers and head train
    conv_before = snapshot(model.stages[:5])
    fc_before = snapshot(model.stages[6])
    sgd_steps(model, steps=1, batch=2)
    assert same(snapshot(model.stages[:5]), conv_before)
    assert not same(snapshot(model.stages[6]), fc_before)
    assert torch.equal(model.features(x, 5).detach(), frozen_out)


# --------------------------------------------------------------------------- pretrained weights


def _hub_checkpoints(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def test_missing_imagenet_weights_say_where_and_from_where(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = _hub_checkpoints(monkeypatch, tmp_path)
    for arch, name in (
        ("tv_resnet18", "resnet18-f37072fd.pth"),
        ("tv_vgg16", "vgg16-397923af.pth"),
    ):
        with pytest.raises(WeightsUnavailableError) as info:
            build_model(arch, 10, weights="imagenet")
        message = str(info.value)
        assert str(folder / name) in message
        assert f"https://download.pytorch.org/models/{name}" in message
        assert "weights=None" in message
    assert not any(folder.iterdir())  # nothing was downloaded


def test_cached_imagenet_weights_load_into_stages_and_head(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = _hub_checkpoints(monkeypatch, tmp_path)
    torch.manual_seed(3)
    fake = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(fake, folder / "resnet18-f37072fd.pth")

    imagenet = build_model("tv_resnet18", 1000, weights="imagenet")
    assert torch.equal(imagenet.stages[0][0].weight, fake["conv1.weight"])
    assert torch.equal(imagenet.stages[0][1].running_var, fake["bn1.running_var"])
    assert torch.equal(imagenet.stages[4][0][1].conv2.weight, fake["layer4.1.conv2.weight"])
    assert torch.equal(imagenet.head.weight, fake["fc.weight"])

    target = build_model("tv_resnet18", 10, weights="imagenet")
    assert same(snapshot(target.stages), snapshot(imagenet.stages))
    assert target.head.out_features == 10
    assert target.eval()(images()).shape == (2, 10)


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoints_that_need_code_or_do_not_match_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = _hub_checkpoints(monkeypatch, tmp_path)
    path = folder / "resnet18-f37072fd.pth"
    marker = tmp_path / "code-was-executed"
    torch.save({"conv1.weight": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(WeightsUnavailableError, match="plain-tensor"):
        build_model("tv_resnet18", 10, weights="imagenet")
    assert not marker.exists()

    torch.save({"not.a.resnet": torch.zeros(3)}, path)
    with pytest.raises(WeightsUnavailableError, match="does not hold"):
        build_model("tv_resnet18", 10, weights="imagenet")


@pytest.mark.parametrize("arch", ["dtn", "vgg"])
def test_a_model_fed_images_of_the_wrong_size_names_the_shape_it_reads(arch):
    model = build_model(arch, 10).eval()
    with pytest.raises(
        TlabError,
        match=r"reads images shaped \(N, 3, 32, 32\); got \(2, 3, 64, 64\)"
        r": resize them to 32x32",
    ):
        model(torch.rand(2, 3, 64, 64))
    with pytest.raises(TlabError, match=r"\(N, 3, 32, 32\); got \(2, 1, 32, 32\)"):
        model.features(torch.rand(2, 1, 32, 32), 1)


def test_a_globally_pooled_model_reads_any_size_but_not_the_wrong_channels():
    model = build_model("resnet20", 10).eval()
    assert model(torch.rand(2, 3, 40, 40)).shape == (2, 10)
    with pytest.raises(TlabError, match=r"reads images shaped \(N, 3, H, W\)"):
        model(torch.rand(2, 3, 32))
