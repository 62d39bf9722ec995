"""What every model and attack entry point checks, and the one input gradient they share.

- :func:`check_images`: a float batch (N, C, H, W) with pixels in [0, 1] (tlab keeps pixels
  in [0, 1] and normalises inside the model), and, given a model, the input shape it reads.
- :func:`check_labels`: one integer class index per image.
- :func:`eval_mode`: eval mode for the duration of a block, each submodule's own mode restored.
- :func:`input_gradient`: the gradient of the summed cross-entropy with respect to the input
  only, the building block of FGSM and PGD (Goodfellow et al. 2015; Madry et al. 2018) and of
  the gradient norms of Zhang et al. (2020, Sec. 5.4).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from tlab.errors import TlabError

__all__ = ["check_images", "check_labels", "eval_mode", "input_gradient"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode; restore each submodule's own train/eval flag on exit.

    Restoring per submodule (not just ``model.train(was_training)``) keeps mixed states intact,
    e.g. a training model whose frozen batch-norm layers were deliberately left in eval mode.
    A model already entirely in eval mode is left untouched.
    """
    training = [module for module in model.modules() if module.training]
    if training:
        model.eval()
    try:
        yield model
    finally:
        for module in training:
            module.training = True


def check_images(x: object, *, name: str = "x") -> torch.Tensor:
    """``x`` if it is a float batch of images (N, C, H, W) with every pixel in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise TlabError(f"{name} must be a torch.Tensor of images, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TlabError(
            f"{name} has dtype {x.dtype}; attacks need float pixels in [0, 1] "
            "(use TensorSet.floats() or x.float() / 255 for uint8 images)"
        )
    if x.dim() != 4:
        hint = "; for a single image use x.unsqueeze(0)" if x.dim() == 3 else ""
        raise TlabError(
            f"{name} must be a batch of images shaped (N, C, H, W), got shape "
            f"{tuple(x.shape)}{hint}"
        )
    if x.numel():
        low, high = torch.stack(torch.aminmax(x)).tolist()  # NaN pixels make both NaN
        if not (low >= 0.0 and high <= 1.0):
            raise TlabError(
                f"{name} has pixels outside [0, 1] (or NaN): min {low:.4g}, max {high:.4g}; "
                "tlab keeps pixels in [0, 1] and normalises inside the model"
            )
    return x


def check_labels(y: object, n: int, *, name: str = "y") -> torch.Tensor:
    """``y`` as an int64 tensor of shape (n,) (class indices, one per image)."""
    if not isinstance(y, torch.Tensor):
        raise TlabError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TlabError(f"{name} has dtype {y.dtype}; labels must be integer class indices")
    if y.dim() != 1 or y.shape[0] != n:
        raise TlabError(
            f"{name} must have shape ({n},), one label per image, got shape {tuple(y.shape)}"
        )
    return y.long()


def _check_label_range(labels: torch.Tensor, num_classes: int, *, name: str) -> None:
    """Labels must index the model's logits (checked once per chunk, before any loss)."""
    if not labels.numel():
        return
    low, high = torch.stack(torch.aminmax(labels)).tolist()
    if low < 0 or high >= num_classes:
        raise TlabError(
            f"{name} holds labels in [{low}, {high}] but the model outputs {num_classes} "
            f"classes; labels must lie in [0, {num_classes - 1}]"
        )


def _check_gradients_available() -> None:
    if torch.is_inference_mode_enabled():
        raise TlabError(
            "attacks need gradients, but torch.inference_mode() is active; "
            "call the attack outside that block"
        )


def input_gradient(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor | None, *, check_range: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed cross-entropy w.r.t. ``x`` only, and the labels used.

    A building block: runs ``model`` as it is (no mode switch, no device move); the callers
    (:func:`tlab.attacks.gradient.fgsm`, :func:`~tlab.attacks.gradient.pgd`,
    :func:`tlab.core.metrics.input_gradient_norms`) handle those.

    With ``labels=None`` the labels are the model's argmax on this very forward pass, so the
    clean prediction costs no extra forward. Summing (not averaging) the per-example losses
    makes each example's gradient independent of the batch it is in (the model is in eval mode).
    ``check_range`` validates given labels against the number of logits (callers ask for it on
    their first step only, to keep the loop free of extra device synchronisation).
    """
    _check_gradients_available()
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        if labels is None:
            labels = logits.detach().argmax(dim=1)
        elif check_range:
            _check_label_range(labels, logits.shape[1], name="y")
        loss = F.cross_entropy(logits, labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad, labels
