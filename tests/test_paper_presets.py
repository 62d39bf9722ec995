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
