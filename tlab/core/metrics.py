"""Evaluation: clean and adversarial accuracy, black-box transfer, gamma, gradient norms, tables.

Every function takes images in [0, 1] on any device, runs the model on its own device in
batches (``batch_size`` images at a time), in eval mode, and restores each submodule's mode.
Accuracies are fractions in [0, 1].

Adversarial accuracy follows Zhang et al. (2020, Sec. 4.2): only the test inputs the attacked
model classifies correctly when clean are attacked, and the accuracy is measured on those.
The authors' released code instead skipped the misclassified inputs but counted them as wrong,
i.e. it divided by all inputs; :class:`AdversarialResult` reports both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar, Unpack

import numpy as np
import pandas as pd
import torch
from torch import nn

from tlab.checks import check_positive_int
from tlab.core.device import model_device
from tlab.core.inputs import check_images, check_labels, eval_mode, input_gradient
from tlab.errors import TlabError

__all__ = [
    "AdversarialResult",
    "accuracy",
    "adversarial_accuracy",
    "blackbox_accuracy",
    "gamma",
    "input_gradient_norms",
    "minmax_normalise_columns",
    "predict",
]

#: Images per forward (and backward) pass of predictions and attacks. Chunking never changes a
#: result (eval mode, summed loss), only memory: PGD-7 on the lab's DenseNet-BC substitute, 150
#: images, raised a kernel's peak by about 600 MiB in chunks of 256 and 330 MiB in chunks of 64,
#: and took 8.1 vs 7.4 s; on the DTN and ResNet-8, 64 is as fast as 256 (2-core AMD EPYC).
DEFAULT_BATCH_SIZE = 64

AttackFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Table = TypeVar("Table", pd.DataFrame, np.ndarray)


def _check_inputs(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    images = check_images(x)
    if images.shape[0] == 0:
        raise TlabError("x holds no images; pass at least one image to evaluate")
    return images, check_labels(y, images.shape[0]).to(images.device)


def predict(
    model: nn.Module, x: torch.Tensor, batch_size: int = DEFAULT_BATCH_SIZE
) -> torch.Tensor:
    """The model's predicted class (argmax of the logits) per image, int64 on ``x``'s device."""
    check_images(x)
    batch_size = check_positive_int(batch_size, name="batch_size")
    device = model_device(model)
    pieces = []
    with eval_mode(model), torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            logits = model(x[start : start + batch_size].to(device))
            pieces.append(logits.argmax(dim=1).to(x.device))
    if not pieces:
        return torch.empty(0, dtype=torch.long, device=x.device)
    return torch.cat(pieces)


def accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = DEFAULT_BATCH_SIZE
) -> float:
    """Fraction of images whose predicted class equals ``y``."""
    x, y = _check_inputs(x, y)
    return (predict(model, x, batch_size) == y).float().mean().item()


@dataclass(frozen=True)
class AdversarialResult:
    """Outcome of attacking the inputs a model classifies correctly.

    Attributes:
        n_total: number of inputs evaluated.
        n_clean_correct: inputs the evaluated model classifies correctly when clean; only these
            are attacked.
        n_adversarial_correct: attacked inputs still classified correctly after the attack.
        clean_accuracy: ``n_clean_correct / n_total``.
        adversarial_accuracy: ``n_adversarial_correct / n_clean_correct`` (Zhang et al. 2020,
            Sec. 4.2); NaN when no input was classified correctly (nothing to attack).
        adversarial_accuracy_all: ``n_adversarial_correct / n_total``, the convention of the
            authors' code (misclassified inputs count as wrong).
        attacked_indices: indices into ``x`` of the attacked inputs (int64, CPU).
        adversarial_images: the attacked inputs' adversarial versions, in ``attacked_indices``
            order, on ``x``'s device (only with ``keep_examples=True``).
        adversarial_predictions: the evaluated model's predictions on them (likewise).
    """

    n_total: int
    n_clean_correct: int
    n_adversarial_correct: int
    clean_accuracy: float
    adversarial_accuracy: float
    adversarial_accuracy_all: float
    attacked_indices: torch.Tensor
    adversarial_images: torch.Tensor | None = None
    adversarial_predictions: torch.Tensor | None = None

    def summary(self) -> dict[str, float | int]:
        """The counts and accuracies only (no tensors), e.g. for a row of a DataFrame."""
        return {
            "n_total": self.n_total,
            "n_clean_correct": self.n_clean_correct,
            "n_adversarial_correct": self.n_adversarial_correct,
            "clean_accuracy": self.clean_accuracy,
            "adversarial_accuracy": self.adversarial_accuracy,
            "adversarial_accuracy_all": self.adversarial_accuracy_all,
        }


def _attack_correct_inputs(
    source: nn.Module,
    target: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: AttackFn,
    batch_size: int,
    keep_examples: bool,
) -> AdversarialResult:
    """Craft on ``source`` the inputs ``target`` gets right; evaluate the result on ``target``."""
    x, y = _check_inputs(x, y)
    batch_size = check_positive_int(batch_size, name="batch_size")
    correct = predict(target, x, batch_size) == y
    indices = correct.nonzero().squeeze(1)
    x_sel, y_sel = x[indices], y[indices]
    pieces = []
    for start in range(0, x_sel.shape[0], batch_size):
        chunk = x_sel[start : start + batch_size]
        adv = attack(source, chunk, y_sel[start : start + batch_size])
        if not isinstance(adv, torch.Tensor) or adv.shape != chunk.shape:
            raise TlabError(
                "the attack must return a tensor shaped like its input "
                f"{tuple(chunk.shape)}; got {getattr(adv, 'shape', type(adv).__name__)}"
            )
        pieces.append(adv.detach().to(x.device))
    x_adv = torch.cat(pieces) if pieces else x_sel.clone()
    adv_pred = predict(target, x_adv, batch_size)
    n_total, n_clean = x.shape[0], int(indices.numel())
    n_adv = int((adv_pred == y_sel).sum())
    return AdversarialResult(
        n_total=n_total,
        n_clean_correct=n_clean,
        n_adversarial_correct=n_adv,
        clean_accuracy=n_clean / n_total,
        adversarial_accuracy=n_adv / n_clean if n_clean else float("nan"),
        adversarial_accuracy_all=n_adv / n_total,
        attacked_indices=indices.cpu(),
        adversarial_images=x_adv if keep_examples else None,
        adversarial_predictions=adv_pred if keep_examples else None,
    )


class EvalOptions(TypedDict, total=False):
    """How an adversarial evaluation runs: ``batch_size`` images attacked at a time (default
    :data:`DEFAULT_BATCH_SIZE`), and ``keep_examples`` to return the adversarial images and
    predictions too."""

    batch_size: int
    keep_examples: bool


def adversarial_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: AttackFn,
    **options: Unpack[EvalOptions],
) -> AdversarialResult:
    """White-box robustness: attack ``model`` itself on the inputs it classifies correctly.

    Zhang et al. (2020, Sec. 3.4.1 and 4.2). ``attack`` is any ``attack(model, x, y) -> x_adv``,
    e.g. ``tlab.attacks.gradient.make_attack("fgsm", eps=0.0625)``; it receives the true labels and
    is called on ``batch_size`` images at a time (:class:`EvalOptions`). It is
    :func:`blackbox_accuracy` with the model as its own source.
    """
    return blackbox_accuracy(model, model, x, y, attack, **options)


def blackbox_accuracy(
    source: nn.Module,
    target: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: AttackFn,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    keep_examples: bool = False,
) -> AdversarialResult:
    """Black-box transfer: craft adversarial inputs on ``source``, evaluate them on ``target``.

    Zhang et al. (2020, Sec. 3.4.2, Fig. 2): the attacker only uses the source model (e.g. the
    model a fine-tuned target was initialised from); the target is never queried while crafting.
    The target is used only to pick the inputs it classifies correctly when clean (as for
    white-box adversarial accuracy) and to score the result. With ``source is target`` this
    equals :func:`adversarial_accuracy`.
    """
    return _attack_correct_inputs(source, target, x, y, attack, batch_size, keep_examples)


def gamma(a_black: Any, a_white: Any) -> Any:
    """Transferability ``gamma = (a_b - a_w) / a_w`` (Zhang et al. 2020, Sec. 3.5).

    ``a_b`` and ``a_w`` are the target model's adversarial accuracies (fractions in [0, 1])
    under the black-box and the white-box attack. ``gamma <= 0`` means the examples crafted on
    the source model hurt the target at least as much as attacking the target directly.

    Policy for ``a_w == 0`` (the white-box attack fooled every attacked input): the ratio is
    undefined and the result is NaN, so a table of results keeps its shape and shows a gap.
    Accepts scalars (returns a float) or array-likes (returns an ndarray, element-wise).
    Accuracies outside [0, 1] (e.g. percentages) raise a TlabError.
    """
    black = np.asarray(a_black, dtype=float)
    white = np.asarray(a_white, dtype=float)
    for name, value in (("a_black", black), ("a_white", white)):
        if not bool(np.all((value >= 0) & (value <= 1))):
            raise TlabError(
                f"{name}={value.tolist()!r} must be accuracies in [0, 1] "
                "(divide percentages by 100)"
            )
    safe_white = np.where(white > 0, white, 1.0)
    result = np.where(white > 0, (black - white) / safe_white, np.nan)
    return float(result) if result.ndim == 0 else result


def input_gradient_norms(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = DEFAULT_BATCH_SIZE
) -> torch.Tensor:
    """Per-example ``||grad_x CE(f(x), y)||_2`` of each image's own loss (Zhang et al. 2020,
    Sec. 7, Fig. 10: fine-tuned models tend to have smaller input-gradient norms).

    The model runs in eval mode; parameters' gradients are not touched. Returns a float tensor
    of shape (N,) on ``x``'s device.
    """
    x, y = _check_inputs(x, y)
    batch_size = check_positive_int(batch_size, name="batch_size")
    device = model_device(model)
    pieces = []
    with eval_mode(model):
        for start in range(0, x.shape[0], batch_size):
            part = slice(start, start + batch_size)
            xb, yb = x[part].to(device), y[part].to(device)
            grad, _ = input_gradient(model, xb, yb, check_range=True)
            pieces.append(grad.flatten(1).norm(dim=1).to(x.device))
    return torch.cat(pieces)


def minmax_normalise_columns(table: Table) -> Table:
    """Scale every column to [0, 1]: its minimum becomes 0 and its maximum 1.

    This is how Davchev et al. (2019, Fig. 2-5) draw their result heatmaps (one column per
    attack: Natural, BB-FGSM, BB-PGD, WB-FGSM, WB-PGD), so colours compare models within an
    attack rather than across attacks. NaN cells are ignored for the range and stay NaN; a
    column without spread (all values equal) becomes all 0. Accepts a numeric pandas DataFrame
    (index and columns kept) or a 2-D numpy array, and returns the same kind.
    """
    if isinstance(table, pd.DataFrame):
        non_numeric = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
        if non_numeric:
            raise TlabError(
                f"columns {non_numeric} are not numeric; move labels into the index "
                "(df.set_index(...)) before normalising"
            )
        values = _minmax(table.to_numpy(dtype=float))
        return pd.DataFrame(values, index=table.index, columns=table.columns)
    if isinstance(table, np.ndarray):
        if table.ndim != 2 or not np.issubdtype(table.dtype, np.number):
            raise TlabError(
                f"expected a 2-D numeric array (rows x columns), got shape {table.shape} "
                f"and dtype {table.dtype}"
            )
        return _minmax(table.astype(float))
    raise TlabError(f"expected a pandas DataFrame or a numpy array, got {type(table).__name__}")


def _minmax(values: np.ndarray) -> np.ndarray:
    if values.shape[0] == 0:
        return values.copy()
    present = ~np.isnan(values)
    low = np.where(present, values, np.inf).min(axis=0)
    high = np.where(present, values, -np.inf).max(axis=0)
    span = high - low
    spread = span > 0
    scaled = (values - np.where(spread, low, 0.0)) / np.where(spread, span, 1.0)
    out = np.where(spread, scaled, 0.0)
    out[~present] = np.nan
    return out
