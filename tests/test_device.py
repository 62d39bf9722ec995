"""Device selection and the training-precision policy (TLAB_PRECISION)."""

from __future__ import annotations

import os

import pytest
import torch

from tlab.core import device as dev
from tlab.errors import TlabError, UnknownNameError

CPU = torch.device("cpu")


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test CPU\nflags\t\t: {flags}\n\n")
    return path


@pytest.mark.parametrize(
    "flags, native",
    [
        ("fpu sse2 avx2 fma avx512f avx512bw", False),  # AVX-512 alone emulates bfloat16
        ("fpu sse2 avx2 avx512f avx512_bf16", True),
        ("fpu sse2 avx2 amx_tile amx_bf16 amx_int8", True),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    assert dev.cpu_has_native_bf16(_cpuinfo(tmp_path, flags)) is native


def test_unknown_cpu_counts_as_no_native_bf16(tmp_path):
    assert dev.cpu_has_native_bf16(tmp_path / "missing") is False
    (tmp_path / "noflags").write_text("processor\t: 0\n")
    assert dev.cpu_has_native_bf16(tmp_path / "noflags") is False


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_uses_bfloat16_only_on_cpus_that_compute_it_natively(monkeypatch, native, expected):
    monkeypatch.delenv("TLAB_PRECISION", raising=False)
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: native)
    assert dev.training_dtype(CPU) == expected
    assert dev.precision_name(CPU) == str(expected).removeprefix("torch.")


@pytest.mark.parametrize(
    "choice, expected", [("float32", torch.float32), ("bfloat16", torch.bfloat16)]
)
def test_explicit_precision_wins_over_the_hardware(monkeypatch, choice, expected):
    monkeypatch.setenv("TLAB_PRECISION", choice)
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: choice == "float32")
    assert dev.training_dtype(CPU) == expected


def test_devices_without_autocast_train_in_float32(monkeypatch):
    monkeypatch.setenv("TLAB_PRECISION", "bfloat16")
    assert dev.training_dtype(torch.device("mps")) == torch.float32


def test_unknown_precision_is_a_clear_error_listing_the_valid_ones(monkeypatch):
    monkeypatch.setenv("TLAB_PRECISION", "fp8")
    with pytest.raises(UnknownNameError) as info:
        dev.training_dtype(CPU)
    message = str(info.value)
    assert "fp8" in message and all(name in message for name in dev.PRECISIONS)


@pytest.mark.parametrize(
    "choice, dtype", [("float32", torch.float32), ("bfloat16", torch.bfloat16)]
)
def test_autocast_for_computes_in_the_training_dtype(monkeypatch, choice, dtype):
    monkeypatch.setenv("TLAB_PRECISION", choice)
    layer = torch.nn.Linear(4, 3)
    with dev.autocast_for(CPU):
        out = layer(torch.ones(2, 4))
    assert out.dtype == dtype and layer.weight.dtype == torch.float32
    assert layer(torch.ones(2, 4)).dtype == torch.float32  # only inside the block


def test_describe_names_the_training_precision(monkeypatch):
    monkeypatch.setenv("TLAB_PRECISION", "float32")
    assert "training in float32" in dev.describe(CPU)


def test_torch_threads_sets_and_restores_the_count_even_after_an_error():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with pytest.raises(RuntimeError, match="inside"), dev.torch_threads(other):
        assert torch.get_num_threads() == other
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_a_thread_count_set_in_a_worker_thread_leaves_the_callers_count_alone():
    """What the mimicry CPU split relies on (torch's OpenMP backend: the count is per thread)."""
    import threading

    with dev.torch_threads(2):
        seen = []
        worker = threading.Thread(
            target=lambda: (dev.one_thread_per_worker(), seen.append(torch.get_num_threads()))
        )
        worker.start()
        worker.join()
        assert seen == [1] and torch.get_num_threads() == 2


def test_notebook_threads_and_subprocess_shares_are_set_in_one_place(monkeypatch):
    with dev.torch_threads(2):
        monkeypatch.setattr("joblib.cpu_count", lambda: 64)
        dev.set_cpu_threads(0)  # 0: torch's default stays when the CPUs allow it
        assert torch.get_num_threads() == 2
        monkeypatch.setattr("joblib.cpu_count", lambda: 1)  # a container granted one CPU
        dev.set_cpu_threads(0)
        assert torch.get_num_threads() == 1
    with dev.torch_threads(2):
        dev.set_cpu_threads(1)
        assert torch.get_num_threads() == 1
    with pytest.raises(TlabError, match="THREADS"):
        dev.set_cpu_threads(-1)
    monkeypatch.setattr("joblib.cpu_count", lambda: 8)
    assert dev.subprocess_thread_env(2) == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}


def test_the_cpus_available_count_the_containers_quota_not_the_hosts_cores():
    """joblib reads the CPU affinity and the cgroup quota; never more than os.cpu_count()."""
    assert 1 <= dev.available_cpus() <= (os.cpu_count() or 1)
