"""One disk cache for everything tlab computes once and reads many times.

Every cache tlab keeps on disk writes through :mod:`tlab.safe_files` (atomic writes, per-key
locks, recipe hashes): the zoo of trained models, the generated domains and the evaluation
results below.

Evaluation results are cached so that warm notebooks and widgets re-render in a blink.

Models are cached by the zoo; what notebooks compute *from* models (accuracy-vs-eps curves,
black-box tables, gradient norms, attack success rates, crafted images) is cached here, keyed by
a hash of a recipe the caller gives (typically the zoo keys involved, the attack and its
settings, the evaluation data) plus the tlab version. JSON-able values are stored as JSON
(:func:`cached_result`), tensors as safetensors (:func:`cached_tensors`, never pickle). Writes
are atomic and locked per key, like the zoo's; a corrupt file is reported with a warning and
recomputed.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import safetensors
import safetensors.torch
import torch

import tlab
from tlab.paths import subdir
from tlab.safe_files import atomic_write, entry_lock, recipe_hash

T = TypeVar("T")


def _cached(
    kind: str,
    recipe: dict[str, Any],
    suffix: str,
    compute: Callable[[], T],
    load: Callable[[Path], T],
    dump: Callable[[T], bytes],
    errors: tuple[type[Exception], ...],
) -> T:
    """Load ``kind``'s entry for ``recipe`` or compute, store and return it (locked per key)."""
    folder = subdir("results")
    key = recipe_hash({"kind": kind, "recipe": recipe, "tlab_version": tlab.__version__})
    path = folder / f"{kind}-{key}.{suffix}"
    with entry_lock(path):
        if path.exists():
            try:
                return load(path)
            except errors as exc:
                warnings.warn(
                    f"cached result {path.name} is corrupt ({exc}); recomputing it",
                    RuntimeWarning,
                    stacklevel=3,
                )
        atomic_write(path, dump(compute()))
        return load(path)


def cached_result(kind: str, recipe: dict[str, Any], compute: Callable[[], T]) -> T:
    """``compute()``'s JSON-able result for ``recipe``, from disk when it was computed before.

    ``kind`` names the computation (e.g. ``"whitebox-curve"``) and is part of the key and of
    the file name; ``recipe`` must contain everything the result depends on. The value returned
    is always the one read back from disk, so a first run and a warm run see identical values.
    """
    return _cached(
        kind,
        recipe,
        "json",
        compute,
        load=lambda path: json.loads(path.read_text())["value"],
        dump=lambda value: json.dumps(
            {"kind": kind, "recipe": recipe, "value": value}, default=float
        ).encode(),
        errors=(ValueError, KeyError),
    )


def cached_tensors(
    kind: str, recipe: dict[str, Any], compute: Callable[[], dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """Like :func:`cached_result` for a dict of tensors (crafted images, per-example numbers).

    Stored with safetensors: reading a cached file never executes code.
    """
    return _cached(
        kind,
        recipe,
        "safetensors",
        compute,
        load=lambda path: safetensors.torch.load_file(str(path)),
        dump=lambda tensors: safetensors.torch.save(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        ),
        errors=(OSError, safetensors.SafetensorError),
    )
