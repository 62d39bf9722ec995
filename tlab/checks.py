"""Argument checks shared by the package: one clear error per kind of bad input."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from numbers import Integral
from typing import TypeVar

from tlab.errors import TlabError, UnknownNameError

T = TypeVar("T")


def check_eps(eps: float, *, name: str = "eps") -> float:
    """An L-infinity budget in [0, 1] pixel units (pixels live in [0, 1])."""
    value = float(eps)
    if not 0.0 <= value <= 1.0:
        raise TlabError(
            f"{name}={eps!r} is outside [0, 1]; tlab measures eps in [0, 1] pixel units "
            f"(e.g. 8/255 = {8 / 255:.4f}); a paper eps stated for [-1, 1] pixels is halved"
        )
    return value


def check_positive_int(value: int, *, name: str, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (steps, epochs, batch sizes, ...)."""
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise TlabError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


def check_choice(kind: str, value: T, valid: Iterable[T]) -> T:
    """``value`` if it is one of ``valid``, else an error listing the valid ones."""
    options = list(valid)
    if value not in options:
        raise UnknownNameError(kind, value, [str(o) for o in options])
    return value


def check_stage(value: object, stages: int, *, name: str, first: int = 0, hint: str = "") -> int:
    """A stage index of a staged model: an integer in ``first..stages``, else a clear error.

    The one check behind every place a stage is named: how many stages a fine-tuned model
    keeps frozen (``first=0``, Zhang et al. Sec. 3.2), the layer K a mimicry attack or a defence
    works at (``first=1``, Wang et al. Sec. 3), the stages ``features`` runs. ``hint`` says
    what the ends of the range mean for the caller's model.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, Integral)
        or not first <= int(value) <= stages
    ):
        raise TlabError(
            f"{name}={value!r} is outside the valid range {first}..{stages}"
            + (f" ({hint})" if hint else "")
        )
    return int(value)


def check_counts(value: object, *, name: str, most: int, example: Sequence[int]) -> tuple[int, ...]:
    """A list of 1 to ``most`` positive integers (layers per block, channels per stage...)."""
    if not (
        isinstance(value, (tuple, list))
        and 1 <= len(value) <= most
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise TlabError(
            f"{name}={value!r} must be a list of 1 to {most} positive integers, "
            f"e.g. {list(example)}"
        )
    return tuple(value)
