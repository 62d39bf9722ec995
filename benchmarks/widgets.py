"""Widget re-render times: every value widget of a notebook changed once or twice, timed.

Run: ``python benchmarks/widgets.py [NN ...]`` (default: every notebook but 12, quick preset).
Each notebook runs once with papermill so that its models and results are cached (the
``TLAB_DATA`` folder; cold the first time), then runs again with one extra cell at the end. That
cell finds every widget whose value a panel observes, sets it to up to two other values and
times each assignment: in the kernel the observer runs synchronously, so the time is the whole
re-render (recompute from the cache, build the plotly figure, update the displayed output).
The issues' budget is 2 s per re-render, warm.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import nbformat
import papermill

# Run as a script from a checkout: make the repository's tlab importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tlab.catalog import available_notebooks, find_notebook  # noqa: E402

MARKER = "WIDGET_TIMINGS"

# Names start with an underscore so that the cell cannot overwrite the notebook's variables.
TIMING_CELL = f'''
import json as _json, time as _time
import ipywidgets as _widgets
_timings = []
for _w in list(_widgets.Widget.widgets.values()):
    if not isinstance(_w, _widgets.ValueWidget) or not _w._trait_notifiers.get("value"):
        continue
    _options = [o[1] if isinstance(o, tuple) else o for o in (getattr(_w, "options", None) or ())]
    if _options:
        _others = [v for v in _options if v != _w.value][:2]
    elif isinstance(_w, (_widgets.IntSlider, _widgets.FloatSlider)):
        _others = [v for v in (_w.min, _w.max) if v != _w.value][:1]
    else:
        _others = [not _w.value] if isinstance(_w.value, bool) else []
    for _v in _others:
        _t = _time.perf_counter()
        _w.value = _v
        _timings.append([_w.description, str(_v), _time.perf_counter() - _t])
print("{MARKER}", _json.dumps(_timings))
'''


def measure(name: str, work: Path) -> list[tuple[str, str, float]]:
    """(widget, new value, seconds) for every change made in notebook ``name``."""
    info = find_notebook(name)
    papermill.execute_notebook(str(info.path), str(work / f"{info.name}.warmup.ipynb"),
                               cwd=str(info.path.parent), progress_bar=False)
    notebook = nbformat.read(info.path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(TIMING_CELL))
    probe = work / f"{info.name}.probe.ipynb"
    nbformat.write(notebook, probe)
    done = papermill.execute_notebook(str(probe), str(probe), cwd=str(info.path.parent),
                                      progress_bar=False)
    for output in done.cells[-1].outputs:
        text = output.get("text", "")
        if MARKER in text:
            return [tuple(row) for row in json.loads(text.split(MARKER, 1)[1])]
    raise RuntimeError(f"{info.name}: the timing cell printed nothing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook numbers or names (default: 00-11)")
    args = parser.parse_args()
    names = args.notebooks or [i.name for i in available_notebooks() if i.name[:2] != "12"]
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows = measure(name, Path(tmp))
            slowest = max((seconds for *_, seconds in rows), default=0.0)
            worst = max(worst, slowest)
            changes = ", ".join(f"{widget}={value}: {seconds:.3f} s"
                                for widget, value, seconds in rows)
            print(f"{name}: {len(rows)} changes, slowest {slowest:.3f} s ({changes})", flush=True)
    print(f"slowest re-render over all: {worst:.3f} s (budget 2 s)")


if __name__ == "__main__":
    main()
