"""Tests for tlab.attacks.gradient: invariants, attack strength, labels, chunking, validation, and a
peer check against torchattacks 3.3.0 on the same model and inputs."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from tlab.attacks import gradient as attacks
from tlab.attacks.gradient import fgsm, fgsm_budgets, make_attack, pgd
from tlab.errors import TlabError, UnknownNameError

NUM_CLASSES = 4


def make_problem(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four classes of 3x8x8 images: a fixed random template per class plus noise."""
    templates = torch.rand(NUM_CLASSES, 3, 8, 8, generator=torch.Generator().manual_seed(0)) - 0.5
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    x = 0.5 + 0.3 * templates[y] + 0.1 * torch.randn(n, 3, 8, 8, generator=g)
    return x.clamp(0, 1), y


class TinyNet(nn.Module):
    """A small conv net with batch norm and dropout, so eval vs train mode matters."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Linear(8 * 4 * 4, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_tiny(seed: int = 0, steps: int = 60) -> TinyNet:
    torch.manual_seed(seed)
    model = TinyNet()
    x, y = make_problem(256, seed=100 + seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model


@pytest.fixture(scope="module")
def model() -> TinyNet:
    return train_tiny()


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return make_problem(128, seed=7)


def predictions(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(x).argmax(1)
    model.train(was)
    return out


def acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predictions(model, x) == y).float().mean().item()


ATTACKS = {
    "fgsm": lambda m, x, y: fgsm(m, x, y, eps=0.05),
    "pgd": lambda m, x, y: pgd(m, x, y, eps=0.05, alpha=0.02, steps=5),
    "pgd_random": lambda m, x, y: pgd(
        m, x, y, eps=0.05, alpha=0.02, steps=5, random_start=True, seed=1
    ),
    "pgd_targeted": lambda m, x, y: pgd(
        m, x, (y + 1) % NUM_CLASSES, eps=0.05, alpha=0.02, steps=5, targeted=True
    ),
    "fgsm_predicted": lambda m, x, y: fgsm(m, x, None, eps=0.05),
}


# --- invariants ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_invariants(model, data, name):
    x, y = data
    # A training model with one submodule deliberately in eval mode and one frozen parameter.
    model.train()
    model.features[1].eval()
    model.features[0].bias.requires_grad_(False)
    sentinel = torch.full_like(model.head.weight, 3.0)
    model.head.weight.grad = sentinel.clone()
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    try:
        x_adv = ATTACKS[name](model, x, y)
        assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
        assert not x_adv.requires_grad and x_adv.grad_fn is None
        assert (x_adv - x).abs().max().item() <= 0.05 + 1e-6
        assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
        assert not torch.equal(x_adv, x)
        assert [m.training for m in model.modules()] == modes
        assert [p.requires_grad for p in model.parameters()] == flags
        assert torch.equal(model.head.weight.grad, sentinel)
        assert all(p.grad is None for n, p in model.named_parameters() if n != "head.weight")
    finally:
        model.features[0].bias.requires_grad_(True)
        model.head.weight.grad = None
        model.eval()


def test_mode_restored_when_forward_raises():
    class Exploding(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2), nn.Dropout(0.5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert not self.training, "attack must run the model in eval mode"
            raise RuntimeError("boom")

    bomb = Exploding().train()
    bomb.net[2].eval()
    x = torch.rand(3, 3, 4, 4)
    for call in (lambda: fgsm(bomb, x, eps=0.1), lambda: pgd(bomb, x, eps=0.1, alpha=0.1, steps=2)):
        with pytest.raises(RuntimeError, match="boom"):
            call()
        assert bomb.training and bomb.net.training and not bomb.net[2].training


def test_mode_restored_when_labels_out_of_range(model, data):
    x, _ = data
    model.train()
    try:
        with pytest.raises(TlabError, match=r"\[0, 3\]"):
            pgd(model, x[:4], torch.tensor([0, 1, 2, 9]), eps=0.1, alpha=0.1, steps=2)
        assert all(m.training for m in model.modules())
    finally:
        model.eval()


def test_deterministic_despite_dropout_and_with_seed(model, data):
    x, y = data
    model.train()  # dropout would randomise gradients if the attack did not switch to eval
    try:
        assert torch.equal(fgsm(model, x, y, eps=0.05), fgsm(model, x, y, eps=0.05))
        run = lambda seed: pgd(  # noqa: E731
            model, x, y, eps=0.05, alpha=0.01, steps=3, random_start=True, seed=seed
        )
        assert torch.equal(run(3), run(3))
        assert not torch.equal(run(3), run(4))
    finally:
        model.eval()


def test_eps_zero_returns_input(model, data):
    x, y = data
    for x_adv in (
        fgsm(model, x, y, eps=0),
        pgd(model, x, y, eps=0.0, alpha=0.01, steps=3),
        pgd(model, x, y, eps=0.0, alpha=0.0, steps=3),  # alpha = eps / 4 at eps 0 (01's panel)
    ):
        assert torch.equal(x_adv, x) and x_adv.data_ptr() != x.data_ptr()
    with pytest.raises(TlabError, match="alpha"):
        pgd(model, x, y, eps=0.01, alpha=0.0, steps=3)


def test_chunking_matches_unchunked(model, data):
    x, y = data
    assert torch.equal(fgsm(model, x, y, eps=0.05), fgsm(model, x, y, eps=0.05, batch_size=7))
    kw = dict(eps=0.05, alpha=0.01, steps=4, random_start=True, seed=5)
    assert torch.equal(pgd(model, x, None, **kw), pgd(model, x, None, batch_size=10, **kw))


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_budgets_equal_fgsm_at_each_budget(model, data, targeted):
    """One gradient for a grid of budgets gives, in order, exactly each budget's own FGSM."""
    x, y = data
    labels = (y + 1) % 3 if targeted else y
    grid = [0.1, 0.0, 0.02, 0.05]
    together = fgsm_budgets(model, x, labels, eps_list=grid, targeted=targeted, batch_size=7)
    assert len(together) == len(grid)
    for eps, x_adv in zip(grid, together, strict=True):
        alone = fgsm(model, x, labels, eps=eps, targeted=targeted)
        assert x_adv.shape == x.shape and torch.equal(x_adv, alone), eps
        assert (x_adv - x).abs().max() <= eps + 1e-7


# --- attack effect ------------------------------------------------------------------------


def test_accuracy_drops_with_eps(model, data):
    x, y = data
    assert acc(model, x, y) > 0.9
    for attack in (
        lambda e: fgsm(model, x, y, eps=e),
        lambda e: pgd(model, x, y, eps=e, alpha=e / 4, steps=7),
    ):
        accs = [acc(model, x, y)] + [acc(model, attack(e), y) for e in (0.02, 0.05, 0.1, 0.2)]
        assert all(b <= a + 0.02 for a, b in itertools.pairwise(accs)), accs
        assert accs[-1] < accs[0] - 0.5, accs


def test_pgd_at_least_as_strong_as_fgsm(model, data):
    x, y = data
    eps_grid = (0.02, 0.05, 0.1)
    fgsm_acc = [acc(model, fgsm(model, x, y, eps=e), y) for e in eps_grid]
    pgd_acc = [acc(model, pgd(model, x, y, eps=e, alpha=e / 4, steps=10), y) for e in eps_grid]
    assert sum(pgd_acc) <= sum(fgsm_acc), (pgd_acc, fgsm_acc)


def test_targeted_attacks_reach_target(model, data):
    x, y = data
    target = (y + 1) % NUM_CLASSES
    x_pgd = pgd(model, x, target, eps=0.2, alpha=0.02, steps=20, targeted=True)
    hit_rate = (predictions(model, x_pgd) == target).float().mean().item()
    assert hit_rate > 2 / NUM_CLASSES, hit_rate
    # One targeted FGSM step lowers the loss of the target class on average.
    x_fgsm = fgsm(model, x, target, eps=0.02, targeted=True)
    with torch.no_grad():
        before = F.cross_entropy(model(x), target)
        after = F.cross_entropy(model(x_fgsm), target)
    assert after < before


def test_predicted_labels_change_attack_direction():
    # Linear model; the first image is predicted as class 0 but its true label is 1.
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    x = torch.tensor([0.6, 0.5, 0.1]).view(1, 3, 1, 1)
    y_true = torch.tensor([1])
    assert predictions(model, x).item() == 0
    x_pred = fgsm(model, x, None, eps=0.1)
    x_true = fgsm(model, x, y_true, eps=0.1)
    assert torch.equal(x_pred, fgsm(model, x, torch.tensor([0]), eps=0.1))
    assert not torch.equal(x_pred, x_true)
    with torch.no_grad():
        p_clean, p_pred, p_true = (model(v).softmax(1)[0] for v in (x, x_pred, x_true))
    assert p_pred[0] < p_clean[0]  # predicted label: pushed away from the predicted class 0
    assert p_true[1] < p_clean[1]  # true label: pushed away from the true class 1
    assert p_true[0] > p_clean[0]  # ... which here moves it towards class 0


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x, y: fgsm(m, x, y, eps=1.5), r"\[0, 1\].*halved"),
        (lambda m, x, y: fgsm(m, x, y, eps=-0.1), r"outside \[0, 1\]"),
        (lambda m, x, y: pgd(m, x, y, eps=0.1, alpha=0.01, steps=0), "steps"),
        (lambda m, x, y: pgd(m, x, y, eps=0.1, alpha=0.0, steps=3), "alpha"),
        (lambda m, x, y: pgd(m, x, y, eps=0.1, alpha=-1.0, steps=3), "alpha"),
        (lambda m, x, y: fgsm(m, x, y, eps=0.1, batch_size=0), "batch_size"),
        (lambda m, x, y: fgsm(m, x * 2, y, eps=0.1), r"outside \[0, 1\]"),
        (lambda m, x, y: fgsm(m, x[0], y, eps=0.1), r"unsqueeze\(0\)"),
        (lambda m, x, y: fgsm(m, (x * 255).to(torch.uint8), y, eps=0.1), "float"),
        (lambda m, x, y: fgsm(m, x, y[:-1], eps=0.1), "one label per image"),
        (lambda m, x, y: pgd(m, x, None, eps=0.1, alpha=0.1, steps=1, targeted=True), "target"),
    ],
)
def test_bad_input_raises_clear_error(model, data, call, message):
    x, y = data
    with pytest.raises(TlabError, match=message):
        call(model, x[:8], y[:8])


def test_inference_mode_is_refused(model, data):
    x, y = data
    with torch.inference_mode(), pytest.raises(TlabError, match="inference_mode"):
        fgsm(model, x[:4], y[:4], eps=0.1)


# --- registry -----------------------------------------------------------------------------


def test_make_attack_matches_functions(model, data):
    x, y = data
    pgd_attack = make_attack("pgd", eps=0.05, alpha=0.01, steps=3)
    assert torch.equal(pgd_attack(model, x, y), pgd(model, x, y, eps=0.05, alpha=0.01, steps=3))
    no_leak = make_attack("fgsm", eps=0.05, labels="predicted")
    assert torch.equal(no_leak(model, x, (y + 1) % 4), fgsm(model, x, None, eps=0.05))
    assert "eps=0.05" in pgd_attack.describe() and set(attacks.list_attacks()) >= {"fgsm", "pgd"}


def test_make_attack_rejects_bad_requests():
    with pytest.raises(UnknownNameError, match="fgsm, pgd"):
        make_attack("cw", eps=0.1)
    with pytest.raises(TlabError, match="no hyperparameter gamma"):
        make_attack("fgsm", eps=0.1, gamma=2)
    with pytest.raises(TlabError, match="needs alpha, steps"):
        make_attack("pgd", eps=0.1)
    with pytest.raises(TlabError, match="halved"):
        make_attack("fgsm", eps=2.0)
    with pytest.raises(TlabError, match="target labels"):
        make_attack("fgsm", eps=0.1, targeted=True, labels="predicted")


# --- peer check ---------------------------------------------------------------------------


def test_matches_torchattacks(model, data):
    """Same model (left in train mode, so both must switch to eval), same 32 inputs."""
    x, y = data
    x, y = x[:32], y[:32]
    target = (y + 2) % NUM_CLASSES
    model.train()
    try:
        ours = fgsm(model, x, y, eps=0.03)
        theirs = torchattacks.FGSM(model, eps=0.03)(x, y)
        assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)

        ours = pgd(model, x, y, eps=0.03, alpha=0.01, steps=7)
        theirs = torchattacks.PGD(model, eps=0.03, alpha=0.01, steps=7, random_start=False)(x, y)
        assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)

        ours = pgd(model, x, target, eps=0.03, alpha=0.01, steps=7, targeted=True)
        peer = torchattacks.PGD(model, eps=0.03, alpha=0.01, steps=7, random_start=False)
        peer.set_mode_targeted_by_function(lambda images, labels: labels)
        theirs = peer(x, target)
        assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)
    finally:
        model.eval()
