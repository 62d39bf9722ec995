"""Argument checks shared by the package: one clear error per kind of bad input."""

from __future__ import annotations

from collections.abc import Iterable
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
