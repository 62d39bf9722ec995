"""What each notebook costs at a preset: wall time, CPU time and the kernel's peak memory.

Runs ``python -m tlab run NN --preset P`` once per notebook, in order, on one data folder
(``--data``; start from an empty one for cold times), then the same list again (warm). Each run is
its own process, reaped with :func:`os.wait4`, whose resource usage on Linux includes the
descendants it waited for: the Jupyter kernel that executed the notebook. ``ru_maxrss`` is
therefore the largest resident set among the runner and its kernel -- the kernel's, since it holds
torch and the models. Cold times are sequential: a notebook after the first of its paper finds
that paper's shared models already trained, as it would in class.

    python benchmarks/notebook_costs.py --preset quick --data /tmp/cold --out /tmp/costs \\
        00 01 02 03 04 05 06 07 08 09 10 11 12

prints a Markdown table and writes ``costs.json`` into ``--out``, then, per notebook, its
slowest cells of the cold pass (papermill's per-cell durations in the executed notebook) -- where
the time goes. Read the load first (``uptime``): the times mean something only on an idle
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def run_once(notebook: str, preset: str, data: Path, out: Path) -> dict[str, float | str]:
    """One ``tlab run`` of ``notebook`` in its own process: status, wall and CPU seconds, peak
    resident memory in MiB (the kernel's, see the module docstring)."""
    env = {**os.environ, "TLAB_DATA": str(data)}
    command = [sys.executable, "-m", "tlab", "run", notebook, "--preset", preset]
    started = time.perf_counter()
    child = subprocess.Popen([*command, "--out", str(out)], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = code = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen
    return {
        "notebook": notebook,
        "status": "ok" if code == 0 else f"exit {code}",
        "wall_s": round(time.perf_counter() - started, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_mib": round(usage.ru_maxrss / 1024),
    }


def first_line(source: str | list[str]) -> str:
    """A cell's first line (nbformat stores the source as one string or a list of lines)."""
    return "".join(source).split("\n")[0]


def slowest_cells(executed: Path, top: int = 3) -> list[tuple[float, int, str]]:
    """The ``top`` slowest code cells of an executed notebook: (seconds, cell index, first line),
    from the durations papermill writes into each cell's metadata."""
    cells = json.loads(executed.read_text())["cells"]
    timed = [
        (cell["metadata"]["papermill"]["duration"] or 0.0, i, first_line(cell["source"]))
        for i, cell in enumerate(cells)
        if cell["cell_type"] == "code" and "papermill" in cell["metadata"]
    ]
    return sorted(timed, reverse=True)[:top]


def table(cold: list[dict], warm: list[dict]) -> str:
    """The Markdown table of both passes, one row per notebook, and the totals."""
    lines = [
        "| notebook | cold wall / CPU | warm wall / CPU | kernel peak memory |",
        "|---|---|---|---|",
    ]
    for c, w in zip(cold, warm, strict=True):
        peak = max(c["peak_mib"], w["peak_mib"])
        lines.append(
            f"| {c['notebook']} | {c['wall_s']} s / {c['cpu_s']} s | {w['wall_s']} s / "
            f"{w['cpu_s']} s | {peak} MiB |" + ("" if c["status"] == "ok" else f" {c['status']}")
        )
    total = {k: round(sum(r[k] for r in cold), 1) for k in ("wall_s", "cpu_s")}
    lines.append(f"| whole lab | {total['wall_s']} s / {total['cpu_s']} s | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="+", help="notebook numbers or names, in order")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--data", type=Path, required=True, help="data folder (empty: cold)")
    parser.add_argument("--out", type=Path, required=True, help="where runs and costs.json go")
    args = parser.parse_args()
    passes = {}
    for name in ("cold", "warm"):
        passes[name] = [
            run_once(nb, args.preset, args.data, args.out / name) for nb in args.notebooks
        ]
    load = os.getloadavg()
    (args.out / "costs.json").write_text(json.dumps({**passes, "load_after": load}, indent=2))
    print(table(passes["cold"], passes["warm"]))
    print(f"load average after the runs: {load[0]:.2f} (1 min), {load[2]:.2f} (15 min)")
    print("\nslowest cells of the cold pass (seconds, cell index, first line):")
    for executed in sorted((args.out / "cold").glob("*.ipynb")):
        cells = "; ".join(f"{t:.0f} s [{i}] {line[:60]}" for t, i, line in slowest_cells(executed))
        print(f"- {executed.stem}: {cells}")


if __name__ == "__main__":
    main()
