"""torchvision's ImageNet ResNet-18 and VGG-16 cut into stages (Wang et al. 2018's teachers).

Wang et al. (2018, Sec. 3-4) build students from public ImageNet-scale teachers; these wrappers
give the lab such teachers with the same stage interface as every other tlab model, and the
ImageNet channel statistics inside the model. They accept 32x32 input: ResNet-18 shrinks it to
1x1 before pooling, VGG-16's adaptive pooling repeats its 1x1 map to the 7x7 its FC layers expect.

Pretrained weights are read ONLY from the torch hub cache
(``torch.hub.get_dir()/checkpoints/<file name of torchvision's URL>``); tlab never downloads
them. The file is loaded with ``weights_only=True``, which unpickles tensors and plain
containers only, so a tampered checkpoint cannot run code.

torchvision itself is imported only when one of these models is built: importing it adds about
165 MiB to a kernel (measured with the CUDA build of torch), and only the ``paper`` preset of
Wang et al.'s notebooks needs these teachers.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast
from urllib.parse import urlparse

import torch
from torch import nn

from tlab.checks import check_choice
from tlab.core.architectures.parts import IMAGENET_MEAN, IMAGENET_STD, Parts
from tlab.errors import WeightsUnavailableError

IMAGENET_CLASSES = 1000
WEIGHT_CHOICES = (None, "imagenet")

NetT = TypeVar("NetT", bound=nn.Module)


def checkpoint_path(url: str) -> Path:
    """Where torch hub keeps the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def _read_cached_weights(arch: str, url: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict from the hub cache (never from the network)."""
    path = checkpoint_path(url)
    how_to = (
        f"download {url} on a machine with internet access and copy it to {path} "
        f"(or point TORCH_HOME at a folder whose hub/checkpoints/ holds it), "
        f"or build {arch!r} with weights=None for a randomly initialised network"
    )
    if not path.is_file():
        raise WeightsUnavailableError(
            f"ImageNet weights for {arch!r} are not in the torch hub cache; tlab never downloads "
            f"weights by itself: {how_to}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise WeightsUnavailableError(
            f"{path} cannot be read as a plain-tensor checkpoint ({type(exc).__name__}); tlab "
            f"refuses files that need code to unpickle. Replace it: {how_to}"
        ) from exc
    if not isinstance(state, dict):
        raise WeightsUnavailableError(
            f"{path} holds a {type(state).__name__}, not a state dict; {how_to}"
        )
    return state


def _head(classifier: nn.Linear, num_classes: int) -> nn.Linear:
    """The ImageNet classifier itself if the label set is ImageNet's, else a fresh one."""
    if num_classes == classifier.out_features:
        return classifier
    return nn.Linear(classifier.in_features, num_classes)


def _torchvision_net(
    factory: Callable[..., NetT], arch: str, url: str, num_classes: int, weights: str | None
) -> NetT:
    check_choice("weights", weights, WEIGHT_CHOICES)
    if weights is None:
        return factory(weights=None, num_classes=num_classes)
    state = _read_cached_weights(arch, url)
    net = factory(weights=None, num_classes=IMAGENET_CLASSES)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsUnavailableError(
            f"{checkpoint_path(url)} does not hold torchvision {arch!r} weights ({exc}); replace "
            f"it with the file from {url}, or use weights=None"
        ) from exc
    return net


def build_resnet18(num_classes: int, *, weights: str | None = None) -> Parts:
    """torchvision ResNet-18: ``stem`` (conv1, bn1, relu, maxpool), ``layer1`` ... ``layer4``
    (+ average pool + flatten -> 512 features); head = torchvision's ``fc``."""
    from torchvision.models import ResNet18_Weights, resnet18  # imported on use (module docstring)

    url = ResNet18_Weights.IMAGENET1K_V1.url
    net = _torchvision_net(resnet18, "tv_resnet18", url, num_classes, weights)
    stages: list[tuple[str, nn.Module]] = [
        ("stem", nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)),
        ("layer1", net.layer1),
        ("layer2", net.layer2),
        ("layer3", net.layer3),
        ("layer4", nn.Sequential(net.layer4, net.avgpool, nn.Flatten())),
    ]
    return Parts(stages, _head(net.fc, num_classes), IMAGENET_MEAN, IMAGENET_STD)


def build_vgg16(num_classes: int, *, weights: str | None = None) -> Parts:
    """torchvision VGG-16: ``block1`` ... ``block5`` (convolutions up to and including each
    max-pool), ``fc6`` (adaptive pool, flatten, Linear-ReLU-Dropout), ``fc7`` (Linear-ReLU-Dropout
    -> 4096 features); head = the last classifier Linear."""
    from torchvision.models import VGG16_Weights, vgg16  # imported on use (module docstring)

    url = VGG16_Weights.IMAGENET1K_V1.url
    net = _torchvision_net(vgg16, "tv_vgg16", url, num_classes, weights)
    stages: list[tuple[str, nn.Module]] = []
    block: list[nn.Module] = []
    for layer in net.features:
        block.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages.append((f"block{len(stages) + 1}", nn.Sequential(*block)))
            block = []
    fc = net.classifier
    stages.append(("fc6", nn.Sequential(net.avgpool, nn.Flatten(), fc[0], fc[1], fc[2])))
    stages.append(("fc7", nn.Sequential(fc[3], fc[4], fc[5])))
    return Parts(stages, _head(cast(nn.Linear, fc[6]), num_classes), IMAGENET_MEAN, IMAGENET_STD)
