"""Every notebook runs headless under papermill with the quick preset and shows plotly figures.

(The same notebooks also run under ``nbval-lax``: ``python -m pytest`` collects
``notebooks/*.ipynb`` with the options in pyproject.toml.)
"""

from __future__ import annotations

import nbformat
import pytest

from tlab.catalog import available_notebooks
from tlab.runner import run_one


@pytest.mark.notebooks
@pytest.mark.parametrize("info", available_notebooks(), ids=lambda i: i.name)
def test_notebook_runs_headless_with_the_quick_preset(info, tmp_path):
    run = run_one(info, tmp_path, {"PRESET": "quick"})
    assert run.status == "ok", run.error
    executed = nbformat.read(tmp_path / run.output, as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert figures, "a notebook must show at least one plotly figure"
    assert (tmp_path / run.html).stat().st_size > 0
