"""tlab's training step against what the papers' released code does (issue 15, section 3).

Zhang et al. 2020 (HKUST-KnowComp/AttackTransferLearning): fine-tuning takes the restored
parameters out of the optimisation (``network.py``, ``restore_from_ckpt``) but each epoch starts
with ``model.train()`` on the whole network (``train.py``, ``train``). Frozen layers therefore
keep fixed weights while their BatchNorm running statistics follow domain B and their dropout
stays on: ``TrainConfig(frozen_train_mode=True)``. The default keeps frozen stages in eval mode.

Davchev et al. 2019 (nanton96/An-Empirical-Evaluation-of-Adversarial-Robustness-under-Transfer-
Learning, ``utils/experiment_builder.py``, ``run_adv_train_iter``; ``utils/train.py``,
``adv_train``): per batch, a clean pass in train mode, then crafting (true labels) on an
eval-mode copy of the model, then the adversarial pass in train mode and one optimiser step on
``(L_clean + L_adv) / 2`` (the paper, Sec. 2.3, states the same loss).

Each reference below is a plain PyTorch rendering of that algorithm, written for these tests.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tlab.core.train as train_module
from tlab.attacks.gradient import fgsm, pgd
from tlab.core.models import StagedModel, build_model
from tlab.core.tensorsets import DeviceBatches, TensorSet
from tlab.core.train import TrainConfig, fit, prepare_model

pytestmark = pytest.mark.usefixtures("one_thread")

N = 24  # one batch: every test below is exactly one optimiser step
SEED = 3
EPS = 8 / 255
BN_MOMENTUM = 0.1  # PyTorch's default, used by every tlab architecture


@pytest.fixture(autouse=True)
def float32(monkeypatch: pytest.MonkeyPatch) -> None:
    """Float32 training, so the plain references compute exactly what ``fit`` computes."""
    monkeypatch.setenv("TLAB_PRECISION", "float32")


@pytest.fixture(scope="module")
def batch() -> TensorSet:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N, 3, 32, 32), dtype=torch.uint8, generator=gen)
    return TensorSet(images, torch.arange(N) % 10)


def _first_batch(data: TensorSet, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (shuffled) batch ``fit`` draws first with ``batch_size=len(data)`` and this seed."""
    return next(iter(DeviceBatches(data, len(data), device="cpu", shuffle=True, seed=seed)))


def _one_step(model: StagedModel, data: TensorSet, **config: object) -> None:
    settings: dict = dict(epochs=1, batch_size=len(data), patience=None, seed=SEED)
    fit(model, data, None, TrainConfig(**(settings | config)), device="cpu", progress=False)


def _assert_same_state(got: nn.Module, expected: nn.Module) -> None:
    want = expected.state_dict()
    for name, tensor in got.state_dict().items():
        assert torch.allclose(tensor.float(), want[name].float(), atol=1e-6), name


# ------------------------------------------------------------------- Zhang: frozen stages


@pytest.fixture(scope="module")
def source() -> StagedModel:
    """A DTN whose BatchNorm statistics are not the initial 0 / 1 (a stand-in for model A)."""
    torch.manual_seed(0)
    model = build_model("dtn", 10).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 3, 32, 32) * 0.5)
    return model.eval()


#: the three behaviours of frozen stages: (frozen_train_mode, train_bn)
BEHAVIOURS = {"eval (default)": (False, False), "authors": (True, False), "train_bn": (False, True)}


@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
def test_frozen_stages_in_each_behaviour(behaviour: str, source: StagedModel, batch: TensorSet):
    train_mode, train_bn = BEHAVIOURS[behaviour]
    frozen = 2
    model = prepare_model(
        "finetune", arch="dtn", num_classes=10, source=source, frozen=frozen, train_bn=train_bn
    )
    norms = [stage[1] for stage in model.stages[:frozen]]
    drops = [stage[2] for stage in model.stages[:frozen]]
    assert all(isinstance(m, nn.BatchNorm2d) for m in norms)
    assert all(isinstance(m, nn.Dropout2d) for m in drops)
    before = {n: t.clone() for n, t in model.stages[:frozen].state_dict().items()}
    norm_inputs: list[torch.Tensor] = []
    seen: list[tuple[bool, torch.Tensor, torch.Tensor]] = []  # dropout: (training, in, out)
    hooks = [
        m.register_forward_hook(lambda m, a, o: norm_inputs.append(a[0].detach().clone()))
        for m in norms
    ]
    hooks += [
        m.register_forward_hook(
            lambda m, a, o: seen.append((m.training, a[0].detach().clone(), o.detach().clone()))
        )
        for m in drops
    ]
    _one_step(model, batch, optimizer="sgd", lr=0.01, frozen_train_mode=train_mode)
    for hook in hooks:
        hook.remove()

    adapts = train_mode or train_bn
    after = model.stages[:frozen].state_dict()
    for name in (f"{i}.0.{p}" for i in range(frozen) for p in ("weight", "bias")):  # convs
        assert torch.equal(before[name], after[name]), f"frozen convolution {name} changed"
    for index, norm in enumerate(norms):
        prefix = f"{index}.1."
        affine_moved = not torch.equal(before[prefix + "weight"], norm.weight)
        assert affine_moved == train_bn, "BatchNorm scale trains only with train_bn"
        if not adapts:
            for stat in ("running_mean", "running_var", "num_batches_tracked"):
                assert torch.equal(before[prefix + stat], after[prefix + stat]), stat
            continue
        # Train mode: one update towards this batch's statistics (unbiased variance).
        x = norm_inputs[index]
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=True)
        old_mean, old_var = before[prefix + "running_mean"], before[prefix + "running_var"]
        want_mean = (1 - BN_MOMENTUM) * old_mean + BN_MOMENTUM * mean
        want_var = (1 - BN_MOMENTUM) * old_var + BN_MOMENTUM * var
        assert torch.allclose(norm.running_mean, want_mean, atol=1e-5)
        assert torch.allclose(norm.running_var, want_var, atol=1e-5)
        assert (norm.running_mean - mean).abs().sum() < (old_mean - mean).abs().sum()
        assert int(norm.num_batches_tracked) == int(before[prefix + "num_batches_tracked"]) + 1
    assert len(seen) == frozen  # one training forward, no validation pass
    for training, inp, out in seen:
        assert training == adapts
        dropped = (out.abs().sum(dim=(2, 3)) == 0) & (inp.abs().sum(dim=(2, 3)) > 0)
        assert bool(dropped.any()) == adapts, "channel dropout is active exactly in train mode"
        if not adapts:
            assert torch.equal(inp, out)


def test_authors_mode_is_one_step_of_their_training_loop(source: StagedModel, batch: TensorSet):
    """``fit`` in the authors' mode == their loop: whole model in train mode, frozen parameters
    without gradient, SGD over every parameter (their digits optimiser: momentum 0.5, weight
    decay 1e-6), one step on the negative log-likelihood of the log-softmax."""
    model = prepare_model("finetune", arch="dtn", num_classes=10, source=source, frozen=3)
    reference = copy.deepcopy(model)
    captured: dict[str, torch.Tensor] = {}

    def capture(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if "x" not in captured:  # the training forward; dropout draws start from this RNG state
            captured["x"], captured["rng"] = args[0].clone(), torch.get_rng_state()

    hook = model.register_forward_pre_hook(capture)
    config = dict(optimizer="sgd", lr=0.01, momentum=0.5, weight_decay=1e-6)
    _one_step(model, batch, frozen_train_mode=True, **config)
    hook.remove()

    x, y = _first_batch(batch, SEED)
    assert torch.equal(captured["x"], x)
    nn.Module.train(reference)  # plain PyTorch semantics: every layer in train mode
    optimiser = torch.optim.SGD(
        reference.parameters(), lr=0.01, momentum=0.5, weight_decay=1e-6
    )  # frozen parameters get no gradient, so SGD leaves them (and their decay) alone
    torch.set_rng_state(captured["rng"])
    optimiser.zero_grad()
    F.nll_loss(F.log_softmax(reference(x), dim=1), y).backward()
    optimiser.step()
    _assert_same_state(model, reference)


# ------------------------------------------------------- Davchev: adversarial training step


def _resnet() -> StagedModel:
    torch.manual_seed(1)
    return build_model("resnet", 10, depth=8)


def _norms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def _stats(model: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for m in _norms(model) for t in (m.running_mean, m.running_var)]


def _craft(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str) -> torch.Tensor:
    """Crafting as tlab's TrainConfig defaults for ``attack`` (PGD: 7 steps of eps / 4)."""
    if attack == "fgsm":
        return fgsm(model, x, y, eps=EPS)
    return pgd(model, x, y, eps=EPS, alpha=EPS / 4, steps=7)


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_adversarial_step_crafts_after_the_clean_pass(
    attack: str, batch: TensorSet, monkeypatch: pytest.MonkeyPatch
):
    model = _resnet()
    start = copy.deepcopy(model)
    calls: list[dict[str, object]] = []
    real: Callable[..., torch.Tensor] = getattr(train_module, attack)

    def spy(net: StagedModel, x: torch.Tensor, labels: torch.Tensor | None, **kw) -> torch.Tensor:
        record: dict[str, object] = {
            "tracked": [int(m.num_batches_tracked) for m in _norms(net)],
            "stats": _stats(net),
            "training": net.training,
            "labels": labels,
        }
        out = real(net, x, labels, **kw)
        record["stats_after"] = _stats(net)
        calls.append(record)
        return out

    monkeypatch.setattr(train_module, attack, spy)
    _one_step(model, batch, optimizer="sgd", lr=0.05, adversarial=attack, adv_labels="true")

    x, y = _first_batch(batch, SEED)
    clean_only = copy.deepcopy(start)
    nn.Module.train(clean_only)
    with torch.no_grad():
        clean_only(x)
    (call,) = calls
    assert call["training"], "crafting happens inside the training step"
    assert torch.equal(call["labels"], y), "the authors craft with the true labels"
    # When crafting starts, BatchNorm has seen exactly one batch, the clean one...
    assert call["tracked"] == [1] * len(_norms(model))
    for got, want in zip(call["stats"], _stats(clean_only), strict=True):
        assert torch.allclose(got, want, atol=1e-6)
    # ... crafting (eval mode) leaves the statistics alone, and the adversarial pass follows.
    for got, want in zip(call["stats_after"], call["stats"], strict=True):
        assert torch.equal(got, want)
    assert [int(m.num_batches_tracked) for m in _norms(model)] == [2] * len(_norms(model))


def _davchev_step(
    model: StagedModel, x: torch.Tensor, y: torch.Tensor, attack: str, *, clean_first: bool
) -> StagedModel:
    """One adversarial training step as the authors' code runs it (``clean_first=True``), or
    with crafting moved before the clean pass (tlab's former order)."""
    net = copy.deepcopy(model)
    nn.Module.train(net)
    optimiser = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)

    def crafted() -> torch.Tensor:
        snapshot = copy.deepcopy(net).eval()  # their adv_train: an eval-mode copy, no grads
        for param in snapshot.parameters():
            param.requires_grad_(False)
        return _craft(snapshot, x, y, attack)

    x_adv = None if clean_first else crafted()
    loss_clean = F.cross_entropy(net(x), y)
    if x_adv is None:
        x_adv = crafted()
    loss = (loss_clean + F.cross_entropy(net(x_adv), y)) / 2
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return net


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_adversarial_step_matches_the_authors_step(attack: str, batch: TensorSet):
    model = _resnet()
    start = copy.deepcopy(model)
    _one_step(model, batch, optimizer="sgd", lr=0.05, adversarial=attack, adv_labels="true")
    x, y = _first_batch(batch, SEED)
    _assert_same_state(model, _davchev_step(start, x, y, attack, clean_first=True))
    # The order is visible in the result: crafting first would give other weights.
    former = _davchev_step(start, x, y, attack, clean_first=False)
    assert not all(
        torch.allclose(a, b, atol=1e-6)
        for a, b in zip(model.state_dict().values(), former.state_dict().values(), strict=True)
    )
