"""Run every benchmark once on this machine and print ratios against same-run baselines.

    python benchmarks/run.py            # full sizes (a few minutes on 2 cores)
    python benchmarks/run.py --quick    # smaller sizes, for a smoke check

Speed is measured here, never in timed tests.
"""

from __future__ import annotations

import argparse

import attacks  # benchmarks/attacks.py (the script's folder is on sys.path)
import mimicry  # benchmarks/mimicry.py
import torch
import training  # benchmarks/training.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    rows = training.run(args.quick) + attacks.run(args.quick) + mimicry.run(args.quick)
    print(f"{'benchmark':40s} {'tlab':>10s} {'baseline':>10s} {'ratio':>7s} {'goal':>6s}  baseline")
    for r in rows:
        extra = f", cpu-time ratio {r['ratio_cpu_time']:.2f}x" if "ratio_cpu_time" in r else ""
        if r["goal"] is None:   # a row that explains another (no goal of its own)
            goal, status = "    -", ""
        else:
            goal = f"{r['goal']:5.1f}x"
            status = "  [ok]" if r["ratio"] >= r["goal"] else "  [BELOW GOAL]"
        print(f"{r['benchmark']:40s} {r['tlab']:10.1f} {r['baseline']:10.1f} {r['ratio']:6.2f}x "
              f"{goal}  {r['baseline_name']}{extra}{status}")


if __name__ == "__main__":
    main()
