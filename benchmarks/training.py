"""DTN training throughput: tlab's training step vs a DataLoader with per-sample transforms.

Both sides train the same DTN (Zhang et al. 2020, REFERENCE.md) from the same initial weights on
the same images with the same optimiser. tlab keeps the uint8 tensors on the device, slices
batches by index and trains in ``tlab.core.device.training_dtype`` (bfloat16 autocast on CPUs with
AMX / AVX512-BF16 units, float32 elsewhere); the baseline is the usual torchvision pipeline, the
one torchvision's dataset classes (and the papers' code) use: images held as uint8 HWC arrays,
each sample turned into a PIL image and through ``transforms.ToTensor()``, collated by a
DataLoader, trained in float32 with torch's default Adam. Two more rows separate the two effects:
both pipelines in float32 (the input pipeline's share), and the pipelines alone with no model. The
last row times the optimiser's step alone: tlab's (``tlab.core.train.make_optimizer``, fused on
CPUs) against torch's default Adam, which loops over the parameters in Python.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from tlab.core.data import load_domain
from tlab.core.device import autocast_for, precision_name
from tlab.core.models import build_model
from tlab.core.tensorsets import DeviceBatches, TensorSet
from tlab.core.train import TrainConfig, make_optimizer

MakeOptimizer = Callable[[torch.nn.Module], torch.optim.Optimizer]


def tlab_adam(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The Adam tlab trains with (fused where PyTorch has the kernel)."""
    return make_optimizer(model, TrainConfig(optimizer="adam", lr=1e-3))


def default_adam(model: torch.nn.Module) -> torch.optim.Optimizer:
    """torch's default Adam on a CPU: a Python loop over the parameters."""
    return torch.optim.Adam(model.parameters(), lr=1e-3)


class PerSampleDataset(Dataset):
    """The baseline: one PIL image at a time through a torchvision transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images.permute(0, 2, 3, 1).numpy()  # HWC uint8, like torchvision's CIFAR10
        self.labels = labels.tolist()
        self.transform = transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def _train_epoch(model: torch.nn.Module, batches: Iterable,
                 precision: Callable[[], AbstractContextManager],
                 optimizer_for: MakeOptimizer) -> int:
    optimizer = optimizer_for(model)
    model.train()
    seen = 0
    for x, y in batches:
        with precision():
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
    return seen


def _images_per_second(model: torch.nn.Module, make_batches, repeats: int,
                       precision: Callable[[], AbstractContextManager],
                       optimizer_for: MakeOptimizer) -> float:
    rates = []
    for _ in range(repeats):
        net = copy.deepcopy(model)
        start = time.perf_counter()
        seen = _train_epoch(net, make_batches(), precision, optimizer_for)
        rates.append(seen / (time.perf_counter() - start))
    return statistics.median(rates)


def _pipeline_rate(make_batches, repeats: int) -> float:
    """Images/s an input pipeline delivers with no model attached (its own cost per image)."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        seen = sum(len(y) for _, y in make_batches())
        rates.append(seen / (time.perf_counter() - start))
    return statistics.median(rates)


def _steps_per_second(model: torch.nn.Module, optimizer_for: MakeOptimizer, steps: int) -> float:
    """Optimiser steps per second on ``model`` with fixed random gradients (the step alone)."""
    net = copy.deepcopy(model)
    optimizer = optimizer_for(net)
    generator = torch.Generator().manual_seed(0)
    for p in net.parameters():
        p.grad = torch.randn(p.shape, generator=generator)
    optimizer.step()  # the first step allocates the moments
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return steps / (time.perf_counter() - start)


def run(quick: bool = False) -> list[dict]:
    """Median images/s of one training epoch for each pipeline, and their ratio.

    On a CPU the DTN's own forward and backward pass dominates an epoch, so the input
    pipeline's share is small there (second row); most of tlab's gain on CPUs with native
    bfloat16 comes from training in it. The third row times the input pipelines alone; on a
    GPU the training step is far cheaper and that per-image cost is what remains.
    """
    domain = load_domain("syndigits", n_train=1024 if quick else 4096, n_test=64, seed=0)
    data: TensorSet = domain.train
    torch.manual_seed(0)
    model = build_model("dtn", len(domain.classes))
    device = torch.device("cpu")
    repeats = 2 if quick else 3

    def tlab_batches() -> DeviceBatches:
        return DeviceBatches(data, 128, device=device, shuffle=True, seed=0)

    def base_batches() -> DataLoader:
        return DataLoader(PerSampleDataset(data.images, data.labels), batch_size=128, shuffle=True)

    def tlab_precision() -> AbstractContextManager:
        return autocast_for(device)

    baseline_name = "DataLoader, per-sample PIL + ToTensor, float32"
    float32 = contextlib.nullcontext
    tlab_rate = _images_per_second(model, tlab_batches, repeats, tlab_precision, tlab_adam)
    tlab_f32_rate = _images_per_second(model, tlab_batches, repeats, float32, tlab_adam)
    base_rate = _images_per_second(model, base_batches, repeats, float32, default_adam)
    tlab_feed = _pipeline_rate(tlab_batches, repeats)
    base_feed = _pipeline_rate(base_batches, repeats)
    steps = 50 if quick else 200
    tlab_steps = _steps_per_second(model, tlab_adam, steps)
    base_steps = _steps_per_second(model, default_adam, steps)
    return [{"benchmark": f"DTN training, images/s ({precision_name(device)})", "tlab": tlab_rate,
             "baseline": base_rate, "baseline_name": baseline_name,
             "ratio": tlab_rate / base_rate, "goal": 1.5},
            {"benchmark": "DTN training, images/s (both float32)", "tlab": tlab_f32_rate,
             "baseline": base_rate, "baseline_name": baseline_name,
             "ratio": tlab_f32_rate / base_rate, "goal": None},
            {"benchmark": "input pipeline alone, images/s", "tlab": tlab_feed,
             "baseline": base_feed, "baseline_name": baseline_name,
             "ratio": tlab_feed / base_feed, "goal": 1.5},
            {"benchmark": "Adam step on the DTN, steps/s", "tlab": tlab_steps,
             "baseline": base_steps,
             "baseline_name": "torch.optim.Adam defaults (a loop per tensor)",
             "ratio": tlab_steps / base_steps, "goal": 2.0}]
