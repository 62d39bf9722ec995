"""Readers for two real datasets torchvision has no loader for, in their published formats.

- **SynDigits** ("Syn Numbers", Ganin & Lempitsky, ICML 2015): Zhang et al.'s domain Syn (KDD
  2020, Sec. 4.1, Table 1: the task (S, Syn, M)). ``synth_train_32x32.mat`` and
  ``synth_test_32x32.mat`` are MATLAB files laid out like SVHN's: ``X`` (32, 32, 3, N) uint8 and
  ``y`` (N, 1) digit labels. Read with :func:`scipy.io.loadmat`, which executes no code.
- **ImageNet32** (Chrabaszcz et al. 2017, downsampled ImageNet): Zhang et al.'s domain C of
  the task (CIFAR10, STL10, ImageNet32) (Sec. 3.2, 4.1). The npz variant:
  ``Imagenet32_train_npz/train_data_batch_1.npz`` ... ``_10.npz`` and
  ``Imagenet32_val_npz/val_data.npz``, each with ``data`` (N, 3072) uint8 (the 1,024 red, then
  green, then blue pixels of each image, row by row) and ``labels`` 1..1000. Read with
  ``numpy.load(allow_pickle=False)``: the pickled variant of the same files is refused,
  because unpickling a file can run any code in it.

Each reader takes ``(root, download)`` like the torchvision-based ones of
:mod:`tlab.datasets.real` and returns ``(classes, train, test)`` as uint8 (N, 3, 32, 32)
images and int64 labels 0..k-1. ``download`` is always False here: tlab cannot fetch them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch

SYNDIGITS_FOLDER = "SynNumbers"
SYNDIGITS_FILES = ("synth_train_32x32.mat", "synth_test_32x32.mat")
IMAGENET32_FOLDER = "ImageNet32"
IMAGENET32_TRAIN = tuple(f"Imagenet32_train_npz/train_data_batch_{i}.npz" for i in range(1, 11))
IMAGENET32_VAL = "Imagenet32_val_npz/val_data.npz"
IMAGENET32_CLASSES = 1000

Split = tuple[torch.Tensor, torch.Tensor]


def _syndigits_split(path: Path) -> Split:
    """One SynDigits .mat file: ``X`` (32, 32, 3, N) -> (N, 3, 32, 32); label 10 -> digit 0.

    SVHN's files store the digit 0 as 10 (torchvision maps it back to 0); SynDigits' files are
    laid out like them, so the same rule applies: a 10 can only mean the digit 0, and labels
    already in 0..9 pass unchanged, whichever convention a copy of the files follows.
    """
    try:
        mat = scipy.io.loadmat(str(path), variable_names=("X", "y"))
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise ValueError(f"{path.name}: {exc}; save it as a MATLAB v5 file") from exc
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"{path.name} has no 'X' and 'y' arrays")
    images, labels = mat["X"], mat["y"].astype(np.int64).reshape(-1)
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.shape[3] != len(labels):
        raise ValueError(f"{path.name}: X has shape {images.shape}, expected (32, 32, 3, N)")
    labels = np.where(labels == 10, 0, labels)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path.name}: labels outside 0..9 (and 10 for the digit 0)")
    chw = np.ascontiguousarray(images.transpose(3, 2, 0, 1), dtype=np.uint8)
    return torch.from_numpy(chw), torch.from_numpy(labels)


def read_syndigits(root: Path, download: bool) -> tuple:
    """SynDigits' train (479,400 images in the published files) and test (9,553) splits."""
    folder = root / SYNDIGITS_FOLDER
    train, test = (_syndigits_split(folder / f) for f in SYNDIGITS_FILES)
    return tuple("0123456789"), train, test


def _npz_arrays(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``keys`` of an npz file, never unpickling: a pickled file or object array is refused."""
    refused = (
        "tlab reads only the npz variant (Imagenet32_train_npz.zip, Imagenet32_val_npz.zip) "
        "and refuses the pickled one (Imagenet32_train.zip): unpickling a file can run code"
    )
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with loaded as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise ValueError(f"no {', '.join(missing)} array")
            return {k: npz[k] for k in keys}
    except ValueError as exc:
        # a pickle gives "Cannot load file containing pickled data", an object array "Object
        # arrays cannot be loaded": both without running anything
        raise ValueError(f"{path.name} is not an ImageNet32 npz file ({exc}). {refused}") from exc


def _imagenet32_labels(path: Path) -> np.ndarray:
    labels = _npz_arrays(path, ("labels",))["labels"].astype(np.int64).reshape(-1)
    if labels.size and (labels.min() < 1 or labels.max() > IMAGENET32_CLASSES):
        raise ValueError(f"{path.name}: labels outside 1..{IMAGENET32_CLASSES}")
    return labels - 1


def _imagenet32_split(paths: list[Path]) -> Split:
    """Batches concatenated in order: labels first (to size one buffer), then the pixels, so
    the 1.28M training images (3.9 GB) are held once, not twice."""
    labels = [_imagenet32_labels(p) for p in paths]
    images = torch.empty(sum(len(y) for y in labels), 3, 32, 32, dtype=torch.uint8)
    lo = 0
    for path, y in zip(paths, labels, strict=True):
        data = _npz_arrays(path, ("data",))["data"]
        if data.dtype != np.uint8 or data.shape != (len(y), 3 * 32 * 32):
            raise ValueError(
                f"{path.name}: data is {data.dtype} {data.shape}, expected uint8 ({len(y)}, 3072)"
            )
        images[lo : lo + len(y)] = torch.from_numpy(data.reshape(-1, 3, 32, 32))
        lo += len(y)
    return images, torch.from_numpy(np.concatenate(labels))


def read_imagenet32(root: Path, download: bool) -> tuple:
    """ImageNet32's train (1,281,167 images) and validation (50,000) splits, 1,000 classes.

    The npz files carry no class names: class ``i`` is named by its 1-based label in the files
    (``"1"`` ... ``"1000"``, Chrabaszcz et al.'s numbering).
    """
    folder = root / IMAGENET32_FOLDER
    train = _imagenet32_split([folder / f for f in IMAGENET32_TRAIN])
    test = _imagenet32_split([folder / IMAGENET32_VAL])
    return tuple(str(i) for i in range(1, IMAGENET32_CLASSES + 1)), train, test
