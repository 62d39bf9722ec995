"""Teacher fingerprinting (Wang et al. 2018, Sec. 5.1): Gini coefficient, zero-vector images."""

from __future__ import annotations

import pytest
import torch
from conftest import SMALL_VGG as VGG
from torch import nn

from tlab.attacks.fingerprint import (
    GINI_THRESHOLD,
    fingerprint_images,
    fingerprint_matrix,
    gini,
    student_gini,
)
from tlab.core.models import build_model
from tlab.errors import TlabError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def family(letters_and_digits, letters_teacher, deep_student):
    """Two letters teachers (different seeds) and a deep-layer digits student of each."""
    digits = letters_and_digits[2]
    teachers = [letters_teacher(seed) for seed in (0, 1)]
    students = [deep_student(seed) for seed in (0, 1)]
    return teachers, students, digits.test.floats()[:20]


def brute_force_gini(p: torch.Tensor) -> torch.Tensor:
    diffs = (p.unsqueeze(-1) - p.unsqueeze(-2)).abs().sum((-1, -2))
    return diffs / (2 * p.shape[-1] * p.sum(-1))


def test_gini_of_uniform_is_zero_and_of_one_hot_is_maximal():
    for n in (2, 10, 65):
        assert gini(torch.full((n,), 1.0 / n)).item() == pytest.approx(0.0, abs=1e-6)
        one_hot = torch.zeros(n)
        one_hot[n // 2] = 1.0
        assert gini(one_hot).item() == pytest.approx(1 - 1 / n, abs=1e-6)


def test_gini_matches_the_pairwise_definition_and_batches():
    p = torch.rand(4, 3, 7, generator=torch.Generator().manual_seed(0)).softmax(-1)
    torch.testing.assert_close(gini(p), brute_force_gini(p))
    assert gini(p).shape == (4, 3)
    spread = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.4, 0.3, 0.2, 0.1], [0.7, 0.1, 0.1, 0.1]])
    values = gini(spread)
    assert bool((values[1:] > values[:-1]).all())  # more unequal, larger coefficient


def test_gini_rejects_bad_input():
    with pytest.raises(TlabError, match="non-negative"):
        gini(torch.tensor([0.5, -0.1, 0.6]))
    with pytest.raises(TlabError, match="float tensor"):
        gini(torch.tensor([1, 2, 3]))


def test_fingerprint_image_nullifies_the_representation(family):
    teacher = family[0][0]
    result = fingerprint_images(teacher, 2, steps=300, seed=0)
    with torch.no_grad():
        features = teacher.eval().features(result.adversarial, teacher.num_stages)
    norms = torch.linalg.vector_norm(features, dim=1)
    assert norms.max().item() < 0.02 * result.start_distance.min().item()
    torch.testing.assert_close(norms, result.distance, atol=1e-5, rtol=0)
    short = [fingerprint_images(teacher, 1, steps=3, seed=s).adversarial for s in (0, 0, 1)]
    assert torch.equal(short[0], short[1]) and not torch.equal(short[0], short[2])


def test_true_teacher_has_the_lowest_gini(family):
    teachers, students, test_images = family
    matrix = fingerprint_matrix(teachers, students, n_images=1, steps=300)
    assert matrix.shape == (2, 2)
    for j in range(2):
        others = [matrix[i, j].item() for i in range(2) if i != j]
        assert matrix[j, j].item() < min(others)
        assert matrix[j, j].item() < GINI_THRESHOLD
    # ordinary inputs give peaked outputs, far above the threshold
    assert student_gini(students[0], test_images).median().item() > 3 * GINI_THRESHOLD


def test_named_candidates_keep_their_order(family):
    teachers, students, _ = family
    named = fingerprint_matrix({"b": teachers[1], "a": teachers[0]}, {"s0": students[0]}, steps=300)
    assert named.shape == (2, 1)
    assert named[1, 0].item() < named[0, 0].item()


def test_incompatible_candidates_are_rejected(family):
    _, students, _ = family
    wrong_size = build_model("vgg", 10, **VGG)
    wrong_size.stages[-1][1] = nn.Linear(999, 64)  # a head made for another input size
    with pytest.raises(TlabError, match=r"cannot process \(3, 32, 32\) images"):
        fingerprint_matrix([wrong_size], students, steps=1)
    with pytest.raises(TlabError, match="StagedModel"):
        fingerprint_matrix([nn.Identity()], students, steps=1)
    with pytest.raises(TlabError, match="at least one student"):
        fingerprint_matrix([students[0]], [], steps=1)
