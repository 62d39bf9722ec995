"""Every notebook runs headless under papermill with the smoke preset and shows plotly figures.

Each run goes through the command line (``python -m tlab run NN``), so the runner's outputs --
executed notebook, HTML export with the figures, index page -- are checked too. (The notebooks
open with the default ``quick`` preset, minutes per notebook; the suite runs them at ``smoke``.)
"""

from __future__ import annotations

import json

import nbformat
import pytest

from tlab.notebook.exercises import GRADING_ENV
from tlab.runs import cli
from tlab.runs.catalog import available_notebooks


@pytest.mark.notebooks
@pytest.mark.parametrize("info", available_notebooks(), ids=lambda i: i.name)
def test_notebook_runs_headless_with_the_smoke_preset(info, tmp_path, monkeypatch):
    # graded as nbgrader would: a solution whose check fails is an error here, not a red note
    monkeypatch.setenv(GRADING_ENV, "1")
    assert cli.main(["run", info.name, "--preset", "smoke", "--out", str(tmp_path)]) == 0
    (run,) = json.loads((tmp_path / "runs.json").read_text())
    assert run["status"] == "ok", run["error"]
    executed = nbformat.read(tmp_path / run["output"], as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert figures, "a notebook must show at least one plotly figure"
    page = (tmp_path / run["html"]).read_text()
    assert "Plotly.newPlot" in page, "the HTML export must carry the figures"
    assert run["html"] in (tmp_path / "index.html").read_text()
    # `tlab run` records each notebook, preset and claims included, for `tlab report`
    record = json.loads((tmp_path / "records" / info.name / "record.json").read_text())
    assert record["complete"] and record["extra"]["preset"] == "smoke"
    shows_claims = any("claims_table(" in c.source for c in executed.cells)
    assert bool(record.get("claims")) == shows_claims
