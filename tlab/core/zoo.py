"""The zoo: trained models cached on disk, keyed by everything that made them.

A :class:`ModelSpec` names a model completely: its domain (and the domain's parameters), the
class-balanced subset (n, seed), the architecture, the strategy with its source model's spec and
frozen depth, and the training configuration. Its :meth:`ModelSpec.key` is a hash of all that
plus the tlab version and the training precision (``tlab.core.device.training_dtype``), so a changed
recipe never returns a stale model and a float32 run never reuses a bfloat16-trained one.

On disk, under ``data/zoo/`` (or ``$TLAB_DATA/zoo``), an entry is two files:

- ``<key>.safetensors`` — the weights. safetensors holds raw tensors only, so loading an entry
  can never execute code (unlike pickle-based ``torch.save`` files);
- ``<key>.json`` — spec, metrics, training history, the weights' SHA-256 and size, library
  versions. It is written last: an entry without it is incomplete and is trained again.

Both are written to a temporary file and renamed into place (atomic on POSIX), and a file lock
per key makes sure two processes never train or write the same entry at once: the second waits
and then loads what the first wrote. A truncated or tampered weights file fails the SHA-256
check; ``get_or_train`` reports it as a warning and retrains, ``load_entry`` raises
:class:`~tlab.errors.CorruptZooEntryError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock
import safetensors
import safetensors.torch
import torch

import tlab
from tlab.checks import check_choice
from tlab.core.data import Domain, load_domain
from tlab.core.device import pick_device, precision_name
from tlab.core.metrics import accuracy
from tlab.core.models import StagedModel, build_model, freeze
from tlab.core.tensorsets import class_balanced_subset, train_val_split
from tlab.core.train import STRATEGIES, TrainConfig, fit, prepare_model
from tlab.errors import CorruptZooEntryError, TlabError
from tlab.paths import subdir
from tlab.safe_files import atomic_write, entry_lock, recipe_hash

#: Bumped whenever training changes in a way a spec cannot see (2: early-stopping tie-break on
#: validation loss; 3: adversarial crafting under the training autocast), so models trained by
#: older code are never reused.
ZOO_FORMAT = 3


@dataclass(frozen=True)
class ModelSpec:
    """Everything that makes a trained model; two equal specs give the same zoo entry.

    ``n=None`` trains on the whole training split of the domain. ``n`` counts the images
    *before* the validation split: with ``train.val_fraction=0.1``, ``n=100`` trains on 90
    images and early-stops on the other 10. ``source`` is the spec of model
    A (``finetune``) or C (``commoninit``). ``frozen`` counts the leading stages that keep the
    source's weights (see ``tlab.core.models.freeze``).
    """

    domain: str
    arch: str = "dtn"
    n: int | None = None
    subset_seed: int = 0
    domain_params: dict[str, Any] = field(default_factory=dict)
    strategy: str = "scratch"
    source: ModelSpec | None = None
    frozen: int = 0
    train_bn: bool = False
    arch_options: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        if self.strategy == "scratch" and (self.source is not None or self.frozen):
            raise TlabError(
                "a 'scratch' model has no source and nothing frozen; "
                "use strategy='finetune' to start from a source model"
            )
        if self.strategy != "scratch" and self.source is None:
            raise TlabError(
                f"strategy {self.strategy!r} needs source=ModelSpec(...) "
                "(model A for 'finetune', model C for 'commoninit')"
            )
        if self.n is not None and (isinstance(self.n, bool) or int(self.n) != self.n or self.n < 1):
            raise TlabError(f"n={self.n!r} must be a positive integer or None (whole domain)")

    def describe(self, device: str | torch.device | None = None) -> dict[str, Any]:
        """A JSON-able description; the source appears as its own description and key."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["train"] = self.train.as_dict()
        out["source"] = (
            None
            if self.source is None
            else {"key": self.source.key(device), **self.source.describe(device)}
        )
        return out

    def key(self, device: str | torch.device | None = None) -> str:
        """A short hash of the recipe, the source's key, the tlab version, the zoo format and
        the precision training uses on ``device`` (``tlab.core.device.pick_device`` by default)."""
        recipe = self.describe(device)
        if self.source is not None:
            recipe["source"] = self.source.key(device)
        recipe["precision"] = precision_name(pick_device(device))
        recipe["tlab_version"] = tlab.__version__
        recipe["zoo_format"] = ZOO_FORMAT
        return recipe_hash(recipe)

    def chain(self) -> list[ModelSpec]:
        """This spec and its sources, the deepest source first."""
        return ([] if self.source is None else self.source.chain()) + [self]


@dataclass
class ZooEntry:
    """A model from the zoo with its metadata; ``from_cache`` is False if it was just trained."""

    key: str
    model: StagedModel
    meta: dict[str, Any]
    from_cache: bool


def zoo_dir() -> Path:
    """The folder holding the zoo (created and checked writable)."""
    return subdir("zoo")


def _paths(key: str) -> tuple[Path, Path]:
    root = zoo_dir()
    return root / f"{key}.safetensors", root / f"{key}.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    return {
        "tlab": tlab.__version__,
        "torch": torch.__version__,
        "torchvision": importlib.metadata.version("torchvision"),  # without importing it
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def load_entry(key: str, *, device: str | torch.device | None = None) -> ZooEntry:
    """Load a stored entry, checking its integrity; never executes code from the files.

    Raises ``KeyError`` if there is no complete entry, :class:`CorruptZooEntryError` (saying what
    to do) if its files fail the checks.
    """
    weights, meta_path = _paths(key)
    if not meta_path.exists():
        raise KeyError(key)
    advice = f"delete it with `python -m tlab zoo clear {key}` or let get_or_train retrain it"
    try:
        meta = json.loads(meta_path.read_text())
        expected_sha, spec = meta["sha256"], meta["spec"]
    except (OSError, ValueError, KeyError) as exc:
        raise CorruptZooEntryError(
            f"zoo entry {key}: unreadable metadata ({exc}); {advice}"
        ) from exc
    if not weights.exists():
        raise CorruptZooEntryError(
            f"zoo entry {key}: weights file {weights.name} is missing; {advice}"
        )
    if weights.stat().st_size != meta.get("size_bytes") or _sha256(weights) != expected_sha:
        raise CorruptZooEntryError(
            f"zoo entry {key}: {weights.name} does not match its recorded SHA-256 "
            f"(truncated or modified); {advice}"
        )
    try:
        state = safetensors.torch.load_file(str(weights))
        model = build_model(spec["arch"], meta["num_classes"], **spec["arch_options"])
        freeze(model, spec["frozen"], train_bn=spec["train_bn"])
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, KeyError, safetensors.SafetensorError) as exc:
        raise CorruptZooEntryError(
            f"zoo entry {key}: weights do not load ({exc}); {advice}"
        ) from exc
    model.eval()
    return ZooEntry(key=key, model=model.to(pick_device(device)), meta=meta, from_cache=True)


def _store(key: str, model: StagedModel, meta: dict[str, Any]) -> dict[str, Any]:
    """Write weights then metadata (the metadata file marks the entry complete).

    Returns the metadata as stored, with the weights' SHA-256 and size added.
    """
    weights, meta_path = _paths(key)
    state = {
        name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()
    }
    blob = safetensors.torch.save(state, metadata={"tlab_key": key})
    meta_path.unlink(missing_ok=True)
    atomic_write(weights, blob)
    meta = {**meta, "sha256": hashlib.sha256(blob).hexdigest(), "size_bytes": len(blob)}
    atomic_write(meta_path, json.dumps(meta, indent=2, default=str).encode())
    return meta


def _training_sets(spec: ModelSpec, domain: Domain):
    pool = (
        domain.train
        if spec.n is None
        else class_balanced_subset(domain.train, spec.n, seed=spec.subset_seed)
    )
    if spec.train.val_fraction == 0:
        return pool, None
    return train_val_split(pool, spec.train.val_fraction, seed=spec.subset_seed)


def _train(spec: ModelSpec, key: str, *, device: torch.device, progress: bool) -> ZooEntry:
    source = None
    if spec.source is not None:
        source = get_or_train(spec.source, device=device, progress=progress).model
    domain = load_domain(spec.domain, **spec.domain_params)
    train_set, val_set = _training_sets(spec, domain)
    model = prepare_model(
        spec.strategy,
        arch=spec.arch,
        num_classes=len(domain.classes),
        source=source,
        frozen=spec.frozen,
        train_bn=spec.train_bn,
        seed=spec.train.seed,
        arch_options=spec.arch_options,
    )
    label = f"{spec.arch} {spec.strategy} on {spec.domain} [{key[:8]}]"
    result = fit(
        model, train_set, val_set, spec.train, device=device, progress=progress, description=label
    )
    test_acc = accuracy(model, domain.test.floats(device), domain.test.labels.to(device))
    meta = {
        "key": key,
        "spec": spec.describe(device),
        "num_classes": len(domain.classes),
        "classes": list(domain.classes),
        "metrics": {
            "test_accuracy": test_acc,
            "val_accuracy": result.best_val_accuracy,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "stopped_early": result.stopped_early,
            "train_seconds": result.seconds,
            "n_train": len(train_set),
            "n_val": 0 if val_set is None else len(val_set),
        },
        "history": result.history,
        "versions": _versions(),
        "device": str(device),
        "precision": precision_name(device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "zoo_format": ZOO_FORMAT,
    }
    return ZooEntry(key=key, model=model, meta=_store(key, model, meta), from_cache=False)


def _try_load(key: str, device: torch.device) -> ZooEntry | None:
    try:
        return load_entry(key, device=device)
    except KeyError:
        return None
    except CorruptZooEntryError as exc:
        warnings.warn(f"{exc} -- retraining it now", stacklevel=3)
        return None


def get_or_train(
    spec: ModelSpec, *, device: str | torch.device | None = None, progress: bool = True
) -> ZooEntry:
    """The model ``spec`` describes: from the zoo if stored and intact, else trained now.

    Sources are fetched (or trained) first. Safe across processes: a per-key file lock means one
    process trains while the others wait, then load its result.
    """
    device = pick_device(device)
    for link in spec.chain():  # validate every domain and subset size before training anything
        domain = load_domain(link.domain, **link.domain_params)
        if link.n is not None:
            class_balanced_subset(domain.train, link.n, seed=link.subset_seed)
    key = spec.key(device)
    entry = _try_load(key, device)
    if entry is not None:
        return entry
    lock = entry_lock(_paths(key)[0])
    try:
        lock.acquire(timeout=0.5)
    except filelock.Timeout:
        if progress:
            print(f"zoo: another process is training {key}; waiting for it")
        lock.acquire()
    try:
        entry = _try_load(key, device)
        return entry if entry is not None else _train(spec, key, device=device, progress=progress)
    finally:
        lock.release()


def list_entries() -> list[dict[str, Any]]:
    """One row per complete entry: key, what it is, its test accuracy and size."""
    rows = []
    for meta_path in sorted(zoo_dir().glob("*.json")):
        try:
            meta = json.loads(meta_path.read_text())
            spec = meta["spec"]
            rows.append(
                {
                    "key": meta["key"],
                    "domain": spec["domain"],
                    "arch": spec["arch"],
                    "strategy": spec["strategy"],
                    "frozen": spec["frozen"],
                    "n": spec["n"],
                    "adversarial": spec["train"]["adversarial"],
                    "test_accuracy": meta["metrics"]["test_accuracy"],
                    "size_mb": meta["size_bytes"] / 2**20,
                    "created": meta["created"],
                }
            )
        except (OSError, ValueError, KeyError):
            rows.append(
                {
                    "key": meta_path.stem,
                    "domain": "?",
                    "arch": "?",
                    "strategy": "corrupt",
                    "frozen": None,
                    "n": None,
                    "adversarial": None,
                    "test_accuracy": None,
                    "size_mb": None,
                    "created": None,
                }
            )
    return rows


def clear(keys: list[str] | None = None) -> int:
    """Delete the given entries (all if ``keys`` is None); returns how many were removed."""
    root = zoo_dir()
    if keys is None:
        keys = sorted(
            {p.name.split(".")[0] for p in root.glob("*.json")}
            | {p.name.split(".")[0] for p in root.glob("*.safetensors")}
        )
    removed = 0
    for key in keys:
        weights, meta_path = _paths(key)
        if not (weights.exists() or meta_path.exists()):
            raise TlabError(f"no zoo entry {key!r}; `python -m tlab zoo list` shows the keys")
        lock = entry_lock(weights)
        with lock:
            meta_path.unlink(missing_ok=True)
            weights.unlink(missing_ok=True)
        Path(lock.lock_file).unlink(missing_ok=True)
        removed += 1
    return removed
