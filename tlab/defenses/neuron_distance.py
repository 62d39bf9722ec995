"""Neuron-distance retraining (Wang et al., USENIX Sec. 2018, Sec. 6.2, Eq. 4).

:func:`neuron_distance_retrain` retrains the whole student so that its layer-K representation
moves away from the teacher's while it still classifies well; the attacker's teacher then no
longer describes the student (it also defeats teacher fingerprinting).

Eq. 4 minimises the cross-entropy subject to one constraint on the whole training set: the
weighted layer-K distances between teacher and student, *summed over the training images*, must
exceed D_th. As in Sec. 3, the constraint becomes a squared hinge penalty. tlab offers two
forms of it (``constraint``):

- ``"set"`` (default, Eq. 4): one hinge on the set's total distance. tlab states the threshold
  per image, ``threshold = D_th / |X_train|`` (the mean distance Eq. 4 asks for), and estimates
  the set's mean distance by the mini-batch's, so each step penalises
  ``penalty * max(threshold - mean_batch d(x), 0)^2``. With the whole set as one batch this is
  exactly Eq. 4's penalty with ``D_th = |X_train| * threshold`` and coefficient
  ``penalty / |X_train|^2``.
- ``"per_example"``: one hinge per image, averaged over the batch,
  ``penalty * mean_batch max(threshold - d(x), 0)^2``. This is what the authors' released code
  optimises (``pubfig65_patch_neuron_distance.py``: the per-image ``cap_max`` loss, which Keras
  averages over each batch) and what tlab did before; it asks every image, not just the set on
  average, to be far from the teacher.

The threshold rises during training (:func:`threshold_schedule`), as in the authors' code.
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tlab.checks import check_choice, check_positive_int, check_stage
from tlab.core.device import model_device, pick_device
from tlab.core.inputs import check_images, eval_mode
from tlab.core.models import StagedModel, freeze
from tlab.core.tensorsets import DeviceBatches, TensorSet
from tlab.core.train import TrainConfig, make_optimizer
from tlab.errors import TlabError

#: The forms of Eq. 4's constraint (see the module docstring).
CONSTRAINTS = ("set", "per_example")
#: Where the student's layer-K representation comes from: ``"eval"``, a separate eval-mode pass
#: (tlab's default); ``"train"``, the training-mode pass that also gives the logits (the
#: authors' code). See :func:`neuron_distance_objective`.
STUDENT_PASSES = ("eval", "train")

#: The authors' settings in ``pubfig65_patch_neuron_distance.py`` (VGG-Face student, layer
#: N-1): the threshold rises by 200 per epoch and holds at 5,000 from the 25th of 50 epochs; SGD
#: (no momentum), learning rate 1e-3, batch 32 (Keras's default; their ``BATCH_SIZE`` is never
#: passed to ``fit``); penalty coefficient 1e-6. The threshold is in their units (their
#: network, their neuron-weight scaling), not a value for the lab's networks.
PAPER_THRESHOLD = 5000.0
PAPER_RAMP_EPOCHS = 25
PAPER_EPOCHS = 50
PAPER_PENALTY = 1e-6
#: ``PAPER_PENALTY * PAPER_THRESHOLD**2``: the default penalty keeps this balance between the
#: cross-entropy and the penalty of a student still at the teacher, at any threshold.
PENALTY_BALANCE = PAPER_PENALTY * PAPER_THRESHOLD**2  # 25
#: The version of what :func:`neuron_distance_retrain` computes for the same arguments. Callers
#: that cache its results put it in their recipes and it is raised with every change, so that
#: old results get new keys instead of standing in for new ones. 1: per-example penalty,
#: detached neuron weights, Adam with batch 128, threshold ramped over every epoch; 2: the
#: defaults above (Eq. 4's set-level penalty, live weights, plain SGD with batch 32, ramp over
#: the first half of the epochs).
RETRAIN_VERSION = 2


def _check_models(student: object, teacher: object, layer: object) -> int:
    if not isinstance(student, StagedModel):
        raise TlabError(f"student must be a StagedModel, got {type(student).__name__}")
    if not isinstance(teacher, StagedModel):
        raise TlabError(f"teacher must be a StagedModel, got {type(teacher).__name__}")
    n = min(student.num_stages, teacher.num_stages)
    return check_stage(
        layer,
        n,
        name="layer",
        first=1,
        hint=f"the stages student and teacher share: {student.describe_stages()}",
    )


def neuron_weights(student: StagedModel, layer: int) -> torch.Tensor | None:
    """Importance of each layer-K neuron to the next layer, or ``None`` for equal weights.

    Wang et al. (2018, Sec. 6.2, Eq. 4) weight the neurons of layer K by the absolute sum of
    their outgoing weights, ``|W_s|``. tlab does this when layer K feeds the classifier
    (``layer == num_stages``): weight i is the sum over classes of ``|head.weight[:, i]|``, scaled
    to mean 1, so that equal weights give the plain L2 distance. For earlier stages, whose
    outputs are convolution maps, every neuron counts the same (the paper's footnote 10).

    The weights are computed from the live head weights and are *not* detached: inside the
    retraining loss the penalty's gradient reaches the classifier through them too, as in the
    authors' code (their weighting layer reads the trainable kernel of the next dense layer).
    The authors scale the sums to an L2 norm equal to the number of neurons n instead; their
    weights are tlab's times ``||sums||_1 / ||sums||_2`` (between 1 and sqrt(n)), a factor that
    changes as the head trains, so their thresholds are not a fixed multiple of tlab's.
    """
    if layer != student.num_stages:
        return None
    sums = student.head.weight.abs().sum(0)
    return sums / sums.mean()


def _weighted_distance(
    s: torch.Tensor, t: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """``d(x) = sqrt(sum_i w_i (T_K(x)_i - S_K(x)_i)^2)`` per example.

    The authors' code form: the weights multiply the *squared* differences (Eq. 4 writes
    ``|| |W_s| o (T - S) ||_2``, i.e. squared weights).
    """
    diff = (t - s).flatten(1)
    if weights is not None:
        diff = diff * weights.sqrt()
    return torch.linalg.vector_norm(diff, dim=1)


def _check_feature_shapes(s: torch.Tensor, t: torch.Tensor, layer: int) -> None:
    if s.shape != t.shape:
        raise TlabError(
            f"layer {layer} of the student gives {tuple(s.shape[1:])} but the "
            f"teacher gives {tuple(t.shape[1:])}; pick a layer the student copied "
            "from this teacher"
        )


def neuron_distance(
    student: StagedModel,
    teacher: StagedModel,
    x: torch.Tensor,
    *,
    layer: int,
    batch_size: int = 256,
) -> torch.Tensor:
    """Weighted layer-K distance d(x) between student and teacher for each image, ``(N,)``.

    The distance of Eq. 4 (Wang et al. 2018, Sec. 6.2) that :func:`neuron_distance_retrain`
    pushes above its threshold, here with both models in eval mode and no gradients. 0 for a
    student whose first ``layer`` stages are frozen copies of the teacher.
    """
    layer = _check_models(student, teacher, layer)
    x = check_images(x)
    batch_size = check_positive_int(batch_size, name="batch_size")
    s_dev, t_dev = model_device(student), model_device(teacher)
    pieces = []
    with eval_mode(student), eval_mode(teacher), torch.no_grad():
        weights = neuron_weights(student, layer)
        for lo in range(0, x.shape[0], batch_size):
            xb = x[lo : lo + batch_size]
            s = student.features(xb.to(s_dev), layer)
            t = teacher.features(xb.to(t_dev), layer).to(s_dev)
            _check_feature_shapes(s, t, layer)
            pieces.append(_weighted_distance(s, t, weights).to(x.device))
    return torch.cat(pieces)


def threshold_schedule(
    threshold: float, epochs: int, ramp_epochs: int | None = None
) -> list[float]:
    """The threshold of each epoch (0-based): equal steps up to ``threshold``, then held.

    Epoch e trains with ``threshold * min(e + 1, ramp_epochs) / ramp_epochs``, the authors'
    incremental schedule (their ``train_model``: +200 per epoch until 5,000) stated so that a
    short run can scale it. ``ramp_epochs=None`` ramps over the first half of the epochs
    (rounded up), like the authors' 25 of 50; ``threshold_schedule(PAPER_THRESHOLD,
    PAPER_EPOCHS, PAPER_RAMP_EPOCHS)`` is 200, 400, ..., 5,000 at epoch 24 (the 25th), then
    5,000 to the end.
    """
    epochs = check_positive_int(epochs, name="epochs")
    ramp = (epochs + 1) // 2 if ramp_epochs is None else ramp_epochs
    if isinstance(ramp, bool) or not isinstance(ramp, int) or not 1 <= ramp <= epochs:
        raise TlabError(
            f"ramp_epochs={ramp_epochs!r} must be an integer in 1..epochs={epochs} (the epochs "
            "over which the threshold rises), or None for half of the epochs"
        )
    return [float(threshold) * min(e + 1, ramp) / ramp for e in range(epochs)]


class BatchObjective(NamedTuple):
    """One batch of the retraining objective (:func:`neuron_distance_objective`)."""

    #: what is minimised: ``cross_entropy`` plus the penalty (a scalar)
    loss: torch.Tensor
    #: mean cross-entropy of the batch (a scalar)
    cross_entropy: torch.Tensor
    #: d(x) of each example, ``(B,)``, from the student pass the objective used
    distance: torch.Tensor
    #: the logits the cross-entropy was computed from, ``(B, classes)``
    logits: torch.Tensor


def _logits_from(model: StagedModel, h: torch.Tensor, layer: int) -> torch.Tensor:
    """The logits of a model whose stage-``layer`` output is ``h``."""
    for stage in model.stages[layer:]:
        h = stage(h)
    return model.head(h)


def neuron_distance_objective(
    model: StagedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    teacher_features: torch.Tensor,
    *,
    layer: int,
    threshold: float,
    penalty: float,
    constraint: str = "set",
    student_pass: str = "eval",
) -> BatchObjective:
    """The penalised form of Eq. 4 (Wang et al. 2018, Sec. 6.2) on one batch ``(x, y)``.

    ``loss = cross_entropy + penalty * hinge``, where ``hinge`` is
    ``max(threshold - mean_batch d(x), 0)^2`` for ``constraint="set"`` (Eq. 4, its set-level
    sum estimated by the batch) or ``mean_batch max(threshold - d(x), 0)^2`` for
    ``"per_example"`` (the authors' code); d(x) is the weighted distance between
    ``teacher_features`` (the teacher's layer-K output for ``x``, held fixed) and the
    student's, with :func:`neuron_weights` taken from ``model``'s live head, so gradients reach
    the head through them.

    The cross-entropy uses ``model`` in its current mode (training mode in
    :func:`neuron_distance_retrain`). The student's representation comes from a separate
    eval-mode pass for ``student_pass="eval"`` (deterministic: the representation the attacker
    faces at test time), or from that same pass for ``"train"``, as in the authors' code, where
    dropout and batch statistics at or below layer K also move it away from the teacher. The
    lab's VGG ends layer N with dropout 0.5: there the training-mode distance of an untouched
    copy of the teacher is already about the typical norm of the representation, so a threshold
    below that would leave the penalty idle; hence the eval-mode default.
    """
    check_choice("constraint", constraint, CONSTRAINTS)
    check_choice("student pass", student_pass, STUDENT_PASSES)
    if student_pass == "train":
        s = model.features(x, layer)
        logits = _logits_from(model, s, layer)
    else:
        logits = model(x)
        with eval_mode(model):
            s = model.features(x, layer)
    _check_feature_shapes(s, teacher_features, layer)
    distance = _weighted_distance(s, teacher_features, neuron_weights(model, layer))
    if constraint == "set":
        hinge = (threshold - distance.mean()).clamp_min(0).square()
    else:
        hinge = (threshold - distance).clamp_min(0).square().mean()
    ce = F.cross_entropy(logits, y)
    return BatchObjective(ce + penalty * hinge, ce, distance, logits)


def neuron_distance_retrain(
    student: StagedModel,
    teacher: StagedModel,
    train_set: TensorSet,
    *,
    layer: int,
    threshold: float,
    epochs: int = 10,
    penalty: float | None = None,
    constraint: str = "set",
    ramp_epochs: int | None = None,
    student_pass: str = "eval",
    batch_size: int = 32,
    optimizer: str = "sgd",
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[StagedModel, list[dict[str, Any]]]:
    """Retrain a copy of ``student`` away from ``teacher`` at layer K (Wang et al. 2018, Sec. 6.2).

    Every stage is unfrozen and trained on the student's own data, each batch minimising
    :func:`neuron_distance_objective`: the cross-entropy plus ``penalty`` times the squared
    hinge of Eq. 4's constraint, the weighted distance

        d(x) = sqrt( sum_i w_i (T_K(x)_i - S_K(x)_i)^2 )

    above the threshold (``constraint="set"``: the mean over the set, Eq. 4;
    ``"per_example"``: every image, the authors' code; see the module docstring). The
    teacher's representation is computed with the teacher fixed; the weights ``w``
    (:func:`neuron_weights`) come from the student's live classifier. The threshold of each
    epoch follows :func:`threshold_schedule`. The optimiser defaults are the authors' (plain SGD,
    learning rate 1e-3, batch 32; the number of epochs is a lab-sized 10, theirs 50).

    Args:
        student: the transferred model to harden; it is not modified (a copy is trained).
        teacher: the teacher it was copied from.
        train_set: the student's training data.
        layer: K, the attacked layer (for a deep-layer feature extractor ``num_stages``).
        threshold: the final threshold, a distance per image in the units of
            :func:`neuron_distance` (for ``"set"``: Eq. 4's D_th divided by the number of
            training images); a useful scale is the typical norm of
            ``teacher.features(x, layer)``.
        epochs: training epochs.
        penalty: the coefficient; ``None`` uses ``25 / threshold**2``, the balance of the
            authors' setting (1e-6 with a final threshold of 5,000).
        constraint: ``"set"`` or ``"per_example"`` (see above).
        ramp_epochs: the epochs over which the threshold rises (:func:`threshold_schedule`;
            ``None``: the first half).
        student_pass: ``"eval"`` or ``"train"`` (see :func:`neuron_distance_objective`).
        batch_size, lr, seed: training settings.
        optimizer: ``"sgd"`` (without momentum, as the authors') or ``"adam"``.
        device: where to train (default: :func:`tlab.core.device.pick_device`).

    Returns ``(new_student, history)``: the retrained copy (eval mode, nothing frozen) and one
    dict per epoch with ``epoch`` (1-based), ``threshold``, ``loss``, ``cross_entropy``,
    ``distance`` (mean d over the epoch, from ``student_pass``), ``below_threshold`` (fraction
    of examples with d < threshold) and ``train_accuracy``.
    """
    layer = _check_models(student, teacher, layer)
    if not isinstance(train_set, TensorSet) or len(train_set) == 0:
        raise TlabError("train_set must be a non-empty TensorSet (the student's training data)")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold <= 0:
        raise TlabError(
            f"threshold={threshold!r} must be a positive distance; measure typical "
            "values with neuron_distance() or the norm of teacher.features(x, layer)"
        )
    if penalty is None:
        penalty = PENALTY_BALANCE / float(threshold) ** 2
    elif isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or penalty <= 0:
        raise TlabError(
            f"penalty={penalty!r} must be a positive number (or None for "
            f"{PENALTY_BALANCE:g} / threshold**2)"
        )
    check_choice("constraint", constraint, CONSTRAINTS)
    check_choice("student pass", student_pass, STUDENT_PASSES)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        momentum=0.0,
        seed=seed,
        patience=None,
    )
    schedule = threshold_schedule(threshold, epochs, ramp_epochs)
    device = pick_device(device)
    model = freeze(copy.deepcopy(student), 0).to(device)
    teacher_device = model_device(teacher)
    torch.manual_seed(seed)
    opt = make_optimizer(model, config)
    batches = DeviceBatches(train_set, batch_size, device=device, shuffle=True, seed=seed)
    history: list[dict[str, Any]] = []
    with eval_mode(teacher):
        for epoch, d_th in enumerate(
            tqdm(
                schedule,
                desc="neuron-distance retraining",
                unit="epoch",
                disable=not progress,
                leave=False,
            ),
            start=1,
        ):
            model.train()
            sums = torch.zeros(5, device=device)  # loss, ce, distance, below, correct
            seen = 0
            for x, y in batches:
                with torch.no_grad():
                    t = teacher.features(x.to(teacher_device), layer).to(device)
                step = neuron_distance_objective(
                    model,
                    x,
                    y,
                    t,
                    layer=layer,
                    threshold=d_th,
                    penalty=penalty,
                    constraint=constraint,
                    student_pass=student_pass,
                )
                opt.zero_grad(set_to_none=True)
                step.loss.backward()
                opt.step()
                with torch.no_grad():
                    k = len(y)
                    sums += torch.stack(
                        [
                            step.loss * k,
                            step.cross_entropy * k,
                            step.distance.sum(),
                            (step.distance < d_th).sum().float(),
                            (step.logits.argmax(1) == y).sum().float(),
                        ]
                    )
                seen += k
            loss_sum, ce_sum, dist_sum, below, correct = (sums / seen).tolist()
            history.append(
                {
                    "epoch": epoch,
                    "threshold": d_th,
                    "loss": loss_sum,
                    "cross_entropy": ce_sum,
                    "distance": dist_sum,
                    "below_threshold": below,
                    "train_accuracy": correct,
                }
            )
    model.eval()
    return model, history
