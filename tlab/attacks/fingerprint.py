"""Teacher fingerprinting (Wang et al., USENIX Security 2018, Sec. 5.1).

A student built as a deep-layer feature extractor computes ``S(x) = W_N T_{N-1}(x) + B_N``: a new
classifier on top of the teacher's frozen representation ``T_{N-1}``. An image whose
representation is the zero vector leaves only the bias, ``S(x) = B_N``, and a freshly trained
bias carries little preference for any class, so the student's output is nearly uniform. For a
candidate teacher the attacker crafts such an image with the mimicry machinery (target: the zero
vector, no perturbation budget, start from random noise) and sends it to the student once. If
the candidate is the student's teacher, the output is flat; otherwise the image's
representation in the real teacher is arbitrary and the output is peaked.

Flatness is measured by the Gini coefficient of the student's softmax vector (:func:`gini`);
the paper treats values below 0.1 as a match (its matches: < 0.058, mismatches: > 0.443).

In tlab, Wang's layer N-1 is ``features(x, num_stages)``, the vector the head reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import torch
from torch import nn

from tlab.attacks.mimicry_loop import DEFAULT_STEPS, MimicryResult, mimic_features
from tlab.attacks.perturbation import IMAGE_SHAPE
from tlab.checks import check_positive_int
from tlab.core.device import model_device
from tlab.core.inputs import check_images, eval_mode
from tlab.core.models import StagedModel
from tlab.errors import TlabError

__all__ = [
    "GINI_THRESHOLD",
    "fingerprint_images",
    "fingerprint_matrix",
    "gini",
    "student_gini",
]

GINI_THRESHOLD = 0.1  # Wang et al. 2018, Sec. 5.1: below it, the candidate is the teacher

ModelT = TypeVar("ModelT", bound=nn.Module)


def gini(p: torch.Tensor) -> torch.Tensor:
    """Gini coefficient of non-negative vectors along the last dimension.

    The economists' measure of inequality (Gini 1912) that Wang et al. (2018, Sec. 5.1) apply to
    the student's softmax output: half the mean absolute difference between all pairs of
    entries, divided by their mean,

        G(p) = sum_i sum_j |p_i - p_j| / (2 n sum_i p_i).

    0 means every class gets the same probability (complete equality: the fingerprint matched);
    a one-hot vector gives the maximum, (n - 1) / n. This is *not* the "Gini impurity"
    ``1 - sum p_i^2`` of decision trees, which behaves the opposite way (largest for the uniform
    vector); the paper's reading, "0 = complete equality, 1 = complete inequality", and its
    finding that the bias alone gives values below 0.011, fit only the coefficient. Computed
    from the sorted entries in O(n log n). Shape ``(..., n) -> (...)``.
    """
    if not isinstance(p, torch.Tensor) or not p.is_floating_point() or p.dim() == 0:
        raise TlabError("gini() needs a float tensor whose last dimension holds the values")
    if p.shape[-1] == 0 or bool((p < 0).any()):
        raise TlabError(
            "gini() needs at least one non-negative value per vector (e.g. softmax probabilities)"
        )
    n = p.shape[-1]
    ordered = torch.sort(p, dim=-1).values
    rank = torch.arange(1, n + 1, device=p.device, dtype=p.dtype)
    total = ordered.sum(-1)
    weighted = ((2 * rank - n - 1) * ordered).sum(-1)
    return torch.where(
        total > 0,
        weighted / (n * total.clamp_min(torch.finfo(p.dtype).tiny)),
        torch.zeros_like(total),
    )


def _probe(candidate: StagedModel, name: str) -> None:
    """Fail early, with a clear message, if ``candidate`` cannot yield a flat 3x32x32 feature."""
    if not isinstance(candidate, StagedModel):
        raise TlabError(f"candidate {name} must be a StagedModel, got {type(candidate).__name__}")
    x = torch.full((2, *IMAGE_SHAPE), 0.5, device=model_device(candidate))
    try:
        with eval_mode(candidate), torch.no_grad():
            features = candidate.features(x, candidate.num_stages)
    except RuntimeError as err:
        raise TlabError(
            f"candidate {name} ({candidate.arch!r}) cannot process {IMAGE_SHAPE} "
            f"images, the input size every tlab domain uses: {err}"
        ) from err
    if features.dim() != 2:
        raise TlabError(
            f"candidate {name} ({candidate.arch!r}) gives features of shape "
            f"{tuple(features.shape[1:])} before its head; fingerprinting needs the "
            "flat vector the classifier reads"
        )


def fingerprint_images(
    candidate: StagedModel,
    n: int = 1,
    *,
    steps: int = DEFAULT_STEPS,
    lr: float = 1.0,
    seed: int = 0,
    round_pixels: bool = False,
) -> MimicryResult:
    """``n`` images whose representation at the candidate's last stage is (nearly) zero.

    Starts from seeded uniform noise and runs the mimicry optimisation of
    :func:`tlab.attacks.mimicry_loop.mimic_features` towards the zero vector with no perturbation
    budget (Wang et al. 2018, Sec. 5.1; the authors' code used 2,000 Adadelta steps).
    ``result.distance`` is the remaining norm of the representation, ``result.start_distance``
    that of the noise. ``round_pixels``: whole 8-bit pixel values, as the authors' code saves
    its fingerprints.
    """
    _probe(candidate, "teacher")
    n = check_positive_int(n, name="n")
    generator = torch.Generator().manual_seed(int(seed))
    noise = torch.rand((n, *IMAGE_SHAPE), generator=generator)
    with eval_mode(candidate), torch.no_grad():
        shape = candidate.features(
            noise[:1].to(model_device(candidate)), candidate.num_stages
        ).shape[1:]
    zeros = torch.zeros((n, *shape))
    return mimic_features(
        [candidate],
        [candidate.num_stages],
        noise,
        [zeros],
        budget=None,
        steps=steps,
        lr=lr,
        round_pixels=round_pixels,
    )


def student_gini(student: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Gini coefficient of the student's softmax output for each image, ``(N,)``."""
    images = check_images(images, name="images")
    with eval_mode(student), torch.no_grad():
        logits = student(images.to(model_device(student)))
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise TlabError(
            f"the student must output (N, classes) logits with at least 2 classes, "
            f"got shape {tuple(logits.shape)}"
        )
    return gini(logits.float().softmax(dim=1)).to(images.device)


def _named(models: Sequence[ModelT] | Mapping[str, ModelT], what: str) -> list[tuple[str, ModelT]]:
    items = (
        list(models.items())
        if isinstance(models, Mapping)
        else [(str(i), m) for i, m in enumerate(models)]
    )
    if not items:
        raise TlabError(f"fingerprint_matrix needs at least one {what}")
    return items


def fingerprint_matrix(
    candidates: Sequence[StagedModel] | Mapping[str, StagedModel],
    students: Sequence[nn.Module] | Mapping[str, nn.Module],
    *,
    n_images: int = 1,
    steps: int = DEFAULT_STEPS,
    lr: float = 1.0,
    seed: int = 0,
    images: Callable[[str], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean Gini coefficient for every (candidate teacher, student): shape (candidates, students).

    Row i uses ``n_images`` fingerprint images of candidate i (the paper averaged 10); entries
    below :data:`GINI_THRESHOLD` mark candidate i as student j's teacher (Wang et al. 2018,
    Fig. 6: small values on the diagonal). Lists or ``{name: model}`` mappings are accepted; the
    rows and columns follow their order. ``images(name)``, if given, supplies the fingerprint
    images of each candidate (e.g. from a cache) instead of crafting them here.
    """
    named_candidates = _named(candidates, "candidate teacher")
    named_students = _named(students, "student")
    for name, candidate in named_candidates:
        _probe(candidate, repr(name))
    rows = []
    for name, candidate in named_candidates:
        prints = (
            images(name)
            if images is not None
            else fingerprint_images(candidate, n_images, steps=steps, lr=lr, seed=seed).adversarial
        )
        rows.append(torch.stack([student_gini(s, prints).mean() for _, s in named_students]))
    return torch.stack(rows)
