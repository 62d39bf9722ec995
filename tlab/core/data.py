"""Domains: named 32x32 image-classification datasets, held as uint8 tensors.

A *domain* has class names, a train and a test :class:`TensorSet` and the parameters that made
it. Images are uint8 (N, 3, 32, 32) at rest and become floats in [0, 1] only when used
(:mod:`tlab.core.tensorsets`).

Embedded domains need nothing downloaded:

- ``digits``: the 1,797 real handwritten digits scikit-learn ships, upsampled 8 -> 32.
- ``syndigits``: SynDigits-style rendered digits (the synthetic digit domain of Zhang et al.,
  KDD 2020, Sec. 5.1), from the fonts matplotlib ships.
- ``letters``: rendered capital letters A-Z, a larger "general" source domain with its own
  label set (the role ImageNet32 / CIFAR100 play in the papers). Upper case only: once every
  glyph is scaled and shifted at random, c/C, o/O, s/S, v/V, w/W, x/X, z/Z and l/I look the
  same, so 52 classes would carry label noise rather than information.

Real domains (``mnist``, ``usps``, ``svhn``, ``cifar10``, ``cifar100``, ``stl10``, ``cifar10_9``,
``stl10_9``, ``fashion_mnist``) are read by torchvision's own loaders from ``data/downloads/``.
When their files are missing tlab checks for a network (a few seconds at most) and lets
torchvision download them, or raises :class:`DatasetUnavailableError` saying where to put
them. Fashion-MNIST is read from Debian's ``dataset-fashion-mnist`` package when installed.

Every domain also takes ``labels``: a subset of its classes (e.g. ``"0-4"``, ``"5-9"`` or
``[1, 3, 5]``), relabelled 0..k-1 in increasing order with their names kept, so a lab can build
source and target domains with disjoint label sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import yaml

from tlab.checks import check_positive_int
from tlab.core.tensorsets import TensorSet, derived_seed, ranks_within_class, train_val_split
from tlab.datasets import synthetic
from tlab.datasets.real import REAL_DATASETS, Split, load_real, on_disk, relabel
from tlab.errors import TlabError, UnknownNameError


@dataclass(frozen=True)
class Domain:
    """A named dataset: class names, train and test sets, and the parameters that made it."""

    name: str
    classes: tuple[str, ...]
    train: TensorSet
    test: TensorSet
    params: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class DomainInfo:
    """One line of :func:`list_domains`."""

    name: str
    kind: str  # "embedded" or "real"
    num_classes: int
    description: str
    available: bool  # usable right now without network


# ---------------------------------------------------------------- parameters


@dataclass(frozen=True)
class _Param:
    default: Any
    check: Callable[[str, Any], Any]
    help: str


def _int_at_least(minimum: int) -> Callable[[str, Any], int]:
    return lambda name, value: check_positive_int(value, name=name, minimum=minimum)


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TlabError(f"{name}={value!r} must be True or False")
    return value


def _label_subset(name: str, value: Any) -> list[int] | None:
    """``None``, ``"a-b"`` (inclusive), ``"a,b,c"`` or a sequence of ints -> sorted list."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            if "-" in value:
                lo, hi = (int(part) for part in value.split("-"))
                chosen = list(range(lo, hi + 1))
            else:
                chosen = [int(part) for part in value.split(",")]
        else:
            chosen = [check_positive_int(v, name=name, minimum=0) for v in value]
    except (TypeError, ValueError) as exc:
        raise TlabError(
            f"{name}={value!r} is not a label subset; give a range like '0-4', "
            f"a list like '0,2,4' or [0, 2, 4], or None for all classes"
        ) from exc
    if len(set(chosen)) != len(chosen) or len(chosen) < 2 or min(chosen) < 0:
        raise TlabError(f"{name}={value!r} must name at least 2 distinct labels >= 0")
    return sorted(chosen)


_LABELS = _Param(None, _label_subset, "class subset, e.g. '0-4', '5-9' or [0, 2, 4]")


def _embedded_params(n_train: int, n_test: int) -> dict[str, _Param]:
    return {
        "n_train": _Param(n_train, _int_at_least(1), "training images"),
        "n_test": _Param(n_test, _int_at_least(1), "test images"),
        "seed": _Param(0, _int_at_least(0), "random seed (same seed, same bytes)"),
        "colour": _Param(True, _boolean, "colour images; False = grey light-on-dark like MNIST"),
        "labels": _LABELS,
    }


def _resolve_params(name: str, spec: dict[str, _Param], given: dict[str, Any]) -> dict[str, Any]:
    valid = ", ".join(f"{k} (default {p.default!r}: {p.help})" for k, p in spec.items())
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise TlabError(
            f"domain {name!r} has no parameter {', '.join(unknown)}; valid parameters: {valid}"
        )
    return {k: p.check(k, given[k]) if k in given else p.default for k, p in spec.items()}


# ---------------------------------------------------------------- embedded domains


def _rendered(
    name: str, chars: str, params: dict[str, Any]
) -> tuple[tuple[str, ...], Split, Split]:
    gen = {k: params[k] for k in ("n_train", "n_test", "seed", "colour")}

    def make() -> dict[str, torch.Tensor]:
        out = {}
        for split in ("train", "test"):
            images, labels = synthetic.render_glyphs(
                chars,
                gen[f"n_{split}"],
                colour=gen["colour"],
                seed=derived_seed(name, split, gen["seed"]),
            )
            out[f"{split}_images"], out[f"{split}_labels"] = images, labels
        return out

    t = synthetic.cached(name, gen, (gen["n_train"], gen["n_test"]), make)
    return (
        tuple(chars),
        (t["train_images"], t["train_labels"]),
        (t["test_images"], t["test_labels"]),
    )


def _digits(params: dict[str, Any]) -> tuple[tuple[str, ...], Split, Split]:
    """sklearn's digits, split stratified 2/3 train, 1/3 test by ``seed`` (default 0)."""
    images, labels = synthetic.sklearn_digits()
    train, test = train_val_split(TensorSet(images, labels), 1 / 3, params["seed"])
    return (tuple(synthetic.DIGIT_CHARS), (train.images, train.labels), (test.images, test.labels))


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Spec:
    kind: str
    num_classes: int
    description: str
    params: dict[str, _Param]
    build: Callable[[dict[str, Any]], tuple[tuple[str, ...], Split, Split]]
    available: Callable[[], bool]


def _always() -> bool:
    return True


def _real_spec(name: str) -> _Spec:
    info = REAL_DATASETS[name]
    params = {k: _Param(d, _boolean, h) for k, (d, h) in info.options.items()}
    return _Spec(
        "real",
        info.num_classes,
        info.description,
        {**params, "labels": _LABELS},
        lambda p: load_real(name, **{k: p[k] for k in info.options}),
        lambda: on_disk(name),
    )


_DOMAINS: dict[str, _Spec] = {
    "digits": _Spec(
        "embedded",
        10,
        "scikit-learn's 1,797 real handwritten 8x8 digits, upsampled to 32x32 (grey)",
        {"seed": _Param(0, _int_at_least(0), "seed of the 2/3 : 1/3 split"), "labels": _LABELS},
        _digits,
        _always,
    ),
    "syndigits": _Spec(
        "embedded",
        10,
        "SynDigits-style digits rendered from 21 fonts with "
        "random colours, pose, blur, noise and neighbours",
        _embedded_params(10_000, 2_000),
        lambda p: _rendered("syndigits", synthetic.DIGIT_CHARS, p),
        _always,
    ),
    "letters": _Spec(
        "embedded",
        26,
        "rendered capital letters A-Z, same variation as "
        "syndigits; a large general source with another label set",
        _embedded_params(20_000, 4_000),
        lambda p: _rendered("letters", synthetic.LETTER_CHARS, p),
        _always,
    ),
    **{name: _real_spec(name) for name in REAL_DATASETS},
}


def _restrict(
    classes: tuple[str, ...], train: Split, test: Split, subset: list[int] | None
) -> tuple[tuple[str, ...], TensorSet, TensorSet]:
    if subset is None:
        return classes, TensorSet(*train), TensorSet(*test)
    table = torch.full((len(classes),), -1, dtype=torch.int64)
    table[subset] = torch.arange(len(subset))
    return (
        tuple(classes[i] for i in subset),
        TensorSet(*relabel(train, table)),
        TensorSet(*relabel(test, table)),
    )


def parse_domain(text: str) -> tuple[str, dict[str, Any]]:
    """``"syndigits:colour=false,seed=1"`` -> ``("syndigits", {"colour": False, "seed": 1})``.

    The short form notebooks' parameters and the command line use for a domain with its
    parameters; values are read as YAML scalars. ``load_domain`` checks names and values.
    """
    name, _, rest = str(text).partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TlabError(
                f"domain parameter {item!r} in {text!r} must look like key=value, "
                "e.g. 'syndigits:colour=false,seed=1'"
            )
        params[key.strip()] = yaml.safe_load(value)
    if not name.strip():
        raise TlabError(f"{text!r} names no domain; `python -m tlab domains` lists them")
    return name.strip(), params


def load_domain(name: str, **params: Any) -> Domain:
    """The domain ``name`` built with ``params`` (see :func:`list_domains` for the names).

    Raises :class:`UnknownNameError` for an unknown name, :class:`TlabError` for unknown or
    invalid parameters, :class:`DataFolderError` if the data folder is not writable and
    :class:`DatasetUnavailableError` for a real dataset that is neither on disk nor
    downloadable.
    """
    if name not in _DOMAINS:
        raise UnknownNameError("domain", name, list(_DOMAINS))
    spec = _DOMAINS[name]
    resolved = _resolve_params(name, spec.params, params)
    if resolved["labels"] is not None and max(resolved["labels"]) >= spec.num_classes:
        raise TlabError(
            f"labels={resolved['labels']} goes beyond the {spec.num_classes} classes "
            f"of {name!r} (valid labels 0..{spec.num_classes - 1})"
        )
    classes, train, test = spec.build(resolved)
    classes, train_set, test_set = _restrict(classes, train, test, resolved["labels"])
    return Domain(name, classes, train_set, test_set, resolved)


def list_domains() -> list[DomainInfo]:
    """Every domain with its kind, class count, one-line description and offline availability."""
    return [
        DomainInfo(name, s.kind, s.num_classes, s.description, s.available())
        for name, s in _DOMAINS.items()
    ]


def domain_gallery_arrays(
    domain: Domain, per_class: int = 8, *, split: str = "train", seed: int = 0, pad: int = 2
) -> np.ndarray:
    """A grid of example images, one row per class, as a numpy HWC uint8 array.

    Row r shows up to ``per_class`` random (seeded) examples of ``domain.classes[r]``; cells
    without an example and the ``pad``-pixel separators are white.
    """
    per_class = check_positive_int(per_class, name="per_class")
    if split not in ("train", "test"):
        raise UnknownNameError("split", split, ["train", "test"])
    ts = domain.train if split == "train" else domain.test
    cell = 32 + pad
    grid = np.full((pad + cell * domain.num_classes, pad + cell * per_class, 3), 255, np.uint8)
    order, rank = ranks_within_class(ts.labels, seed)
    keep = rank < per_class
    for i, r in zip(order[keep].tolist(), rank[keep].tolist(), strict=True):
        row, col = int(ts.labels[i]), r
        y, x = pad + row * cell, pad + col * cell
        grid[y : y + 32, x : x + 32] = ts.images[i].permute(1, 2, 0).numpy()
    return grid
