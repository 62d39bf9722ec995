"""Device selection and mixed precision.

tlab runs everywhere on CPU; on a CUDA (or Apple MPS) machine the same code uses the GPU.
Nothing hard-codes ``"cuda"``.

Training precision (``TLAB_PRECISION``): ``auto`` (default) trains under autocast wherever the
hardware computes in 16 bits natively -- bfloat16 (or float16) on CUDA, bfloat16 on CPUs with
AMX or AVX512-BF16 units, where it roughly doubles the training speed -- and in float32
elsewhere; ``float32`` always trains in float32 (tlab's behaviour before bfloat16 support);
``bfloat16`` forces bfloat16 autocast. Weights and optimiser state stay float32 in every case,
and attacks and evaluations always compute in float32: only the training step changes.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import joblib
import torch

from tlab.checks import check_choice, check_positive_int

#: Valid values of the ``TLAB_PRECISION`` environment variable.
PRECISIONS = ("auto", "float32", "bfloat16")

#: CPU flags (Linux ``/proc/cpuinfo``) of units that compute bfloat16 natively.
_NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """The device to use: ``preferred`` if given, else ``TLAB_DEVICE``, else CUDA, MPS, CPU."""
    choice = preferred if preferred is not None else os.environ.get("TLAB_DEVICE")
    if choice is not None:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            from tlab.errors import TlabError

            raise TlabError(f"device {choice!r} requested but CUDA is not available; use 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's parameters (or buffers) live on."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


@functools.cache
def cpu_has_native_bf16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Does this CPU compute bfloat16 in hardware (AMX or AVX512-BF16)? False if unknown.

    Without such units PyTorch emulates bfloat16 on the CPU, which is slower than float32.
    Read once per process (``fit`` asks at every batch).
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return not _NATIVE_BF16_FLAGS.isdisjoint(line.split(":", 1)[-1].split())
    except OSError:
        return False
    return False


def training_dtype(device: torch.device) -> torch.dtype:
    """The dtype ``fit`` computes in on ``device`` under ``TLAB_PRECISION`` (see module doc)."""
    choice = check_choice("TLAB_PRECISION", os.environ.get("TLAB_PRECISION", "auto"), PRECISIONS)
    if choice == "float32" or device.type not in ("cuda", "cpu"):
        return torch.float32
    if device.type == "cuda":
        if choice == "bfloat16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    if choice == "bfloat16" or cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def precision_name(device: torch.device) -> str:
    """``training_dtype`` as a short name ("float32", "bfloat16", "float16") for keys and tables."""
    return str(training_dtype(device)).removeprefix("torch.")


@contextlib.contextmanager
def autocast_for(device: torch.device) -> Iterator[None]:
    """Autocast in ``training_dtype(device)``; a no-op when that is float32."""
    dtype = training_dtype(device)
    if dtype == torch.float32:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


# ---------------------------------------------------------------------------------------------
# CPU threads: every place tlab sets a thread count is one of the functions below.
# ---------------------------------------------------------------------------------------------


def available_cpus() -> int:
    """The CPUs this process may use: its CPU affinity and its container's CPU quota (cgroups),
    as joblib counts them. A Binder kernel sees every core of its host but is granted about
    one; torch's default of one thread per visible core then oversubscribes the quota, and
    OpenMP threads spinning for a core they do not get can make a computation many times
    slower (seen here: 2-thread processes sharing 2 cores ran 10-25x slower)."""
    return max(1, int(joblib.cpu_count()))


def set_cpu_threads(count: int) -> None:
    """A notebook's ``THREADS`` parameter: torch's CPU threads for this kernel (0: torch's
    default, capped at :func:`available_cpus`). One thread can be faster on a busy shared CPU."""
    if count:
        torch.set_num_threads(check_positive_int(count, name="THREADS"))
    else:
        torch.set_num_threads(min(torch.get_num_threads(), available_cpus()))


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the calling thread's torch CPU operations on ``count`` threads, restoring the count
    after (tests pin it; torch's OpenMP backend keeps the count per calling thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_thread_per_worker() -> None:
    """Initializer of a thread pool whose workers each run their own slice of CPU work: each
    worker computes on one torch thread, and the caller's thread keeps its own count (with
    torch's OpenMP backend the count belongs to the thread that sets it), so other torch work
    in the process is not slowed while the pool runs."""
    torch.set_num_threads(1)


def subprocess_thread_env(workers: int) -> dict[str, str]:
    """The environment that shares this machine's CPUs among ``workers`` processes: torch reads
    ``OMP_NUM_THREADS`` (and MKL its own variable) when a process starts."""
    threads = str(max(1, available_cpus() // workers))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def describe(device: torch.device) -> str:
    """A one-line human description of the device, for notebooks and the CLI."""
    if device.type == "cuda":
        return (
            f"CUDA GPU: {torch.cuda.get_device_name(device)}, training in {precision_name(device)}"
        )
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads, training in {precision_name(device)})"
