"""What every exercise check needs: a result that is a finite tensor of the right shape."""

from __future__ import annotations

import torch

from tlab.notebook.exercises import expect


def finite_tensor(value: object, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """``value`` if it is a finite tensor of ``shape``; else the student's failure, naming
    ``what``."""
    expect(isinstance(value, torch.Tensor), f"return a torch.Tensor ({what})")
    assert isinstance(value, torch.Tensor)
    expect(tuple(value.shape) == shape, f"{what}: expected shape {shape}, got {tuple(value.shape)}")
    expect(bool(torch.isfinite(value).all()), f"{what}: the result holds NaN or inf")
    return value
