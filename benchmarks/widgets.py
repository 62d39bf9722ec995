"""Panel redraw times in a real browser: control change -> updated figure, every panel, warm.

Run: ``python benchmarks/widgets.py [NN ...]`` (default: every notebook; needs Debian's chromium
and the dev requirements). Each notebook is opened in JupyterLab (a local server, headless
Chromium driven by Playwright, see ``tests/jupyterlab_driver.py``), run with Run All (cold the
first time: models are trained and cached in ``TLAB_DATA``), then every control of every panel
is moved and put back; the time from the browser's input event to the moment the figure under
the panel differs is one sample. With ``--warm`` each notebook is run once more first, so that
every sample reads cached results.

Goal (issue 13): median <= 1 s and max <= 2 s per notebook, warm, on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jupyterlab_driver import (
    NOT_MOVABLE,
    LabPage,
    LabServer,
    launch_chromium,
    visit_notebook,
)

from tlab.runs.catalog import available_notebooks, find_notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="numbers or names (default: all)")
    parser.add_argument("--warm", action="store_true", help="run each notebook once before")
    args = parser.parse_args(argv)
    infos = [find_notebook(n) for n in args.notebooks] if args.notebooks else available_notebooks()
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="tlab-bench-widgets-"))
    server = LabServer(root).start()
    rows = []
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            lab = LabPage(page, server, root)
            for info in infos:
                if args.warm:
                    visit_notebook(lab, info.name)
                visit = visit_notebook(lab, info.name)
                times = [c.seconds for c in visit.changes if c.action != NOT_MOVABLE]
                stuck = sum(not c.changed for c in visit.changes if c.action != NOT_MOVABLE)
                rows.append((info.name, visit.panels, len(times), stuck, visit.run_seconds,
                             statistics.median(times) if times else float("nan"),
                             max(times) if times else float("nan")))
                print(f"{info.name}: {len(times)} changes, median {rows[-1][5]:.2f} s, "
                      f"max {rows[-1][6]:.2f} s, unchanged {stuck}", flush=True)
            browser.close()
    finally:
        server.stop()
        shutil.rmtree(root)
    print("\n| notebook | panels | control changes | figure unchanged | Run All (s) | median (s) "
          "| max (s) |\n|---|---|---|---|---|---|---|")
    for name, panels, n, stuck, run, median, top in rows:
        print(f"| `{name}` | {panels} | {n} | {stuck} | {run:.0f} | {median:.2f} | {top:.2f} |")
    print(f"\nworst median {max(r[5] for r in rows):.2f} s; "
          f"worst max {max(r[6] for r in rows):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
