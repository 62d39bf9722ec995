"""Wang et al., Sec. 6: the defences measured against the lab's attacks (notebook 11)."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from tlab.attacks.fingerprint import (
    student_gini,
)
from tlab.cache import cached_result, cached_tensors
from tlab.core.device import model_device
from tlab.core.metrics import predict
from tlab.core.models import StagedModel, freeze
from tlab.core.tensorsets import TensorSet, class_balanced_subset
from tlab.defenses.ensemble import EnsembleModel
from tlab.defenses.input_dropout import dropout_vote_predict
from tlab.defenses.neuron_distance import (
    RETRAIN_VERSION,
    neuron_distance,
    neuron_distance_retrain,
)
from tlab.errors import TlabError
from tlab.papers.wang.crafting import MimicrySettings, crafted, crafted_untargeted
from tlab.papers.wang.fingerprinting import fingerprint_set
from tlab.papers.wang.lab import SeedLab, check_layer
from tlab.papers.wang.tables import success_rate


def dropout_table(
    lab: SeedLab,
    kind: str,
    attack: MimicrySettings,
    ratios: Sequence[float],
    *,
    n_pairs: int,
    pair_seed: int = 0,
    untargeted: MimicrySettings | None = None,
    adaptive: MimicrySettings | None = None,
    votes: int = 3,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Input dropout with a majority vote (Sec. 6.1, Fig. 7), per dropout ratio (cached).

    Rows: ``ratio``, clean ``accuracy`` of the defended student on the whole test split,
    ``targeted`` success of ``attack``'s images, ``untargeted`` success (if ``untargeted``
    is given; its images come from :func:`crafted_untargeted` with ``n_pairs`` sources) and
    ``adaptive``: targeted success of images crafted with dropout inside the loop (EOT).
    """
    student = lab.students[kind]
    ratios = [float(r) for r in ratios]
    recipe = {
        "student": student.key,
        "teacher": lab.teacher.key,
        "attack": attack.recipe(),
        "ratios": ratios,
        "n": n_pairs,
        "pair_seed": pair_seed,
        "votes": votes,
        "seed": seed,
        "untargeted": untargeted and untargeted.recipe(),
        "adaptive": adaptive and adaptive.recipe(),
    }

    def compute() -> list[dict[str, Any]]:
        model = student.model
        dev = model_device(model)
        x, y = lab.domain.test.floats(dev), lab.domain.test.labels.to(dev)
        plain = crafted(lab, attack, n_pairs, pair_seed)
        sets = {"targeted": (plain["adversarial"], plain["target_label"], True)}
        if untargeted is not None:
            out = crafted_untargeted(lab, untargeted, n_pairs, seed=pair_seed)
            sets["untargeted"] = (out["adversarial"], out["source_label"], False)
        if adaptive is not None:
            out = crafted(lab, adaptive, n_pairs, pair_seed, seed=seed)
            sets["adaptive"] = (out["adversarial"], out["target_label"], True)
        rows = []
        for ratio in ratios:
            row = {
                "ratio": ratio,
                "accuracy": float(
                    (dropout_vote_predict(model, x, ratio, votes, seed) == y).float().mean()
                ),
            }
            for name, (images, labels, targeted) in sets.items():
                predicted = dropout_vote_predict(model, images.to(dev), ratio, votes, seed).cpu()
                hits = predicted == labels if targeted else predicted != labels
                row[name] = float(hits.float().mean())
            rows.append(row)
        return rows

    return cached_result("wang-dropout", recipe, compute)


def feature_scale(lab: SeedLab, layer: int) -> float:
    """Median L2 norm of the teacher's layer-K representation of the students' training images.

    Neuron-distance thresholds (Sec. 6.2) are given as multiples of it.
    """
    check_layer(lab.teacher.model, layer)
    teacher = lab.teacher.model
    with torch.no_grad():
        x = lab.domain.train.floats(model_device(teacher))[:512]
        teacher.eval()
        return float(teacher.features(x, layer).flatten(1).norm(dim=1).median())


def neuron_distance_table(
    lab: SeedLab,
    kind: str,
    attack: MimicrySettings,
    thresholds: Sequence[float],
    *,
    n_pairs: int,
    pair_seed: int = 0,
    epochs: int = 10,
    n_prints: int = 2,
    fingerprint_steps: int = 300,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Neuron-distance retraining (Sec. 6.2, Fig. 8) at several thresholds (cached).

    ``thresholds`` are multiples of :func:`feature_scale` at ``attack.layer``; 0 means the
    undefended student. For each, the retrained student's clean ``accuracy``, the targeted
    ``success`` of ``attack``'s images (crafted on the original teacher, which is all the
    attacker has), the mean ``distance`` from the teacher at layer K and the ``gini`` of the
    true teacher's fingerprint (Sec. 6.2: retraining also hides the teacher). The retrained
    students are not kept, only these numbers.
    """
    student = lab.students[kind]
    thresholds = [float(t) for t in thresholds]
    if any(t < 0 or not math.isfinite(t) for t in thresholds):
        raise TlabError(f"thresholds={thresholds} must be >= 0 (multiples of the feature scale)")
    recipe = {
        "student": student.key,
        "teacher": lab.teacher.key,
        "attack": attack.recipe(),
        "thresholds": thresholds,
        "n": n_pairs,
        "pair_seed": pair_seed,
        "epochs": epochs,
        "fp": [n_prints, fingerprint_steps],
        "seed": seed,
        "retrain": RETRAIN_VERSION,
    }

    def compute() -> list[dict[str, Any]]:
        adv = crafted(lab, attack, n_pairs, pair_seed)
        prints = fingerprint_set(
            lab.teacher,
            n_prints,
            steps=fingerprint_steps,
            seed=seed,
            lr=attack.lr,
            round_pixels=attack.round_pixels,
        )["images"]
        scale = feature_scale(lab, attack.layer)
        test = lab.domain.test
        rows = []
        for t in thresholds:
            model = student.model
            if t > 0:
                model = _retrained(lab, kind, attack.layer, t * scale, epochs, seed)
            dev = model_device(model)
            rows.append(
                {
                    "threshold": t,
                    "threshold_abs": t * scale,
                    "accuracy": float(
                        (predict(model, test.floats(dev)).cpu() == test.labels).float().mean()
                    ),
                    "success": success_rate(model, adv["adversarial"], adv["target_label"], True),
                    "distance": float(
                        neuron_distance(
                            model, lab.teacher.model, test.floats(dev), layer=attack.layer
                        ).mean()
                    ),
                    "gini": float(student_gini(model, prints.to(dev)).mean()),
                }
            )
        return rows

    return cached_result("wang-neuron-distance", recipe, compute)


def _retrained(
    lab: SeedLab, kind: str, layer: int, threshold_abs: float, epochs: int, seed: int
) -> StagedModel:
    """A copy of the student of ``kind`` retrained away from the teacher at ``layer`` (Sec. 6.2).

    The retrained weights are cached (safetensors), so the tables that retrain at the same
    threshold -- Fig. 8's curve and the attack below K at the notebook's threshold -- share
    one retraining.
    """
    student = lab.students[kind]
    recipe = {
        "student": student.key,
        "teacher": lab.teacher.key,
        "layer": layer,
        "threshold_abs": threshold_abs,
        "epochs": epochs,
        "seed": seed,
        "retrain": RETRAIN_VERSION,
    }

    def compute() -> dict[str, torch.Tensor]:
        model, _ = neuron_distance_retrain(
            student.model,
            lab.teacher.model,
            lab_training_set(lab, kind),
            layer=layer,
            threshold=threshold_abs,
            epochs=epochs,
            seed=seed,
            device=model_device(student.model),
            progress=False,
        )
        return model.state_dict()

    model = freeze(copy.deepcopy(student.model), 0)  # as neuron_distance_retrain returns it
    model.load_state_dict(cached_tensors("wang-retrained", recipe, compute))
    return model.eval()


def below_k_table(
    lab: SeedLab,
    kind: str,
    attack: MimicrySettings,
    threshold: float,
    *,
    n_pairs: int,
    pair_seed: int = 0,
    epochs: int = 10,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Targeted mimicry at every layer 1..K after neuron-distance retraining at K (cached).

    The defence (Wang et al. 2018, Sec. 6.2, Eq. 4) pushes the student's layer-K representation
    away from the teacher's; an attacker who knows it may aim at a shallower layer that might
    still match. Wang et al. report (Sec. 6.2, on Face) that success below N-1 is lower still,
    since retraining moves the preceding layers too. Here the student of ``kind`` is retrained
    once at K = ``attack.layer`` with ``threshold`` (a multiple of :func:`feature_scale` at K,
    > 0), then attacked at each layer 1..K with ``attack``'s other settings (images crafted on
    the original teacher, all the attacker has). One row per layer: ``layer``, ``success`` and
    ``success_original`` (targeted success on the retrained and on the unretrained student),
    ``distance`` and ``distance_original`` (mean :func:`neuron_distance` from the teacher at
    that layer), and the images' mean ``dssim`` and ``in_budget`` fraction.
    """
    student = lab.students[kind]
    top = check_layer(lab.teacher.model, attack.layer)
    threshold = float(threshold)
    if not (threshold > 0 and math.isfinite(threshold)):
        raise TlabError(f"threshold={threshold} must be > 0 (a multiple of the feature scale)")
    recipe = {
        "student": student.key,
        "teacher": lab.teacher.key,
        "attack": attack.recipe(),
        "threshold": threshold,
        "n": n_pairs,
        "pair_seed": pair_seed,
        "epochs": epochs,
        "seed": seed,
        "retrain": RETRAIN_VERSION,
    }

    def compute() -> list[dict[str, Any]]:
        scale = feature_scale(lab, top)
        retrained = _retrained(lab, kind, top, threshold * scale, epochs, seed)
        models = {"": retrained, "_original": student.model}
        x = lab.domain.test.floats()
        rows = []
        for layer in range(1, top + 1):
            adv = crafted(lab, replace(attack, layer=layer), n_pairs, pair_seed)
            row: dict[str, Any] = {"layer": layer, "threshold": threshold}
            for suffix, model in models.items():
                row["success" + suffix] = success_rate(
                    model, adv["adversarial"], adv["target_label"], True
                )
                row["distance" + suffix] = float(
                    neuron_distance(model, lab.teacher.model, x, layer=layer).mean()
                )
            row["dssim"] = float(adv["dssim"].mean())
            row["in_budget"] = float(adv["in_budget"].float().mean())
            rows.append(row)
        return rows

    return cached_result("wang-below-k", recipe, compute)


def below_k_series(rows: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """:func:`below_k_table`'s rows as plot-ready series, ordered by layer: ``layer``,
    ``retrained`` and ``original`` (targeted success of each student). Draws no conclusion."""
    ordered = sorted(rows, key=lambda r: r["layer"])
    return {
        "layer": [int(r["layer"]) for r in ordered],
        "retrained": [float(r["success"]) for r in ordered],
        "original": [float(r["success_original"]) for r in ordered],
    }


def lab_training_set(lab: SeedLab, kind: str) -> TensorSet:
    """The training images the student of ``kind`` was trained on (its zoo recipe's subset)."""
    spec = lab.students[kind].meta["spec"]
    train = lab.domain.train
    return (
        train
        if spec["n"] is None
        else class_balanced_subset(train, spec["n"], seed=spec["subset_seed"])
    )


def ensemble_table(
    labs: Sequence[SeedLab], kind: str, attack: MimicrySettings, *, n_pairs: int, pair_seed: int = 0
) -> list[dict[str, Any]]:
    """An ensemble of students from different teachers (Sec. 6.3), and a joint attack (cached).

    Two attacks on the same pairs: mimicking the first teacher only (what breaks its own
    student) and mimicking all teachers at once (the sum of their layer distances; beyond the
    paper). Rows: ``attack``, ``model`` (each member alone or the ensemble), ``success``.
    """
    if len(labs) < 2:
        raise TlabError("an ensemble needs students of at least 2 different teachers")
    members = {f"student of teacher {i}": lab.students[kind] for i, lab in enumerate(labs)}
    joint_lab = SeedLab(
        teacher=labs[0].teacher,
        students=members,
        frozen=dict.fromkeys(members, labs[0].frozen[kind]),
        domain=labs[0].domain,
        seed=labs[0].seed,
    )
    recipe = {
        "members": {k: e.key for k, e in members.items()},
        "teachers": [lab.teacher.key for lab in labs],
        "attack": attack.recipe(),
        "n": n_pairs,
        "pair_seed": pair_seed,
    }

    def compute() -> list[dict[str, Any]]:
        ensemble = EnsembleModel([e.model for e in members.values()]).eval()
        runs = {
            "mimic teacher 0 only": crafted(joint_lab, attack, n_pairs, pair_seed),
            "joint: mimic all teachers": crafted(
                joint_lab, attack, n_pairs, pair_seed, teachers=[lab.teacher for lab in labs]
            ),
        }
        rows = []
        for name, out in runs.items():
            for member, entry in members.items():
                rows.append(
                    {
                        "attack": name,
                        "model": member,
                        "success": success_rate(
                            entry.model, out["adversarial"], out["target_label"], True
                        ),
                    }
                )
            rows.append(
                {
                    "attack": name,
                    "model": "ensemble (mean of softmax)",
                    "success": success_rate(
                        ensemble, out["adversarial"], out["target_label"], True
                    ),
                    "dssim": float(out["dssim"].mean()),
                }
            )
        return rows

    return cached_result("wang-ensemble", recipe, compute)
