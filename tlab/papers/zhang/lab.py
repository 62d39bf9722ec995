"""Zhang et al. (KDD 2020): the cached evaluations of notebooks 02-06 (white-box and black-box
FGSM, gamma and gradient norms of the models of B; the setups are in
:mod:`~tlab.papers.zhang.setup`).

Evaluation convention (Sec. 4.2): only test inputs the attacked model B classifies correctly are
attacked; adversarial accuracy is the fraction of those still classified correctly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tlab.attacks import attack_copy, fgsm_budgets
from tlab.cache import cached_result
from tlab.checks import check_choice
from tlab.core.metrics import gamma, input_gradient_norms, predict
from tlab.core.zoo import ZooEntry, get_or_train
from tlab.errors import TlabError
from tlab.papers.evaluate import EvalSet, crafted_fgsm, eps_index
from tlab.papers.zhang.setup import TARGET_ROLES, Setup


@dataclass
class Lab:
    """One setup's models, trained on demand through the zoo, and their cached evaluations."""

    setup: Setup
    device: torch.device | str | None = None
    progress: bool = False

    def entry(self, role: str, seed: int = 0, frozen: int = 0) -> ZooEntry:
        """The trained model of ``role`` (from the zoo, or trained now)."""
        return get_or_train(
            self.setup.spec(role, seed, frozen), device=self.device, progress=self.progress
        )

    def evaluate(self, role: str, seed: int = 0, frozen: int = 0) -> dict[str, Any]:
        """Clean, white-box and black-box FGSM accuracy, gamma and gradient norms of a B model.

        ``role`` is ``"Scratch"``, ``"FT"``, ``"CommonInit"`` or ``"A on B"`` (A applied to B
        unchanged: its black-box attack *is* white-box). Cached by the zoo keys and settings,
        so a warm call reads one small JSON file. Returns ``{"clean", "eps": [...], "wb": [...],
        "bb": [...], "gamma": [...] (NaN where white-box accuracy is 0), "grad_norms": [...],
        "correct": [...], "wb_fooled": [[...] per eps], "best_epoch", "epochs_run"}``: accuracies
        are fractions; the per-image lists (one entry per evaluation image) feed the histograms
        of notebook 06.
        """
        s = self.setup
        on_b = role == "A on B"
        if not on_b:
            check_choice("target role", role, TARGET_ROLES)
        spec = s.spec("A", seed) if on_b else s.spec(role, seed, frozen)
        attacker = s.spec("A", seed) if on_b else s.attacker(role, seed)
        data = s.eval_set()
        recipe = {
            "model": spec.key(),
            "attacker": attacker.key(),
            "data": data.recipe(),
            "eps": list(s.eps_grid),
            "on_b": on_b,
        }

        def compute() -> dict[str, Any]:
            entry = get_or_train(spec, device=self.device, progress=self.progress)
            source = get_or_train(attacker, device=self.device, progress=self.progress)
            own = self._own_evaluation(entry, data, role, seed)
            _, y = data.tensors(next(entry.model.parameters()).device)
            correct = torch.tensor(own["correct"], dtype=torch.bool, device=y.device)
            y_ok = y[correct]
            row: dict[str, Any] = {**own, "eps": list(s.eps_grid), "bb": [], "gamma": []}
            black = crafted_fgsm(source, data, s.eps_grid)  # every image, shared by B's models
            for a_w, x_black in zip(own["wb"], black, strict=True):
                a_b = float((predict(entry.model, x_black[correct]) == y_ok).float().mean())
                row["bb"].append(a_b)
                row["gamma"].append(gamma(a_b, a_w) if a_w > 0 else float("nan"))
            metrics = entry.meta["metrics"]
            row["best_epoch"], row["epochs_run"] = metrics["best_epoch"], metrics["epochs_run"]
            return row

        return cached_result("zhang-eval", recipe, compute)

    def _own_evaluation(
        self, entry: ZooEntry, data: EvalSet, role: str, seed: int
    ) -> dict[str, Any]:
        """What a model's evaluation owes to the model alone, whoever attacks it black-box
        (cached apart, so a Scratch model scored against several sources is attacked once):
        ``clean``, ``correct`` (per image), white-box FGSM accuracy ``wb`` and ``wb_fooled`` per
        eps, and the input-gradient norms ``grad_norms``."""
        s = self.setup
        recipe = {"model": entry.key, "data": data.recipe(), "eps": list(s.eps_grid)}

        def compute() -> dict[str, Any]:
            model = entry.model
            x, y = data.tensors(next(model.parameters()).device)
            correct = predict(model, x) == y
            if not bool(correct.any()):
                raise TlabError(
                    f"{role} (seed {seed}) classifies no evaluation image correctly; "
                    "nothing to attack -- train it longer (a larger preset)"
                )
            crafting = attack_copy(model)  # same function, faster gradients (papers.evaluate)
            # only the correctly classified inputs are attacked (Sec. 4.2): one input gradient
            # serves every eps (fgsm_budgets); scored on the model itself
            x_ok, y_ok = x[correct], y[correct]
            wb, wb_fooled = [], []
            for x_white in fgsm_budgets(crafting, x_ok, y_ok, eps_list=s.eps_grid):
                white_ok = predict(model, x_white) == y_ok
                wb.append(float(white_ok.float().mean()))
                fooled = torch.zeros_like(correct)
                fooled[correct] = ~white_ok
                wb_fooled.append(fooled.tolist())
            return {
                "clean": float(correct.float().mean()),
                "correct": correct.tolist(),
                "wb": wb,
                "wb_fooled": wb_fooled,
                "grad_norms": input_gradient_norms(model, x, y).tolist(),
            }

        return cached_result("zhang-eval-own", recipe, compute)

    def source_accuracy(self, role: str = "A", seed: int = 0) -> float:
        """Test accuracy of a source model on its own domain (from the zoo's metadata)."""
        check_choice("source role", role, ("A", "C", "A_ci"))
        return float(self.entry(role, seed).meta["metrics"]["test_accuracy"])

    def across_seeds(
        self, role: str, key: str, eps: float | None = None, frozen: int = 0
    ) -> list[float]:
        """``evaluate(role, seed, frozen)[key]`` for every seed (at ``eps`` for per-eps keys)."""
        out = []
        for seed in self.setup.seeds:
            row = self.evaluate(role, seed, frozen)
            value = row[key]
            out.append(float(value[eps_index(row["eps"], eps)] if eps is not None else value))
        return out
