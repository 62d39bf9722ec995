"""Study: how much does running FT's frozen stages in train mode change Zhang et al.'s numbers?

Zhang et al., "Two Sides of the Same Coin", KDD 2020, fine-tune B from A with the restored
layers frozen (Sec. 3.2; their code freezes every restored parameter). Their training loop puts
the whole network in train mode, so the frozen layers' BatchNorm running statistics follow
domain B and their dropout stays on; tlab's default keeps frozen stages in eval mode, i.e.
exactly A's function. ``TrainConfig(frozen_train_mode=True)`` is the authors' behaviour.

For one preset (``tlab.papers.zhang.setup``) this script trains, through the zoo, every
``FT-k`` of ``--frozen`` and ``--seeds`` in both modes (same recipe otherwise; model A is shared)
and prints, per mode, mean +- std over seeds of B's clean test accuracy, white-box FGSM
adversarial accuracy on the correctly classified inputs (Sec. 4.2) and black-box FGSM crafted on
A (Sec. 3.4.2), at every eps of the preset ([0, 1] pixel units: half the paper's values).

    python studies/zhang_frozen_bn.py                          # standard preset, FT-2 and FT-4
    python studies/zhang_frozen_bn.py --preset quick --seeds 0 --frozen 4
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from tlab.attacks.gradient import make_attack
from tlab.core.device import pick_device, torch_threads
from tlab.core.metrics import accuracy, adversarial_accuracy, blackbox_accuracy
from tlab.core.zoo import ModelSpec, get_or_train
from tlab.papers import zhang

MODES = {"eval (tlab default)": False, "train (authors' code)": True}


def _with_mode(spec: ModelSpec, frozen_train_mode: bool) -> ModelSpec:
    return dataclasses.replace(
        spec, train=dataclasses.replace(spec.train, frozen_train_mode=frozen_train_mode)
    )


def _measure(
    spec: ModelSpec, attacker: ModelSpec, s: zhang.Setup, device: str
) -> tuple[float, list[float], list[float]]:
    """Clean accuracy, then white- and black-box FGSM adversarial accuracy per eps."""
    target = get_or_train(spec, device=device, progress=False).model
    source = get_or_train(attacker, device=device, progress=False).model
    x, y = s.eval_set().tensors(device)
    white, black = [], []
    for eps in s.eps_grid:
        attack = make_attack("fgsm", eps=eps)
        white.append(adversarial_accuracy(target, x, y, attack).adversarial_accuracy)
        black.append(blackbox_accuracy(source, target, x, y, attack).adversarial_accuracy)
    return accuracy(target, x, y), white, black


def _fmt(values: list[float]) -> str:
    a = np.asarray(values, dtype=float)
    return f"{100 * a.mean():5.1f} +- {100 * a.std():4.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="standard", choices=["quick", "standard"])
    parser.add_argument("--frozen", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    s = zhang.setup(args.preset, seeds=args.seeds)
    device = str(pick_device(None))
    eps_text = ", ".join(f"{e * 255:g}" for e in s.eps_grid)
    print(
        f"{args.preset}: A = {s.source} ({s.n_a}), B = {s.target} ({s.n_b}); "
        f"seeds {list(s.seeds)}; eps {eps_text} /255"
    )
    with torch_threads(args.threads):
        for k in args.frozen:
            for label, mode in MODES.items():
                start = time.perf_counter()
                rows = [
                    _measure(
                        _with_mode(s.spec("FT", seed, k), mode), s.attacker("FT", seed), s, device
                    )
                    for seed in s.seeds
                ]
                print(
                    f"FT-{k}, frozen stages in {label}: clean {_fmt([r[0] for r in rows])}"
                    f"  [{time.perf_counter() - start:.0f} s]"
                )
                for i, eps in enumerate(s.eps_grid):
                    wb, bb = _fmt([r[1][i] for r in rows]), _fmt([r[2][i] for r in rows])
                    print(f"    eps {eps * 255:4g}/255: white-box {wb}   black-box {bb}")


if __name__ == "__main__":
    main()
