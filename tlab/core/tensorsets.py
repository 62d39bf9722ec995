"""Labelled image sets as uint8 tensors, and how training draws from them: seeded,
class-balanced subsets (the n_A, n_B of Zhang et al., KDD 2020, Sec. 5), stratified
train/validation splits and mini-batches moved to the device once (:class:`DeviceBatches`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from tlab.checks import check_positive_int
from tlab.core.device import pick_device
from tlab.errors import TlabError


@dataclass(frozen=True)
class TensorSet:
    """Images uint8 (N, 3, 32, 32) and labels int64 (N,), on the CPU at rest."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        img, lab = self.images, self.labels
        if img.dtype != torch.uint8 or img.dim() != 4 or tuple(img.shape[1:]) != (3, 32, 32):
            raise TlabError(
                f"images must be uint8 (N, 3, 32, 32), got {img.dtype} {tuple(img.shape)}"
            )
        if lab.dtype != torch.int64 or lab.dim() != 1 or len(lab) != len(img):
            raise TlabError(
                f"labels must be int64 (N,) with N = {len(img)}, got {lab.dtype} {tuple(lab.shape)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def floats(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The images as float32 in [0, 1] on ``device`` (default: where they are)."""
        return self.images.to(device).float().div_(255)

    def select(self, index: torch.Tensor) -> TensorSet:
        """The examples at ``index`` (a 1-D index or boolean tensor), in that order."""
        return TensorSet(self.images[index], self.labels[index])


def derived_seed(*parts: int | str) -> int:
    """A 63-bit seed mixed from ``parts`` (so train/test and domains get independent streams)."""
    digest = hashlib.blake2b(json.dumps(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def ranks_within_class(labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random order of all indices, grouped by class, and each one's rank in its class.

    Taking ranks < q_c from class c gives a random class-balanced sample; samples for growing
    q_c are nested.
    """
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=g)
    order = perm[torch.sort(labels[perm], stable=True).indices]
    sorted_labels = labels[order]
    starts = torch.searchsorted(sorted_labels, sorted_labels, side="left")
    return order, torch.arange(len(labels)) - starts


def class_balanced_subset(ts: TensorSet, n: int, seed: int) -> TensorSet:
    """``n`` examples, ``n // k`` from each of the k classes present, seeded.

    The ``n % k`` left-over examples go one each to classes chosen by the same seed. Indices are
    returned in their original order; for one seed, a smaller subset is part of a larger one.
    """
    n = check_positive_int(n, name="n")
    classes, counts = torch.unique(ts.labels, return_counts=True)
    k = len(classes)
    if n > len(ts):
        raise TlabError(f"n={n} is larger than the set ({len(ts)} examples); choose n <= {len(ts)}")
    if n < k:
        raise TlabError(
            f"n={n} is smaller than the number of classes ({k}); a class-balanced "
            f"subset needs n >= {k}"
        )
    g = torch.Generator().manual_seed(seed)
    quota = torch.full((k,), n // k, dtype=torch.int64)
    quota[torch.randperm(k, generator=g)[: n % k]] += 1
    if bool((quota > counts).any()):
        c = int(torch.nonzero(quota > counts)[0, 0])
        most = int(k * counts.min())
        raise TlabError(
            f"class {int(classes[c])} has only {int(counts[c])} examples, fewer than "
            f"the {int(quota[c])} a balanced subset of n={n} needs; choose n <= {most}"
        )
    order, rank = ranks_within_class(ts.labels, seed)
    class_of = torch.searchsorted(classes, ts.labels[order])
    chosen = order[rank < quota[class_of]]
    return ts.select(torch.sort(chosen).values)


def train_val_split(ts: TensorSet, val_fraction: float, seed: int) -> tuple[TensorSet, TensorSet]:
    """Stratified, seeded split: each class sends ``round(val_fraction * count)`` examples to
    validation (at least one, and at least one stays in training, when the class has two)."""
    if not 0.0 < float(val_fraction) < 1.0:
        raise TlabError(f"val_fraction={val_fraction!r} must be strictly between 0 and 1")
    classes, counts = torch.unique(ts.labels, return_counts=True)
    n_val = torch.round(counts.double() * float(val_fraction)).long()
    n_val = torch.minimum(n_val.clamp_min(1), (counts - 1).clamp_min(0))
    order, rank = ranks_within_class(ts.labels, seed)
    in_val = rank < n_val[torch.searchsorted(classes, ts.labels[order])]
    return (
        ts.select(torch.sort(order[~in_val]).values),
        ts.select(torch.sort(order[in_val]).values),
    )


class DeviceBatches:
    """Mini-batches from tensors moved to ``device`` once.

    Each batch is an index slice converted to float in [0, 1] on the device; no per-example
    Python work (the whole-dataset-on-device approach of airbench / hlb-CIFAR10). With
    ``shuffle`` each epoch (each ``iter()``) uses a permutation drawn from a generator seeded by
    (seed, epoch): a different order every epoch, the same sequence of orders every run.
    """

    def __init__(
        self,
        ts: TensorSet,
        batch_size: int,
        *,
        device: torch.device | str | None,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.batch_size = check_positive_int(batch_size, name="batch_size")
        if len(ts) == 0:
            raise TlabError("cannot batch an empty set")
        self.device = pick_device(device)
        self.images = ts.images.to(self.device)
        self.labels = ts.labels.to(self.device)
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0  # epochs started so far

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = None
        if self.shuffle:
            g = torch.Generator().manual_seed(derived_seed("epoch", self.seed, self.epoch))
            order = torch.randperm(n, generator=g).to(self.device)
        self.epoch += 1
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min(n, (b + 1) * self.batch_size)
            index = order[lo:hi] if order is not None else slice(lo, hi)
            yield self.images[index].float().div_(255), self.labels[index]
