"""One disk cache for everything tlab computes once and reads many times.

Safe files (:func:`atomic_write`, :func:`recipe_hash`) are shared by every cache tlab keeps on
disk: the zoo of trained models, the generated domains and the evaluation results below.

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

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import filelock
import safetensors
import safetensors.torch
import torch

import tlab
from tlab.paths import subdir


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over ``path`` (atomic on POSIX). Two processes writing the same path each replace it
    whole; an interrupted write leaves only a hidden ``.tmp`` file, never a truncated ``path``.
    Files are made readable by others so that a shared data folder works.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def entry_lock(path: Path) -> filelock.FileLock:
    """The lock every cache takes around one entry (a ``.lock`` file beside ``path``), so that
    two processes asking for the same entry compute it once and never read half of it."""
    return filelock.FileLock(str(path.with_suffix(".lock")))


def recipe_hash(recipe: Any, length: int = 20) -> str:
    """A short SHA-256 of a JSON-able recipe (keys sorted, so dict order does not matter)."""
    text = json.dumps(recipe, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


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
