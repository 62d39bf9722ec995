"""Defenses (Wang et al. 2018, Sec. 6): input dropout vote, neuron distances, ensembles."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL_VGG as VGG
from torch import nn

from tlab.core.metrics import predict
from tlab.core.models import build_model
from tlab.defenses.ensemble import EnsembleModel
from tlab.defenses.input_dropout import drop_pixels, dropout_vote_predict
from tlab.defenses.neuron_distance import neuron_distance, neuron_distance_retrain, neuron_weights
from tlab.errors import TlabError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def transfer(letters_and_digits, letters_teacher, deep_student):
    """A letters teacher and its deep-layer feature-extractor student on a few digits."""
    _, few, digits = letters_and_digits
    teacher, student = letters_teacher(0), deep_student(0)
    return teacher, student, few, digits.test.floats()[:200]


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def tiny(num_classes: int = 10, seed: int = 0):
    torch.manual_seed(seed)
    return build_model("vgg", num_classes, **VGG).eval()


# ------------------------------------------------------------------------- input dropout


def test_drop_pixels_zeroes_whole_pixels_and_keeps_the_rest():
    x = images(8) * 0.9 + 0.05  # no pixel is 0 before dropping
    dropped = drop_pixels(x, 0.3, generator=torch.Generator().manual_seed(0))
    zero = dropped == 0
    assert bool((zero.all(1) == zero.any(1)).all())  # all three channels go together
    kept = ~zero
    assert torch.equal(dropped[kept], x[kept])  # no rescaling of what stays
    assert zero[:, 0].float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert torch.equal(drop_pixels(x, 0.0), x)


def test_dropout_ratio_zero_is_the_plain_prediction():
    model, x = tiny(), images(32)
    assert torch.equal(dropout_vote_predict(model, x, 0.0, seed=5), predict(model, x))


def test_dropout_vote_is_seeded_and_follows_the_majority():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))  # very mask-sensitive
    x = images(64, seed=1)
    a = dropout_vote_predict(model, x, 0.5, votes=3, seed=7)
    assert torch.equal(a, dropout_vote_predict(model, x, 0.5, votes=3, seed=7))
    # replay the three votes with the same generator sequence
    g = torch.Generator().manual_seed(7)
    votes = torch.stack([predict(model, drop_pixels(x, 0.5, generator=g)) for _ in range(3)])
    tie_picks = []
    for i in range(x.shape[0]):
        values, counts = votes[:, i].unique(return_counts=True)
        if counts.max() >= 2:
            assert a[i].item() == values[counts.argmax()].item()
        else:  # three different votes: one of them
            tie_picks.append(votes[:, i].tolist().index(a[i].item()))
    assert 5 <= len(tie_picks) <= 60  # both cases occur
    assert len(set(tie_picks)) > 1  # ties are not always settled one way


def test_dropout_vote_rejects_bad_arguments():
    model, x = tiny(), images(2)
    for ratio in (1.0, -0.1, 2):
        with pytest.raises(TlabError, match=r"in \[0, 1\)"):
            dropout_vote_predict(model, x, ratio)
    with pytest.raises(TlabError, match="votes"):
        dropout_vote_predict(model, x, 0.1, votes=0)
    with pytest.raises(TlabError, match=r"outside \[0, 1\]"):
        dropout_vote_predict(model, x * 2, 0.1)


# ---------------------------------------------------------------- neuron-distance retraining


def test_neuron_weights_follow_the_head():
    model = tiny()
    w = neuron_weights(model, model.num_stages)
    expected = model.head.weight.abs().sum(0)
    torch.testing.assert_close(w, expected / expected.mean())
    assert neuron_weights(model, 2) is None  # convolution maps: equal weights


@pytest.mark.parametrize("constraint", ["set", "per_example"])
def test_retraining_pushes_the_student_away_from_the_teacher(transfer, constraint):
    teacher, student, train, x = transfer
    k = teacher.num_stages
    before = {n: t.clone() for n, t in student.state_dict().items()}
    start = neuron_distance(student, teacher, x, layer=k)
    assert start.abs().max().item() < 1e-5  # frozen copy: same representation
    kwargs = dict(layer=k, threshold=10.0, epochs=3, constraint=constraint, progress=False)
    hardened, history = neuron_distance_retrain(student, teacher, train, **kwargs)
    control, _ = neuron_distance_retrain(student, teacher, train, penalty=1e-9, **kwargs)
    pushed = neuron_distance(hardened, teacher, x, layer=k).mean().item()
    drifted = neuron_distance(control, teacher, x, layer=k).mean().item()
    assert pushed > 1.5 * drifted  # the penalty, not mere retraining
    # the threshold rises over the first half of the epochs (rounded up), then holds
    assert [row["threshold"] for row in history] == pytest.approx([5.0, 10.0, 10.0])
    assert history[-1]["distance"] > history[0]["distance"]
    assert hardened.frozen_stages == 0 and not hardened.training
    assert all(p.requires_grad for p in hardened.parameters())
    for name, tensor in student.state_dict().items():  # the original is not modified
        assert torch.equal(tensor, before[name]), name


def test_retraining_rejects_bad_arguments(transfer):
    teacher, student, train, _ = transfer
    with pytest.raises(TlabError, match=r"valid range 1\.\.5"):
        neuron_distance_retrain(student, teacher, train, layer=6, threshold=1.0, epochs=1)
    with pytest.raises(TlabError, match="threshold"):
        neuron_distance_retrain(student, teacher, train, layer=5, threshold=0, epochs=1)
    with pytest.raises(TlabError, match="penalty"):
        neuron_distance_retrain(
            student, teacher, train, layer=5, threshold=1.0, epochs=1, penalty=-1.0
        )
    with pytest.raises(TlabError, match="TensorSet"):
        neuron_distance_retrain(student, teacher, images(4), layer=5, threshold=1.0, epochs=1)
    other = build_model("vgg", 10, widths=[8, 8, 16, 32], fc_width=64)
    with pytest.raises(TlabError, match="pick a layer the student copied"):
        neuron_distance(other, teacher, images(2), layer=4)


# ---------------------------------------------------------------------------------- ensemble


def test_ensemble_averages_probabilities():
    members = [tiny(seed=s) for s in range(3)]
    ensemble = EnsembleModel(members).eval()
    x = images(6)
    with torch.no_grad():
        out = ensemble(x)
        expected = torch.stack([F.softmax(m(x), 1) for m in members]).mean(0)
    assert out.shape == (6, 10)
    torch.testing.assert_close(out.exp(), expected)
    with torch.no_grad():
        single = EnsembleModel([members[0]]).eval()(x)
        torch.testing.assert_close(single, F.log_softmax(members[0](x), 1), atol=1e-5, rtol=0)
    assert torch.equal(predict(ensemble, x), expected.argmax(1))


def test_ensemble_rejects_mismatched_members():
    with pytest.raises(TlabError, match="non-empty"):
        EnsembleModel([])
    with pytest.raises(TlabError, match="number of classes"):
        EnsembleModel([tiny(10), tiny(5)])
    mixed = EnsembleModel([tiny(10), nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))])
    with pytest.raises(TlabError, match="different shapes"):
        mixed(images(2))
