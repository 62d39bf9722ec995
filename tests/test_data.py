"""Embedded domains, the cache of generated sets, subsets, splits, batches and bad input."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tlab.core import data
from tlab.core.data import load_domain
from tlab.core.tensorsets import DeviceBatches, TensorSet, class_balanced_subset, train_val_split
from tlab.datasets import split_cache, synthetic
from tlab.errors import DataFolderError, TlabError, UnknownNameError

SMALL = {"n_train": 60, "n_test": 30}


def _check_images(ts: TensorSet, num_classes: int) -> None:
    assert ts.images.dtype == torch.uint8 and ts.images.shape[1:] == (3, 32, 32)
    assert ts.labels.dtype == torch.int64 and ts.labels.shape == (len(ts),)
    assert int(ts.labels.min()) >= 0 and int(ts.labels.max()) < num_classes
    x = ts.floats()
    assert x.dtype == torch.float32 and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.equal((x * 255).round().to(torch.uint8), ts.images)


# ---------------------------------------------------------------- embedded domains


def test_digits_are_sklearns_digits_upsampled_and_split_stratified(tlab_data: Path) -> None:
    from sklearn.datasets import load_digits

    d = load_domain("digits")
    assert d.classes == tuple("0123456789") and d.params == {"seed": 0, "labels": None}
    _check_images(d.train, 10)
    _check_images(d.test, 10)
    assert len(d.train) + len(d.test) == 1797
    # stratified 1/3 test split: every class within one example of a third
    raw = np.bincount(load_digits().target, minlength=10)
    test_counts = torch.bincount(d.test.labels, minlength=10).numpy()
    assert np.all(np.abs(test_counts - raw / 3) <= 1)
    # grey repeated to 3 channels; sklearn's top grey level 16 becomes 255
    assert torch.equal(d.train.images[:, 0], d.train.images[:, 1])
    assert torch.equal(d.train.images[:, 0], d.train.images[:, 2])
    assert int(d.train.images.max()) == 255 and int(d.train.images.min()) == 0
    # a 4x4 block average of the 32x32 image follows the 8x8 original
    images, labels = synthetic.sklearn_digits()
    small = images[:, 0].float().reshape(-1, 8, 4, 8, 4).mean((2, 4)) / 255 * 16
    original = torch.from_numpy(load_digits().images).float()
    assert torch.corrcoef(torch.stack([small.flatten(), original.flatten()]))[0, 1] > 0.95
    assert torch.equal(labels, torch.from_numpy(load_digits().target).long())


def test_digits_split_depends_on_seed_only(tlab_data: Path) -> None:
    a, b, c = load_domain("digits"), load_domain("digits", seed=0), load_domain("digits", seed=1)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.test.images, c.test.images)


@pytest.mark.parametrize("name,k", [("syndigits", 10), ("letters", 26)])
@pytest.mark.parametrize("colour", [True, False])
def test_rendered_domains_shapes_balance_and_colour(
    tlab_data: Path, name: str, k: int, colour: bool
) -> None:
    d = load_domain(name, n_train=5 * k + 3, n_test=2 * k, seed=1, colour=colour)
    assert len(d.classes) == k and d.params["colour"] is colour
    assert (len(d.train), len(d.test)) == (5 * k + 3, 2 * k)
    for ts, per_class in ((d.train, 5), (d.test, 2)):
        _check_images(ts, k)
        counts = torch.bincount(ts.labels, minlength=k)
        assert int(counts.min()) >= per_class and int(counts.max()) <= per_class + 1
    imgs = d.train.images.float()
    grey = torch.equal(d.train.images[:, 0], d.train.images[:, 1]) and torch.equal(
        d.train.images[:, 1], d.train.images[:, 2]
    )
    assert grey is not colour
    if not colour:
        # light on dark, like MNIST: the median pixel is dark, the brightest ones are light
        flat = imgs[:, 0].flatten(1)
        assert float(flat.median(1).values.mean()) < 110
        assert float(flat.quantile(0.99, dim=1).mean()) > 150
    # images differ from each other (not one glyph repeated)
    assert len({bytes(img.numpy().tobytes()) for img in d.train.images}) == len(d.train)


def test_colour_contrast_floor() -> None:
    style = synthetic.GlyphStyle()
    g = torch.Generator().manual_seed(0)
    fg, bg = synthetic._colours(g, 5000, True, style)
    gap = (synthetic._luminance(fg) - synthetic._luminance(bg)).abs()
    assert float(gap.min()) >= style.contrast - 1e-9
    fg, bg = synthetic._colours(g, 5000, False, style)
    assert float((fg - bg).min()) >= 0.35 - 1e-9


@pytest.mark.parametrize("name", ["syndigits", "letters"])
def test_same_seed_same_bytes_different_seed_different(
    tmp_path: Path, monkeypatch, name: str
) -> None:
    loads = {}
    for folder, seed in (("a", 5), ("b", 5), ("c", 6)):  # separate folders: no cache sharing
        monkeypatch.setenv("TLAB_DATA", str(tmp_path / folder))
        loads[folder] = load_domain(name, seed=seed, **SMALL)
    a, b, c = loads["a"], loads["b"], loads["c"]
    for split in ("train", "test"):
        ta, tb, tc = (getattr(d, split) for d in (a, b, c))
        assert ta.images.numpy().tobytes() == tb.images.numpy().tobytes()
        assert torch.equal(ta.labels, tb.labels)
        assert not torch.equal(ta.images, tc.images)
    assert not torch.equal(a.train.images[:30], a.test.images)
    # the test set does not depend on the size of the training set
    monkeypatch.setenv("TLAB_DATA", str(tmp_path / "d"))
    bigger = load_domain(name, seed=5, n_train=90, n_test=30)
    assert torch.equal(bigger.test.images, a.test.images)


# ---------------------------------------------------------------- cache


def _cache_files(root: Path) -> list[Path]:
    return sorted((root / "embedded").glob("*.safetensors"))


def test_two_kernels_asking_for_a_new_set_at_once_generate_it_once(tlab_data: Path) -> None:
    import threading
    import time

    made = []

    def make() -> dict[str, torch.Tensor]:
        made.append(threading.current_thread().name)
        time.sleep(0.3)  # long enough for the other caller to arrive while this renders
        return {
            f"{split}_{kind}": (
                torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
                if kind == "images"
                else torch.zeros(n, dtype=torch.long)
            )
            for split, n in (("train", 4), ("test", 2))
            for kind in ("images", "labels")
        }

    got = []
    callers = [
        threading.Thread(
            target=lambda: got.append(synthetic.cached("probe", {"n": 1}, (4, 2), make))
        )
        for _ in range(2)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(made) == 1 and len(got) == 2
    assert torch.equal(got[0]["train_images"], got[1]["train_images"])


def test_cache_hit_and_miss(tlab_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_domain("syndigits", seed=2, **SMALL)
    assert len(_cache_files(tlab_data)) == 1

    def no_render(*args, **kwargs):
        raise AssertionError("rendered although the set is cached")

    monkeypatch.setattr(synthetic, "render_glyphs", no_render)
    again = load_domain("syndigits", seed=2, **SMALL)
    assert torch.equal(first.train.images, again.train.images)
    with pytest.raises(AssertionError, match="rendered although"):
        load_domain("syndigits", seed=3, **SMALL)  # a miss renders
    monkeypatch.undo()
    monkeypatch.setenv("TLAB_DATA", str(tlab_data))
    load_domain("syndigits", seed=2, n_train=61, n_test=30)
    load_domain("syndigits", seed=2, colour=False, **SMALL)
    assert len(_cache_files(tlab_data)) == 3
    assert not list((tlab_data / "embedded").glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_cache_is_reported_and_regenerated(tlab_data: Path, damage: str) -> None:
    first = load_domain("letters", seed=4, **SMALL)
    (path,) = _cache_files(tlab_data)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        raw[-100] ^= 0xFF  # inside the tensor data: only the digest notices
    else:
        raw = bytearray(b"not a safetensors file")
    path.write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match="corrupt"):
        again = load_domain("letters", seed=4, **SMALL)
    assert torch.equal(first.train.images, again.train.images)
    assert torch.equal(first.test.labels, again.test.labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: no warning the next time
        load_domain("letters", seed=4, **SMALL)


def test_concurrent_cache_writers_leave_one_valid_file(tlab_data: Path) -> None:
    tensors = {
        "train_images": torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8),
        "train_labels": torch.arange(8),
        "test_images": torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
        "test_labels": torch.arange(2),
    }
    path = tlab_data / "entry.safetensors"
    tlab_data.mkdir()
    threads = [
        threading.Thread(target=split_cache.write_entry, args=(path, tensors, {"k": "v"}))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    read, meta = split_cache.read_entry(path, {k: tuple(v.shape) for k, v in tensors.items()})
    assert all(torch.equal(read[k], tensors[k]) for k in tensors) and meta["k"] == "v"
    assert [p.name for p in tlab_data.iterdir()] == ["entry.safetensors"]


# ---------------------------------------------------------------- subsets and splits


def _toy_set(counts: list[int]) -> TensorSet:
    labels = torch.cat([torch.full((c,), i, dtype=torch.int64) for i, c in enumerate(counts)])
    images = torch.arange(len(labels), dtype=torch.int64)  # image i encodes its index
    images = torch.stack([images % 256, images // 256, images * 0], 1).to(torch.uint8)
    return TensorSet(images[:, :, None, None].expand(-1, 3, 32, 32).contiguous(), labels)


def _ids(ts: TensorSet) -> list[int]:
    return (ts.images[:, 0, 0, 0].long() + 256 * ts.images[:, 1, 0, 0].long()).tolist()


def test_class_balanced_subset_counts_determinism_nesting() -> None:
    ts = _toy_set([30, 25, 40, 20])
    for n in (4, 10, 23, 80):
        sub = class_balanced_subset(ts, n, seed=1)
        counts = torch.bincount(sub.labels, minlength=4)
        assert len(sub) == n and int(counts.sum()) == n
        assert set(counts.tolist()) <= {n // 4, n // 4 + 1}
        assert int((counts == n // 4 + 1).sum()) == n % 4
        assert len(set(_ids(sub))) == n  # no example twice
        labels_of = {i: int(label) for i, label in zip(_ids(ts), ts.labels, strict=True)}
        pairs = zip(_ids(sub), sub.labels, strict=True)
        assert all(labels_of[i] == int(label) for i, label in pairs)
    a, b = class_balanced_subset(ts, 23, seed=1), class_balanced_subset(ts, 23, seed=1)
    assert _ids(a) == _ids(b)
    assert _ids(a) != _ids(class_balanced_subset(ts, 23, seed=2))
    assert set(_ids(class_balanced_subset(ts, 40, seed=1))) <= set(
        _ids(class_balanced_subset(ts, 80, seed=1))
    )


def test_class_balanced_subset_errors() -> None:
    ts = _toy_set([30, 25, 40, 20])
    with pytest.raises(TlabError, match="115 examples"):
        class_balanced_subset(ts, 116, seed=0)
    with pytest.raises(TlabError, match="number of classes"):
        class_balanced_subset(ts, 3, seed=0)
    with pytest.raises(TlabError, match="only 20 examples"):
        class_balanced_subset(ts, 100, seed=0)
    with pytest.raises(TlabError):
        class_balanced_subset(ts, 0, seed=0)


def test_train_val_split_is_stratified_disjoint_and_seeded() -> None:
    ts = _toy_set([30, 25, 40, 20])
    train, val = train_val_split(ts, 0.2, seed=3)
    assert set(_ids(train)).isdisjoint(_ids(val))
    assert sorted(_ids(train) + _ids(val)) == list(range(len(ts)))
    assert torch.bincount(val.labels, minlength=4).tolist() == [6, 5, 8, 4]
    again = train_val_split(ts, 0.2, seed=3)
    assert _ids(again[1]) == _ids(val)
    assert _ids(train_val_split(ts, 0.2, seed=4)[1]) != _ids(val)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(TlabError, match="between 0 and 1"):
            train_val_split(ts, bad, seed=0)


# ---------------------------------------------------------------- batches


def _batch_ids(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0, 0, 0] * 255).round().long() + 256 * (x[:, 1, 0, 0] * 255).round().long()


def test_device_batches_cover_every_index_once_per_epoch() -> None:
    ts = _toy_set([13, 17, 20])
    batches = DeviceBatches(ts, 8, device="cpu", shuffle=True, seed=7)
    assert len(batches) == 7
    orders = []
    for _ in range(3):
        epoch = []
        for x, y in batches:
            assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and len(x) <= 8
            assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
            assert y.dtype == torch.int64 and len(y) == len(x)
            ids = _batch_ids(x)
            assert torch.equal(y, ts.labels[ids])
            epoch += ids.tolist()
        assert sorted(epoch) == list(range(len(ts)))
        orders.append(epoch)
    assert orders[0] != orders[1] and orders[1] != orders[2]
    replay = DeviceBatches(ts, 8, device="cpu", shuffle=True, seed=7)
    assert [int(v) for x, _ in replay for v in _batch_ids(x)] == orders[0]


def test_device_batches_in_order_and_drop_last() -> None:
    ts = _toy_set([5, 5])
    plain = DeviceBatches(ts, 4, device="cpu", shuffle=False)
    ys = [y for _, y in plain]
    assert [len(y) for y in ys] == [4, 4, 2] and torch.equal(torch.cat(ys), ts.labels)
    xs = torch.cat([x for x, _ in plain])
    assert torch.equal(xs, ts.floats())
    dropped = DeviceBatches(ts, 4, device="cpu", shuffle=True, drop_last=True)
    assert len(dropped) == 2 and [len(y) for _, y in dropped] == [4, 4]
    with pytest.raises(TlabError, match="batch_size"):
        DeviceBatches(ts, 0, device="cpu", shuffle=False)


# ---------------------------------------------------------------- registry and bad input


def test_list_domains() -> None:
    infos = {d.name: d for d in data.list_domains()}
    expected = {
        "digits",
        "syndigits",
        "letters",
        "mnist",
        "usps",
        "svhn",
        "cifar10",
        "cifar100",
        "stl10",
        "cifar10_9",
        "stl10_9",
        "fashion_mnist",
        "synnumbers",
        "imagenet32",
    }
    assert set(infos) == expected
    for name in ("digits", "syndigits", "letters"):
        assert infos[name].kind == "embedded" and infos[name].available
    assert infos["letters"].num_classes == 26 and infos["cifar100"].num_classes == 100
    assert infos["cifar10_9"].num_classes == infos["stl10_9"].num_classes == 9
    assert all(d.description and "\n" not in d.description for d in infos.values())


def test_unknown_domain_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="syndigits") as info:
        load_domain("imagenet")
    assert "letters" in str(info.value) and "cifar10_9" in str(info.value)


@pytest.mark.parametrize(
    "params,match",
    [
        ({"n_trian": 10}, "valid parameters: n_train"),
        ({"n_train": 0}, "n_train"),
        ({"n_test": 2.5}, "n_test"),
        ({"seed": -1}, "seed"),
        ({"colour": "yes"}, "True or False"),
        ({"labels": "a-b"}, "label subset"),
        ({"labels": [3]}, "at least 2"),
        ({"labels": [1, 1, 2]}, "distinct"),
        ({"labels": "8-10"}, "valid labels 0..9"),
    ],
)
def test_bad_params(tlab_data: Path, params: dict, match: str) -> None:
    base = dict(SMALL)
    base.update(params)
    with pytest.raises(TlabError, match=match):
        load_domain("syndigits", **base)


def test_real_domain_rejects_generator_params(tlab_data: Path) -> None:
    with pytest.raises(TlabError, match="valid parameters: extra"):
        load_domain("svhn", n_train=10)


def test_unwritable_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TLAB_DATA", str(blocker / "data"))
    for name in ("syndigits", "mnist"):
        with pytest.raises(DataFolderError, match="TLAB_DATA"):
            load_domain(name)


def test_label_subsets_are_disjoint_and_relabelled(tlab_data: Path) -> None:
    low = load_domain("syndigits", labels="0-4", **SMALL)
    high = load_domain("syndigits", labels=[9, 5, 7, 6, 8], **SMALL)
    full = load_domain("syndigits", **SMALL)
    assert low.classes == ("0", "1", "2", "3", "4") and high.classes == ("5", "6", "7", "8", "9")
    assert high.params["labels"] == [5, 6, 7, 8, 9]
    assert len(low.train) + len(high.train) == len(full.train)
    assert sorted(high.train.labels.unique().tolist()) == [0, 1, 2, 3, 4]
    keep = full.train.labels >= 5
    assert torch.equal(high.train.images, full.train.images[keep])
    assert torch.equal(high.train.labels, full.train.labels[keep] - 5)
    odd = load_domain("digits", labels="1,3,5")
    assert odd.classes == ("1", "3", "5") and set(odd.test.labels.tolist()) == {0, 1, 2}


def test_tensorset_validates() -> None:
    with pytest.raises(TlabError, match="uint8"):
        TensorSet(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(TlabError, match="int64"):
        TensorSet(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))


def test_gallery(tlab_data: Path) -> None:
    d = load_domain("syndigits", **SMALL)
    grid = data.domain_gallery_arrays(d, per_class=3, pad=2)
    assert grid.dtype == np.uint8 and grid.shape == (2 + 34 * 10, 2 + 34 * 3, 3)
    images = {
        c: {img.permute(1, 2, 0).numpy().tobytes() for img in d.train.images[d.train.labels == c]}
        for c in range(10)
    }
    for row in range(10):
        for col in range(3):
            cell = grid[2 + 34 * row : 34 + 34 * row, 2 + 34 * col : 34 + 34 * col]
            assert cell.tobytes() in images[row]
    with pytest.raises(UnknownNameError):
        data.domain_gallery_arrays(d, split="val")
