"""Real domains: torchvision's own loaders on small files written in each dataset's real
on-disk format, offline failures, and the real Fashion-MNIST from Debian's package."""

from __future__ import annotations

import bz2
import gzip
import os
import pickle
import socket
import struct
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.datasets as tvd

from tlab.core import data
from tlab.core.data import load_domain
from tlab.datasets import network, real
from tlab.datasets.real import SHARED9
from tlab.errors import DatasetUnavailableError

RNG = np.random.default_rng(0)
CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
STL10_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


@pytest.fixture
def downloads(tlab_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """downloads/ of an empty data folder, with no Debian Fashion-MNIST and no network."""
    monkeypatch.setattr(real, "DEBIAN_FASHION_MNIST", tlab_data / "no-debian")

    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    return tlab_data / "downloads"


@pytest.fixture
def md5_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision compares the md5 of SVHN, CIFAR and STL10 files with the published ones,
    which files written by a test cannot match. Only that integrity check is replaced (by an
    existence check); the parsing below is torchvision's real code."""

    def exists(fpath, md5=None):
        return os.path.isfile(fpath)

    for module in (tvd.cifar, tvd.svhn, tvd.stl10):
        monkeypatch.setattr(module, "check_integrity", exists)


# ---------------------------------------------------------------- writers of the real formats


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    """IDX (big-endian header: 0, 0, type 0x08 = ubyte, ndim; then each dim), gzipped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_mnist_like(folder: Path, n_train: int = 30, n_test: int = 20) -> dict[str, np.ndarray]:
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays[f"{prefix}-images-idx3-ubyte"] = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{prefix}-labels-idx1-ubyte"] = (np.arange(n) % 10).astype(np.uint8)
    for name, array in arrays.items():
        write_idx_gz(folder / f"{name}.gz", array)
    return arrays


def write_usps(folder: Path, values: list[np.ndarray], labels: list[int], name: str) -> None:
    """libsvm text, bzip2: 'label 1:v1 2:v2 ... 256:v256' with labels 1..10, values in [-1, 1]."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{label} " + " ".join(f"{i + 1}:{v:.6f}" for i, v in enumerate(img.ravel()))
        for img, label in zip(values, labels, strict=True)
    ]
    with bz2.open(folder / name, "wt") as f:
        f.write("\n".join(lines) + "\n")


def write_svhn(folder: Path, name: str, images: np.ndarray, digits: np.ndarray) -> None:
    """MATLAB file: X is (32, 32, 3, N) uint8, y is (N, 1) with the digit 0 stored as 10."""
    folder.mkdir(parents=True, exist_ok=True)
    y = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
    scipy.io.savemat(folder / name, {"X": images.transpose(2, 3, 1, 0), "y": y})


def write_cifar_batch(path: Path, images: np.ndarray, labels: list[int], key: str) -> None:
    """A pickled dict as in the extracted tar: 'data' (N, 3072) uint8 rows of R, G, B planes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"data": images.reshape(len(images), -1), key: labels}, f, protocol=2)


def write_cifar10(
    root: Path, per_batch: int = 10
) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    train_images, train_labels = [], []
    for b in range(1, 6):
        images = RNG.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels = [(b + i) % 10 for i in range(per_batch)]
        write_cifar_batch(folder / f"data_batch_{b}", images, labels, "labels")
        train_images.append(images)
        train_labels += labels
    test_images = RNG.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
    test_labels = [i % 10 for i in range(20)]
    write_cifar_batch(folder / "test_batch", test_images, test_labels, "labels")
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR10_NAMES, "num_cases_per_batch": per_batch}, f, protocol=2)
    return np.concatenate(train_images), train_labels, test_images, test_labels


def write_stl10(root: Path, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    """Raw uint8 files; each image is stored column-major ((3, W, H) per image), labels 1..10."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = np.empty((n, 3, 96, 96), dtype=np.uint8)
        for i in range(n):
            for c in range(3):
                images[i, c] = (i * 7 + c * 50) % 256
        images[0] = 0
        images[0, :, :, :48] = 255  # left half white: catches a transposed reader
        labels = np.arange(n) % 10
        (folder / f"{split}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
        (folder / f"{split}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels
    (folder / "unlabeled_X.bin").write_bytes(np.zeros((2, 3, 96, 96), np.uint8).tobytes())
    (folder / "class_names.txt").write_text("\n".join(STL10_NAMES) + "\n")
    return out


# ---------------------------------------------------------------- loaders


def test_mnist_from_idx_gz(downloads: Path) -> None:
    assert not {d.name: d.available for d in data.list_domains()}["mnist"]
    arrays = write_mnist_like(downloads / "MNIST" / "raw")
    assert {d.name: d.available for d in data.list_domains()}["mnist"]
    d = load_domain("mnist")
    assert d.classes == tuple("0123456789")
    for ts, prefix in ((d.train, "train"), (d.test, "t10k")):
        images = arrays[f"{prefix}-images-idx3-ubyte"]
        assert ts.images.shape == (len(images), 3, 32, 32) and ts.images.dtype == torch.uint8
        for c in range(3):  # zero-padded 2 px, grey repeated
            assert np.array_equal(ts.images[:, c, 2:30, 2:30].numpy(), images)
        border = ts.images.clone()
        border[:, :, 2:30, 2:30] = 0
        assert int(border.max()) == 0
        assert ts.labels.tolist() == arrays[f"{prefix}-labels-idx1-ubyte"].tolist()
    assert (downloads / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()  # unpacked


def _same_domain(a: data.Domain, b: data.Domain) -> bool:
    return a.classes == b.classes and all(
        torch.equal(x, y)
        for x, y in (
            (a.train.images, b.train.images),
            (a.train.labels, b.train.labels),
            (a.test.images, b.test.images),
            (a.test.labels, b.test.labels),
        )
    )


def test_a_second_load_reads_the_converted_copy_without_torchvision(downloads: Path) -> None:
    """The first load converts with torchvision and keeps a copy (grey: one channel); a new
    process then loads the same tensors from it without importing torchvision; a replaced
    source file is converted again."""
    arrays = write_mnist_like(downloads / "MNIST" / "raw")
    first = load_domain("mnist")
    copies = sorted((downloads.parent / "converted").glob("mnist-*.safetensors"))
    assert len(copies) == 1
    assert copies[0].stat().st_size < first.train.images.numel()  # one channel of three stored
    code = (
        "import sys, torch; from tlab.core.data import load_domain; d = load_domain('mnist'); "
        "torch.save([d.classes, d.train.images.clone(), d.train.labels, d.test.images.clone(), "
        "d.test.labels], sys.argv[1]); print('torchvision' in sys.modules)"
    )
    saved = downloads.parent / "second.pt"
    result = subprocess.run(
        [sys.executable, "-c", code, str(saved)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    classes, *tensors = torch.load(saved, weights_only=True)  # tensors and strings only
    expected = [first.train.images, first.train.labels, first.test.images, first.test.labels]
    assert classes == first.classes
    assert all(torch.equal(x, y) for x, y in zip(tensors, expected, strict=True))
    assert _same_domain(load_domain("mnist"), first)
    # a new file of training labels: converted again, and the new labels are read
    raw = downloads / "MNIST" / "raw"
    labels = (arrays["train-labels-idx1-ubyte"] + 1) % 10
    (raw / "train-labels-idx1-ubyte").unlink()
    write_idx_gz(raw / "train-labels-idx1-ubyte.gz", labels)
    again = load_domain("mnist")
    assert again.train.labels.tolist() == labels.tolist()
    assert len(list((downloads.parent / "converted").glob("mnist-*.safetensors"))) == 2


def test_a_colour_dataset_is_cached_whole(downloads: Path, md5_not_checked: None) -> None:
    write_cifar10(downloads)
    first = load_domain("cifar10")
    assert _same_domain(load_domain("cifar10"), first)
    assert first.train.images.stride(1) != 0


def test_the_layouts_written_out_match_the_installed_torchvision() -> None:
    for name, layout in real.TORCHVISION_LAYOUTS.items():
        cls = getattr(tvd, name)
        if name in ("MNIST", "FashionMNIST"):
            assert layout.urls == tuple(cls.mirrors) and layout.folder == f"{name}/raw"
            assert layout.files == tuple(u.split("/")[-1][: -len(".gz")] for u, _ in cls.resources)
        elif name in ("USPS", "SVHN"):
            assert layout.urls == tuple(u for u, _, _ in cls.split_list.values())
            assert set(layout.files) <= {f for _, f, _ in cls.split_list.values()}
        else:
            listed = [f for f, _ in cls.train_list + cls.test_list]
            meta = [cls.meta["filename"]] if hasattr(cls, "meta") else []
            assert layout.files == (*listed, *meta) and layout.folder == cls.base_folder
            assert layout.urls == (cls.url,) and layout.archive == cls.filename
    assert tuple(tvd.FashionMNIST.classes) == real.FASHION_MNIST_CLASSES


def test_listing_and_finding_datasets_does_not_import_torchvision() -> None:
    """torchvision costs a kernel about 165 MiB; only reading a real dataset may import it."""
    code = (
        "import sys; from tlab.core import data, zoo; from tlab.notebook import plots, widgets; "
        "from tlab.papers import zhang, davchev, wang; data.list_domains(); "
        "data.load_domain('digits'); print('torchvision' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_fashion_mnist_from_debian_layout(
    downloads: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    debian = tmp_path / "debian-fashion"
    arrays = write_mnist_like(debian, n_train=40, n_test=20)
    monkeypatch.setattr(real, "DEBIAN_FASHION_MNIST", debian)
    assert {d.name: d.available for d in data.list_domains()}["fashion_mnist"]
    d = load_domain("fashion_mnist")
    assert d.classes == tuple(tvd.FashionMNIST.classes)
    assert np.array_equal(
        d.train.images[:, 1, 2:30, 2:30].numpy(), arrays["train-images-idx3-ubyte"]
    )
    # the three channels are one grey channel stored once (a view), equal in every channel
    assert d.train.images.untyped_storage().nbytes() == 40 * 32 * 32
    assert torch.equal(d.train.images[:, 0], d.train.images[:, 2])
    assert (downloads / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file()
    low, high = (
        load_domain("fashion_mnist", labels="0-4"),
        load_domain("fashion_mnist", labels="5-9"),
    )
    assert low.classes == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat")
    assert high.classes == ("Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert len(low.train) + len(high.train) == len(d.train) == 40
    assert set(high.test.labels.tolist()) == {0, 1, 2, 3, 4}
    # the missing-data message offers fashion_mnist as an offline alternative now
    with pytest.raises(DatasetUnavailableError, match="letters, fashion_mnist"):
        load_domain("mnist")


def test_usps_from_libsvm_bz2(downloads: Path) -> None:
    values = [np.full((16, 16), v, dtype=np.float32) for v in (-1.0, -0.3, 0.2, 0.9)]
    split = np.full((16, 16), -1.0, dtype=np.float32)
    split[:, :8] = 1.0  # left half white
    write_usps(downloads / "USPS", [*values, split], [1, 2, 3, 10, 5], "usps.bz2")
    write_usps(downloads / "USPS", values[:2], [7, 8], "usps.t.bz2")
    d = load_domain("usps")
    assert d.train.images.shape == (5, 3, 32, 32) and len(d.test) == 2
    assert d.train.labels.tolist() == [0, 1, 2, 9, 4] and d.test.labels.tolist() == [6, 7]
    for img, v in zip(d.train.images[:4], values, strict=True):
        expected = int(((np.float32(v[0, 0]) + 1) / 2 * 255).astype(np.uint8))
        assert int(img.min()) == int(img.max()) == expected  # constant stays constant
    edge = d.train.images[4, 0]
    assert int(edge[:, :15].min()) == 255 and int(edge[:, 17:].max()) == 0
    assert torch.equal(d.train.images[:, 0], d.train.images[:, 2])


def test_svhn_train_extra_test_from_mat(downloads: Path, md5_not_checked: None) -> None:
    folder = downloads / "SVHN"
    made = {}
    for name, n in (("train", 12), ("extra", 8), ("test", 6)):
        images = RNG.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        digits = np.arange(n) % 10
        write_svhn(folder, f"{name}_32x32.mat", images, digits)
        made[name] = (images, digits)
    d = load_domain("svhn")
    assert d.params == {"extra": True, "labels": None}
    expected = np.concatenate([made["train"][0], made["extra"][0]])
    assert np.array_equal(d.train.images.numpy(), expected)
    assert d.train.labels.tolist() == list(made["train"][1]) + list(made["extra"][1])
    assert 0 in d.train.labels.tolist()  # SVHN's "10" is the digit 0
    assert np.array_equal(d.test.images.numpy(), made["test"][0])
    no_extra = load_domain("svhn", extra=False)
    assert len(no_extra.train) == 12 and len(no_extra.test) == 6


def test_cifar10_from_extracted_batches(downloads: Path, md5_not_checked: None) -> None:
    train_images, train_labels, test_images, test_labels = write_cifar10(downloads)
    d = load_domain("cifar10")
    assert d.classes == tuple(CIFAR10_NAMES)
    assert np.array_equal(d.train.images.numpy(), train_images)
    assert d.train.labels.tolist() == train_labels
    assert np.array_equal(d.test.images.numpy(), test_images)
    assert d.test.labels.tolist() == test_labels


def test_cifar10_from_tar_archive(downloads: Path, tmp_path: Path, md5_not_checked: None) -> None:
    staging = tmp_path / "staging"
    train_images, _, _, _ = write_cifar10(staging)
    downloads.mkdir(parents=True)
    with tarfile.open(downloads / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    assert {d.name: d.available for d in data.list_domains()}["cifar10"]
    d = load_domain("cifar10")
    assert np.array_equal(d.train.images.numpy(), train_images)


def test_cifar100_from_extracted_files(downloads: Path, md5_not_checked: None) -> None:
    folder = downloads / "cifar-100-python"
    names = [f"class{i:02d}" for i in range(100)]
    train = RNG.integers(0, 256, (30, 3, 32, 32), dtype=np.uint8)
    test = RNG.integers(0, 256, (10, 3, 32, 32), dtype=np.uint8)
    write_cifar_batch(folder / "train", train, [i * 3 % 100 for i in range(30)], "fine_labels")
    write_cifar_batch(folder / "test", test, list(range(90, 100)), "fine_labels")
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": names, "coarse_label_names": ["x"] * 20}, f, protocol=2)
    d = load_domain("cifar100")
    assert d.classes == tuple(names)
    assert np.array_equal(d.train.images.numpy(), train)
    assert d.test.labels.tolist() == list(range(90, 100))


def test_stl10_from_binary_files(downloads: Path, md5_not_checked: None) -> None:
    made = write_stl10(downloads)
    d = load_domain("stl10")
    assert d.classes == tuple(STL10_NAMES)
    for ts, split in ((d.train, "train"), (d.test, "test")):
        assert ts.images.shape == (len(made[f"{split}_labels"]), 3, 32, 32)
        assert ts.labels.tolist() == made[f"{split}_labels"].tolist()
        for i in range(1, len(ts)):  # constant images stay constant
            for c in range(3):
                assert (
                    int(ts.images[i, c].min())
                    == int(ts.images[i, c].max())
                    == (i * 7 + c * 50) % 256
                )
        left_white = ts.images[0, 0]
        assert int(left_white[:, :15].min()) == 255 and int(left_white[:, 17:].max()) == 0


def test_cifar10_9_and_stl10_9_share_one_label_map(downloads: Path, md5_not_checked: None) -> None:
    _, train_labels, _, _ = write_cifar10(downloads)
    write_stl10(downloads)
    cifar, stl = load_domain("cifar10_9"), load_domain("stl10_9")
    assert cifar.classes == stl.classes == SHARED9 and len(SHARED9) == 9
    cifar_full, stl_full = load_domain("cifar10"), load_domain("stl10")
    assert len(cifar.train) == sum(1 for y in train_labels if y != 6)  # no frog
    assert len(stl.train) == int((stl_full.train.labels != 7).sum())  # no monkey
    for full, nine, names in ((cifar_full, cifar, CIFAR10_NAMES), (stl_full, stl, STL10_NAMES)):
        kept = [names[y] for y in full.train.labels.tolist() if names[y] not in ("frog", "monkey")]
        shared = [SHARED9[y] for y in nine.train.labels.tolist()]
        assert shared == [{"car": "automobile"}.get(n, n) for n in kept]
        keep = torch.tensor([names[y] not in ("frog", "monkey") for y in full.train.labels])
        assert torch.equal(nine.train.images, full.train.images[keep])


def write_syndigits(folder: Path, name: str, images: np.ndarray, y: np.ndarray) -> None:
    """MATLAB file as Ganin & Lempitsky's: X (32, 32, 3, N) uint8 (row, column, channel, image),
    y (N, 1) labels."""
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / name, {"X": images.transpose(2, 3, 1, 0), "y": y[:, None]})


def marked_images(n: int, first: int = 0) -> np.ndarray:
    """(N, 3, 32, 32) uint8, image i: channel c constant ((first + i) * 7 + c * 50) % 256, except
    one pixel at (channel 1, row 3, column 20) = 255 and row 0 of channel 2 = 1: a reader that
    swaps channels, rows or columns misplaces them."""
    images = np.empty((n, 3, 32, 32), dtype=np.uint8)
    for i in range(n):
        for c in range(3):
            images[i, c] = ((first + i) * 7 + c * 50) % 256
    images[:, 2, 0, :] = 1
    images[:, 1, 3, 20] = 255
    return images


def assert_marked(images: torch.Tensor, expected: np.ndarray) -> None:
    assert images.shape == expected.shape and images.dtype == torch.uint8
    assert np.array_equal(images.numpy(), expected)
    assert int(images[0, 1, 3, 20]) == 255 and int(images[0, 1, 20, 3]) != 255
    assert int(images[0, 2, 0].max()) == 1 and int(images[0, 2, 1:].min()) > 1


def test_synnumbers_from_mat(downloads: Path) -> None:
    folder = downloads / "SynNumbers"
    train, test = marked_images(12), marked_images(5)
    # the published files hold 0..9; a 10 (SVHN's way of writing 0) also reads as 0
    y_train, y_test = np.arange(12) % 10, np.array([10, 1, 2, 3, 4])
    write_syndigits(folder, "synth_train_32x32.mat", train, y_train.astype(np.uint8))
    assert not {d.name: d.available for d in data.list_domains()}["synnumbers"]
    write_syndigits(folder, "synth_test_32x32.mat", test, y_test.astype(np.uint8))
    raw = scipy.io.loadmat(folder / "synth_test_32x32.mat")["X"]  # (row, column, channel, image)
    assert raw.shape == (32, 32, 3, 5) and raw[3, 20, 1, 0] == 255 and raw[20, 3, 1, 0] != 255
    assert {d.name: d.available for d in data.list_domains()}["synnumbers"]
    d = load_domain("synnumbers")
    assert d.classes == tuple("0123456789") and d.num_classes == 10
    assert_marked(d.train.images, train)
    assert_marked(d.test.images, test)
    assert d.train.labels.tolist() == y_train.tolist()
    assert d.test.labels.tolist() == [0, 1, 2, 3, 4] and d.test.labels.dtype == torch.int64


def write_imagenet32(path: Path, images: np.ndarray, labels_1_based: list[int]) -> None:
    """npz as Chrabaszcz et al.'s: data (N, 3072) uint8, the R, G, B planes of each image row by
    row; labels 1..1000."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, data=images.reshape(len(images), -1), labels=np.array(labels_1_based))


def write_imagenet32_all(folder: Path) -> tuple[np.ndarray, list[int], np.ndarray]:
    train, labels = [], []
    for b in range(1, 11):
        images = marked_images(2 if b < 10 else 3, first=3 * b)
        batch_labels = [((b * 97 + i) % 1000) + 1 for i in range(len(images))]
        path = folder / f"Imagenet32_train_npz/train_data_batch_{b}.npz"
        write_imagenet32(path, images, batch_labels)
        train.append(images)
        labels += batch_labels
    val = marked_images(4)
    write_imagenet32(folder / "Imagenet32_val_npz/val_data.npz", val, [1, 1000, 2, 500])
    return np.concatenate(train), labels, val


def test_imagenet32_from_npz(downloads: Path) -> None:
    train, labels, val = write_imagenet32_all(downloads / "ImageNet32")
    with np.load(downloads / "ImageNet32/Imagenet32_val_npz/val_data.npz") as raw:
        row = raw["data"][0]  # 1,024 red, then green, then blue values, row by row
    assert (
        row.shape == (3072,) and row[1024 + 3 * 32 + 20] == 255 and row[2048 : 2048 + 32].max() == 1
    )
    assert {d.name: d.available for d in data.list_domains()}["imagenet32"]
    d = load_domain("imagenet32")
    assert d.num_classes == 1000 and d.classes[0] == "1" and d.classes[-1] == "1000"
    assert_marked(d.train.images, train)
    assert_marked(d.test.images, val)
    assert d.train.labels.tolist() == [y - 1 for y in labels]
    assert d.test.labels.tolist() == [0, 999, 1, 499]
    ten = load_domain("imagenet32", labels=[0, 999])
    assert ten.classes == ("1", "1000") and ten.test.labels.tolist() == [0, 1]


@pytest.mark.parametrize("variant", ["pickle", "object array"])
def test_imagenet32_pickled_files_are_refused(
    downloads: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    folder = downloads / "ImageNet32"
    write_imagenet32_all(folder)
    batch = folder / "Imagenet32_train_npz/train_data_batch_3.npz"
    if variant == "pickle":  # the pickled variant: unpickling it would call os.system

        class Hostile:
            def __reduce__(self):
                return (os.system, ("true",))

        batch.write_bytes(pickle.dumps({"data": Hostile(), "labels": [1]}))
    else:
        np.savez(batch, data=np.array([{"x": 1}], dtype=object), labels=np.array([1]))
    ran: list[tuple] = []
    monkeypatch.setattr(os, "system", lambda *a: ran.append(a))
    with pytest.raises(DatasetUnavailableError) as info:
        load_domain("imagenet32")
    message = str(info.value)
    assert "train_data_batch_3.npz" in message and "pickled" in message
    assert "allow_pickle=False" in message and not ran


@pytest.mark.parametrize(
    "name, files",
    [
        ("synnumbers", ["synth_train_32x32.mat", "synth_test_32x32.mat"]),
        (
            "imagenet32",
            [
                "Imagenet32_train_npz/train_data_batch_1.npz",
                "train_data_batch_10.npz",
                "Imagenet32_val_npz/val_data.npz",
            ],
        ),
    ],
)
def test_datasets_without_download_name_their_files_and_folder(
    downloads: Path, monkeypatch: pytest.MonkeyPatch, name: str, files: list[str]
) -> None:
    probed = []
    monkeypatch.setattr(real, "network_problem", lambda urls: probed.append(urls))
    with pytest.raises(DatasetUnavailableError) as info:
        load_domain(name)
    message = str(info.value)
    folder = downloads / real.REAL_DATASETS[name].folder
    assert repr(name) in message and str(folder) in message and "cannot download" in message
    assert all(f in message for f in files) and "TLAB_DATA" in message
    assert "digits, syndigits, letters" in message
    assert not probed  # nothing to download from: no network probe


# ---------------------------------------------------------------- offline and broken files


@pytest.mark.parametrize(
    "name",
    [
        "mnist",
        "usps",
        "svhn",
        "cifar10",
        "cifar100",
        "stl10",
        "cifar10_9",
        "stl10_9",
        "fashion_mnist",
    ],
)
def test_offline_fails_fast_with_instructions(downloads: Path, name: str) -> None:
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as info:
        load_domain(name)
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert repr(name) in message and str(downloads) in message
    assert "network disabled by the test" in message
    assert (
        "digits, syndigits, letters" in message
        and "fashion_mnist" not in message.split("offline now:")[1]
    )
    assert ("Copy" in message or "Put" in message) and "TLAB_DATA" in message


def test_hanging_network_probe_is_cut_short(
    tlab_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def hang(*args, **kwargs):
        time.sleep(3)
        raise OSError("too late")

    monkeypatch.setattr(socket, "create_connection", hang)
    monkeypatch.setattr(network, "PROBE_TIMEOUT_S", 0.3)
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError, match=r"no connection within 0\.3 s"):
        load_domain("cifar10")
    assert time.perf_counter() - start < 1.5


def test_download_failure_after_probe_is_reported(
    tlab_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("download refused by the test")

    monkeypatch.setattr(real, "network_problem", lambda urls: None)  # "network is up"
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    for name in ("mnist", "cifar10"):
        with pytest.raises(DatasetUnavailableError, match="could not download") as info:
            load_domain(name)
        assert "download refused by the test" in str(info.value)


def test_corrupt_files_are_reported(downloads: Path) -> None:
    write_mnist_like(downloads / "MNIST" / "raw")
    raw = downloads / "MNIST" / "raw"
    with gzip.open(raw / "train-images-idx3-ubyte.gz", "rb") as f:
        content = f.read()
    (raw / "train-images-idx3-ubyte").write_bytes(content[: len(content) // 2])
    with pytest.raises(DatasetUnavailableError, match="could not read"):
        load_domain("mnist")


def test_broken_local_archive_is_reported(downloads: Path) -> None:
    downloads.mkdir(parents=True)
    (downloads / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08 not really a tar.gz")
    with pytest.raises(DatasetUnavailableError, match="could not be unpacked"):
        load_domain("cifar10")


# ---------------------------------------------------------------- the real Fashion-MNIST


@pytest.fixture(scope="module")
def real_fashion_mnist(tmp_path_factory: pytest.TempPathFactory):
    files = [real.DEBIAN_FASHION_MNIST / f"{f}.gz" for f in real._IDX_FILES]
    if not all(f.is_file() for f in files):
        pytest.fail(
            f"Fashion-MNIST files missing in {real.DEBIAN_FASHION_MNIST}; install them "
            f"with `apt-get install dataset-fashion-mnist`"
        )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLAB_DATA", str(tmp_path_factory.mktemp("fashion")))
        yield load_domain("fashion_mnist"), load_domain("fashion_mnist", labels="5-9")


def test_real_fashion_mnist_from_debian(real_fashion_mnist) -> None:
    full, high = real_fashion_mnist
    assert len(full.train) + len(full.test) == 70_000 and len(full.test) == 10_000
    assert torch.bincount(full.train.labels).tolist() == [6000] * 10
    assert torch.bincount(full.test.labels).tolist() == [1000] * 10
    assert full.classes == tuple(tvd.FashionMNIST.classes)
    border = full.test.images.clone()
    border[:, :, 2:30, 2:30] = 0
    assert int(border.max()) == 0 and int(full.test.images.max()) == 255
    assert torch.equal(full.test.images[:, 0], full.test.images[:, 2])
    assert high.classes == ("Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert len(high.train) == 30_000 and torch.bincount(high.test.labels).tolist() == [1000] * 5
    assert torch.equal(high.test.images, full.test.images[full.test.labels >= 5])
