"""The zoo: hits, misses, keys, corrupt files, unsafe files, and two processes at once."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import pickle
from pathlib import Path

import pytest
import torch

from tlab.core import zoo
from tlab.core.train import TrainConfig
from tlab.errors import CorruptZooEntryError, DataFolderError, TlabError

TINY = TrainConfig(epochs=1, batch_size=64, val_fraction=0.2)
SOURCE = zoo.ModelSpec(domain="digits", n=200, train=TINY)
TARGET = zoo.ModelSpec(
    domain="digits", n=100, subset_seed=1, strategy="finetune", source=SOURCE, frozen=2, train=TINY
)


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TLAB_DATA", str(tmp_path))
    return tmp_path


def _files(key):
    root = zoo.zoo_dir()
    return root / f"{key}.safetensors", root / f"{key}.json"


def test_miss_then_hit_gives_the_same_weights_and_metadata():
    first = zoo.get_or_train(SOURCE, progress=False, device="cpu")
    assert not first.from_cache
    second = zoo.get_or_train(SOURCE, progress=False, device="cpu")
    assert second.from_cache and second.key == first.key == SOURCE.key()
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name].cpu(), tensor.cpu())
    meta = json.loads(_files(first.key)[1].read_text())
    assert meta["spec"]["domain"] == "digits" and meta["metrics"]["n_train"] == 160
    assert 0.0 <= meta["metrics"]["test_accuracy"] <= 1.0
    assert set(meta["versions"]) >= {"tlab", "torch", "torchvision", "safetensors"}
    assert len(meta["sha256"]) == 64


def test_the_training_precision_is_part_of_the_key_and_recorded(monkeypatch):
    keys = {}
    for choice in ("float32", "bfloat16"):
        monkeypatch.setenv("TLAB_PRECISION", choice)
        keys[choice] = TARGET.key("cpu")
        assert TARGET.describe("cpu")["source"]["key"] == SOURCE.key("cpu")
    assert keys["float32"] != keys["bfloat16"]
    monkeypatch.setenv("TLAB_PRECISION", "bfloat16")
    entry = zoo.get_or_train(SOURCE, progress=False, device="cpu")
    assert entry.key == SOURCE.key("cpu") and entry.meta["precision"] == "bfloat16"
    monkeypatch.setenv("TLAB_PRECISION", "float32")
    assert not zoo.get_or_train(SOURCE, progress=False, device="cpu").from_cache


def test_finetuned_entry_trains_its_source_and_restores_frozen_stages():
    entry = zoo.get_or_train(TARGET, progress=False, device="cpu")
    assert {row["key"] for row in zoo.list_entries()} == {SOURCE.key(), TARGET.key()}
    source = zoo.get_or_train(SOURCE, progress=False, device="cpu")
    assert source.from_cache
    for name, tensor in source.model.stages[:2].state_dict().items():
        assert torch.equal(entry.model.stages[:2].state_dict()[name], tensor)
    reloaded = zoo.load_entry(TARGET.key(), device="cpu")
    assert reloaded.model.frozen_stages == 2
    assert entry.meta["spec"]["source"]["key"] == SOURCE.key()


@pytest.mark.parametrize(
    "change",
    [
        dict(n=201),
        dict(subset_seed=3),
        dict(arch="resnet20"),
        dict(domain="syndigits"),
        dict(train=dataclasses.replace(TINY, epochs=2)),
        dict(train=dataclasses.replace(TINY, lr=0.1)),
        dict(domain_params={"seed": 1}),
    ],
)
def test_every_ingredient_changes_the_key(change):
    assert dataclasses.replace(SOURCE, **change).key() != SOURCE.key()


def test_the_source_key_is_part_of_the_key():
    other_source = dataclasses.replace(SOURCE, n=300)
    assert dataclasses.replace(TARGET, source=other_source).key() != TARGET.key()


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "json"])
def test_corrupt_entries_are_reported_and_retrained(damage):
    entry = zoo.get_or_train(SOURCE, progress=False, device="cpu")
    weights, meta = _files(entry.key)
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "flip":
        blob = bytearray(weights.read_bytes())
        blob[-10] ^= 0xFF
        weights.write_bytes(bytes(blob))
    elif damage == "delete":
        weights.unlink()
    else:
        meta.write_text("{not json")
    with pytest.raises(CorruptZooEntryError, match="zoo clear"):
        zoo.load_entry(entry.key)
    with pytest.warns(UserWarning, match="retraining"):
        again = zoo.get_or_train(SOURCE, progress=False, device="cpu")
    assert not again.from_cache
    assert zoo.load_entry(entry.key).from_cache


def test_loading_never_runs_code_from_a_weights_file(tmp_path):
    entry = zoo.get_or_train(SOURCE, progress=False, device="cpu")
    weights, meta_path = _files(entry.key)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = pickle.dumps(Payload())
    weights.write_bytes(evil)
    meta = json.loads(meta_path.read_text())
    import hashlib

    meta.update(sha256=hashlib.sha256(evil).hexdigest(), size_bytes=len(evil))
    meta_path.write_text(json.dumps(meta))  # even a matching checksum cannot make it load
    with pytest.raises(CorruptZooEntryError):
        zoo.load_entry(entry.key)
    assert not marker.exists()


def _train_in_process(data_dir: str, queue) -> None:
    import os

    os.environ["TLAB_DATA"] = data_dir
    from tlab.core import zoo as zoo_module

    entry = zoo_module.get_or_train(SOURCE, progress=False, device="cpu")
    queue.put((entry.from_cache, entry.meta["sha256"]))


def test_two_processes_train_one_entry_once(data_dir):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_train_in_process, args=(str(data_dir), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    results = [queue.get(timeout=5) for _ in procs]
    assert sorted(r[0] for r in results) == [
        False,
        True,
    ]  # one trained, the other waited and loaded
    assert results[0][1] == results[1][1]
    assert zoo.load_entry(SOURCE.key()).meta["sha256"] == results[0][1]
    assert not list(zoo.zoo_dir().glob("*.tmp"))


def test_clear_and_list():
    zoo.get_or_train(SOURCE, progress=False, device="cpu")
    assert len(zoo.list_entries()) == 1
    with pytest.raises(TlabError, match="zoo list"):
        zoo.clear(["nope"])
    assert zoo.clear() == 1 and zoo.list_entries() == []


def test_bad_specs_fail_before_any_training():
    with pytest.raises(TlabError, match="needs source"):
        zoo.ModelSpec(domain="digits", strategy="finetune")
    with pytest.raises(TlabError, match="scratch"):
        zoo.ModelSpec(domain="digits", source=SOURCE)
    with pytest.raises(TlabError, match="positive integer"):
        zoo.ModelSpec(domain="digits", n=0)
    too_many = dataclasses.replace(TARGET, n=10**6)
    with pytest.raises(TlabError):
        zoo.get_or_train(too_many, progress=False, device="cpu")
    assert zoo.list_entries() == []  # the source was not trained either


def test_an_unwritable_data_folder_is_a_clear_error(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TLAB_DATA", str(blocker / "data"))
    with pytest.raises(DataFolderError, match="TLAB_DATA"):
        zoo.zoo_dir()
