"""Throughput of tlab's FGSM and PGD-10 against torchattacks 3.3.0 on the same model and data,
of tlab's PGD-10 on ``tlab.attacks.attack_copy`` of the model (what every evaluation of the
notebooks crafts on) against PGD-10 on the model itself, and of FGSM at Zhang et al.'s four
budgets from one gradient (``fgsm_budgets``, what notebooks 02-05 evaluate with) against four
``fgsm`` calls.

Run through ``python benchmarks/run.py [--quick]``. Both libraries attack the same tlab DTN
(Zhang et al. 2020's digit network, input normalisation inside) with the same images and labels,
untargeted, no random start. Each measurement is warmed up once, then repeated, alternating the
two libraries (and which runs first) so machine load affects both alike; the median time is
reported as images/s, with the ratio also computed from process CPU time.
The ``max |diff|`` column checks that both produce the same adversarial images.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torchattacks
from torch import nn

from tlab.attacks import attack_copy, fgsm, fgsm_budgets, pgd
from tlab.core.models import build_model

EPS = 8 / 255
ALPHA = 2 / 255
BUDGETS = (2 / 255, 4 / 255, 8 / 255, 16 / 255)  # Zhang et al.'s grid, halved (tlab.papers.zhang)
PGD_STEPS = 10


def structured_images(n: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1]: 4x4 noise upsampled to 32x32 plus fine noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    smooth = nn.functional.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
    return (smooth + 0.05 * torch.randn(n, 3, 32, 32, generator=g)).clamp(0, 1)


def _timed(run: Callable[[], torch.Tensor]) -> tuple[float, float, torch.Tensor]:
    """Wall-clock and process CPU seconds of one call, and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = run()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _compare(
    name: str,
    ours: Callable[[], torch.Tensor],
    theirs: Callable[[], torch.Tensor],
    n: int,
    repeats: int,
    baseline_name: str = "torchattacks 3.3.0",
) -> dict:
    ours(), theirs()  # warm-up
    times: dict[str, list[tuple[float, float]]] = {"tlab": [], "baseline": []}
    outputs: dict[str, torch.Tensor] = {}
    for i in range(repeats):
        pair = [("tlab", ours), ("baseline", theirs)]
        for label, call in pair if i % 2 == 0 else pair[::-1]:  # alternate who runs first
            wall, cpu, outputs[label] = _timed(call)
            times[label].append((wall, cpu))

    def median(label: str, which: int) -> float:
        return statistics.median(t[which] for t in times[label])

    ours_rate = n / median("tlab", 0)
    theirs_rate = n / median("baseline", 0)
    return {
        "benchmark": f"{name} on {n} images, images/s",
        "tlab": ours_rate,
        "baseline": theirs_rate,
        "baseline_name": baseline_name,
        "goal": 1.0,
        "ratio": ours_rate / theirs_rate,
        "ratio_cpu_time": median("baseline", 1) / median("tlab", 1),
        "max_abs_diff": (outputs["tlab"] - outputs["baseline"]).abs().max().item(),
    }


def run(quick: bool) -> list[dict]:
    """Measure both attacks, then PGD on the attack copy and FGSM at several budgets; ``quick``
    uses 64 images and 2 repeats instead of 512 and 7.

    Returns one dict per attack: images/s of each library (from the median wall-clock time),
    ``ratio`` = tlab / torchattacks images/s, ``ratio_cpu_time`` = the same from median process
    CPU time (less sensitive to other programs sharing the machine), and ``max_abs_diff``
    between the two libraries' adversarial images.
    """
    n, repeats = (64, 2) if quick else (512, 7)
    torch.manual_seed(0)
    model = build_model("dtn", 10).eval()
    x = structured_images(n)
    y = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(1))
    ta_fgsm = torchattacks.FGSM(model, eps=EPS)
    ta_pgd = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=PGD_STEPS, random_start=False)
    copy = attack_copy(model)
    return [
        _compare("FGSM", lambda: fgsm(model, x, y, eps=EPS), lambda: ta_fgsm(x, y), n, repeats),
        _compare(
            f"PGD-{PGD_STEPS}",
            lambda: pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=PGD_STEPS),
            lambda: ta_pgd(x, y),
            n,
            repeats,
        ),
        _compare(
            f"PGD-{PGD_STEPS} on attack_copy",
            lambda: pgd(copy, x, y, eps=EPS, alpha=ALPHA, steps=PGD_STEPS),
            lambda: pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=PGD_STEPS),
            n,
            repeats,
            baseline_name="tlab PGD on the model itself",
        ),
        _compare(
            f"FGSM at {len(BUDGETS)} budgets",
            lambda: torch.stack(fgsm_budgets(copy, x, y, eps_list=BUDGETS)),
            lambda: torch.stack([fgsm(copy, x, y, eps=eps) for eps in BUDGETS]),
            n,
            repeats,
            baseline_name=f"{len(BUDGETS)} tlab fgsm calls",
        ),
    ]
