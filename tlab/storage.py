"""Safe files: atomic writes and recipe hashes, shared by every cache tlab keeps on disk."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


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


def recipe_hash(recipe: Any, length: int = 20) -> str:
    """A short SHA-256 of a JSON-able recipe (keys sorted, so dict order does not matter)."""
    text = json.dumps(recipe, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
