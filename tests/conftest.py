"""Shared fixtures."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path

import pytest

from tlab.core.data import load_domain
from tlab.core.device import torch_threads
from tlab.core.models import StagedModel
from tlab.core.tensorsets import class_balanced_subset
from tlab.core.train import TrainConfig, fit, prepare_model


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: they open the notebooks on the data the papermill runs warmed."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture
def tlab_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data folder for this test (TLAB_DATA points at it)."""
    root = tmp_path / "tlab-data"
    monkeypatch.setenv("TLAB_DATA", str(root))
    return root


# ---------------------------------------------------------------- Wang et al. transfer setting

#: A narrow VGG: small enough to train in seconds, deep enough for layer-K attacks.
SMALL_VGG = {"widths": [8, 8, 16, 16], "fc_width": 64}


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: faster for tiny nets, and fair to other processes on a shared CPU."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def letters_and_digits(tmp_path_factory):
    """A small letters domain (teachers), 300 training digits (students), the digits domain."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TLAB_DATA", str(tmp_path_factory.mktemp("wang-data")))
    letters = load_domain("letters", n_train=800, n_test=26)
    digits = load_domain("digits")
    mp.undo()
    return letters, class_balanced_subset(digits.train, 300, 0), digits


@pytest.fixture(scope="session")
def letters_teacher(letters_and_digits) -> Callable[[int], StagedModel]:
    """``teacher(seed)``: a small VGG trained on letters, one per seed, trained once per session."""
    letters = letters_and_digits[0]

    @functools.cache
    def teacher(seed: int) -> StagedModel:
        with torch_threads(1):
            model = prepare_model(
                "scratch", arch="vgg", num_classes=26, seed=seed, arch_options=SMALL_VGG
            )
            fit(
                model,
                letters.train,
                None,
                TrainConfig(epochs=5, batch_size=64, lr=3e-3, patience=None, seed=seed),
                progress=False,
            )
        return model

    return teacher


@pytest.fixture(scope="session")
def deep_student(letters_and_digits, letters_teacher) -> Callable[[int], StagedModel]:
    """``student(seed)``: the deep-layer feature extractor of ``teacher(seed)`` on 300 digits
    (every stage frozen, new classifier; Wang et al. 2018, Sec. 2.1)."""
    few = letters_and_digits[1]

    @functools.cache
    def student(seed: int) -> StagedModel:
        teacher = letters_teacher(seed)
        with torch_threads(1):
            model = prepare_model(
                "finetune",
                arch="vgg",
                num_classes=10,
                source=teacher,
                frozen=teacher.num_stages,
                seed=0,
                arch_options=SMALL_VGG,
            )
            fit(
                model,
                few,
                None,
                TrainConfig(epochs=6, batch_size=32, lr=1e-2, patience=None),
                progress=False,
            )
        return model

    return student


@contextlib.contextmanager
def tiny_data_folder(tmp_path_factory: pytest.TempPathFactory, name: str):
    """A fresh ``TLAB_DATA`` folder and one torch thread, for a module-scoped tiny lab."""
    patch = pytest.MonkeyPatch()
    patch.setenv("TLAB_DATA", str(tmp_path_factory.mktemp(name)))
    try:
        with torch_threads(1):
            yield
    finally:
        patch.undo()
