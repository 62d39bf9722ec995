"""Safe files: what every cache tlab keeps on disk shares (the zoo of trained models, the generated
domains' splits, the results cache of :mod:`tlab.cache`, the run records of :mod:`tlab.record`).

Writes are atomic (:func:`atomic_write`), entries are locked per key across processes
(:func:`entry_lock`) and keys are hashes of JSON recipes (:func:`recipe_hash`). This module
imports no torch, so that the processes that only run notebooks (``python -m tlab run``) start
without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import filelock


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
