"""Neuron-distance retraining (Wang et al., USENIX Sec. 2018, Sec. 6.2).

:func:`neuron_distance_retrain` retrains the whole student so that its layer-K representation
moves away from the teacher's while it still classifies well; the attacker's teacher then no
longer describes the student (it also defeats teacher fingerprinting).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tlab.checks import check_positive_int, check_stage
from tlab.core.tensorsets import DeviceBatches, TensorSet
from tlab.core.device import model_device, pick_device
from tlab.core.inputs import check_images, eval_mode
from tlab.core.models import StagedModel, freeze
from tlab.core.train import TrainConfig, make_optimizer
from tlab.errors import TlabError

#: The authors' penalty balance: coefficient 1e-6 at a final threshold of 5,000 gives
#: ``penalty * threshold**2 = 25`` (pubfig65_patch_neuron_distance.py in their code).
PENALTY_BALANCE = 25.0


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

    Wang et al. (2018, Sec. 6.2) weight the neurons of layer K by the absolute sum of their
    outgoing weights. tlab does this when layer K feeds the classifier (``layer ==
    num_stages``): weight i is the sum over classes of ``|head.weight[:, i]|``, scaled to mean 1.
    (The authors' code scaled these sums to an L2 norm equal to the number of neurons; the
    constant factor only rescales the threshold.) For earlier stages, whose outputs are
    convolution maps, every neuron counts the same, as the paper's footnote 10 suggests.
    The weights are detached: they reweigh the distance, they are not something to optimise.
    """
    if layer != student.num_stages:
        return None
    sums = student.head.weight.detach().abs().sum(0)
    return sums / sums.mean()


def _weighted_distance(
    s: torch.Tensor, t: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """``sqrt(sum_i w_i (t_i - s_i)^2)`` per example (the authors' code form)."""
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
    """Weighted layer-K distance between student and teacher for each image, ``(N,)``.

    The quantity :func:`neuron_distance_retrain` pushes above its threshold (both models in eval
    mode). 0 for a student whose first ``layer`` stages are frozen copies of the teacher.
    """
    layer = _check_models(student, teacher, layer)
    x = check_images(x)
    batch_size = check_positive_int(batch_size, name="batch_size")
    weights = neuron_weights(student, layer)
    s_dev, t_dev = model_device(student), model_device(teacher)
    pieces = []
    with eval_mode(student), eval_mode(teacher), torch.no_grad():
        for lo in range(0, x.shape[0], batch_size):
            xb = x[lo : lo + batch_size]
            s = student.features(xb.to(s_dev), layer)
            t = teacher.features(xb.to(t_dev), layer).to(s_dev)
            _check_feature_shapes(s, t, layer)
            w = None if weights is None else weights.to(s_dev)
            pieces.append(_weighted_distance(s, t, w).to(x.device))
    return torch.cat(pieces)


def neuron_distance_retrain(
    student: StagedModel,
    teacher: StagedModel,
    train_set: TensorSet,
    *,
    layer: int,
    threshold: float,
    epochs: int = 10,
    penalty: float | None = None,
    batch_size: int = 128,
    optimizer: str = "adam",
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[StagedModel, list[dict[str, Any]]]:
    """Retrain a copy of ``student`` away from ``teacher`` at layer K (Wang et al. 2018, Sec. 6.2).

    Every stage is unfrozen and trained on the student's own data with

        cross_entropy + penalty * mean_x max(D_th - d(x), 0)^2,
        d(x) = sqrt( sum_i w_i (T_K(x)_i - S_K(x)_i)^2 ),

    the penalty form of "minimise cross-entropy subject to the weighted neuron distance
    exceeding D_th" (the paper's Eq. 4, solved with the penalty method of Sec. 3). Weights
    ``w`` come from :func:`neuron_weights`. Following the authors' code, the weights multiply
    the *squared* differences (the paper writes ``|| |W| o (T - S) ||_2``, i.e. ``w`` squared),
    the teacher's representation is computed with the teacher fixed, and the threshold is
    raised during training: in epoch e (1-based) it is ``threshold * e / epochs``.

    Args:
        student: the transferred model to harden; it is not modified (a copy is trained).
        teacher: the teacher it was copied from.
        train_set: the student's training data.
        layer: K, the attacked layer (for a deep-layer feature extractor ``num_stages``).
        threshold: final D_th, in the units of :func:`neuron_distance`; a useful scale is the
            typical norm of ``teacher.features(x, layer)``.
        epochs, batch_size, optimizer ("adam" or "sgd"), lr, seed: training settings
            (:func:`tlab.core.train.make_optimizer`; the authors used Adadelta).
        penalty: the coefficient; ``None`` uses ``25 / threshold**2``, the balance of the
            authors' setting (1e-6 with a final threshold of 5,000).
        device: where to train (default: :func:`tlab.core.device.pick_device`).

    Returns ``(new_student, history)``: the retrained copy (eval mode, nothing frozen) and one
    dict per epoch with ``epoch``, ``threshold``, ``loss``, ``cross_entropy``,
    ``distance`` (mean d over the epoch), ``below_threshold`` (fraction of examples with
    d < D_th) and ``train_accuracy``.
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
    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, seed=seed, patience=None
    )
    device = pick_device(device)
    model = freeze(copy.deepcopy(student), 0).to(device)
    teacher_device = model_device(teacher)
    torch.manual_seed(seed)
    opt = make_optimizer(model, config)
    batches = DeviceBatches(train_set, batch_size, device=device, shuffle=True, seed=seed)
    history: list[dict[str, Any]] = []
    with eval_mode(teacher):
        for epoch in tqdm(
            range(1, epochs + 1),
            desc="neuron-distance retraining",
            unit="epoch",
            disable=not progress,
            leave=False,
        ):
            d_th = float(threshold) * epoch / epochs
            model.train()
            sums = torch.zeros(5, device=device)  # loss, ce, distance, below, correct
            seen = 0
            for x, y in batches:
                with torch.no_grad():
                    t = teacher.features(x.to(teacher_device), layer).to(device)
                logits = model(x)
                with eval_mode(model):
                    s = model.features(x, layer)
                _check_feature_shapes(s, t, layer)
                distance = _weighted_distance(s, t, neuron_weights(model, layer))
                ce = F.cross_entropy(logits, y)
                loss = ce + penalty * (d_th - distance).clamp_min(0).square().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    k = len(y)
                    sums += torch.stack(
                        [
                            loss * k,
                            ce * k,
                            distance.sum(),
                            (distance < d_th).sum().float(),
                            (logits.argmax(1) == y).sum().float(),
                        ]
                    )
                seen += len(y)
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
