"""Study: which embedded (offline) source/target setup shows Zhang et al.'s effects on a CPU?

Zhang et al., "Two Sides of the Same Coin", KDD 2020. For one setup (domains A -> B, optionally
a common initialiser C) and several seeds this script trains, through the tlab zoo (so a rerun
only evaluates), per seed ``s``:

- ``A``: a DTN trained from scratch on ``n_A`` images of domain A (the attacker's model, Sec. 3.4);
- ``Scratch``: model B trained from scratch on ``n_B`` images of domain B (Sec. 3.2, Fig. 1a);
- ``FT-k``: model B fine-tuned from ``A`` with its first ``k`` stages frozen (Fig. 1b; the
  authors' code froze every restored layer, i.e. ``k = 4`` for the DTN's 4 stages);
- with ``--common``: ``C`` trained on domain C, and ``A_ci`` / ``CommonInit`` trained on A / B
  from ``C`` (all but the classifier copied, Fig. 1c).

and measures on B's test set, for every FGSM eps (in [0, 1] pixel units: half of Zhang's
[-1, 1] values):

- clean accuracy (claim Z1),
- white-box FGSM adversarial accuracy on the correctly classified inputs (Sec. 4.2; Z2),
- black-box FGSM crafted on the model's A (``A`` for Scratch and FT, ``A_ci`` for CommonInit),
  evaluated on B (Sec. 3.4.2, Fig. 4; Z3). For Scratch, ``A`` is simply a source-domain model B
  never saw. A control, ``FT-k<-A'``, attacks FT-k with the A of the *next* seed (a source model
  it was not fine-tuned from) to separate "crafted on my own source" from "crafted on any model
  of domain A";
- gamma = (a_b - a_w) / a_w (Sec. 3.5, Fig. 5; Z4),
- the same for ``A on B``: model A itself applied to B's test set (A and B share their classes),
  i.e. what B would be with no fine-tuning at all; its gamma is 0 by construction,
- mean and median input-gradient norm ``||grad_x CE||_2`` over the test set (Sec. 7; Z6),

then prints mean +- std over seeds, the claims Z1-Z6 with per-seed agreement counts, and wall
times. ``--n-b`` with several values gives claim Z5 (the FT advantage as n_B shrinks).

Seeds: seed ``s`` sets the class-balanced subsets (A, B and C) and the weight initialisation
and batch order of every model of that seed; the domains themselves are fixed (the ``seed``
domain parameter, where given, is part of the domain). ``n`` counts the images *before* the
validation split: with ``val_fraction = 0.1`` (the default) ``n_B = 100`` trains on 90 images
and early-stops on 10.

Examples (see docs/zhang_default.md for the configurations studied)::

    python studies/zhang_default.py --setup syn2syngrey --seeds 0 1 2
    python studies/zhang_default.py --setup syn2digits --frozen 0 4 --n-b 50 100 200 --seeds 0 1 2
    python studies/zhang_default.py --source "syndigits:colour=false" --target digits \\
        --b-optimizer sgd --b-lr 0.01 --b-weight-decay 5e-4
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlab.attacks.gradient import fgsm
from tlab.core.data import load_domain, parse_domain
from tlab.core.metrics import gamma, input_gradient_norms, predict
from tlab.core.train import TrainConfig
from tlab.core.zoo import ModelSpec, get_or_train

#: Zhang et al.'s budgets 2/255 ... 32/255 in [-1, 1] space, i.e. 1/255 ... 16/255 in [0, 1].
DEFAULT_EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)

#: Named setups: (domain A, domain B, domain C or None). Domain strings: "name:key=value,...".
SETUPS: dict[str, tuple[str, str, str | None]] = {
    # the lab prototype: colour SynDigits -> scikit-learn's (smooth, upsampled 8x8) digits
    "syn2digits": ("syndigits", "digits", "letters"),
    "syngrey2digits": ("syndigits:colour=false", "digits", "letters:colour=false"),
    # SVHN -> MNIST-like: colour rendered digits -> grey rendered digits (other fonts draw)
    "syn2syngrey": ("syndigits", "syndigits:colour=false,seed=1,n_test=1000", "letters"),
    # same style, other draw: the "more similar source" end of Zhang's Fig. 8
    "syngrey2syngrey": (
        "syndigits:colour=false",
        "syndigits:colour=false,seed=1,n_test=1000",
        "letters:colour=false",
    ),
}


@dataclass(frozen=True)
class Setup:
    """One configuration of the study (everything but the seed)."""

    source: str
    target: str
    common: str | None
    n_a: int
    n_c: int
    n_b: int
    frozen: tuple[int, ...]
    train_a: TrainConfig
    train_b: TrainConfig
    eps: tuple[float, ...] = DEFAULT_EPS
    arch: str = "dtn"
    c_seed: int | None = None

    def specs(self, seed: int) -> dict[str, ModelSpec]:
        """Every model of one seed, by role name (``A``, ``Scratch``, ``FT-k``, ...)."""
        a_name, a_params = parse_domain(self.source)
        b_name, b_params = parse_domain(self.target)
        cfg_a = replace(self.train_a, seed=seed)
        cfg_b = replace(self.train_b, seed=seed)
        spec_a = ModelSpec(
            domain=a_name,
            domain_params=a_params,
            arch=self.arch,
            n=self.n_a,
            subset_seed=seed,
            train=cfg_a,
        )
        b = dict(
            domain=b_name,
            domain_params=b_params,
            arch=self.arch,
            n=self.n_b,
            subset_seed=seed,
            train=cfg_b,
        )
        out = {"A": spec_a, "Scratch": ModelSpec(**b)}
        for k in self.frozen:
            out[f"FT-{k}"] = ModelSpec(**b, strategy="finetune", source=spec_a, frozen=k)
        if self.common is not None:
            c_name, c_params = parse_domain(self.common)
            c_seed = seed if self.c_seed is None else self.c_seed
            spec_c = ModelSpec(
                domain=c_name,
                domain_params=c_params,
                arch=self.arch,
                n=self.n_c,
                subset_seed=c_seed,
                train=replace(self.train_a, seed=c_seed),
            )
            out["C"] = spec_c
            out["A_ci"] = ModelSpec(
                domain=a_name,
                domain_params=a_params,
                arch=self.arch,
                n=self.n_a,
                subset_seed=seed,
                train=cfg_a,
                strategy="commoninit",
                source=spec_c,
            )
            out["CommonInit"] = ModelSpec(**b, strategy="commoninit", source=spec_c)
        return out


def attacker_of(role: str) -> str:
    """The source model whose FGSM examples attack ``role`` in the black-box setting."""
    return "A_ci" if role == "CommonInit" else "A"


class Evaluator:
    """Evaluates B models on B's test set, crafting each black-box set once per (A, eps).

    FGSM in eval mode with a summed loss is per-example (``tlab.core.inputs.input_gradient``), so
    the examples crafted on A for the whole test set, restricted to the inputs a model B gets
    right, are exactly what ``tlab.core.metrics.blackbox_accuracy`` would craft for that B.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, eps: tuple[float, ...]) -> None:
        self.x, self.y, self.eps = x, y, eps
        self._crafted: dict[tuple[str, float], torch.Tensor] = {}

    def crafted(self, key: str, model: torch.nn.Module, eps: float) -> torch.Tensor:
        if (key, eps) not in self._crafted:
            self._crafted[(key, eps)] = fgsm(model, self.x, self.y, eps=eps, batch_size=500)
        return self._crafted[(key, eps)]

    def evaluate(
        self, key: str, model: torch.nn.Module, attackers: dict[str, tuple[str, torch.nn.Module]]
    ) -> dict[str, Any]:
        """Clean, white-box and black-box (one per attacker) accuracies, gamma, grad norms."""
        correct = predict(model, self.x) == self.y
        n_correct = int(correct.sum())
        row: dict[str, Any] = {"clean": n_correct / len(self.y)}
        for eps in self.eps:
            tag = f"{eps * 255:g}"
            white = predict(model, self.crafted(key, model, eps)[correct]) == self.y[correct]
            row[f"wb@{tag}"] = float(white.float().mean())
            for name, (a_key, a_model) in attackers.items():
                black = (
                    predict(model, self.crafted(a_key, a_model, eps)[correct]) == self.y[correct]
                )
                row[f"{name}@{tag}"] = float(black.float().mean())
            if "bb" in attackers:
                row[f"gamma@{tag}"] = gamma(row[f"bb@{tag}"], row[f"wb@{tag}"])
        norms = input_gradient_norms(model, self.x, self.y)
        row["grad_mean"] = float(norms.mean())
        row["grad_median"] = float(norms.median())
        return row


def run_seed(
    setup: Setup, seed: int, next_seed: int | None, *, progress: bool
) -> list[dict[str, Any]]:
    """Train (or load) every model of one seed and evaluate the B models."""
    specs = setup.specs(seed)
    models, times = {}, {}
    for role, spec in specs.items():
        start = time.perf_counter()
        entry = get_or_train(spec, device="cpu", progress=progress)
        models[role] = (entry.key, entry.model)
        metrics = entry.meta["metrics"]
        times[role] = {
            "wall_s": time.perf_counter() - start,
            "cached": entry.from_cache,
            "train_s": metrics["train_seconds"],
            "epochs_run": metrics["epochs_run"],
            "best_epoch": metrics["best_epoch"],
            "test_acc": metrics["test_accuracy"],
        }
    other_a = None
    if next_seed is not None:
        spec = setup.specs(next_seed)["A"]
        entry = get_or_train(spec, device="cpu", progress=progress)
        other_a = (entry.key, entry.model)
    b_name, b_params = parse_domain(setup.target)
    test = load_domain(b_name, **b_params).test
    ev = Evaluator(test.floats(), test.labels, setup.eps)
    rows = [
        {"seed": seed, "model": role, **times[role]} for role in ("A", "C", "A_ci") if role in specs
    ]
    roles = ["A"] + [r for r in specs if r not in ("A", "C", "A_ci")]  # "A" = A on B
    for role in roles:
        attackers = {"bb": models[attacker_of(role)]}
        if other_a is not None and role != "CommonInit":
            attackers["bb_other"] = other_a
        start = time.perf_counter()
        row = ev.evaluate(models[role][0], models[role][1], attackers)
        info = {} if role == "A" else times[role]  # A's training record is in its own row
        rows.append(
            {
                "seed": seed,
                "model": "A on B" if role == "A" else role,
                **info,
                **row,
                "eval_s": time.perf_counter() - start,
            }
        )
    return rows


# ---------------------------------------------------------------------------------- reporting


def mean_std(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    arr = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return "nan"
    std = arr.std(ddof=1) if arr.size > 1 else 0.0
    return f"{arr.mean() * scale:.{digits}f}±{std * scale:.{digits}f}"


def by_model(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["model"], []).append(row)
    return out


def print_table(
    title: str,
    groups: dict[str, list[dict[str, Any]]],
    columns: list[str],
    scale: float = 100.0,
    digits: int = 1,
) -> None:
    print(f"\n{title}")
    width = max(len(m) for m in groups) + 2
    print(" " * width + "".join(f"{c:>14s}" for c in columns))
    for model, rows in groups.items():
        if not any(c in r for r in rows for c in columns):
            continue
        cells = [mean_std([r.get(c) for r in rows], scale, digits) for c in columns]
        print(f"{model:<{width}s}" + "".join(f"{c:>14s}" for c in cells))


def paired(groups: dict[str, list[dict[str, Any]]], a: str, b: str, column: str) -> np.ndarray:
    """Per-seed differences ``a[column] - b[column]`` (seeds matched)."""
    left = {r["seed"]: r[column] for r in groups[a]}
    right = {r["seed"]: r[column] for r in groups[b]}
    return np.array([left[s] - right[s] for s in sorted(left) if s in right], dtype=float)


def bb_drop(rows: list[dict[str, Any]], lo: str, hi: str) -> np.ndarray:
    """Per-seed fall of black-box accuracy from eps ``lo`` to eps ``hi`` (seed order)."""
    ordered = sorted(rows, key=lambda r: r["seed"])
    return np.array([r[f"bb@{lo}"] - r[f"bb@{hi}"] for r in ordered], dtype=float)


def verdict(diffs: np.ndarray, scale: float = 100.0, unit: str = "pts") -> str:
    """``holds`` if every seed agrees (diff > 0), ``reversed`` if every seed disagrees."""
    agree = int((diffs > 0).sum())
    label = "holds" if agree == len(diffs) else "reversed" if agree == 0 else "mixed"
    digits = 1 if scale == 100.0 else 3
    return (
        f"{label} ({agree}/{len(diffs)} seeds; diff {mean_std(list(diffs), scale, digits)} {unit})"
    )


def report_claims(groups: dict[str, list[dict[str, Any]]], eps: tuple[float, ...]) -> None:
    """Z1-Z4 and Z6 for one n_B (Z5 needs several n_B, see ``report_nb``)."""
    tags = [f"{e * 255:g}" for e in eps]
    lo, hi = tags[0], tags[-1]
    big = [t for t, e in zip(tags, eps, strict=True) if e >= 4 / 255]
    print("\nclaims (per-seed paired differences, percentage points)")
    for ft in [m for m in groups if m.startswith("FT-") or m == "CommonInit"]:
        if ft.startswith("FT-"):
            print(f"  Z1 clean {ft} > Scratch: {verdict(paired(groups, ft, 'Scratch', 'clean'))}")
            for t in big:
                print(
                    f"  Z2 WB@{t}/255 {ft} > Scratch: "
                    f"{verdict(paired(groups, ft, 'Scratch', f'wb@{t}'))}"
                )
            gaps = [paired(groups, ft, "Scratch", f"wb@{t}").mean() * 100 for t in tags]
            peak = tags[int(np.argmax(gaps))]
            print(
                f"  Z2 WB gap {ft} - Scratch by eps: "
                + ", ".join(f"{t}/255: {g:+.1f}" for t, g in zip(tags, gaps, strict=True))
                + f" pts (largest at {peak}/255)"
            )
        if len(tags) > 1:
            print(
                f"  Z3 BB drop {lo}->{hi} {ft} > Scratch: "
                f"{verdict(bb_drop(groups[ft], lo, hi) - bb_drop(groups['Scratch'], lo, hi))}"
            )
        print(f"  Z3 BB@{hi} Scratch > {ft}: {verdict(paired(groups, 'Scratch', ft, f'bb@{hi}'))}")
        for t in big:
            g = paired(groups, "Scratch", ft, f"gamma@{t}")
            neg = sum(r[f"gamma@{t}"] < 0 for r in groups[ft])
            print(
                f"  Z4 gamma@{t} {ft} < Scratch: {verdict(g, 1.0, '')}; "
                f"gamma<0 in {neg}/{len(groups[ft])} seeds"
            )
        if ft.startswith("FT-"):
            g = paired(groups, "Scratch", ft, "grad_mean")
            print(f"  Z6 grad norm {ft} < Scratch: {verdict(g, 1.0, '')}")


def report_nb(results: dict[int, dict[str, list[dict[str, Any]]]], eps_tag: str) -> None:
    """Z5: FT - Scratch advantage (clean and white-box) for each n_B."""
    print(f"\nZ5: FT - Scratch advantage by n_B (percentage points, white-box at {eps_tag}/255)")
    fts = sorted({m for g in results.values() for m in g if m.startswith("FT-")})
    for ft in fts:
        for n_b, groups in sorted(results.items()):
            if ft not in groups:
                continue
            clean = paired(groups, ft, "Scratch", "clean")
            white = paired(groups, ft, "Scratch", f"wb@{eps_tag}")
            print(
                f"  {ft:6s} n_B={n_b:5d}: clean {mean_std(list(clean))}  WB {mean_std(list(white))}"
            )


def report(rows: list[dict[str, Any]], setup: Setup) -> None:
    groups = by_model(rows)
    tags = [f"{e * 255:g}" for e in setup.eps]
    print(
        f"\n=== A={setup.source} -> B={setup.target}  C={setup.common}  n_A={setup.n_a} "
        f"n_B={setup.n_b} seeds={sorted({r['seed'] for r in rows})}"
    )
    print_table("test accuracy of every model (%)", groups, ["test_acc"])
    b_groups = {m: g for m, g in groups.items() if "clean" in g[0]}
    print_table(
        "white-box FGSM adversarial accuracy (%), eps x 255 in [0,1] units",
        b_groups,
        ["clean"] + [f"wb@{t}" for t in tags],
    )
    print_table("black-box FGSM from the model's A (%)", b_groups, [f"bb@{t}" for t in tags])
    print_table(
        "black-box control: FT attacked by another seed's A (%)",
        b_groups,
        [f"bb_other@{t}" for t in tags],
    )
    print_table("gamma = (a_b - a_w) / a_w", b_groups, [f"gamma@{t}" for t in tags], 1.0, 2)
    print_table(
        "input-gradient norm ||grad_x CE||_2 (mean, median)",
        b_groups,
        ["grad_mean", "grad_median"],
        1.0,
        3,
    )
    print_table(
        "training: epochs run, best epoch, train seconds",
        groups,
        ["epochs_run", "best_epoch", "train_s"],
        1.0,
        0,
    )
    report_claims(b_groups, setup.eps)


# ---------------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--setup",
        choices=sorted(SETUPS),
        default="syn2syngrey",
        help="named domains (A, B, C); --source/--target/--common override",
    )
    p.add_argument("--source", help="domain A, e.g. 'syndigits:colour=false'")
    p.add_argument("--target", help="domain B, e.g. 'digits'")
    p.add_argument("--common", help="domain C for CommonInit, or 'none'")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-a", type=int, default=3000, help="images of A (and of A for A_ci)")
    p.add_argument("--n-c", type=int, default=3000, help="images of C")
    p.add_argument(
        "--c-seed",
        type=int,
        help="train one C with this seed for every seed (a shared public model); "
        "default: one C per seed",
    )
    p.add_argument("--n-b", type=int, nargs="+", default=[100], help="one or more n_B (Z5)")
    p.add_argument(
        "--frozen",
        type=int,
        nargs="+",
        default=[0, 4],
        help="frozen leading stages of the FT models (DTN has 4)",
    )
    p.add_argument(
        "--eps",
        type=float,
        nargs="+",
        default=[e * 255 for e in DEFAULT_EPS],
        help="FGSM budgets x 255, in [0, 1] pixel units",
    )
    for who, epochs, patience, batch in (("a", 10, 3, 128), ("b", 60, 15, 32)):
        p.add_argument(f"--{who}-epochs", type=int, default=epochs)
        p.add_argument(
            f"--{who}-patience",
            type=int,
            default=patience,
            help="early-stopping patience in epochs (0 = none)",
        )
        p.add_argument(f"--{who}-batch", type=int, default=batch)
        p.add_argument(f"--{who}-optimizer", choices=["adam", "sgd"], default="adam")
        p.add_argument(f"--{who}-lr", type=float, default=1e-3)
        p.add_argument(f"--{who}-weight-decay", type=float, default=0.0)
        p.add_argument(
            f"--{who}-val",
            type=float,
            default=0.1,
            help="validation fraction for early stopping (0 = keep last epoch)",
        )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 was fastest on the shared 2-core machine)",
    )
    p.add_argument("--out", type=Path, help="append one JSON line per model to this file")
    p.add_argument(
        "--from-jsonl",
        type=Path,
        help="only print the tables of the runs recorded in this --out file "
        "(rows of one configuration from several runs are pooled by seed)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _classes(text: str) -> tuple[str, ...]:
    name, params = parse_domain(text)
    return load_domain(name, **params).classes


def train_config(args: argparse.Namespace, who: str) -> TrainConfig:
    def get(name: str) -> Any:
        return getattr(args, f"{who}_{name}")

    return TrainConfig(
        epochs=get("epochs"),
        batch_size=get("batch"),
        optimizer=get("optimizer"),
        lr=get("lr"),
        weight_decay=get("weight_decay"),
        patience=get("patience") or None,
        val_fraction=get("val"),
    )


#: Command-line options that do not change the models or the evaluation.
_NOT_CONFIG = (
    "seeds",
    "out",
    "quiet",
    "threads",
    "from_jsonl",
    "setup",
    "source",
    "target",
    "common",
)


def report_recorded(path: Path) -> None:
    """Print the tables of every configuration recorded in a ``--out`` file."""
    configs: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        config = {k: v for k, v in row["args"].items() if k not in _NOT_CONFIG}
        config.update(
            source=row["source"], target=row["target"], common=row["common"], n_b=row["n_b"]
        )
        configs.setdefault(json.dumps(config, sort_keys=True), []).append(row)
    for text, rows in configs.items():
        config = json.loads(text)
        args = argparse.Namespace(**config)
        setup = Setup(
            source=config["source"],
            target=config["target"],
            common=config["common"],
            n_a=config["n_a"],
            n_c=config["n_c"],
            n_b=config["n_b"],
            frozen=tuple(config["frozen"]),
            train_a=train_config(args, "a"),
            train_b=train_config(args, "b"),
            eps=tuple(e / 255 for e in config["eps"]),
            c_seed=config.get("c_seed"),
        )
        unique = {(r["seed"], r["model"]): r for r in rows}  # a rerun replaces a seed's row
        print(f"\n# options: {text}")
        report(list(unique.values()), setup)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.from_jsonl is not None:
        report_recorded(args.from_jsonl)
        return 0
    torch.set_num_threads(args.threads)
    source, target, common = SETUPS[args.setup]
    source = args.source or source
    target = args.target or target
    if args.common is not None:
        common = None if args.common == "none" else args.common
    eps = tuple(e / 255 for e in args.eps)
    if _classes(source) != _classes(target):
        raise SystemExit(
            "domains A and B must share their classes: the black-box attack feeds "
            "A's examples to B and compares labels (Zhang et al. 2020, Sec. 3.4.2)"
        )
    per_nb: dict[int, dict[str, list[dict[str, Any]]]] = {}
    start_all = time.perf_counter()
    for n_b in args.n_b:
        setup = Setup(
            source=source,
            target=target,
            common=common,
            n_a=args.n_a,
            n_c=args.n_c,
            n_b=n_b,
            frozen=tuple(args.frozen),
            train_a=train_config(args, "a"),
            train_b=train_config(args, "b"),
            eps=eps,
            c_seed=args.c_seed,
        )
        rows = []
        for i, seed in enumerate(args.seeds):
            next_seed = args.seeds[(i + 1) % len(args.seeds)] if len(args.seeds) > 1 else None
            start = time.perf_counter()
            seed_rows = run_seed(setup, seed, next_seed, progress=not args.quiet)
            print(f"[n_B={n_b} seed {seed}: {time.perf_counter() - start:.0f} s]", file=sys.stderr)
            rows += seed_rows
            if args.out is not None:
                with args.out.open("a") as handle:
                    for row in seed_rows:
                        handle.write(
                            json.dumps(
                                {
                                    "source": source,
                                    "target": target,
                                    "common": common,
                                    "n_a": args.n_a,
                                    "n_b": n_b,
                                    "args": vars(args),
                                    **row,
                                },
                                default=str,
                            )
                            + "\n"
                        )
        report(rows, setup)
        per_nb[n_b] = by_model([r for r in rows if "clean" in r])
    if len(per_nb) > 1:
        report_nb(per_nb, f"{eps[min(3, len(eps) - 1)] * 255:g}")
    print(
        f"\ntotal wall time {time.perf_counter() - start_all:.0f} s "
        f"({torch.get_num_threads()} thread(s))"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
