"""The paper presets need real datasets / pretrained weights: offline they stop at once, clearly.

Each paper preset's first model is requested through the zoo exactly as the notebooks do; the
zoo checks every domain of the chain before training anything, so the error arrives before
any work and nothing is written to the zoo.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tlab.core import zoo
from tlab.datasets import real
from tlab.errors import DatasetUnavailableError, WeightsUnavailableError
from tlab.papers import davchev, wang, zhang


@pytest.fixture
def offline(tlab_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data folder and torch hub, no Debian Fashion-MNIST, and no network."""
    monkeypatch.setattr(real, "DEBIAN_FASHION_MNIST", tlab_data / "no-debian")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    return tlab_data


@pytest.mark.parametrize(
    "spec, dataset",
    [
        (lambda: zhang.setup("paper", task="M->U").spec("FT", 0, frozen=4), "'mnist'"),
        (lambda: zhang.setup("paper", task="S->M").spec("A", 0), "'svhn'"),
        (
            lambda: davchev.network_spec(
                davchev.setup("paper"), davchev.Network("nat", "pgd", "block")
            ),
            "'cifar100'",
        ),
        (lambda: davchev.substitute_spec(davchev.setup("paper")), "'cifar10'"),
    ],
    ids=["zhang M->U FT-4", "zhang S->M A", "davchev PGD source -> CIFAR10", "davchev substitute"],
)
def test_paper_presets_stop_offline_naming_the_dataset(offline: Path, spec, dataset: str) -> None:
    with pytest.raises(DatasetUnavailableError) as info:
        zoo.get_or_train(spec(), progress=False, device="cpu")
    message = str(info.value)
    assert dataset in message and "network disabled by the test" in message
    assert "digits, syndigits, letters" in message  # the offline alternatives
    assert zoo.list_entries() == []


def test_wang_paper_teacher_stops_offline_naming_the_weights(offline: Path) -> None:
    with pytest.raises(WeightsUnavailableError) as info:
        zoo.get_or_train(wang.teacher_spec("paper"), progress=False, device="cpu")
    assert "download.pytorch.org" in str(info.value)
    assert zoo.list_entries() == []


@pytest.mark.parametrize(
    "task, domains, sizes, arch",
    [
        ("S->Syn", ("svhn:extra=true", "synnumbers", "mnist"), (None, 4800, None), "dtn"),
        ("CIFAR->STL", ("cifar10_9", "stl10_9", "imagenet32"), (None, 4500, None), "wrn"),
    ],
)
def test_zhang_paper_tasks_with_syndigits_and_imagenet32(
    task: str, domains: tuple, sizes: tuple, arch: str
) -> None:
    s = zhang.setup("paper", task=task)
    assert (s.source, s.target, s.common) == domains and (s.n_a, s.n_b, s.n_c) == sizes
    assert s.arch == arch
    assert s.arch_options == ({"depth": 28, "width": 10} if arch == "wrn" else {})
    ci = s.spec("CommonInit", 0)
    assert ci.arch == arch and ci.source is not None and ci.source.domain == domains[2]
    assert ci.source.n is None  # C: the whole training split (60K MNIST, 1.28M ImageNet32)


def test_zhang_other_paper_tasks_keep_the_dtn() -> None:
    for task in ("M->U", "U->M", "S->M"):
        s = zhang.setup("paper", task=task)
        assert (s.arch, s.arch_options) == ("dtn", {})


@pytest.mark.parametrize(
    "task, role, dataset, files",
    [
        ("S->Syn", "Scratch", "'synnumbers'", "synth_train_32x32.mat"),
        ("CIFAR->STL", "C", "'imagenet32'", "Imagenet32_val_npz/val_data.npz"),
    ],
)
def test_zhang_new_paper_tasks_stop_offline_naming_files_and_folder(
    offline: Path, task: str, role: str, dataset: str, files: str
) -> None:
    spec = zhang.setup("paper", task=task).spec(role, 0)
    with pytest.raises(DatasetUnavailableError) as info:
        zoo.get_or_train(spec, progress=False, device="cpu")
    message = str(info.value)
    assert dataset in message and files in message and "cannot download" in message
    assert str(offline / "downloads") in message and "torchvision" not in message
    assert "digits, syndigits, letters" in message
    assert zoo.list_entries() == []
