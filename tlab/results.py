"""A disk cache for evaluation results, so warm notebooks and widgets re-render in a blink.

Models are cached by the zoo; what notebooks compute *from* models (accuracy-vs-eps curves,
black-box tables, gradient norms, attack success rates) is cached here, as JSON, keyed by a hash
of a recipe the caller gives (typically the zoo keys involved, the attack and its settings, the
evaluation data) plus the tlab version. Writes are atomic and locked per key, like the zoo's; a
corrupt file is reported with a warning and recomputed.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Callable, TypeVar

import filelock

import tlab
from tlab.paths import subdir
from tlab.storage import atomic_write, recipe_hash

T = TypeVar("T")


def cached_result(kind: str, recipe: dict[str, Any], compute: Callable[[], T]) -> T:
    """``compute()``'s JSON-able result for ``recipe``, from disk when it was computed before.

    ``kind`` names the computation (e.g. ``"whitebox-curve"``) and is part of the key and of
    the file name; ``recipe`` must contain everything the result depends on.
    """
    folder = subdir("results")
    key = recipe_hash({"kind": kind, "recipe": recipe, "tlab_version": tlab.__version__})
    path = folder / f"{kind}-{key}.json"
    with filelock.FileLock(str(folder / f"{kind}-{key}.lock")):
        if path.exists():
            try:
                return json.loads(path.read_text())["value"]
            except (ValueError, KeyError) as exc:
                warnings.warn(f"cached result {path.name} is corrupt ({exc}); recomputing it",
                              RuntimeWarning, stacklevel=2)
        value = compute()
        atomic_write(path, json.dumps({"kind": kind, "recipe": recipe, "value": value},
                                      default=float).encode())
    return json.loads(path.read_text())["value"]
