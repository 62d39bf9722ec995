"""Ensembles of students built from different teachers (Wang et al., USENIX Sec. 2018, Sec. 6.3).

Students that answer together: one mimicked teacher is not enough (see
:func:`tlab.attacks.mimicry.mimicry_attack_ensemble`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tlab.core.models import StagedModel
from tlab.errors import TlabError


class EnsembleModel(nn.Module):
    """Students that answer together: the mean of their softmax outputs (Wang et al., Sec. 6.3).

    The paper suggests a majority vote; tlab averages the members' class probabilities
    instead (a "soft" vote): it agrees with the majority vote whenever the members are
    confident, never ties, and stays differentiable, so gradient attacks (and
    :func:`tlab.core.metrics.predict`) treat the ensemble like any other model.

    ``forward`` takes pixels in [0, 1] and returns the *log* of the averaged probabilities,
    which works as logits (argmax = ensemble prediction; cross-entropy = negative log of the
    averaged probability). All members must output the same number of classes.
    """

    def __init__(self, students: Sequence[nn.Module]) -> None:
        super().__init__()
        members = list(students)
        if not members or not all(isinstance(m, nn.Module) for m in members):
            raise TlabError("EnsembleModel needs a non-empty list of models (nn.Module)")
        classes = {m.num_classes for m in members if isinstance(m, StagedModel)}
        if len(classes) > 1:
            raise TlabError(
                f"ensemble members disagree on the number of classes: "
                f"{sorted(classes)}; every student must solve the same task"
            )
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [m(x) for m in self.members]
        shapes = {tuple(o.shape) for o in outputs}
        if len(shapes) != 1:
            raise TlabError(f"ensemble members give outputs of different shapes {sorted(shapes)}")
        probs = torch.stack([o.softmax(dim=1) for o in outputs]).mean(0)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
