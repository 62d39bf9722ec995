"""Device selection and mixed precision.

tlab runs everywhere on CPU; on a CUDA (or Apple MPS) machine the same code uses the GPU, with
bfloat16/float16 autocast for training on CUDA. Nothing hard-codes ``"cuda"``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """The device to use: ``preferred`` if given, else ``TLAB_DEVICE``, else CUDA, MPS, CPU."""
    choice = preferred if preferred is not None else os.environ.get("TLAB_DEVICE")
    if choice is not None:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            from tlab.errors import TlabError

            raise TlabError(f"device {choice!r} requested but CUDA is not available; use 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's parameters (or buffers) live on."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def autocast_for(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Mixed precision on CUDA (float16, or bfloat16 where supported); a no-op elsewhere."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        with torch.autocast(device_type="cuda", dtype=dtype):
            yield
    else:
        yield


def describe(device: torch.device) -> str:
    """A one-line human description of the device, for notebooks and the CLI."""
    if device.type == "cuda":
        return f"CUDA GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"
