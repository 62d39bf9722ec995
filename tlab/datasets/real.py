"""Real datasets, read by torchvision's own loaders from ``data/downloads/``, as 32x32 splits.

``mnist``, ``usps``, ``svhn``, ``cifar10``, ``cifar100``, ``stl10``, ``cifar10_9``, ``stl10_9``
and ``fashion_mnist`` (the papers' real tasks: Zhang et al. 2020, Sec. 5.1; Davchev et al.
2019, Sec. 3). When their files are missing tlab checks for a network (a few seconds at most)
and lets torchvision download them, or raises :class:`DatasetUnavailableError` saying where to
put them. Fashion-MNIST is read from Debian's ``dataset-fashion-mnist`` package when installed.
``synnumbers`` (SynDigits) and ``imagenet32`` (Zhang et al. 2020, Sec. 4.1, Table 1) have no
torchvision loader and no download: :mod:`tlab.datasets.readers` reads their published files.
:mod:`tlab.core.data` registers them as domains beside the embedded ones.

torchvision is imported only when a dataset's files are read, the first time it is loaded (later
loads read tlab's converted copy, :func:`_converted`): importing it adds about 165 MiB to a
notebook's kernel (measured with the CUDA build of torch), and listing the domains, checking
what is on disk or loading a converted dataset must not cost that. So the folders, files,
archives and download addresses of the torchvision classes tlab reads are written out here
(:data:`TORCHVISION_LAYOUTS`, from torchvision 0.29.1); ``tests/test_data_real.py`` checks them
against the installed torchvision.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tlab import paths
from tlab.datasets import readers, synthetic
from tlab.datasets.network import network_problem
from tlab.datasets.split_cache import cached_entry
from tlab.errors import DatasetUnavailableError
from tlab.safe_files import recipe_hash

Split = tuple[torch.Tensor, torch.Tensor]


def relabel(split: Split, table: torch.Tensor) -> Split:
    """Relabel by ``table[old] = new``, dropping examples whose new label is -1."""
    images, labels = split
    new = table[labels]
    keep = new >= 0
    return images[keep], new[keep]


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_DIGIT_NAMES = tuple(synthetic.DIGIT_CHARS)
_STL10_CLASSES = (
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
)
# The 9 classes CIFAR10 and STL10 share (Zhang et al. 2020, Sec. 5.1: frog dropped from CIFAR10,
# monkey from STL10), in one order for both so a model trained on one is evaluated on the other.
SHARED9 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "horse", "ship", "truck")
_SHARED9_ALIASES = {"car": "automobile"}


@dataclass(frozen=True)
class TorchvisionLayout:
    """Where a ``torchvision.datasets`` class keeps its files, and where it downloads them."""

    cls: str  # the class's name in torchvision.datasets
    folder: str  # relative to the root folder handed to the class
    files: tuple[str, ...]  # the files the class checks for
    urls: tuple[str, ...]  # download addresses (MNIST-like: the mirrors)
    archive: str | None = None  # the archive the class downloads and unpacks


_CIFAR_SITE = "https://www.cs.toronto.edu/~kriz/"
_USPS_SITE = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"
_SVHN_SITE = "http://ufldl.stanford.edu/housenumbers/"
#: The layouts of the torchvision classes tlab reads (module docstring).
TORCHVISION_LAYOUTS = {
    layout.cls: layout
    for layout in (
        TorchvisionLayout(
            "MNIST",
            "MNIST/raw",
            _IDX_FILES,
            (
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ),
        ),
        TorchvisionLayout(
            "FashionMNIST",
            "FashionMNIST/raw",
            _IDX_FILES,
            ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        ),
        TorchvisionLayout(
            "USPS",
            "USPS",
            ("usps.bz2", "usps.t.bz2"),
            (f"{_USPS_SITE}usps.bz2", f"{_USPS_SITE}usps.t.bz2"),
        ),
        TorchvisionLayout(
            "SVHN",
            "SVHN",
            ("train_32x32.mat", "test_32x32.mat"),
            tuple(f"{_SVHN_SITE}{part}_32x32.mat" for part in ("train", "test", "extra")),
        ),
        TorchvisionLayout(
            "CIFAR10",
            "cifar-10-batches-py",
            (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
            (f"{_CIFAR_SITE}cifar-10-python.tar.gz",),
            "cifar-10-python.tar.gz",
        ),
        TorchvisionLayout(
            "CIFAR100",
            "cifar-100-python",
            ("train", "test", "meta"),
            (f"{_CIFAR_SITE}cifar-100-python.tar.gz",),
            "cifar-100-python.tar.gz",
        ),
        TorchvisionLayout(
            "STL10",
            "stl10_binary",
            ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin"),
            ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
            "stl10_binary.tar.gz",
        ),
    )
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def _torchvision_class(name: str) -> Any:
    """``torchvision.datasets.<name>``, importing torchvision now (module docstring)."""
    import torchvision.datasets

    return getattr(torchvision.datasets, name)


def _resize32(images: torch.Tensor, antialias: bool) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, 32, 32), bilinear, in chunks to bound memory."""
    out = torch.empty(len(images), images.shape[1], 32, 32, dtype=torch.uint8)
    for lo in range(0, len(images), 1024):
        part = images[lo : lo + 1024].float()
        part = F.interpolate(
            part, size=(32, 32), mode="bilinear", align_corners=False, antialias=antialias
        )
        out[lo : lo + 1024] = part.clamp_(0, 255).round_().to(torch.uint8)
    return out


def _grey3(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W) grey -> (N, 3, H, W), the grey channel repeated.

    A view that stores the grey channel once (stride 0 across channels), not three copies:
    Fashion-MNIST's 70k images take 72 MB instead of 215 MB; a subset or a float conversion
    materialises only the images it takes."""
    return images[:, None].expand(-1, 3, -1, -1)


def _mnist_like(cls: str, classes: tuple[str, ...]) -> Callable[..., tuple]:
    """28x28 grey digits/clothes zero-padded to 32x32 and repeated to 3 channels, as Zhang et
    al. (2020, Sec. 5.1) feed MNIST to their DTN."""

    def read(root: Path, download: bool) -> tuple:
        reader = _torchvision_class(cls)
        sets = [reader(str(root), train=t, download=download) for t in (True, False)]
        return classes, *[(_grey3(F.pad(s.data, (2, 2, 2, 2))), s.targets.long()) for s in sets]

    return read


def _read_usps(root: Path, download: bool) -> tuple:
    """16x16 grey USPS upsampled x2 to 32x32, bilinear (align_corners=False), 3 channels."""
    usps = _torchvision_class("USPS")
    sets = [usps(str(root / "USPS"), train=t, download=download) for t in (True, False)]
    return _DIGIT_NAMES, *[
        (
            _grey3(_resize32(torch.from_numpy(s.data)[:, None], False)[:, 0]),
            torch.tensor(s.targets, dtype=torch.int64),
        )
        for s in sets
    ]


def _read_svhn(root: Path, download: bool, extra: bool) -> tuple:
    """SVHN train (+ the 531,131 'extra' images, as Zhang et al. did) and test, already 32x32."""

    def split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        s = _torchvision_class("SVHN")(str(root / "SVHN"), split=name, download=download)
        return torch.from_numpy(np.ascontiguousarray(s.data)), torch.from_numpy(s.labels)

    parts = [split("train")] + ([split("extra")] if extra else [])
    train = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]).long())
    test = split("test")
    return _DIGIT_NAMES, train, (test[0], test[1].long())


def _cifar(cls: str) -> Callable[..., tuple]:
    def read(root: Path, download: bool) -> tuple:
        reader = _torchvision_class(cls)
        sets = [reader(str(root), train=t, download=download) for t in (True, False)]
        return tuple(sets[0].classes), *[
            (
                torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous(),
                torch.tensor(s.targets, dtype=torch.int64),
            )
            for s in sets
        ]

    return read


def _read_stl10(root: Path, download: bool) -> tuple:
    """STL10's labelled train (5,000) and test (8,000) images, 96x96 -> 32x32 bilinear with
    antialiasing."""
    stl10 = _torchvision_class("STL10")
    sets = [stl10(str(root), split=s, download=download) for s in ("train", "test")]
    classes = tuple(getattr(sets[0], "classes", _STL10_CLASSES))
    return classes, *[
        (_resize32(torch.from_numpy(s.data), True), torch.from_numpy(s.labels.astype(np.int64)))
        for s in sets
    ]


def _nine(read: Callable[..., tuple]) -> Callable[..., tuple]:
    """Keep the 9 shared CIFAR10/STL10 classes, relabelled in the order of :data:`SHARED9`."""

    def read9(root: Path, download: bool) -> tuple:
        classes, train, test = read(root, download)
        names = [_SHARED9_ALIASES.get(c, c) for c in classes]
        table = torch.tensor([SHARED9.index(c) if c in SHARED9 else -1 for c in names])
        return SHARED9, relabel(train, table), relabel(test, table)

    return read9


@dataclass(frozen=True)
class _Real:
    """Where a torchvision dataset lives under ``downloads/`` and how to read it."""

    num_classes: int
    description: str
    folder: str  # relative to downloads/: where the files must be
    files: tuple[str, ...]  # the files torchvision needs there
    urls: tuple[str, ...]  # where torchvision downloads from
    how: str  # how a person puts the files there ({root}, {folder})
    read: Callable[..., tuple]  # (root, download, **options) -> (classes, train, test)
    archive: str | None = None  # a torchvision archive in downloads/ that tlab may unpack
    debian: bool = False  # also unpack "<file>.gz" from DEBIAN_FASHION_MNIST
    options: dict[str, tuple[Any, str]] = field(default_factory=dict)
    reader: str = "torchvision"  # who reads the files (named when reading fails)

    def needed(self, opts: dict[str, Any]) -> tuple[str, ...]:
        return self.files + (("extra_32x32.mat",) if opts.get("extra") else ())


def _mnist_real(
    cls: str,
    classes: tuple[str, ...],
    what: str,
    extra_how: str = "",
    debian: bool = False,
) -> _Real:
    layout = TORCHVISION_LAYOUTS[cls]
    return _Real(
        10,
        what,
        layout.folder,
        layout.files,
        tuple(m + layout.files[0] + ".gz" for m in layout.urls),
        f"Copy the four IDX files {', '.join(f + '.gz' for f in layout.files)} (from "
        f"{layout.urls[0]}) into {{folder}}; tlab unpacks them.{extra_how}",
        _mnist_like(cls, classes),
        debian=debian,
    )


def _cifar_real(cls: str, what: str, read: Callable[..., tuple], n: int) -> _Real:
    layout = TORCHVISION_LAYOUTS[cls]
    return _Real(
        n,
        what,
        layout.folder,
        layout.files,
        layout.urls,
        f"Put {layout.archive} (from {layout.urls[0]}) in {{root}} (tlab unpacks "
        f"it), or unpack it there yourself.",
        read,
        archive=layout.archive,
    )


def _stl_real(what: str, read: Callable[..., tuple], n: int) -> _Real:
    layout = TORCHVISION_LAYOUTS["STL10"]
    return _Real(
        n,
        what,
        layout.folder,
        layout.files,
        layout.urls,
        f"Put {layout.archive} (from {layout.urls[0]}) in {{root}} (tlab unpacks "
        f"it), or unpack it there so that {{folder}} holds {', '.join(layout.files)} "
        f"(torchvision checks all five).",
        read,
        archive=layout.archive,
    )


REAL_DATASETS: dict[str, _Real] = {
    "mnist": _mnist_real(
        "MNIST",
        _DIGIT_NAMES,
        "MNIST handwritten digits, 60k/10k, 28x28 zero-padded to 32 (grey)",
    ),
    "usps": _Real(
        10,
        "USPS handwritten digits, 7,291/2,007, 16x16 upsampled to 32 (grey)",
        TORCHVISION_LAYOUTS["USPS"].folder,
        TORCHVISION_LAYOUTS["USPS"].files,
        TORCHVISION_LAYOUTS["USPS"].urls,
        f"Copy usps.bz2 and usps.t.bz2 (from {_USPS_SITE}) into {{folder}}.",
        _read_usps,
    ),
    "svhn": _Real(
        10,
        "SVHN house-number digits, 73k (+531k extra)/26k, 32x32 colour",
        TORCHVISION_LAYOUTS["SVHN"].folder,
        TORCHVISION_LAYOUTS["SVHN"].files,
        TORCHVISION_LAYOUTS["SVHN"].urls,
        "Copy train_32x32.mat, test_32x32.mat and (unless extra=False) "
        f"extra_32x32.mat (from {_SVHN_SITE}) into {{folder}}.",
        _read_svhn,
        options={"extra": (True, "add SVHN's 531,131 'extra' training images")},
    ),
    "cifar10": _cifar_real(
        "CIFAR10", "CIFAR10, 10 object classes, 50k/10k, 32x32 colour", _cifar("CIFAR10"), 10
    ),
    "cifar100": _cifar_real(
        "CIFAR100",
        "CIFAR100, 100 object classes, 50k/10k, 32x32 colour",
        _cifar("CIFAR100"),
        100,
    ),
    "stl10": _stl_real(
        "STL10 labelled images, 10 classes, 5k/8k, 96x96 resized to 32", _read_stl10, 10
    ),
    "cifar10_9": _cifar_real(
        "CIFAR10",
        "CIFAR10 without frog: the 9 classes shared with STL10, in the same order as stl10_9",
        _nine(_cifar("CIFAR10")),
        9,
    ),
    "stl10_9": _stl_real(
        "STL10 without monkey: the 9 classes shared with CIFAR10, in the same order as cifar10_9",
        _nine(_read_stl10),
        9,
    ),
    "synnumbers": _Real(
        10,
        "SynDigits (Ganin & Lempitsky's Syn Numbers), rendered house-number-like digits, "
        "479k/9.5k, 32x32 colour",
        readers.SYNDIGITS_FOLDER,
        readers.SYNDIGITS_FILES,
        (),
        "Copy synth_train_32x32.mat and synth_test_32x32.mat (Ganin & Lempitsky's "
        "SynNumbers, linked from http://yaroslav.ganin.net/) into {folder}.",
        readers.read_syndigits,
        reader="tlab (scipy.io.loadmat)",
    ),
    "imagenet32": _Real(
        readers.IMAGENET32_CLASSES,
        "ImageNet32 (Chrabaszcz et al. 2017), ImageNet downsampled, 1,000 classes, "
        "1.28M/50k, 32x32 colour",
        readers.IMAGENET32_FOLDER,
        (*readers.IMAGENET32_TRAIN, readers.IMAGENET32_VAL),
        (),
        "Download Imagenet32_train_npz.zip and Imagenet32_val_npz.zip (the npz variant, "
        "https://image-net.org/download-images, Downsampled ImageNet 32x32) and unzip them "
        "into {folder}, so that it holds Imagenet32_train_npz/train_data_batch_1.npz ... "
        "train_data_batch_10.npz and Imagenet32_val_npz/val_data.npz. The pickled variant "
        "is refused: unpickling a file can run code.",
        readers.read_imagenet32,
        reader="tlab (numpy.load, allow_pickle=False)",
    ),
    "fashion_mnist": _mnist_real(
        "FashionMNIST",
        FASHION_MNIST_CLASSES,
        "Fashion-MNIST clothes, 60k/10k, 28x28 zero-padded to 32 (grey); read from Debian's "
        "dataset-fashion-mnist when installed",
        f" Or install Debian's package (apt-get install dataset-fashion-mnist), which puts "
        f"them in {DEBIAN_FASHION_MNIST}/, where tlab finds them.",
        debian=True,
    ),
}


def _gunzip(src: Path, dst: Path) -> None:
    """Decompress ``src`` to ``dst`` atomically (temp file in dst's folder, then os.replace)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a shared data folder needs reads
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


def on_disk(name: str) -> bool:
    """Whether ``name`` can be loaded now without network (files or local archives present)."""
    info, root = REAL_DATASETS[name], paths.data_root() / "downloads"
    opts = {k: d for k, (d, _) in info.options.items()}
    missing, gz = _local_sources(info, root, opts)
    return (
        not missing
        or set(missing) == set(gz)
        or bool(info.archive and (root / info.archive).is_file())
    )


def _unavailable(name: str, info: _Real, root: Path, problem: str) -> DatasetUnavailableError:
    offline = ["digits", "syndigits", "letters"]
    if all((DEBIAN_FASHION_MNIST / f"{f}.gz").is_file() for f in _IDX_FILES):
        offline.append("fashion_mnist")
    return DatasetUnavailableError(
        f"dataset {name!r} is not available: {problem}. tlab looked in {root / info.folder} "
        f"(set TLAB_DATA to use another data folder). "
        f"{info.how.format(root=root, folder=root / info.folder)} Domains that work offline "
        f"now: {', '.join(offline)}."
    )


def load_real(name: str, **opts: Any) -> tuple:
    """Unpack local .gz files / archives if needed, download only when files are still missing
    and the network answers, then read with torchvision or :mod:`tlab.datasets.readers`
    (classes, train, test). Datasets without download addresses are never downloaded."""
    info = REAL_DATASETS[name]
    root = paths.subdir("downloads")
    missing, gz = _local_sources(info, root, opts)
    try:
        for f, src in gz.items():
            _gunzip(src, root / info.folder / f)
        if info.archive and missing and (root / info.archive).is_file():
            from torchvision.datasets.utils import extract_archive  # on use (module docstring)

            extract_archive(str(root / info.archive), str(root))
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise _unavailable(
            name,
            info,
            root,
            f"a local archive could not be unpacked ({exc}); replace it with an intact copy",
        ) from exc
    missing, _ = _local_sources(info, root, opts)
    if missing and not info.urls:
        raise _unavailable(
            name, info, root, f"{', '.join(missing)} not on disk (tlab cannot download it)"
        )
    if missing:
        problem = network_problem(info.urls)
        if problem is not None:
            raise _unavailable(
                name,
                info,
                root,
                f"{', '.join(missing)} not on disk and no network to download them ({problem})",
            )
    try:
        if missing:  # downloaded now; the next load reads the converted copy
            return info.read(root, True, **opts)
        return _converted(name, info, root, opts)
    except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        action = "download" if missing else "read the files of"
        raise _unavailable(
            name, info, root, f"{info.reader} could not {action} it ({exc})"
        ) from exc


#: Version of the converted copies :func:`_converted` keeps; bump it when a reader's output
#: changes, so that older copies are converted again.
CONVERTED_VERSION = 1


def _converted_path(name: str, info: _Real, root: Path, opts: dict[str, Any]) -> Path:
    """Where the converted copy of ``name`` lives: named by the options, :data:`CONVERTED_VERSION`
    and each source file's size and modification time (a replaced file gives a new name)."""
    stats = []
    for f in info.needed(opts):
        stat = (root / info.folder / f).stat()
        stats.append([f, stat.st_size, stat.st_mtime_ns])
    recipe = {"name": name, "opts": opts, "files": stats, "version": CONVERTED_VERSION}
    return paths.subdir("converted") / f"{name}-{recipe_hash(recipe, 16)}.safetensors"


def _converted(name: str, info: _Real, root: Path, opts: dict[str, Any]) -> tuple:
    """``info.read``'s (classes, train, test), through a cache of the converted 32x32 tensors
    (:mod:`tlab.datasets.split_cache`, in ``data/converted/``).

    The first load reads the files with torchvision (or :mod:`tlab.datasets.readers`) and writes
    the copy; later loads read only the copy: no torchvision import (about 165 MiB of a
    kernel's memory, module docstring) and no conversion (reading Fashion-MNIST's IDX files and
    padding them raised a kernel's peak by about 125 MiB more). A grey dataset, stored by
    :func:`_grey3` as one channel seen three times, is cached as that one channel.
    """

    def make() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        classes, *splits = info.read(root, False, **opts)
        tensors, meta = {}, {"classes": json.dumps(list(classes))}
        for split, (images, labels) in zip(("train", "test"), splits, strict=True):
            grey = images.shape[1] == 3 and images.stride(1) == 0
            tensors[f"{split}_images"] = images[:, 0] if grey else images
            tensors[f"{split}_labels"] = labels
            meta[f"{split}_grey"] = str(grey)
        return tensors, meta

    path = _converted_path(name, info, root, opts)
    tensors, meta = cached_entry(path, f"converted {name}", make)
    splits = []
    for split in ("train", "test"):
        images = tensors[f"{split}_images"]
        splits.append(
            (
                _grey3(images) if meta[f"{split}_grey"] == "True" else images,
                tensors[f"{split}_labels"],
            )
        )
    return tuple(json.loads(meta["classes"])), *splits
