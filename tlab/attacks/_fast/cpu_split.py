"""Sharing a batch of independent attack rows out over the CPU cores (the mimicry attack's
optimisation loop, :func:`tlab.attacks.mimicry.mimic_features`)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from tlab.core.device import one_thread_per_worker

#: On a CPU, a batch with at least this many rows per torch thread is split into one slice per
#: thread, each attacked in its own Python thread computing with one torch thread. Measured on
#: 2 cores (narrow VGG teacher, ms per pair and step, median of 4; split vs one batch on two
#: threads): 512 pairs 0.162 vs 0.186, 128 pairs 0.171 vs 0.180, 64 pairs 0.195 vs 0.190,
#: 32 pairs 0.253 vs 0.224. A batch of small operations keeps two threads only partly busy
#: (each operation waits for both; the Python between operations runs on one core); two
#: independent slices do not wait for each other, once each is big enough.
ROWS_PER_CPU_THREAD = 64


def cpu_slices(rows: int, device: torch.device, *, randomised: bool) -> int:
    """How many slices :func:`tlab.attacks.mimicry.mimic_features` splits ``rows`` rows into
    (1 = no split).

    Only on a CPU, and never for a randomised attack (input dropout in the loop): its random
    draws would then depend on the number of cores.
    """
    if device.type != "cpu" or randomised:
        return 1
    return max(1, min(torch.get_num_threads(), rows // ROWS_PER_CPU_THREAD))


_RowsAttack = Callable[[slice, threading.Event | None], dict[str, torch.Tensor]]


def run_slices(
    attack_rows: _RowsAttack, rows: slice, device: torch.device, *, randomised: bool
) -> list[dict[str, torch.Tensor]]:
    """``attack_rows`` on ``rows``, split over the CPU cores when :func:`cpu_slices` says so.

    Rows are independent, so the slices' results are each row's own result (up to float
    rounding, as between any two thread counts); they come back in row order. If one slice
    fails, or the caller is interrupted (Ctrl-C in a notebook), the other slices stop at their
    next step and the error propagates.
    """
    count = cpu_slices(rows.stop - rows.start, device, randomised=randomised)
    if count == 1:
        return [attack_rows(rows, None)]
    edges = torch.linspace(rows.start, rows.stop, count + 1).round().long().tolist()
    slices = [slice(a, b) for a, b in itertools.pairwise(edges)]
    stop = threading.Event()
    with ThreadPoolExecutor(
        count, thread_name_prefix="tlab-mimicry", initializer=one_thread_per_worker
    ) as pool:
        futures = [pool.submit(attack_rows, part, stop) for part in slices]
        try:
            return [future.result() for future in futures]
        except BaseException:
            stop.set()
            raise
