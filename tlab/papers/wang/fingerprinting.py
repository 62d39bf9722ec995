"""Wang et al., Sec. 5.1: candidate teachers and fingerprint tables (notebook 10)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from tlab.attacks.fingerprint import (
    fingerprint_images,
    fingerprint_matrix,
)
from tlab.cache import cached_result, cached_tensors
from tlab.core.zoo import ModelSpec, ZooEntry
from tlab.errors import TlabError
from tlab.papers.wang.lab import (
    ATTACK_LR,
    NARROW_VGG,
    frozen_layer,
    num_stages,
    student_spec,
    teacher_spec,
)
from tlab.presets import check_preset

#: Notebook 10's pool of candidate teachers: (name, architecture options, training seed).
#: Three narrow VGGs that differ only in their training seed (like Wang et al.'s two releases
#: of InceptionV3, Sec. 5.1) and a VGG of another shape.
CANDIDATES: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("vgg-a seed 0", NARROW_VGG, 0),
    ("vgg-a seed 1", NARROW_VGG, 1),
    ("vgg-b seed 0", {"widths": [8, 16, 16, 32], "fc_width": 96}, 0),
    ("vgg-a seed 2", NARROW_VGG, 2),
)


def candidate_specs(preset: str, count: int = 0) -> dict[str, ModelSpec]:
    """The first ``count`` candidate teachers (all of them for 0), as zoo specs on ``letters``."""
    check_preset(preset)
    count = count or len(CANDIDATES)
    if isinstance(count, bool) or not isinstance(count, int) or not 2 <= count <= len(CANDIDATES):
        raise TlabError(f"count={count!r} must be in 2..{len(CANDIDATES)} candidate teachers")
    return {
        name: teacher_spec(preset, seed, arch="vgg", options=options)
        for name, options, seed in CANDIDATES[:count]
    }


def candidate_student_specs(
    candidates: Mapping[str, ModelSpec], kind: str, preset: str, seed: int = 0
) -> dict[str, ModelSpec]:
    """One student of ``kind`` (``"deep"``, ``"mid"``, ``"full"``) per candidate teacher, trained
    with the candidate's training seed plus ``seed``: W3's seeds vary the students as well as
    the fingerprints' random start (seed 0 is the candidate's own seed)."""
    return {
        name: student_spec(
            spec, frozen_layer(kind, num_stages(spec)), preset, spec.train.seed + seed
        )
        for name, spec in candidates.items()
    }


def fingerprint_set(
    candidate: ZooEntry,
    n_images: int,
    *,
    steps: int,
    seed: int = 0,
    lr: float = ATTACK_LR,
    round_pixels: bool = False,
) -> dict[str, torch.Tensor]:
    """``n_images`` fingerprint images of a candidate teacher (Sec. 5.1; cached tensors).

    Each starts from seeded noise and is optimised until the candidate's last-stage
    representation is (nearly) the zero vector; ``distance`` is what is left of it.
    A candidate that cannot read the lab's 3x32x32 images is refused with a TlabError.
    ``lr`` and ``round_pixels`` as in :class:`~tlab.papers.wang.lab.MimicrySettings`.
    """
    recipe = {
        "candidate": candidate.key,
        "n": n_images,
        "steps": steps,
        "seed": seed,
        "lr": lr,
        **({"round_pixels": True} if round_pixels else {}),
    }

    def compute() -> dict[str, torch.Tensor]:
        result = fingerprint_images(
            candidate.model, n_images, steps=steps, lr=lr, seed=seed, round_pixels=round_pixels
        )
        return {
            "images": result.adversarial,
            "distance": result.distance,
            "start_distance": result.start_distance,
        }

    if not isinstance(candidate, ZooEntry):
        raise TlabError("a candidate must be a ZooEntry (tlab.core.zoo.get_or_train)")
    return cached_tensors("wang-fingerprint-images", recipe, compute)


def fingerprint_table(
    candidates: Mapping[str, ZooEntry],
    students: Mapping[str, ZooEntry],
    *,
    n_images: int,
    steps: int,
    seed: int = 0,
    lr: float = ATTACK_LR,
    round_pixels: bool = False,
) -> dict[str, Any]:
    """Mean Gini coefficient of each student's softmax on each candidate's fingerprints (cached).

    Returns ``{"candidates": [...], "students": [...], "gini": rows x columns}`` (Fig. 6).
    """
    if not candidates or not students:
        raise TlabError("fingerprint_table needs at least one candidate teacher and one student")
    recipe = {
        "candidates": {k: e.key for k, e in candidates.items()},
        "students": {k: e.key for k, e in students.items()},
        "n": n_images,
        "steps": steps,
        "seed": seed,
        **({"lr": lr} if lr != ATTACK_LR else {}),
        **({"round_pixels": True} if round_pixels else {}),
    }

    def compute() -> dict[str, Any]:
        matrix = fingerprint_matrix(
            {k: e.model for k, e in candidates.items()},
            {k: s.model for k, s in students.items()},
            images=lambda name: fingerprint_set(
                candidates[name], n_images, steps=steps, seed=seed, lr=lr, round_pixels=round_pixels
            )["images"],
        )
        return {"candidates": list(candidates), "students": list(students), "gini": matrix.tolist()}

    return cached_result("wang-fingerprint", recipe, compute)
