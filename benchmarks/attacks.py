"""Throughput of tlab's FGSM and PGD-10 against torchattacks 3.3.0 on the same model and data.

Run: ``python benchmarks/attacks.py`` (full: 512 images) or ``python benchmarks/attacks.py
--quick``. Both libraries attack the same DTN-like convnet (Zhang et al. 2020's digit network,
defined here so that only the attacks are measured) with the same images and labels,
untargeted, no random start. Each measurement is warmed up once, then repeated, alternating the
two libraries (and which runs first) so machine load affects both alike; the median time is
reported as images/s, with the ratio also computed from process CPU time.
The ``max |diff|`` column checks that both produce the same adversarial images.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torchattacks
from torch import nn

# Run as a script from a checkout: make the repository's tlab importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tlab.attacks import fgsm, pgd  # noqa: E402

EPS = 8 / 255
ALPHA = 2 / 255
PGD_STEPS = 10


def dtn_like(num_classes: int = 10) -> nn.Module:
    """Three strided 5x5 conv blocks (64, 128, 256 channels) and a 512-unit hidden layer."""
    blocks: list[nn.Module] = []
    for c_in, c_out, p in ((3, 64, 0.1), (64, 128, 0.3), (128, 256, 0.5)):
        conv = nn.Conv2d(c_in, c_out, kernel_size=5, stride=2, padding=2)
        blocks += [conv, nn.BatchNorm2d(c_out), nn.Dropout2d(p), nn.ReLU()]
    return nn.Sequential(
        *blocks, nn.Flatten(), nn.Linear(256 * 4 * 4, 512), nn.BatchNorm1d(512), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(512, num_classes),
    )


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
) -> dict:
    ours(), theirs()  # warm-up
    times: dict[str, list[tuple[float, float]]] = {"tlab": [], "torchattacks": []}
    outputs: dict[str, torch.Tensor] = {}
    for i in range(repeats):
        pair = [("tlab", ours), ("torchattacks", theirs)]
        for label, call in pair if i % 2 == 0 else pair[::-1]:  # alternate who runs first
            wall, cpu, outputs[label] = _timed(call)
            times[label].append((wall, cpu))

    def median(label: str, which: int) -> float:
        return statistics.median(t[which] for t in times[label])

    ours_rate = n / median("tlab", 0)
    theirs_rate = n / median("torchattacks", 0)
    return {
        "attack": name,
        "images": n,
        "tlab_img_per_s": ours_rate,
        "torchattacks_img_per_s": theirs_rate,
        "ratio": ours_rate / theirs_rate,
        "ratio_cpu_time": median("torchattacks", 1) / median("tlab", 1),
        "max_abs_diff": (outputs["tlab"] - outputs["torchattacks"]).abs().max().item(),
    }


def run(quick: bool) -> list[dict]:
    """Measure both attacks; ``quick`` uses 64 images and 2 repeats instead of 512 and 7.

    Returns one dict per attack: images/s of each library (from the median wall-clock time),
    ``ratio`` = tlab / torchattacks images/s, ``ratio_cpu_time`` = the same from median process
    CPU time (less sensitive to other programs sharing the machine), and ``max_abs_diff``
    between the two libraries' adversarial images.
    """
    n, repeats = (64, 2) if quick else (512, 7)
    torch.manual_seed(0)
    model = dtn_like().eval()
    x = structured_images(n)
    y = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(1))
    ta_fgsm = torchattacks.FGSM(model, eps=EPS)
    ta_pgd = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=PGD_STEPS, random_start=False)
    return [
        _compare("FGSM", lambda: fgsm(model, x, y, eps=EPS), lambda: ta_fgsm(x, y), n, repeats),
        _compare(
            f"PGD-{PGD_STEPS}",
            lambda: pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=PGD_STEPS),
            lambda: ta_pgd(x, y),
            n,
            repeats,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 images, 2 repeats")
    args = parser.parse_args()
    rows = run(args.quick)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU/GPU: "
          f"{'cuda' if torch.cuda.is_available() else 'cpu'}")
    print(f"{'attack':8} {'images':>6} {'tlab img/s':>11} {'torchattacks img/s':>19} "
          f"{'ratio':>6} {'cpu ratio':>9} {'max |diff|':>11}")
    for r in rows:
        print(f"{r['attack']:8} {r['images']:>6} {r['tlab_img_per_s']:>11.1f} "
              f"{r['torchattacks_img_per_s']:>19.1f} {r['ratio']:>5.2f}x "
              f"{r['ratio_cpu_time']:>8.2f}x {r['max_abs_diff']:>11.2e}")


if __name__ == "__main__":
    main()
