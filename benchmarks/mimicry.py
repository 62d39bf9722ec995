"""Mimicry attack throughput: one batched call vs the same attack one pair at a time.

Run: ``python benchmarks/mimicry.py`` (32, 128 and 512 pairs per call, 100 steps) or ``--quick``.
A small VGG-style teacher is trained briefly on rendered letters and a deep-layer
feature-extractor student on a few digits (Wang et al. 2018, Sec. 2.1); then the
targeted mimicry attack at the student's last frozen layer runs on digit (source, target) pairs,
as single batched calls of 32, 128 and 512 pairs and as a Python loop calling the same function
once per pair, which is how the paper's timing (about 2 minutes per pair on a GPU) was obtained.
Both sides run the same iterations; on the loop's 32 pairs the benchmark asserts that batched
and looped results reach the same success rate on the student. Both sides start from torch's
default thread count (every core). One pair's small convolutions cannot keep two cores busy; a
batch can, and from 128 pairs on a CPU the attack gives each core its own slice of the batch
(``tlab.attacks.mimicry.ROWS_PER_CPU_THREAD``) -- that is part of what batching buys. Run it on
an idle machine; other jobs on the cores distort both sides.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

# Run as a script from a checkout: make the repository's tlab importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tlab.attacks._fast.cpu_split as tlab_split
from tlab.attacks._fast.cpu_split import cpu_slices
from tlab.attacks.mimicry import (
    mimicry_attack,
    targeted_success,
)
from tlab.attacks.mimicry_loop import MimicryResult
from tlab.core.data import load_domain
from tlab.core.tensorsets import class_balanced_subset
from tlab.core.train import TrainConfig, fit, prepare_model

ARCH = "vgg"              # tlab's plain VGG-style network (Wang et al. used VGG teachers),
VGG = {"widths": [8, 8, 16, 16], "fc_width": 64}   # narrow, as in tests/test_mimicry.py
BUDGET = 0.003            # Wang et al.'s Face budget (DSSIM)
PAPER_SECONDS_PER_PAIR = 120.0   # Wang et al. 2018, Sec. 4.1: ~2 min per pair, 2,000 steps


def _models(quick: bool):
    letters = load_domain("letters", n_train=800 if quick else 1300, n_test=26)
    digits = load_domain("digits")
    teacher = prepare_model("scratch", arch=ARCH, num_classes=26, seed=0, arch_options=VGG)
    fit(teacher, letters.train, None,
        TrainConfig(epochs=5 if quick else 8, batch_size=64, lr=3e-3, patience=None),
        progress=False)
    student = prepare_model("finetune", arch=ARCH, num_classes=10, source=teacher,
                            frozen=teacher.num_stages, seed=0, arch_options=VGG)
    fit(student, class_balanced_subset(digits.train, 300, 0), None,
        TrainConfig(epochs=5, batch_size=32, lr=1e-2, patience=None), progress=False)
    return teacher, student, digits.test


def _pairs(test, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    i = torch.randperm(len(test), generator=g)[: 2 * n]
    j = torch.randperm(len(test), generator=g)[: 2 * n]
    keep = (test.labels[i] != test.labels[j]).nonzero().flatten()[:n]
    x = test.floats()
    return x[i[keep]], x[j[keep]], test.labels[j[keep]]


@contextlib.contextmanager
def _no_cpu_split() -> Iterator[None]:
    """Attack every batch whole, as if no batch were big enough to split over the cores."""
    kept = tlab_split.ROWS_PER_CPU_THREAD
    tlab_split.ROWS_PER_CPU_THREAD = sys.maxsize
    try:
        yield
    finally:
        tlab_split.ROWS_PER_CPU_THREAD = kept


def _timed(call: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = call()
    return time.perf_counter() - start, out


def run(quick: bool) -> list[dict]:
    """Pairs per second of batched calls (several batch sizes) and of a per-pair loop.

    The loop attacks the first ``loop_pairs`` pairs one call each (its cost per pair does not
    depend on how many pairs there are); each batched call attacks the first N pairs at once.
    The batched results for the loop's pairs must match the loop's (same success rate).
    """
    loop_pairs, batch_sizes, steps, repeats = (8, (8, 16), 100, 1) if quick else \
        (32, (32, 128, 512), 100, 3)
    teacher, student, test = _models(quick)
    sources, targets, target_labels = _pairs(test, max(batch_sizes))
    layer = teacher.num_stages

    def attack(s: torch.Tensor, t: torch.Tensor) -> MimicryResult:
        return mimicry_attack(teacher, s, t, layer=layer, budget=BUDGET, steps=steps)

    def batched(n: int) -> Callable[[], torch.Tensor]:
        return lambda: attack(sources[:n], targets[:n]).adversarial

    def one_by_one() -> torch.Tensor:
        return torch.cat([attack(sources[k:k + 1], targets[k:k + 1]).adversarial
                          for k in range(loop_pairs)])

    def whole(n: int) -> Callable[[], torch.Tensor]:
        """``batched(n)`` without the split over the cores (one batch on every thread)."""
        def call() -> torch.Tensor:
            with _no_cpu_split():
                return batched(n)()
        return call

    attack(sources[:2], targets[:2])                      # warm-up
    split_size = batch_sizes[1]
    calls = {"loop": (loop_pairs, one_by_one)}
    calls.update({f"batched {n}": (n, batched(n)) for n in batch_sizes})
    calls[f"unsplit {split_size}"] = (split_size, whole(split_size))
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    outputs: dict[str, torch.Tensor] = {}
    for r in range(repeats):
        for name in list(calls) if r % 2 == 0 else list(calls)[::-1]:
            elapsed, outputs[name] = _timed(calls[name][1])
            seconds[name].append(elapsed)
    per_pair = {name: statistics.median(t) / calls[name][0] for name, t in seconds.items()}
    labels = target_labels[:loop_pairs]
    loop_success = targeted_success(student, outputs["loop"], labels).float().mean().item()
    rows = []
    for n in batch_sizes:
        name = f"batched {n}"
        adversarial = outputs[name][:loop_pairs]
        success = targeted_success(student, adversarial, labels).float().mean().item()
        assert abs(success - loop_success) <= 1 / loop_pairs + 1e-9, (name, success, loop_success)
        diff = (adversarial - outputs["loop"]).abs().max().item()
        ratio = per_pair["loop"] / per_pair[name]
        print(f"mimicry, small VGG teacher, {steps} steps, DSSIM budget {BUDGET}: {n} pairs per "
              f"call {per_pair[name]:.4f} s/pair, one pair per call {per_pair['loop']:.4f} s/pair"
              f" ({ratio:.1f}x); targeted success on the deep-layer student over the loop's "
              f"{loop_pairs} pairs: batched {success:.0%}, loop {loop_success:.0%}; max |image "
              f"diff| {diff:.1e}")
        rows.append({
            "benchmark": f"mimicry pairs/s ({n} pairs per call, {steps} steps)",
            "tlab": 1.0 / per_pair[name],
            "baseline": 1.0 / per_pair["loop"],
            "baseline_name": "same attack, one pair per call",
            "ratio": ratio,
            "goal": 10.0,
            "seconds_per_pair": per_pair[name],
            "seconds_per_pair_loop": per_pair["loop"],
            "success_batched": success,
            "success_loop": loop_success,
        })
    split_slices = cpu_slices(split_size, torch.device("cpu"), randomised=False)
    print(f"  {split_size} pairs per call split into {split_slices} slice(s), one per thread: "
          f"{per_pair[f'batched {split_size}']:.4f} s/pair; as one batch on "
          f"{torch.get_num_threads()} threads: {per_pair[f'unsplit {split_size}']:.4f} s/pair")
    fastest = min(per_pair[f"batched {n}"] for n in batch_sizes)
    print(f"  at the paper's 2,000 steps that is ~{fastest * 2000 / steps:.2f} s/pair batched on "
          f"this CPU (paper: ~{PAPER_SECONDS_PER_PAIR:.0f} s/pair on a GPU, 224 px)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in run(args.quick):
        print(f"{row['benchmark']}: tlab {row['tlab']:.2f} pairs/s, baseline "
              f"{row['baseline']:.2f} pairs/s ({row['baseline_name']}), ratio "
              f"{row['ratio']:.2f}x, goal {row['goal']:.0f}x")


if __name__ == "__main__":
    main()
