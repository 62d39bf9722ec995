"""Which cells of a notebook raise its kernel's peak memory.

Runs a copy of the notebook (next to it, so relative paths behave; removed afterwards) in which
every code cell is followed by a probe that prints the kernel's peak resident set so far
(``ru_maxrss``), then lists the cells after which the peak rose, with the rise:

    python benchmarks/cell_memory.py 07 --preset quick [--data DIR] [--min-rise 20]

Run it warm (after ``python -m tlab run NN`` on the same data folder) to see what the notebook
itself holds, cold to include training. The first probe's value is the kernel after its
imports and the parameters cell.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

import nbformat

from tlab.runs.catalog import find_notebook
from tlab.runs.execute import execute

PROBE = (
    "import resource as _tlab_resource\n"
    "print('TLAB_PEAK_KIB', _tlab_resource.getrusage(_tlab_resource.RUSAGE_SELF).ru_maxrss)"
)
PEAK = re.compile(r"TLAB_PEAK_KIB (\d+)")


def probed(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[int]]:
    """A copy of ``nb`` with a probe cell after every code cell, and the original index of the
    cell each probe follows."""
    copy = nbformat.v4.new_notebook(metadata=nb.metadata)
    after = []
    for index, cell in enumerate(nb.cells):
        copy.cells.append(cell)
        if cell.cell_type == "code":
            copy.cells.append(nbformat.v4.new_code_cell(PROBE))
            after.append(index)
    return copy, after


def peaks(executed: nbformat.NotebookNode) -> list[int]:
    """Every probe's reading, in KiB, in order."""
    readings = []
    for cell in executed.cells:
        if cell.cell_type == "code" and cell.source == PROBE:
            text = "".join(out.get("text", "") for out in cell.outputs)
            match = PEAK.search(text)
            if match:
                readings.append(int(match.group(1)))
    return readings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebook", help="notebook number or name")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--data", type=Path, help="data folder (default: TLAB_DATA)")
    parser.add_argument("--min-rise", type=float, default=20.0, help="MiB; smaller rises hidden")
    args = parser.parse_args()
    if args.data:
        os.environ["TLAB_DATA"] = str(args.data)
    info = find_notebook(args.notebook)
    nb = nbformat.read(info.path, as_version=4)
    copy, after = probed(nb)
    with tempfile.TemporaryDirectory() as scratch:
        source = info.path.with_name(f".cell-memory-{info.path.name}")
        nbformat.write(copy, source)
        try:
            run = execute(source, Path(scratch) / "out.ipynb", {"PRESET": args.preset})
            executed = nbformat.read(Path(scratch) / "out.ipynb", as_version=4)
        finally:
            source.unlink()
    readings = peaks(executed)
    print(f"{info.name} at {args.preset}: {run.status} in {run.seconds:.0f} s {run.error}")
    previous = 0
    for index, reading in zip(after, readings, strict=False):
        rise = (reading - previous) / 1024
        if rise >= args.min_rise:
            first = nb.cells[index].source.split("\n")[0][:70]
            print(f"cell {index:3d}: peak {reading / 1024:7.0f} MiB (+{rise:5.0f})  {first}")
        previous = reading
    print(f"kernel peak: {max(readings, default=0) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
