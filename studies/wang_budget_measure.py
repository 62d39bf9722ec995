"""Study: does the measure behind the DSSIM budget decide claims W1 and W2 (Wang et al. 2018)?

Wang et al.'s code bounds the perturbation with a 5-scale DSSIM whose window shrinks to fit small
images (``msssim_tf.py``; tlab: ``budget_kind="ms_dssim"``); the lab's notebooks use the
single-scale DSSIM (``"dssim"``), which is about 14x larger on the same pixel noise
(:mod:`tlab.attacks.msssim`), so the same P is that much tighter. This script runs the targeted
mimicry attack of notebook 09 under both measures at the same budgets, for every attacked layer,
every student kind and several teacher seeds, and prints the success rates and the W1 / W2
verdicts (:mod:`tlab.papers.wang.verdicts`) under each measure.

    python studies/wang_budget_measure.py                      # quick preset, seeds 0-2
    python studies/wang_budget_measure.py --preset standard --pairs 20
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from tlab.papers import wang
from tlab.papers.claims import claims_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=["quick", "standard"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.001, 0.003, 0.01])
    args = parser.parse_args()
    setup = wang.setup(args.preset)
    lab = wang.Lab(setup, progress=True)
    rows = []
    verdicts = {}
    start = time.perf_counter()
    for measure in ("dssim", "ms_dssim"):
        grids = {}
        for seed in args.seeds:
            seed_lab = lab.seed(seed)
            layers = list(range(1, seed_lab.num_stages + 1))
            attack = setup.attack(layers[-1], args.budgets[0], budget_kind=measure)
            grids[seed] = wang.targeted_table(
                seed_lab, layers, args.budgets, attack, n_pairs=args.pairs
            )
            rows += [{**r, "measure": measure, "seed": seed} for r in grids[seed]]
        for budget in args.budgets:
            claims = wang.verdicts.attack_claims(grids, seed_lab.frozen, layers, budget)
            verdicts[(measure, budget)] = claims_table(claims)["verdict"].tolist()
    table = pd.DataFrame(rows)
    at_k = table[
        table.apply(lambda r: r["layer"] == (r["frozen"] or table["layer"].max()), axis=1)
    ]
    print(
        f"{args.preset} preset, seeds {args.seeds}, {args.pairs} pairs, "
        f"{setup.steps} steps, lr {setup.attack_lr}; {time.perf_counter() - start:.0f} s"
    )
    print("\ntargeted success at each student's K (mean over seeds), by budget measure:")
    print(
        at_k.pivot_table(index=["student", "budget"], columns="measure", values="success")
        .mul(100)
        .round(1)
        .to_string()
    )
    print("\nsingle-scale DSSIM of the crafted images (mean), by budget measure:")
    print(at_k.pivot_table(index="budget", columns="measure", values="dssim").to_string())
    print("\nverdicts [W1, W2] by (measure, budget):")
    for key, value in verdicts.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
