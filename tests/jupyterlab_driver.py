"""Drive JupyterLab in a real browser, as a student does: open a notebook, Run All, move controls.

Used by ``tests/test_browser.py`` and ``benchmarks/widgets.py``. The parts are real: a JupyterLab
server started here on 127.0.0.1 (a free port, a random token, its own settings and workspace
folders, the notebooks copied to a scratch folder so that saving never touches the checkout),
and Debian's Chromium driven by Playwright's Python package through the system executable
(``playwright install`` downloads browsers and is never used).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
#: Notebooks of ``tests/fixtures`` served beside the lab's: panels built the broken way, which
#: the checks must catch.
NEGATIVE_CONTROLS = ("display_id_panel",)
#: The action recorded for a control that cannot move: disabled, or only one value to offer.
NOT_MOVABLE = "not movable"
#: JupyterLab user settings for the test (the news switch is the lab's own ``overrides.json``):
#: no autosave, so "modified" on the tab means what the student would see before saving.
TEST_SETTINGS = {
    "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
}
#: Chromium flags for this machine's closed network (see the environment notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

# The text of every output (cells and the panels' output widgets) that shows a Python error.
ERROR_OUTPUTS_JS = """
() => [...document.querySelectorAll(
         '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
      .map(e => e.textContent)
      .filter(t => /Traceback|Error:/.test(t) && /\\n.*(Error|Exception)\\b/.test(t))
"""

# Plotly figures drawn wider than the output area that holds them: the right of such a figure is
# cut off, with no scrollbar (Fig. 5 of notebook 08 was, at a fixed 1,120 px).
CLIPPED_FIGURES_JS = """
() => [...document.querySelectorAll('.jp-RenderedPlotly')]
      .map(f => {
        const svg = f.querySelector('.main-svg');
        const area = f.closest('.jp-OutputArea-output') || f;
        if (!svg) { return null; }
        const drawn = svg.getBoundingClientRect().width, room = area.clientWidth;
        const title = f.querySelector('.gtitle');
        return drawn > room + 1
          ? `${title ? title.textContent : 'untitled'}: ${Math.round(drawn)} px in ${room} px`
          : null;
      })
      .filter(x => x !== null)
"""

# A cheap fingerprint of a plotly figure: its title and a hash of its data and layout.
FIGURE_SIGNATURE_JS = """
(gd) => {
  const layout = gd.layout || {};
  const text = JSON.stringify([layout.title, gd.data, layout.annotations]);
  let h = 0;
  for (let i = 0; i < text.length; i++) { h = (h * 31 + text.charCodeAt(i)) | 0; }
  const title = gd.layout && gd.layout.title ? (gd.layout.title.text || gd.layout.title) : '';
  return String(title) + ' #' + h + ' len ' + text.length;
}
"""


def chromium_path() -> str | None:
    """Debian's Chromium, if installed."""
    return next((p for p in CHROMIUM_CANDIDATES if Path(p).exists()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def at_test_preset(path: Path, preset: str = "smoke") -> None:
    """Set the notebook's ``PRESET`` parameter to the suite's preset, as papermill would inject
    it: the notebooks open with the default preset, minutes per notebook."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"])
            cell["source"] = re.sub(
                r'^(PRESET(: str)? = )"quick"', rf'\1"{preset}"', source, flags=re.M
            )
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


@dataclass
class LabServer:
    """A JupyterLab server on 127.0.0.1 serving a scratch copy of the notebooks."""

    root: Path
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str] | None = None, timeout: float = 120) -> LabServer:
        self.port = self.port or free_port()
        notebooks = self.root / "notebooks"
        shutil.copytree(ROOT / "notebooks", notebooks, dirs_exist_ok=True)
        for path in notebooks.glob("*.ipynb"):
            at_test_preset(path)
        for probe in NEGATIVE_CONTROLS:
            shutil.copy(ROOT / "tests" / "fixtures" / f"{probe}.ipynb", notebooks)
        app_settings = self.root / "app-settings"
        app_settings.mkdir(exist_ok=True)
        shutil.copytree(
            ROOT / "binder" / "overrides.d", app_settings / "overrides.d", dirs_exist_ok=True
        )
        user_settings = self.root / "user-settings"
        for plugin, values in TEST_SETTINGS.items():
            package, name = plugin.split(":")
            target = user_settings / package / f"{name}.jupyterlab-settings"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        self.log = self.root / "jupyterlab.log"
        command = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            "--allow-root",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            f"--LabApp.app_settings_dir={app_settings}",
            f"--LabApp.user_settings_dir={user_settings}",
            f"--LabApp.workspaces_dir={self.root / 'workspaces'}",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        full_env = {**os.environ, **(env or {}), "JUPYTER_RUNTIME_DIR": str(self.root / "runtime")}
        self.process = subprocess.Popen(
            command, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=full_env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: see {self.log}\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer in {timeout} s: see {self.log}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(f"{self.url}/api/{path}?token={self.token}", method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """End every notebook session (and its kernel), as closing a tab and its kernel does."""
        for session in self.api("GET", "sessions"):
            self.api("DELETE", f"sessions/{session['id']}")

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/notebooks/{name}.ipynb?token={self.token}&reset"


@dataclass
class ControlChange:
    """One control moved in a panel and what the figure under it did."""

    panel: int
    control: str
    action: str
    changed: bool
    seconds: float
    before: str
    after: str
    restored: bool | None = None  # "back" moves: is the figure the one before the change?


@dataclass
class NotebookVisit:
    """What a student's Run All and control changes showed in one notebook."""

    name: str
    run_seconds: float = 0.0
    executed_cells: int = 0
    code_cells: int = 0
    plotly_outputs: int = 0  # plotly outputs on the page, top-level and inside panels
    figures_drawn: int = 0  # of those, the ones plotly has drawn (their SVG is there)
    panels: int = 0
    error_outputs: list[str] = field(default_factory=list)
    clipped_figures: list[str] = field(default_factory=list)  # wider than their output area
    errors_after_controls: list[str] = field(default_factory=list)
    log_console: str = ""
    dirty_on_open: bool = False
    changes: list[ControlChange] = field(default_factory=list)
    screenshots: list[str] = field(default_factory=list)


class LabPage:
    """One browser tab on a JupyterLab server."""

    def __init__(self, page: Any, server: LabServer, shots: Path) -> None:
        self.page = page
        self.server = server
        self.shots = shots

    def screenshot(self, visit: NotebookVisit, tag: str) -> None:
        path = self.shots / f"{visit.name}-{tag}.png"
        self.page.screenshot(path=str(path), full_page=False)
        visit.screenshots.append(str(path))

    def panel_screenshots(self, visit: NotebookVisit) -> None:
        """One picture of each panel as the student left it."""
        panels = self.page.locator(".tlab-panel")
        for p in range(panels.count()):
            panels.nth(p).scroll_into_view_if_needed()
            path = self.shots / f"{visit.name}-panel-{p}.png"
            panels.nth(p).screenshot(path=str(path))
            visit.screenshots.append(str(path))

    def open(self, name: str, visit: NotebookVisit) -> None:
        page = self.page
        page.goto(self.server.notebook_url(name))
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
        page.wait_for_function(
            "() => { const s = document.querySelector('.jp-Notebook-ExecutionIndicator');"
            " return s && s.getAttribute('data-status') === 'idle'; }",
            timeout=90_000,
        )
        page.wait_for_timeout(4000)  # JupyterLab writes the kernel's language_info after idle
        visit.dirty_on_open = page.locator(".lm-TabBar-tab.jp-mod-dirty").count() > 0

    def run_all(self, visit: NotebookVisit, timeout_s: float) -> None:
        page = self.page
        start = time.monotonic()
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
            ".some(p => p.textContent.includes('*'))",
            timeout=30_000,
            polling=100,
        )
        # Run All queues every code cell ("[*]"); it is over when none is queued any more and
        # the kernel is idle. After an error the cells below it fall back to "[ ]".
        page.wait_for_function(
            """() => {
              const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
              const queued = prompts.some(p => p.textContent.includes('*'));
              const s = document.querySelector('.jp-Notebook-ExecutionIndicator');
              return prompts.length > 0 && !queued && s && s.getAttribute('data-status') === 'idle';
            }""",
            timeout=timeout_s * 1000,
            polling=500,
        )
        visit.run_seconds = time.monotonic() - start
        page.wait_for_timeout(1500)  # let plotly finish drawing
        counts = page.evaluate(
            """() => {
          const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
          return {code: prompts.length,
                  executed: prompts.filter(p => /\\[\\d+\\]/.test(p.textContent)).length,
                  plotly: document.querySelectorAll('.jp-RenderedPlotly').length,
                  figures: [...document.querySelectorAll('.jp-RenderedPlotly')]
                             .filter(f => f.querySelector('.main-svg')).length,
                  panels: document.querySelectorAll('.tlab-panel').length,
                  clipped: (${CLIPPED})(),
                  errors: (${ERRORS})()};
        }""".replace("${ERRORS}", ERROR_OUTPUTS_JS).replace("${CLIPPED}", CLIPPED_FIGURES_JS)
        )
        visit.code_cells, visit.executed_cells = counts["code"], counts["executed"]
        visit.plotly_outputs, visit.figures_drawn = counts["plotly"], counts["figures"]
        visit.panels = counts["panels"]
        visit.error_outputs = [e[:2000] for e in counts["errors"]]
        visit.clipped_figures = counts["clipped"]

    def log_console_count(self) -> str:
        """The status bar's log console badge ('' when nothing was logged)."""
        return self.page.evaluate("""() => {
          const item = document.querySelector('.jp-LogConsoleStatusItem');
          return item ? item.textContent.trim() : '';
        }""")

    def _signature(self, panel: Any) -> str:
        """The fingerprint of the figure under a panel: the first plot after the panel's
        controls in the same cell (inside the panel for tlab's panels)."""
        return str(
            panel.evaluate(f"""(panel) => {{
          const plots = [...panel.closest('.jp-Cell').querySelectorAll('.js-plotly-plot')]
            .filter(p => panel.compareDocumentPosition(p) & Node.DOCUMENT_POSITION_FOLLOWING);
          if (!plots.length) throw new Error('no figure under the panel');
          return ({FIGURE_SIGNATURE_JS})(plots[0]);
        }}""")
        )

    def _drawn_signature(self, panel: Any, timeout_s: float = 10) -> str:
        """:meth:`_signature` once the figure is on the page (it may still be drawing)."""
        from playwright.sync_api import Error as PlaywrightError  # optional dependency

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self._signature(panel)
            except PlaywrightError:
                if time.monotonic() > deadline:
                    raise
                self.page.wait_for_timeout(100)

    def _controls(self, panel: Any) -> list[tuple[str, Any]]:
        box = panel.locator(":scope > .widget-box, :scope > .jupyter-widgets").first
        found = []
        for kind in ("widget-toggle-buttons", "widget-slider", "widget-dropdown"):
            items = box.locator(f".{kind}")
            for i in range(items.count()):
                found.append((kind, items.nth(i)))
        return found

    @staticmethod
    def _current(kind: str, control: Any) -> str:
        """The control's value as the page shows it (a button label, a slider position...)."""
        if kind == "widget-toggle-buttons":
            active = control.locator("button.widget-toggle-button.mod-active").first
            return (active.text_content() or "").strip()  # DOM text: no layout needed
        if kind == "widget-slider":
            return str(control.locator(".noUi-handle").first.get_attribute("aria-valuenow"))
        return str(control.locator("select").first.input_value())

    def _act(self, kind: str, control: Any, back_to: str | None = None) -> str | None:
        """Move a control to another value, or back to ``back_to``; returns what was done
        (None: the control cannot move: disabled, or only one value)."""
        if kind == "widget-toggle-buttons":
            buttons = control.locator("button.widget-toggle-button")
            for i in range(buttons.count()):
                button = buttons.nth(i)
                label = (button.text_content() or "").strip()
                if back_to is not None:  # the button it was on: waits until it can be clicked
                    if label == back_to:
                        button.click(timeout=5000)
                        return f"click {label!r}"
                elif (
                    "mod-active" not in (button.get_attribute("class") or "")
                    and button.is_enabled()
                ):
                    button.click()
                    return f"click {label!r}"
            if back_to is not None:
                raise AssertionError(f"no button {back_to!r} to put the control back to")
            return None
        if kind == "widget-slider":
            handle = control.locator(".noUi-handle").first
            low, now, top = (handle.get_attribute(f"aria-value{a}") for a in ("min", "now", "max"))
            if control.locator(".noUi-target[disabled]").count() or low == top:
                return None
            if back_to is not None:
                key = "ArrowLeft" if float(now or 0) > float(back_to) else "ArrowRight"
            else:
                key = "ArrowLeft" if now == top else "ArrowRight"
            handle.focus()
            handle.press(key)
            return f"{key} from {now}"
        select = control.locator("select").first
        if select.is_disabled():
            return None
        current = select.input_value()
        texts = select.locator("option").all_text_contents()
        values = select.locator("option").evaluate_all("os => os.map(o => o.value)")
        for value, text in zip(values, texts, strict=True):
            if (value == back_to) if back_to is not None else (value != current):
                select.select_option(value)
                return f"select {text!r}"
        return None

    def move_every_control(self, visit: NotebookVisit, wait_s: float = 2.0) -> None:
        """Change each enabled control of each panel (then put it back); time the redraw."""
        panels = self.page.locator(".tlab-panel")
        for p in range(panels.count()):
            panel = panels.nth(p)
            panel.scroll_into_view_if_needed()
            for kind, control in self._controls(panel):
                control.scroll_into_view_if_needed()
                label = (control.locator(".widget-label").first.text_content() or kind).strip()
                original, first = self._current(kind, control), self._drawn_signature(panel)
                for phase in ("change", "back"):
                    before = self._drawn_signature(panel)
                    start = time.monotonic()
                    action = self._act(kind, control, original if phase == "back" else None)
                    if action is None:
                        visit.changes.append(
                            ControlChange(p, label, NOT_MOVABLE, False, 0.0, before, before)
                        )
                        break
                    after = self._wait_for_redraw(panel, before, start, wait_s)
                    visit.changes.append(
                        ControlChange(
                            p,
                            label,
                            f"{phase}: {action}",
                            after != before,
                            time.monotonic() - start,
                            before,
                            after,
                            restored=(after == first) if phase == "back" else None,
                        )
                    )
        self._slider_ends(visit, wait_s)
        visit.errors_after_controls = self._error_outputs()

    def _error_outputs(self) -> list[str]:
        return [e[:2000] for e in self.page.evaluate(ERROR_OUTPUTS_JS)]

    def _wait_for_redraw(self, panel: Any, before: str, start: float, wait_s: float) -> str:
        """The panel's figure signature once it differs from ``before`` (or after ``wait_s``)."""
        from playwright.sync_api import Error as PlaywrightError  # optional dependency

        while time.monotonic() - start < wait_s + 3:
            try:
                after = self._signature(panel)
            except PlaywrightError:  # the old plot is being replaced: look again
                after = before
            if after != before:
                return after
            self.page.wait_for_timeout(25)
        return before

    def _slider_ends(self, visit: NotebookVisit, wait_s: float) -> None:
        """Take every slider to its first and its last value (Home, End), where a student's
        eps = 0 or largest budget would show a broken figure; the sliders stay there."""
        panels = self.page.locator(".tlab-panel")
        for p in range(panels.count()):
            panel = panels.nth(p)
            for kind, control in self._controls(panel):
                if kind != "widget-slider" or control.locator(".noUi-target[disabled]").count():
                    continue
                control.scroll_into_view_if_needed()
                label = (control.locator(".widget-label").first.text_content() or kind).strip()
                handle = control.locator(".noUi-handle").first
                for key in ("Home", "End"):
                    now = handle.get_attribute("aria-valuenow")
                    before, start = self._drawn_signature(panel), time.monotonic()
                    handle.focus()
                    handle.press(key)
                    self.page.wait_for_timeout(100)
                    if handle.get_attribute("aria-valuenow") == now:
                        continue  # already at that end
                    after = self._wait_for_redraw(panel, before, start, wait_s)
                    visit.changes.append(
                        ControlChange(
                            p,
                            label,
                            f"end: {key} from {now}",
                            after != before,
                            time.monotonic() - start,
                            before,
                            after,
                        )
                    )
                    if self._error_outputs():  # the figure is gone: nothing left to move
                        return


def visit_notebook(lab: LabPage, name: str, *, run_timeout_s: float = 600) -> NotebookVisit:
    """Open, Run All, look, move every control: what a student does with one notebook."""
    visit = NotebookVisit(name)
    lab.open(name, visit)
    lab.run_all(visit, run_timeout_s)
    lab.screenshot(visit, "after-run-all")
    lab.move_every_control(visit)
    visit.log_console = lab.log_console_count()
    lab.screenshot(visit, "after-controls")
    lab.panel_screenshots(visit)
    lab.server.shutdown_kernels()
    return visit


def launch_chromium(playwright: Any) -> Any:
    path = chromium_path()
    if path is None:
        raise RuntimeError("Debian's chromium is not installed (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
