"""Where a sweep's points run: a local Dask cluster of worker processes sized to the machine,
or a running scheduler; and the environment a point's kernel gets on a local cluster."""

from __future__ import annotations

import logging

from tlab.core.device import available_cpus, subprocess_thread_env
from tlab.errors import TlabError


def connect(scheduler: str | None, workers: int | None, n_points: int, timeout: float):
    """A ``(client, cluster)`` pair; ``cluster`` is None for an existing scheduler."""
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            return Client(scheduler, timeout=timeout), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise TlabError(
                f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s "
                f"({exc}); start it with `dask scheduler` and check the address, or "
                "leave out --scheduler to use a local cluster"
            ) from exc
    size = min(workers or available_cpus(), n_points)
    cluster = LocalCluster(
        n_workers=size,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return Client(cluster), cluster


def local_kernel_env(size: int) -> dict[str, str | None]:
    """The kernel environment of a point run by one of ``size`` local workers.

    The machine's CPUs are shared out (torch reads ``OMP_NUM_THREADS``), and dask's
    ``MALLOC_TRIM_THRESHOLD_=65536``, which every worker process gets
    (``distributed.nanny.pre-spawn-environ``), is not passed on: it hands freed memory back to
    the OS at once, so PyTorch's large tensors come back as fresh pages, page fault by page
    fault (measured: the batched mimicry attack ran 2.4x slower under it, and a sweep of two
    points of notebook 09 took 70 s instead of 50 s).
    """
    return {**subprocess_thread_env(size), "MALLOC_TRIM_THRESHOLD_": None}
