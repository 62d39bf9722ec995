"""The on-disk cache of a domain's train/test tensors, shared by generated and real datasets.

A cache entry is one safetensors file (a format that cannot run code on load) holding named
tensors and string metadata, written atomically (:func:`tlab.safe_files.atomic_write`) under a
per-entry lock and checked against a content digest when read. The embedded domains cache what
they generate (:mod:`tlab.datasets.synthetic`, ``data/embedded/``); the real datasets cache what
torchvision read and converted to 32x32 (:mod:`tlab.datasets.real`, ``data/converted/``), so
a second load neither imports torchvision nor converts again.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from tlab.safe_files import atomic_write, entry_lock


def digest(tensors: dict[str, torch.Tensor]) -> str:
    """A content hash of named tensors (names and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(tensors[key].contiguous().numpy().data)
    return h.hexdigest()


def read_entry(
    path: Path, expected: dict[str, tuple[int, ...]] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a cache file; ``ValueError`` if it is unreadable, altered, or
    does not hold exactly the ``expected`` shapes (when given)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            present = list(f.keys())  # safe_open has keys() but no __contains__
            names = present if expected is None else [k for k in expected if k in present]
            tensors = {k: f.get_tensor(k) for k in names}
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"unreadable ({exc})") from exc
    if expected is not None:
        shapes = {k: tuple(t.shape) for k, t in tensors.items()}
        if shapes != expected:
            raise ValueError(f"holds shapes {shapes}, expected {expected}")
    stamp = _stamp(path)
    if stamp not in _VERIFIED:
        if meta.get("digest") != digest(tensors):
            raise ValueError("content digest does not match")
        _VERIFIED.add(stamp)
    return tensors, meta


#: Files whose digest this process has checked, by (path, size, modification time): a notebook
#: loads the same domain many times (every model it evaluates), and hashing a 100 MB file each
#: time cost more than reading it. A file replaced or rewritten since gets a new stamp.
_VERIFIED: set[tuple[str, int, int]] = set()


def _stamp(path: Path) -> tuple[str, int, int]:
    info = path.stat()
    return str(path.resolve()), info.st_size, info.st_mtime_ns


def write_entry(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Write atomically: two processes writing the same entry each replace it with identical
    bytes; a reader sees no file or a complete one."""
    atomic_write(
        path,
        save(
            {k: t.contiguous() for k, t in tensors.items()},
            metadata={**meta, "digest": digest(tensors)},
        ),
    )


def cached_entry(
    path: Path,
    what: str,
    make: Callable[[], tuple[dict[str, torch.Tensor], dict[str, str]]],
    expected: dict[str, tuple[int, ...]] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata cached at ``path``, else ``make()``'s, written there first.

    Two kernels asking for the same entry at once: one makes it, the other waits and reads it.
    A corrupt file is reported with a warning naming ``what`` and made again.
    """
    with entry_lock(path):
        if path.exists():
            try:
                return read_entry(path, expected)
            except ValueError as exc:
                warnings.warn(
                    f"cached {what} {path} is corrupt: {exc}; making it again",
                    RuntimeWarning,
                    stacklevel=3,
                )
        tensors, meta = make()
        write_entry(path, tensors, meta)
        return tensors, meta
