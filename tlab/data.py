"""Domains: named 32x32 image-classification datasets, held as uint8 tensors.

A *domain* has class names, a train and a test :class:`TensorSet` and the parameters that made
it. Images are uint8 (N, 3, 32, 32) at rest and become floats in [0, 1] only when used
(:meth:`TensorSet.floats`, :class:`DeviceBatches`).

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

import gzip
import hashlib
import json
import os
import pickle
import queue
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.datasets as tvd
import yaml
from torchvision.datasets.utils import extract_archive

from tlab import paths, render
from tlab.checks import check_positive_int
from tlab.device import pick_device
from tlab.errors import DatasetUnavailableError, TlabError, UnknownNameError

Split = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TensorSet:
    """Images uint8 (N, 3, 32, 32) and labels int64 (N,), on the CPU at rest."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        img, lab = self.images, self.labels
        if img.dtype != torch.uint8 or img.dim() != 4 or tuple(img.shape[1:]) != (3, 32, 32):
            raise TlabError(f"images must be uint8 (N, 3, 32, 32), "
                            f"got {img.dtype} {tuple(img.shape)}")
        if lab.dtype != torch.int64 or lab.dim() != 1 or len(lab) != len(img):
            raise TlabError(f"labels must be int64 (N,) with N = {len(img)}, "
                            f"got {lab.dtype} {tuple(lab.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    def floats(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The images as float32 in [0, 1] on ``device`` (default: where they are)."""
        return self.images.to(device).float().div_(255)

    def select(self, index: torch.Tensor) -> TensorSet:
        """The examples at ``index`` (a 1-D index or boolean tensor), in that order."""
        return TensorSet(self.images[index], self.labels[index])


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
    kind: str               # "embedded" or "real"
    num_classes: int
    description: str
    available: bool         # usable right now without network


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
        raise TlabError(f"{name}={value!r} is not a label subset; give a range like '0-4', "
                        f"a list like '0,2,4' or [0, 2, 4], or None for all classes") from exc
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
        raise TlabError(f"domain {name!r} has no parameter {', '.join(unknown)}; "
                        f"valid parameters: {valid}")
    return {k: p.check(k, given[k]) if k in given else p.default for k, p in spec.items()}


# ---------------------------------------------------------------- embedded domains


def _derived_seed(*parts: int | str) -> int:
    """A 63-bit seed mixed from ``parts`` (so train/test and domains get independent streams)."""
    digest = hashlib.blake2b(json.dumps(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _rendered(name: str, chars: str, params: dict[str, Any]
              ) -> tuple[tuple[str, ...], Split, Split]:
    gen = {k: params[k] for k in ("n_train", "n_test", "seed", "colour")}

    def make() -> dict[str, torch.Tensor]:
        out = {}
        for split in ("train", "test"):
            images, labels = render.render_glyphs(
                chars, gen[f"n_{split}"], colour=gen["colour"],
                seed=_derived_seed(name, split, gen["seed"]))
            out[f"{split}_images"], out[f"{split}_labels"] = images, labels
        return out

    t = render.cached(name, gen, (gen["n_train"], gen["n_test"]), make)
    return (tuple(chars), (t["train_images"], t["train_labels"]),
            (t["test_images"], t["test_labels"]))


def _digits(params: dict[str, Any]) -> tuple[tuple[str, ...], Split, Split]:
    """sklearn's digits, split stratified 2/3 train, 1/3 test by ``seed`` (default 0)."""
    images, labels = render.sklearn_digits()
    train, test = train_val_split(TensorSet(images, labels), 1 / 3, params["seed"])
    return (tuple(render.DIGIT_CHARS), (train.images, train.labels), (test.images, test.labels))


# ---------------------------------------------------------------- real domains (torchvision)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
PROBE_TIMEOUT_S = 3.0       # longest wait for the network before declaring it unreachable
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_DIGIT_NAMES = tuple(render.DIGIT_CHARS)
_STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship",
                  "truck")
# The 9 classes CIFAR10 and STL10 share (Zhang et al. 2020, Sec. 5.1: frog dropped from CIFAR10,
# monkey from STL10), in one order for both so a model trained on one is evaluated on the other.
SHARED9 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "horse", "ship", "truck")
_SHARED9_ALIASES = {"car": "automobile"}


def _resize32(images: torch.Tensor, antialias: bool) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, 32, 32), bilinear, in chunks to bound memory."""
    out = torch.empty(len(images), images.shape[1], 32, 32, dtype=torch.uint8)
    for lo in range(0, len(images), 1024):
        part = images[lo:lo + 1024].float()
        part = F.interpolate(part, size=(32, 32), mode="bilinear", align_corners=False,
                             antialias=antialias)
        out[lo:lo + 1024] = part.clamp_(0, 255).round_().to(torch.uint8)
    return out


def _grey3(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W) grey -> (N, 3, H, W), the grey channel repeated."""
    return images[:, None].expand(-1, 3, -1, -1).contiguous()


def _mnist_like(cls: type, classes: tuple[str, ...]) -> Callable[..., tuple]:
    """28x28 grey digits/clothes zero-padded to 32x32 and repeated to 3 channels, as Zhang et
    al. (2020, Sec. 5.1) feed MNIST to their DTN."""
    def read(root: Path, download: bool) -> tuple:
        sets = [cls(str(root), train=t, download=download) for t in (True, False)]
        return classes, *[(_grey3(F.pad(s.data, (2, 2, 2, 2))), s.targets.long()) for s in sets]
    return read


def _read_usps(root: Path, download: bool) -> tuple:
    """16x16 grey USPS upsampled x2 to 32x32, bilinear (align_corners=False), 3 channels."""
    sets = [tvd.USPS(str(root / "USPS"), train=t, download=download) for t in (True, False)]
    return _DIGIT_NAMES, *[(_grey3(_resize32(torch.from_numpy(s.data)[:, None], False)[:, 0]),
                            torch.tensor(s.targets, dtype=torch.int64)) for s in sets]


def _read_svhn(root: Path, download: bool, extra: bool) -> tuple:
    """SVHN train (+ the 531,131 'extra' images, as Zhang et al. did) and test, already 32x32."""
    def split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        s = tvd.SVHN(str(root / "SVHN"), split=name, download=download)
        return torch.from_numpy(np.ascontiguousarray(s.data)), torch.from_numpy(s.labels)
    parts = [split("train")] + ([split("extra")] if extra else [])
    train = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]).long())
    test = split("test")
    return _DIGIT_NAMES, train, (test[0], test[1].long())


def _cifar(cls: type) -> Callable[..., tuple]:
    def read(root: Path, download: bool) -> tuple:
        sets = [cls(str(root), train=t, download=download) for t in (True, False)]
        return tuple(sets[0].classes), *[
            (torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous(),
             torch.tensor(s.targets, dtype=torch.int64)) for s in sets]
    return read


def _read_stl10(root: Path, download: bool) -> tuple:
    """STL10's labelled train (5,000) and test (8,000) images, 96x96 -> 32x32 bilinear with
    antialiasing."""
    sets = [tvd.STL10(str(root), split=s, download=download) for s in ("train", "test")]
    classes = tuple(getattr(sets[0], "classes", _STL10_CLASSES))
    return classes, *[(_resize32(torch.from_numpy(s.data), True),
                       torch.from_numpy(s.labels.astype(np.int64))) for s in sets]


def _nine(read: Callable[..., tuple]) -> Callable[..., tuple]:
    """Keep the 9 shared CIFAR10/STL10 classes, relabelled in the order of :data:`SHARED9`."""
    def read9(root: Path, download: bool) -> tuple:
        classes, train, test = read(root, download)
        names = [_SHARED9_ALIASES.get(c, c) for c in classes]
        table = torch.tensor([SHARED9.index(c) if c in SHARED9 else -1 for c in names])
        return SHARED9, _apply_table(train, table), _apply_table(test, table)
    return read9


@dataclass(frozen=True)
class _Real:
    """Where a torchvision dataset lives under ``downloads/`` and how to read it."""

    num_classes: int
    description: str
    folder: str                     # relative to downloads/: where the files must be
    files: tuple[str, ...]          # the files torchvision needs there
    urls: tuple[str, ...]           # where torchvision downloads from
    how: str                        # how a person puts the files there ({root}, {folder})
    read: Callable[..., tuple]      # (root, download, **options) -> (classes, train, test)
    archive: str | None = None      # a torchvision archive in downloads/ that tlab may unpack
    debian: bool = False            # also unpack "<file>.gz" from DEBIAN_FASHION_MNIST
    options: dict[str, tuple[Any, str]] = field(default_factory=dict)

    def needed(self, opts: dict[str, Any]) -> tuple[str, ...]:
        return self.files + (("extra_32x32.mat",) if opts.get("extra") else ())


def _mnist_real(cls: type[Any], folder: str, classes: tuple[str, ...], what: str,
                extra_how: str = "", debian: bool = False) -> _Real:
    return _Real(10, what, f"{folder}/raw", _IDX_FILES,
                 tuple(m + _IDX_FILES[0] + ".gz" for m in cls.mirrors),
                 f"Copy the four IDX files {', '.join(f + '.gz' for f in _IDX_FILES)} (from "
                 f"{cls.mirrors[0]}) into {{folder}}; tlab unpacks them.{extra_how}",
                 _mnist_like(cls, classes), debian=debian)


def _cifar_real(cls: type[Any], what: str, read: Callable[..., tuple], n: int) -> _Real:
    return _Real(n, what, cls.base_folder,
                 (*(f for f, _ in cls.train_list + cls.test_list), cls.meta["filename"]),
                 (cls.url,), f"Put {cls.filename} (from {cls.url}) in {{root}} (tlab unpacks "
                 f"it), or unpack it there yourself.", read, archive=cls.filename)


def _stl_real(what: str, read: Callable[..., tuple], n: int) -> _Real:
    files = tuple(f for f, _ in tvd.STL10.train_list + tvd.STL10.test_list)
    return _Real(n, what, tvd.STL10.base_folder, files, (tvd.STL10.url,),
                 f"Put {tvd.STL10.filename} (from {tvd.STL10.url}) in {{root}} (tlab unpacks "
                 f"it), or unpack it there so that {{folder}} holds {', '.join(files)} "
                 f"(torchvision checks all five).", read,
                 archive=tvd.STL10.filename)


_REAL: dict[str, _Real] = {
    "mnist": _mnist_real(tvd.MNIST, "MNIST", _DIGIT_NAMES, "MNIST handwritten digits, 60k/10k, "
                         "28x28 zero-padded to 32 (grey)"),
    "usps": _Real(10, "USPS handwritten digits, 7,291/2,007, 16x16 upsampled to 32 (grey)",
                  "USPS", ("usps.bz2", "usps.t.bz2"),
                  tuple(u for u, _, _ in tvd.USPS.split_list.values()),
                  "Copy usps.bz2 and usps.t.bz2 (from "
                  f"{tvd.USPS.split_list['train'][0].rsplit('/', 1)[0]}/) into {{folder}}.",
                  _read_usps),
    "svhn": _Real(10, "SVHN house-number digits, 73k (+531k extra)/26k, 32x32 colour", "SVHN",
                  ("train_32x32.mat", "test_32x32.mat"),
                  tuple(u for u, _, _ in tvd.SVHN.split_list.values()),
                  "Copy train_32x32.mat, test_32x32.mat and (unless extra=False) "
                  "extra_32x32.mat (from http://ufldl.stanford.edu/housenumbers/) into "
                  "{folder}.", _read_svhn,
                  options={"extra": (True, "add SVHN's 531,131 'extra' training images")}),
    "cifar10": _cifar_real(tvd.CIFAR10, "CIFAR10, 10 object classes, 50k/10k, 32x32 colour",
                           _cifar(tvd.CIFAR10), 10),
    "cifar100": _cifar_real(tvd.CIFAR100, "CIFAR100, 100 object classes, 50k/10k, 32x32 colour",
                            _cifar(tvd.CIFAR100), 100),
    "stl10": _stl_real("STL10 labelled images, 10 classes, 5k/8k, 96x96 resized to 32",
                       _read_stl10, 10),
    "cifar10_9": _cifar_real(tvd.CIFAR10, "CIFAR10 without frog: the 9 classes shared with "
                             "STL10, in the same order as stl10_9", _nine(_cifar(tvd.CIFAR10)), 9),
    "stl10_9": _stl_real("STL10 without monkey: the 9 classes shared with CIFAR10, in the same "
                         "order as cifar10_9", _nine(_read_stl10), 9),
    "fashion_mnist": _mnist_real(
        tvd.FashionMNIST, "FashionMNIST", tuple(tvd.FashionMNIST.classes),
        "Fashion-MNIST clothes, 60k/10k, 28x28 zero-padded to 32 (grey); read from Debian's "
        "dataset-fashion-mnist when installed",
        f" Or install Debian's package (apt-get install dataset-fashion-mnist), which puts "
        f"them in {DEBIAN_FASHION_MNIST}/, where tlab finds them.", debian=True),
}


def _gunzip(src: Path, dst: Path) -> None:
    """Decompress ``src`` to ``dst`` atomically (temp file in dst's folder, then os.replace)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
        os.chmod(tmp, 0o644)        # mkstemp makes it private; a shared data folder needs reads
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _local_sources(info: _Real, root: Path, opts: dict[str, Any]) -> tuple[list[str], dict]:
    """Files still missing, and for each a local .gz it can be unpacked from (if any)."""
    folder = root / info.folder
    missing = [f for f in info.needed(opts) if not (folder / f).is_file()]
    gz = {}
    for f in missing:
        for src in (folder, DEBIAN_FASHION_MNIST) if info.debian else (folder,):
            if (src / f"{f}.gz").is_file():
                gz[f] = src / f"{f}.gz"
                break
    return missing, gz


def _on_disk(name: str) -> bool:
    """Whether ``name`` can be loaded now without network (files or local archives present)."""
    info, root = _REAL[name], paths.data_root() / "downloads"
    opts = {k: d for k, (d, _) in info.options.items()}
    missing, gz = _local_sources(info, root, opts)
    return not missing or set(missing) == set(gz) or bool(
        info.archive and (root / info.archive).is_file())


def _network_problem(urls: tuple[str, ...]) -> str | None:
    """None if a TCP connection to one of the hosts (or the configured proxy) opens within
    :data:`PROBE_TIMEOUT_S`, else why not. Each host is tried in a daemon thread, so a hanging
    name lookup cannot make the caller wait longer than the timeout."""
    proxies = urllib.request.getproxies()
    targets = set()
    for url in urls:
        parts = urlparse(proxies.get(urlparse(url).scheme, url))
        targets.add((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)))
    answers: queue.Queue[str | None] = queue.Queue()

    def attempt(host: str, port: int) -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            answers.put(None)
        except OSError as exc:
            answers.put(f"{host}:{port}: {exc}")

    for target in sorted(targets):
        threading.Thread(target=attempt, args=target, daemon=True).start()
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    errors: list[str] = []
    while len(errors) < len(targets):
        try:
            answer = answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return f"no connection within {PROBE_TIMEOUT_S:g} s"
        if answer is None:
            return None
        errors.append(answer)
    return "; ".join(errors)


def _unavailable(name: str, info: _Real, root: Path, problem: str) -> DatasetUnavailableError:
    offline = ["digits", "syndigits", "letters"]
    if all((DEBIAN_FASHION_MNIST / f"{f}.gz").is_file() for f in _IDX_FILES):
        offline.append("fashion_mnist")
    return DatasetUnavailableError(
        f"dataset {name!r} is not available: {problem}. tlab looked in {root / info.folder} "
        f"(set TLAB_DATA to use another data folder). "
        f"{info.how.format(root=root, folder=root / info.folder)} Domains that work offline "
        f"now: {', '.join(offline)}.")


def _load_real(name: str, **opts: Any) -> tuple:
    """Unpack local .gz files / archives if needed, download only when files are still missing
    and the network answers, then read with torchvision (classes, train, test)."""
    info = _REAL[name]
    root = paths.subdir("downloads")
    missing, gz = _local_sources(info, root, opts)
    try:
        for f, src in gz.items():
            _gunzip(src, root / info.folder / f)
        if info.archive and missing and (root / info.archive).is_file():
            extract_archive(str(root / info.archive), str(root))
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise _unavailable(name, info, root, f"a local archive could not be unpacked ({exc}); "
                           f"replace it with an intact copy") from exc
    missing, _ = _local_sources(info, root, opts)
    if missing:
        problem = _network_problem(info.urls)
        if problem is not None:
            raise _unavailable(name, info, root, f"{', '.join(missing)} not on disk and no "
                               f"network to download them ({problem})")
    try:
        return info.read(root, bool(missing), **opts)
    except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        action = "download" if missing else "read the files of"
        raise _unavailable(name, info, root, f"torchvision could not {action} it ({exc})") from exc


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
    info = _REAL[name]
    params = {k: _Param(d, _boolean, h) for k, (d, h) in info.options.items()}
    return _Spec("real", info.num_classes, info.description, {**params, "labels": _LABELS},
                 lambda p: _load_real(name, **{k: p[k] for k in info.options}),
                 lambda: _on_disk(name))


_DOMAINS: dict[str, _Spec] = {
    "digits": _Spec("embedded", 10, "scikit-learn's 1,797 real handwritten 8x8 digits, "
                    "upsampled to 32x32 (grey)",
                    {"seed": _Param(0, _int_at_least(0), "seed of the 2/3 : 1/3 split"),
                     "labels": _LABELS}, _digits, _always),
    "syndigits": _Spec("embedded", 10, "SynDigits-style digits rendered from 21 fonts with "
                       "random colours, pose, blur, noise and neighbours",
                       _embedded_params(10_000, 2_000),
                       lambda p: _rendered("syndigits", render.DIGIT_CHARS, p), _always),
    "letters": _Spec("embedded", 26, "rendered capital letters A-Z, same variation as "
                     "syndigits; a large general source with another label set",
                     _embedded_params(20_000, 4_000),
                     lambda p: _rendered("letters", render.LETTER_CHARS, p), _always),
    **{name: _real_spec(name) for name in _REAL},
}


def _apply_table(split: Split, table: torch.Tensor) -> Split:
    """Relabel by ``table[old] = new``, dropping examples whose new label is -1."""
    images, labels = split
    new = table[labels]
    keep = new >= 0
    return images[keep], new[keep]


def _restrict(classes: tuple[str, ...], train: Split, test: Split, subset: list[int] | None
              ) -> tuple[tuple[str, ...], TensorSet, TensorSet]:
    if subset is None:
        return classes, TensorSet(*train), TensorSet(*test)
    table = torch.full((len(classes),), -1, dtype=torch.int64)
    table[subset] = torch.arange(len(subset))
    return (tuple(classes[i] for i in subset), TensorSet(*_apply_table(train, table)),
            TensorSet(*_apply_table(test, table)))


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
            raise TlabError(f"domain parameter {item!r} in {text!r} must look like key=value, "
                            "e.g. 'syndigits:colour=false,seed=1'")
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
        raise TlabError(f"labels={resolved['labels']} goes beyond the {spec.num_classes} classes "
                        f"of {name!r} (valid labels 0..{spec.num_classes - 1})")
    classes, train, test = spec.build(resolved)
    classes, train_set, test_set = _restrict(classes, train, test, resolved["labels"])
    return Domain(name, classes, train_set, test_set, resolved)


def list_domains() -> list[DomainInfo]:
    """Every domain with its kind, class count, one-line description and offline availability."""
    return [DomainInfo(name, s.kind, s.num_classes, s.description, s.available())
            for name, s in _DOMAINS.items()]


# ---------------------------------------------------------------- subsets and batches


def _ranks_within_class(labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
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
        raise TlabError(f"n={n} is smaller than the number of classes ({k}); a class-balanced "
                        f"subset needs n >= {k}")
    g = torch.Generator().manual_seed(seed)
    quota = torch.full((k,), n // k, dtype=torch.int64)
    quota[torch.randperm(k, generator=g)[: n % k]] += 1
    if bool((quota > counts).any()):
        c = int(torch.nonzero(quota > counts)[0, 0])
        most = int(k * counts.min())
        raise TlabError(f"class {int(classes[c])} has only {int(counts[c])} examples, fewer than "
                        f"the {int(quota[c])} a balanced subset of n={n} needs; choose n <= {most}")
    order, rank = _ranks_within_class(ts.labels, seed)
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
    order, rank = _ranks_within_class(ts.labels, seed)
    in_val = rank < n_val[torch.searchsorted(classes, ts.labels[order])]
    return (ts.select(torch.sort(order[~in_val]).values),
            ts.select(torch.sort(order[in_val]).values))


class DeviceBatches:
    """Mini-batches from tensors moved to ``device`` once.

    Each batch is an index slice converted to float in [0, 1] on the device; no per-example
    Python work (the whole-dataset-on-device approach of airbench / hlb-CIFAR10). With
    ``shuffle`` each epoch (each ``iter()``) uses a permutation drawn from a generator seeded by
    (seed, epoch): a different order every epoch, the same sequence of orders every run.
    """

    def __init__(self, ts: TensorSet, batch_size: int, *, device: torch.device | str | None,
                 shuffle: bool, seed: int = 0, drop_last: bool = False) -> None:
        self.batch_size = check_positive_int(batch_size, name="batch_size")
        if len(ts) == 0:
            raise TlabError("cannot batch an empty set")
        self.device = pick_device(device)
        self.images = ts.images.to(self.device)
        self.labels = ts.labels.to(self.device)
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0                          # epochs started so far

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = None
        if self.shuffle:
            g = torch.Generator().manual_seed(_derived_seed("epoch", self.seed, self.epoch))
            order = torch.randperm(n, generator=g).to(self.device)
        self.epoch += 1
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min(n, (b + 1) * self.batch_size)
            index = order[lo:hi] if order is not None else slice(lo, hi)
            yield self.images[index].float().div_(255), self.labels[index]


def domain_gallery_arrays(domain: Domain, per_class: int = 8, *, split: str = "train",
                          seed: int = 0, pad: int = 2) -> np.ndarray:
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
    order, rank = _ranks_within_class(ts.labels, seed)
    keep = rank < per_class
    for i, r in zip(order[keep].tolist(), rank[keep].tolist(), strict=True):
        row, col = int(ts.labels[i]), r
        y, x = pad + row * cell, pad + col * cell
        grid[y:y + 32, x:x + 32] = ts.images[i].permute(1, 2, 0).numpy()
    return grid
