"""Davchev et al. (ICML 2019 workshop): the cached Table 1 evaluation of notebooks 07 and 08.

Accuracy convention of the table (Davchev's Table 1). Every evaluation image is attacked, with
its true label, and an attack column is the fraction of *all* evaluation images whose attacked
version the network classifies correctly, whatever it predicted on the clean image. That is what
the authors' evaluation code computes (``utils/evaluation_functions.py``: ``attack_over_test_data``
perturbs every test batch with the true labels and scores the predictions on the perturbed batch;
``black_box_attack`` does the same with the substitute's examples), and it is why an attack
column can exceed Natural: their ``R_fgsm_no_ll`` reads 87.4 % clean and 88.5 % under white-box
FGSM (label leaking, Sec. 2.3), and an attack can also push a misclassified image onto its class.

A stricter view counts an image only if the network classifies it correctly both clean and after
the attack (what ``adversarial_accuracy_all`` of :mod:`tlab.core.metrics` computes: the
attacks run in eval mode with a per-image loss, so an image's adversarial version does not
depend on the others); it never exceeds Natural. Each row carries it too, in the
columns :data:`ALSO_CLEAN_COLUMNS` (e.g. ``"WB-PGD (also clean)"``), shown only when asked for.
:func:`label_leaking` compares true and predicted labels for the attack itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from tlab.attacks import Attack, attack_copy, fgsm, make_attack, pgd
from tlab.cache import cached_result
from tlab.core.metrics import DEFAULT_BATCH_SIZE, accuracy, predict
from tlab.core.zoo import ModelSpec, ZooEntry, get_or_train
from tlab.papers.davchev.setup import (
    ALSO_CLEAN_COLUMNS,
    ATTACK_COLUMNS,
    PGD_STEP_FRACTION,
    PGD_STEPS,
    Network,
    Setup,
    source_spec,
)
from tlab.papers.evaluate import EvalSet, crafted_examples, eps_index

#: Version of the rows :func:`evaluate` caches (part of their recipe). 1: the attack columns
#: counted an image only if it was also correct clean; 2: the attack columns follow Table 1
#: (every attacked image) and the both-correct view moved to :data:`ALSO_CLEAN_COLUMNS`;
#: 3: one cache entry per eps.
ROW_VERSION = 3


def _settings(name: str, eps: float) -> dict[str, Any]:
    """The attack's settings besides eps: PGD takes 7 steps of eps / 4 (Sec. 2.3)."""
    if name == "fgsm":
        return {}
    return {"alpha": max(PGD_STEP_FRACTION * eps, 1e-6), "steps": PGD_STEPS}


def _attack(name: str, eps: float, **extra: Any) -> Attack:
    """The attack of Table 1 at ``eps``; ``extra`` goes to the attack (e.g. ``batch_size``)."""
    return make_attack(name, eps=eps, **_settings(name, eps), **extra)


def evaluate(
    spec: ModelSpec,
    substitute: ModelSpec,
    s: Setup,
    eps_list: Sequence[float] | None = None,
    *,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The five columns of Davchev's Table 1 for one network at each eps of ``eps_list``, and
    the both-correct view of the four attack columns (module docstring).

    ``spec`` is the network, ``substitute`` the black-box attacker's model; ``eps_list``
    defaults to the preset's ``eps_grid``. Every evaluation image is attacked with its true
    label, white-box on the network, black-box on the substitute. Each eps is cached on its own
    (by the two zoo keys, the evaluation set, that eps and the attacks' settings), so a table
    at the training eps computes one budget and a curve over the grid adds the others; a warm
    call reads small files and loads no model; on a miss the models come from the zoo (trained
    if needed). Returns ``{"eps": [...], "Natural": a, "BB-FGSM": [...], "BB-PGD": [...],
    "WB-FGSM": [...], "WB-PGD": [...], "BB-FGSM (also clean)": [...], ...}``, fractions of all
    evaluation images.
    """
    data = s.eval_set()
    eps_list = [float(e) for e in (s.eps_grid if eps_list is None else eps_list)]
    cells = [
        _evaluate_at(spec, substitute, data, eps, device=device, progress=progress)
        for eps in eps_list
    ]
    row: dict[str, Any] = {"eps": eps_list, "Natural": cells[0]["Natural"]}
    for column in (*ATTACK_COLUMNS, *ALSO_CLEAN_COLUMNS):
        row[column] = [cell[column] for cell in cells]
    return row


def _evaluate_at(
    spec: ModelSpec,
    substitute: ModelSpec,
    data: EvalSet,
    eps: float,
    *,
    device: torch.device | str | None,
    progress: bool,
) -> dict[str, float]:
    """:func:`evaluate` at one eps: ``{"Natural": a, "BB-FGSM": a, ...}`` (cached)."""
    recipe = {
        "network": spec.key(),
        "substitute": substitute.key(),
        "data": data.recipe(),
        "eps": eps,
        "pgd_steps": PGD_STEPS,
        "alpha_fraction": PGD_STEP_FRACTION,
        "row_version": ROW_VERSION,
    }

    def compute() -> dict[str, float]:
        model = get_or_train(spec, device=device, progress=progress).model
        attacker = get_or_train(substitute, device=device, progress=progress)
        x, y = data.tensors(next(model.parameters()).device)
        crafting = attack_copy(model)  # same function, faster gradients (tlab.papers.evaluate)
        clean_ok = predict(model, x) == y
        cell = {"Natural": clean_ok.float().mean().item()}
        for attack in ("fgsm", "pgd"):
            x_bb = crafted_examples(attacker, data, attack, eps, **_settings(attack, eps))
            x_wb = _attack(attack, eps, batch_size=DEFAULT_BATCH_SIZE)(crafting, x, y)
            for kind, examples in (("BB", x_bb.to(x.device)), ("WB", x_wb)):
                ok = predict(model, examples) == y
                cell[f"{kind}-{attack.upper()}"] = ok.float().mean().item()
                cell[f"{kind}-{attack.upper()} (also clean)"] = (
                    (clean_ok & ok).float().mean().item()
                )
        return cell

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
        step, crafting = PGD_STEP_FRACTION * s.eps, attack_copy(model)
        return {
            "clean": accuracy(model, x, y),
            "fgsm_true_labels": accuracy(model, fgsm(crafting, x, y, eps=s.eps), y),
            "fgsm_predicted_labels": accuracy(model, fgsm(crafting, x, None, eps=s.eps), y),
            "pgd_true_labels": accuracy(
                model, pgd(crafting, x, y, eps=s.eps, alpha=step, steps=PGD_STEPS), y
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

    def row(
        self, network: Network, seed: int = 0, eps: Sequence[float] | None = None
    ) -> dict[str, Any]:
        """:func:`evaluate` for ``network`` trained with ``seed``, at each budget of ``eps``.

        By default only the training eps, which is all the tables and claims read; the widgets'
        curves ask for ``setup.eps_grid``. Each eps is cached on its own, so a curve reuses the
        table's budget and computes only the others.
        """
        s = self.setup
        return evaluate(
            s.spec(network, seed),
            s.spec("substitute"),
            s,
            (s.eps,) if eps is None else eps,
            device=self.device,
            progress=self.progress,
        )

    def table(
        self,
        networks: Iterable[Network],
        seed: int = 0,
        eps: float | None = None,
        *,
        also_clean: bool = False,
    ) -> pd.DataFrame:
        """Davchev's Table 1 for ``networks`` at ``eps`` (default: the training eps), in [0, 1];
        ``also_clean`` adds the both-correct columns (:func:`table`)."""
        eps = self.setup.eps if eps is None else eps
        return table(
            {n.label(self.setup.depth): self.row(n, seed, (eps,)) for n in networks},
            eps,
            also_clean=also_clean,
        )

    def leaking(self, network: Network, seed: int = 0) -> dict[str, float]:
        """:func:`label_leaking` for ``network`` trained with ``seed``."""
        return label_leaking(
            self.setup.spec(network, seed),
            self.setup,
            device=self.device,
            progress=self.progress,
        )


def table(rows: dict[str, dict[str, Any]], eps: float, *, also_clean: bool = False) -> pd.DataFrame:
    """Rows from :func:`evaluate` as a table at ``eps`` (index: network, columns: COLUMNS, the
    paper's convention; with ``also_clean``, then :data:`ALSO_CLEAN_COLUMNS`)."""
    attacks = list(ATTACK_COLUMNS) + (list(ALSO_CLEAN_COLUMNS) if also_clean else [])
    out = {}
    for name, row in rows.items():
        index = eps_index(row["eps"], eps)
        out[name] = {"Natural": row["Natural"], **{c: row[c][index] for c in attacks}}
    return pd.DataFrame.from_dict(out, orient="index", columns=["Natural", *attacks])
