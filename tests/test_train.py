"""Training strategies: weights, freezing, BatchNorm, early stopping, adversarial training."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

import tlab
import tlab.core.zoo as zoo
from tlab.attacks.gradient import fgsm
from tlab.core.data import load_domain
from tlab.core.metrics import accuracy
from tlab.core.models import build_model
from tlab.core.tensorsets import class_balanced_subset, train_val_split
from tlab.core.train import (
    ADVERSARIAL_STEP_VERSION,
    TrainConfig,
    fit,
    make_optimizer,
    prepare_model,
)
from tlab.core.zoo import ModelSpec
from tlab.errors import TlabError, UnknownNameError


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TLAB_DATA", str(tmp_path_factory.mktemp("data")))
    domain = load_domain("digits")
    yield domain
    mp.undo()


@pytest.fixture(scope="module")
def small(digits):
    """400 training digits: enough to move every weight, cheap enough for many fits."""
    return class_balanced_subset(digits.train, 400, seed=0)


@pytest.fixture(scope="module")
def source(small):
    torch.manual_seed(0)
    model = build_model("dtn", 10)
    fit(model, small, None, TrainConfig(epochs=2, seed=0), device="cpu", progress=False)
    return model


def _stage_state(model, k):
    return {n: t.clone() for n, t in model.stages[:k].state_dict().items()}


def test_finetune_copies_source_and_never_modifies_it(source, small):
    before = {n: t.clone() for n, t in source.state_dict().items()}
    model = prepare_model("finetune", arch="dtn", num_classes=10, source=source, frozen=2)
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), (
            name
        )  # copied, head kept (same labels)
    fit(model, small, None, TrainConfig(epochs=1), device="cpu", progress=False)
    for name, tensor in source.state_dict().items():
        assert torch.equal(before[name], tensor), f"source changed: {name}"


@pytest.fixture(params=["float32", "bfloat16"])
def precision(request, monkeypatch):
    """Run a test under each training precision (tlab.core.device.training_dtype)."""
    monkeypatch.setenv("TLAB_PRECISION", request.param)
    return request.param


@pytest.mark.parametrize("frozen", [0, 2, 4])
def test_frozen_stages_do_not_change_and_the_rest_does(source, small, frozen, precision):
    model = prepare_model("finetune", arch="dtn", num_classes=10, source=source, frozen=frozen)
    frozen_before = _stage_state(model, frozen)
    free_before = {n: t.clone() for n, t in model.stages[frozen:].state_dict().items()}
    head_before = model.head.weight.clone()
    fit(model, small, None, TrainConfig(epochs=1), device="cpu", progress=False)
    for name, tensor in model.stages[:frozen].state_dict().items():
        assert torch.equal(frozen_before[name], tensor), f"frozen {name} changed"
    # BatchNorm running statistics are part of the frozen state above; trainable stages move.
    changed = [
        n
        for n, t in model.stages[frozen:].state_dict().items()
        if t.is_floating_point() and not torch.equal(free_before[n], t)
    ]
    assert (len(changed) > 0) == (frozen < model.num_stages)
    assert not torch.equal(head_before, model.head.weight)


def test_train_bn_lets_frozen_batchnorm_statistics_adapt(source, digits):
    model = prepare_model(
        "finetune", arch="dtn", num_classes=10, source=source, frozen=2, train_bn=True
    )
    bn_before = model.stages[0][1].running_mean.clone()
    conv_before = model.stages[0][0].weight.clone()
    fit(model, digits.test, None, TrainConfig(epochs=1), device="cpu", progress=False)
    assert not torch.equal(bn_before, model.stages[0][1].running_mean)
    assert torch.equal(conv_before, model.stages[0][0].weight)


def test_commoninit_replaces_only_the_classifier(source):
    model = prepare_model("commoninit", arch="dtn", num_classes=10, source=source)
    assert model.frozen_stages == 0
    for name, tensor in source.stages.state_dict().items():
        assert torch.equal(model.stages.state_dict()[name], tensor)
    assert not torch.equal(model.head.weight, source.head.weight)


def test_finetune_to_another_label_set_gets_a_new_head(source):
    model = prepare_model("finetune", arch="dtn", num_classes=5, source=source, frozen=4)
    assert model.head.out_features == 5
    assert all(not p.requires_grad for p in model.stages.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


def test_early_stopping_keeps_the_best_validation_epoch(digits):
    train, val = train_val_split(class_balanced_subset(digits.train, 300, seed=1), 0.3, seed=1)
    model = build_model("dtn", 10)
    cfg = TrainConfig(epochs=12, patience=2, lr=3e-2, seed=1)
    result = fit(model, train, val, cfg, device="cpu", progress=False)
    best = max(row["val_accuracy"] for row in result.history)
    assert result.best_val_accuracy == best
    assert accuracy(model, val.floats(), val.labels) == pytest.approx(best)
    if result.stopped_early:
        assert len(result.history) - result.best_epoch == cfg.patience


def test_ties_in_validation_accuracy_are_broken_by_validation_loss(digits):
    """With 10 validation images accuracy plateaus; the kept epoch must be the lowest-loss one
    among the best-accuracy epochs, not simply the first of them."""
    train, val = train_val_split(class_balanced_subset(digits.train, 200, seed=0), 0.05, seed=0)
    assert len(val) == 10
    model = build_model("dtn", 10)
    cfg = TrainConfig(epochs=15, patience=None, batch_size=32, seed=0)
    result = fit(model, train, val, cfg, device="cpu", progress=False)
    history = result.history
    best_acc = max(row["val_accuracy"] for row in history)
    tied = [row for row in history if row["val_accuracy"] == best_acc]
    assert len(tied) > 1, "this test needs a plateau of equal validation accuracy"
    kept = min(tied, key=lambda row: row["val_loss"])
    assert result.best_epoch == kept["epoch"]
    assert result.best_epoch != tied[0]["epoch"] or len({r["val_loss"] for r in tied}) == 1
    logits = model(val.floats())
    assert torch.nn.functional.cross_entropy(logits, val.labels).item() == pytest.approx(
        kept["val_loss"], rel=1e-4
    )


def test_fgsm_adversarial_training_makes_the_model_more_robust(digits, precision):
    eps = 16 / 255
    train = class_balanced_subset(digits.train, 500, seed=0)
    x, y = digits.test.floats()[:300], digits.test.labels[:300]
    scores = {}
    for mode in ("none", "fgsm"):
        torch.manual_seed(0)
        model = build_model("dtn", 10)
        fit(
            model,
            train,
            None,
            TrainConfig(epochs=4, seed=0, adversarial=mode, adv_eps=eps),
            device="cpu",
            progress=False,
        )
        scores[mode] = accuracy(model, fgsm(model, x, y, eps=eps), y)
    assert scores["fgsm"] > scores["none"] + 0.05, scores


def test_bfloat16_training_learns_as_well_and_keeps_float32_weights(small, digits, monkeypatch):
    x, y = digits.test.floats()[:500], digits.test.labels[:500]
    models, scores = {}, {}
    for choice in ("float32", "bfloat16"):
        monkeypatch.setenv("TLAB_PRECISION", choice)
        torch.manual_seed(0)
        models[choice] = build_model("dtn", 10)
        fit(
            models[choice], small, None, TrainConfig(epochs=3, seed=0), device="cpu", progress=False
        )
        scores[choice] = accuracy(models[choice], x, y)
    weights = {k: m.stages[0][0].weight for k, m in models.items()}
    assert all(w.dtype == torch.float32 for w in weights.values())
    assert not torch.equal(weights["float32"], weights["bfloat16"])  # bfloat16 really ran
    assert scores["float32"] > 0.5 and abs(scores["bfloat16"] - scores["float32"]) < 0.1, scores


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(optimizer="rmsprop"), "sgd, adam"),
        (dict(epochs=0), "epochs"),
        (dict(adversarial="cw"), "none, fgsm, pgd"),
        (dict(adv_labels="leaky"), "true, predicted"),
        (dict(adv_eps=8), "[0, 1]"),
        (dict(lr=-1.0), "lr"),
        (dict(frozen_train_mode="yes"), "frozen_train_mode"),
    ],
)
def test_bad_training_configs_are_rejected(kwargs, message):
    with pytest.raises(TlabError, match=None) as info:
        TrainConfig(**kwargs)
    assert message in str(info.value)


def test_bad_strategies_are_rejected(source):
    with pytest.raises(UnknownNameError, match="scratch, finetune, commoninit"):
        prepare_model("distill", arch="dtn", num_classes=10)
    with pytest.raises(TlabError, match="needs a source"):
        prepare_model("finetune", arch="dtn", num_classes=10)
    with pytest.raises(TlabError, match="no source"):
        prepare_model("scratch", arch="dtn", num_classes=10, source=source)
    with pytest.raises(TlabError, match="0"):
        prepare_model("finetune", arch="dtn", num_classes=10, source=source, frozen=9)


# Keys of these recipes as stored before TrainConfig.frozen_train_mode existed and before the
# adversarial step put the clean pass first (tlab 0.1.0, zoo format 3, float32 training).
_SCRATCH = ModelSpec(domain="digits")
_FGSM = ModelSpec(domain="digits", train=TrainConfig(adversarial="fgsm", adv_labels="predicted"))
_STORED_KEYS = [
    (_SCRATCH, "5b5c3afde706cd2a1356"),
    (
        ModelSpec(domain="digits", strategy="finetune", source=_SCRATCH, frozen=4),
        "e72604cd867e1f277d58",
    ),
    (
        ModelSpec(
            domain="digits",
            strategy="finetune",
            source=_SCRATCH,
            frozen=2,
            train_bn=True,
            train=TrainConfig(optimizer="sgd", lr=1e-2, weight_decay=5e-4),
        ),
        "8ad9988a0df66885dbd3",
    ),
]
_FORMER_ADVERSARIAL_KEYS = [
    (_FGSM, "151e7f54b1f74d3df3c7"),
    (
        ModelSpec(
            domain="digits",
            strategy="finetune",
            source=_FGSM,
            frozen=4,
            train=TrainConfig(adversarial="pgd"),
        ),
        "b7dc4384663620a32552",
    ),
    (
        ModelSpec(domain="digits", strategy="finetune", source=_FGSM, frozen=4),
        "4114e9cfbcb0c446fdbd",
    ),
]


@pytest.fixture
def keys_as_stored(monkeypatch):
    """The version, zoo format and precision the keys above were computed under."""
    monkeypatch.setattr(tlab, "__version__", "0.1.0")
    monkeypatch.setattr(zoo, "ZOO_FORMAT", 3)
    monkeypatch.setenv("TLAB_PRECISION", "float32")


@pytest.mark.usefixtures("keys_as_stored")
def test_recipes_at_the_defaults_keep_their_stored_zoo_keys():
    for spec, key in _STORED_KEYS:
        assert spec.key("cpu") == key, spec
    assert "frozen_train_mode" not in TrainConfig().as_dict()


@pytest.mark.usefixtures("keys_as_stored")
def test_the_authors_frozen_mode_and_the_new_adversarial_step_get_new_keys():
    finetune, key = _STORED_KEYS[1]
    authors = dataclasses.replace(finetune, train=TrainConfig(frozen_train_mode=True))
    assert authors.key("cpu") != key
    assert authors.describe("cpu")["train"]["frozen_train_mode"] is True
    # Adversarially trained models, and everything trained from them, are never reused from
    # the former step; naturally trained recipes carry no step version.
    for spec, former in _FORMER_ADVERSARIAL_KEYS:
        assert spec.key("cpu") != former, spec
    assert _FGSM.train.as_dict()["adv_step_version"] == ADVERSARIAL_STEP_VERSION
    assert "adv_step_version" not in _SCRATCH.train.as_dict()


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_the_fused_optimiser_takes_the_default_implementations_steps(name):
    """On a CPU make_optimizer uses PyTorch's fused kernel: the update rule of torch's default
    implementation (a Python loop over the tensors), equal up to float rounding."""
    torch.manual_seed(0)
    model = build_model("dtn", 10).eval()  # no dropout: both see the same gradients
    twin, start = copy.deepcopy(model), copy.deepcopy(model)
    config = TrainConfig(optimizer=name, lr=1e-3, momentum=0.9, weight_decay=5e-4)
    fused = make_optimizer(model, config)
    assert fused.defaults["fused"] is True
    settings = {"lr": 1e-3, "weight_decay": 5e-4}
    default = (
        torch.optim.Adam(twin.parameters(), **settings)
        if name == "adam"
        else torch.optim.SGD(twin.parameters(), momentum=0.9, **settings)
    )
    assert not default.defaults.get("fused")
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    for _ in range(3):
        for net, optimizer in ((model, fused), (twin, default)):
            optimizer.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimizer.step()
    for p, q, p0 in zip(model.parameters(), twin.parameters(), start.parameters(), strict=True):
        assert not torch.equal(p, p0)
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
