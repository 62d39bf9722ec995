"""Davchev et al. (ICML 2019 workshop): the cached Table 1 evaluation of notebooks 07 and 08.

Accuracy convention of the table. As in Davchev's Table 1, every number is a fraction of *all*
evaluation images: an image counts as correct under an attack only if the network classifies it
correctly both clean and after the attack (``adversarial_accuracy_all`` of
:mod:`tlab.core.metrics`), so an attack column never exceeds Natural. On images the network gets
right, the true and the predicted label coincide, so this table does not depend on the label an
attack uses. Label leaking (Kurakin et al. 2017; Davchev Sec. 2.3) shows on the images the
network gets *wrong*; :func:`label_leaking` attacks every image, with either label.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from tlab.attacks.gradient import Attack, fgsm, make_attack, pgd
from tlab.cache import cached_result
from tlab.core.metrics import accuracy, adversarial_accuracy, predict
from tlab.core.zoo import ModelSpec, ZooEntry, get_or_train
from tlab.papers.davchev.setup import (
    ATTACK_COLUMNS,
    COLUMNS,
    PGD_STEP_FRACTION,
    PGD_STEPS,
    Network,
    Setup,
    source_spec,
)
from tlab.papers.evaluate import crafted_examples, eps_index


def _settings(name: str, eps: float) -> dict[str, Any]:
    """The attack's settings besides eps: PGD takes 7 steps of eps / 4 (Sec. 2.3)."""
    if name == "fgsm":
        return {}
    return {"alpha": max(PGD_STEP_FRACTION * eps, 1e-6), "steps": PGD_STEPS}


def _attack(name: str, eps: float) -> Attack:
    return make_attack(name, eps=eps, **_settings(name, eps))


def evaluate(
    spec: ModelSpec,
    substitute: ModelSpec,
    s: Setup,
    eps_list: Sequence[float] | None = None,
    *,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The five columns of Davchev's Table 1 for one network at each eps of ``eps_list``.

    ``spec`` is the network, ``substitute`` the black-box attacker's model; ``eps_list``
    defaults to the preset's ``eps_grid``. Cached by the two zoo keys and the settings, so a
    warm call reads one small file and loads no model; on a miss the models come from the zoo
    (trained if needed). Returns ``{"eps": [...], "Natural": a, "BB-FGSM": [...],
    "BB-PGD": [...], "WB-FGSM": [...], "WB-PGD": [...]}``, accuracies as fractions of all
    evaluation images (see the module docstring).
    """
    data = s.eval_set()
    eps_list = [float(e) for e in (s.eps_grid if eps_list is None else eps_list)]
    recipe = {
        "network": spec.key(),
        "substitute": substitute.key(),
        "data": data.recipe(),
        "eps": eps_list,
        "pgd_steps": PGD_STEPS,
        "alpha_fraction": PGD_STEP_FRACTION,
    }

    def compute() -> dict[str, Any]:
        model = get_or_train(spec, device=device, progress=progress).model
        attacker = get_or_train(substitute, device=device, progress=progress)
        x, y = data.tensors(next(model.parameters()).device)
        clean_ok = predict(model, x) == y
        row: dict[str, Any] = {"eps": eps_list, "Natural": clean_ok.float().mean().item()}
        for attack in ("fgsm", "pgd"):
            bb, wb = [], []
            for eps in eps_list:
                x_bb = crafted_examples(attacker, data, attack, eps, **_settings(attack, eps)).to(
                    x.device
                )
                bb.append((clean_ok & (predict(model, x_bb) == y)).float().mean().item())
                wb.append(
                    adversarial_accuracy(model, x, y, _attack(attack, eps)).adversarial_accuracy_all
                )
            row[f"BB-{attack.upper()}"], row[f"WB-{attack.upper()}"] = bb, wb
        return row

    return cached_result("davchev-row", recipe, compute)


def label_leaking(
    spec: ModelSpec, s: Setup, *, device: torch.device | str | None = None, progress: bool = False
) -> dict[str, float]:
    """Clean and white-box accuracy on *every* evaluation image, true vs predicted labels.

    Kurakin et al. (2017; Davchev Sec. 2.3): a network FGSM-trained with true labels can score
    higher on FGSM examples made with the true label than on the clean images, because the
    perturbation carries the label. With the network's own prediction as the label the effect
    disappears. Cached; accuracies at the preset's ``eps`` (PGD with true labels for reference).
    """
    data = s.eval_set()
    recipe = {
        "network": spec.key(),
        "data": data.recipe(),
        "eps": s.eps,
        "pgd_steps": PGD_STEPS,
        "alpha_fraction": PGD_STEP_FRACTION,
    }

    def compute() -> dict[str, float]:
        model = get_or_train(spec, device=device, progress=progress).model
        x, y = data.tensors(next(model.parameters()).device)
        step = PGD_STEP_FRACTION * s.eps
        return {
            "clean": accuracy(model, x, y),
            "fgsm_true_labels": accuracy(model, fgsm(model, x, y, eps=s.eps), y),
            "fgsm_predicted_labels": accuracy(model, fgsm(model, x, None, eps=s.eps), y),
            "pgd_true_labels": accuracy(
                model, pgd(model, x, y, eps=s.eps, alpha=step, steps=PGD_STEPS), y
            ),
        }

    return cached_result("davchev-label-leaking", recipe, compute)


@dataclass(frozen=True)
class Lab:
    """One preset's networks: zoo entries and cached table rows, trained/evaluated on demand."""

    setup: Setup
    device: torch.device | str | None = None
    progress: bool = False

    def source(self, mode: str, seed: int = 0, *, fgsm_labels: str = "predicted") -> ZooEntry:
        """The source network trained ``mode`` on the source domain."""
        return get_or_train(
            source_spec(self.setup, mode, seed, fgsm_labels=fgsm_labels),
            device=self.device,
            progress=self.progress,
        )

    def substitute(self) -> ZooEntry:
        """The black-box attacker's DenseNet on the target domain."""
        return get_or_train(
            self.setup.spec("substitute"), device=self.device, progress=self.progress
        )

    def entry(self, network: Network, seed: int = 0) -> ZooEntry:
        """The trained ``network`` (from the zoo, or trained now)."""
        return get_or_train(
            self.setup.spec(network, seed), device=self.device, progress=self.progress
        )

    def row(self, network: Network, seed: int = 0) -> dict[str, Any]:
        """:func:`evaluate` for ``network`` trained with ``seed``.

        The first seed of the preset is evaluated at every eps of ``eps_grid`` (the widgets
        read those); other seeds only at the training eps, which is all the claims need.
        """
        s = self.setup
        grid = s.eps_grid if seed == s.seeds[0] else (s.eps,)
        return evaluate(
            s.spec(network, seed),
            s.spec("substitute"),
            s,
            grid,
            device=self.device,
            progress=self.progress,
        )

    def table(
        self, networks: Iterable[Network], seed: int = 0, eps: float | None = None
    ) -> pd.DataFrame:
        """Davchev's Table 1 for ``networks`` at ``eps`` (default: the training eps), in [0, 1]."""
        return table(
            {n.label(self.setup.depth): self.row(n, seed) for n in networks},
            self.setup.eps if eps is None else eps,
        )

    def leaking(self, network: Network, seed: int = 0) -> dict[str, float]:
        """:func:`label_leaking` for ``network`` trained with ``seed``."""
        return label_leaking(
            self.setup.spec(network, seed),
            self.setup,
            device=self.device,
            progress=self.progress,
        )


def table(rows: dict[str, dict[str, Any]], eps: float) -> pd.DataFrame:
    """Rows from :func:`evaluate` as a table at ``eps`` (index: network, columns: COLUMNS)."""
    out = {}
    for name, row in rows.items():
        index = eps_index(row["eps"], eps)
        out[name] = {
            "Natural": row["Natural"],
            **{column: row[column][index] for column in ATTACK_COLUMNS},
        }
    return pd.DataFrame.from_dict(out, orient="index", columns=list(COLUMNS))
