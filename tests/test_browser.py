"""What a student sees in a real browser: every notebook in JupyterLab, and the offline export.

JupyterLab runs on 127.0.0.1 and Debian's Chromium is driven by Playwright (see
``jupyterlab_driver``). For each notebook: open it, Run All, wait until idle, check that every
cell ran without an error and that every plotly figure on the page was drawn; then move every
control of every panel and check that the figure under it changes within 2 s and that nothing
lands in JupyterLab's Log Console; then take every slider to its first and last value (eps 0,
the largest budget) and check that no panel shows an error. The HTML export (``python -m tlab
run``) is opened from disk with every non-file request aborted: figures and typeset math must
render and no request may be attempted. A student copy with a wrong answer is run too: the
check must say so in red, without a traceback, and Run All must go on to the end.

These tests run last (``conftest.py``), on the data folder the papermill tests warmed. Without
Chromium they skip with one line; in CI (``CI=true``) a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import nbformat
import pytest
from jupyterlab_driver import (
    NOT_MOVABLE,
    ROOT,
    LabPage,
    LabServer,
    NotebookVisit,
    at_test_preset,
    chromium_path,
    launch_chromium,
    visit_notebook,
)

from tlab.runs import cli
from tlab.runs.catalog import available_notebooks
from tlab.runs.student import student_copy

pytestmark = pytest.mark.browser

#: The time a figure has to redraw after a control moves (issue 13).
REDRAW_BUDGET_S = 2.0


def _require_browser() -> None:
    missing = []
    if chromium_path() is None:
        missing.append("Debian's chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -r requirements-dev.txt)")
    if missing:
        reason = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(reason + ": in CI a skipped browser test is a failure")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    _require_browser()
    server = LabServer(tmp_path_factory.mktemp("jupyterlab")).start()
    yield server
    server.stop()


@pytest.fixture
def lab(browser, lab_server: LabServer, tmp_path: Path) -> Iterator[LabPage]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield LabPage(page, lab_server, tmp_path)
    page.close()


@pytest.mark.parametrize("info", available_notebooks(), ids=lambda i: i.name)
def test_a_student_runs_the_notebook_and_every_control_redraws_its_figure(info, lab, tmp_path):
    visit = visit_notebook(lab, info.name)
    report = tmp_path / "visit.json"
    report.write_text(json.dumps(asdict(visit), indent=1))
    where = f"screenshots and report: {tmp_path}"
    assert not visit.dirty_on_open, f"the notebook is marked modified as it opens; {where}"
    assert visit.executed_cells == visit.code_cells > 0, where
    assert not visit.error_outputs, f"{visit.error_outputs[0][-1500:]}\n{where}"
    # every plotly output on the page is drawn, the panels' and the ones above them
    assert visit.figures_drawn == visit.plotly_outputs > 0, where
    assert visit.panels > 0, f"every notebook has at least one panel; {where}"
    assert not visit.clipped_figures, f"figures cut off on the right: {visit.clipped_figures}"
    moved = [c for c in visit.changes if c.action != NOT_MOVABLE]
    assert moved, where
    # every slider also went to its first and last value (eps 0, the largest budget, ...)
    assert not visit.errors_after_controls, f"{visit.errors_after_controls[0][-1500:]}\n{where}"
    stuck = [f"{c.control} ({c.action})" for c in moved if not c.changed]
    assert not stuck, f"the figure did not change after: {stuck}; {where}"
    not_back = [f"{c.control} ({c.action})" for c in moved if c.restored is False]
    assert not not_back, f"putting a control back did not restore its figure: {not_back}; {where}"
    slow = [
        f"{c.control} ({c.action}): {c.seconds:.2f} s" for c in moved if c.seconds > REDRAW_BUDGET_S
    ]
    assert not slow, f"redraw over {REDRAW_BUDGET_S} s: {slow}; {where}"
    assert visit.log_console in ("", "0"), f"Log Console: {visit.log_console}; {where}"


def test_the_checks_catch_a_panel_whose_figure_never_redraws(lab):
    """The negative control: a panel built as tlab's were before (a display id updated from
    the widget's callback) leaves its figure unchanged and fills JupyterLab's Log Console."""
    visit = visit_notebook(lab, "display_id_panel")
    moved = [c for c in visit.changes if c.action != NOT_MOVABLE]
    assert visit.executed_cells == visit.code_cells == 1 and visit.panels == 1
    assert moved and not any(c.changed for c in moved), visit.changes
    assert visit.log_console not in ("", "0"), "the Log Console badge was not seen"


#: A wrong gamma a student may write (found by probing the check): it writes NaN into the
#: accuracies it is given, the notebook's own table, and its result alone is right.
GAMMA_THAT_WRITES_INTO_ITS_INPUT = """def my_gamma(a_b, a_w):
    a_w[a_w == 0] = float("nan")
    return (a_b - a_w) / a_w
"""

STDERR_JS = """() => [...document.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
  .map(e => ({text: e.textContent, background: getComputedStyle(e).backgroundColor}))"""


def test_a_student_s_wrong_answer_is_said_in_red_and_run_all_goes_on(lab, lab_server):
    """A student copy of 04 (``python -m tlab student``) with a wrong gamma, Run All in
    JupyterLab: the check says what is wrong in a red output with its hint and no traceback,
    the cells below run to the end on tlab's gamma and say so."""
    name = "student_04_wrong_gamma"
    solved = nbformat.read(ROOT / "notebooks" / "04_blackbox_from_the_source.ipynb", as_version=4)
    notebook = student_copy(solved)
    exercise = next(c for c in notebook.cells if c.source.startswith("def my_gamma"))
    exercise.source = GAMMA_THAT_WRITES_INTO_ITS_INPUT
    path = lab_server.root / "notebooks" / f"{name}.ipynb"
    nbformat.write(notebook, path)
    at_test_preset(path)
    visit = NotebookVisit(name)
    lab.open(name, visit)
    lab.run_all(visit, timeout_s=600)
    printed = lab.page.evaluate(STDERR_JS)
    message = lab.page.locator(".jp-OutputArea-output", has_text="Not quite")
    if message.count():
        message.first.scroll_into_view_if_needed()
        lab.page.wait_for_timeout(1500)  # JupyterLab draws the cells scrolled into view
    lab.screenshot(visit, "wrong-answer")
    # textContent, not innerText: JupyterLab skips rendering the cells out of view
    page_text = lab.page.evaluate("() => document.querySelector('.jp-NotebookPanel').textContent")
    lab_server.shutdown_kernels()
    where = f"screenshot: {visit.screenshots[-1]}"
    assert visit.executed_cells == visit.code_cells > 0, where
    assert not visit.error_outputs, f"{visit.error_outputs[0][-1500:]}\n{where}"
    said = [p for p in printed if "Not quite (gamma)" in p["text"]]
    assert said, f"no 'Not quite' output: {printed}; {where}"
    assert "changed the accuracies it was given" in said[0]["text"], said
    assert "Hint:" in said[0]["text"] and "Traceback" not in said[0]["text"], said
    assert said[0]["background"] not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)"), said
    assert "Exercise 'gamma' did not pass its check: the cells below use tlab's" in page_text


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Notebooks 00 and 03 run and exported as ``python -m tlab run`` does (warm data)."""
    out = tmp_path_factory.mktemp("export")
    assert cli.main(["run", "00", "03", "--preset", "smoke", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "page_name", ["00_start_here.html", "03_whitebox_robustness.html", "index.html"]
)
def test_the_html_export_renders_offline(exported, browser, page_name):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    attempted, failed = [], []

    def only_files(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort()

    page.route("**/*", only_files)
    # (a font MathJax asks for may fail on file:// pages, which have no origin: it then uses
    # the system's fonts; only a missing file of the export counts)
    page.on(
        "requestfailed",
        lambda request: request.url.startswith("file://") and failed.append(request.url),
    )
    page.goto((exported / page_name).as_uri())
    page.wait_for_load_state("load")
    page.wait_for_timeout(3000)  # MathJax typesets after load
    seen = page.evaluate("""() => ({
        plots: document.querySelectorAll('.js-plotly-plot .main-svg').length,
        math: document.querySelectorAll('.MathJax, .MathJax_Display').length,
        raw_math: (document.body.innerText.match(/\\$\\$|\\\\frac|\\\\nabla/g) || []).length,
        notes: document.querySelectorAll('.tlab-panel-note').length,
        widgets: document.querySelectorAll('.jupyter-widgets').length})""")
    page.screenshot(path=str(exported / f"{page_name}.png"), full_page=False)
    page.close()
    assert not attempted, f"requests left the page: {attempted[:5]}"
    assert not failed, f"missing local files: {failed[:5]}"
    assert seen["plots"] > 0, seen
    assert seen["raw_math"] == 0, seen
    if page_name != "index.html":
        nb = nbformat.read(exported / page_name.replace(".html", ".ipynb"), as_version=4)
        if any("$" in c.source for c in nb.cells if c.cell_type == "markdown"):
            assert seen["math"] > 0, seen
        assert seen["notes"] >= 1 and seen["widgets"] == 0, seen
