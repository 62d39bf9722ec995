"""Project hygiene that the lab's users rely on: pins, Binder environment, clean notebooks."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import papermill
import pytest

from tlab.runs.catalog import available_notebooks

ROOT = Path(__file__).resolve().parent.parent


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            pins[name.lower()] = version
    return pins


def test_every_direct_dependency_is_pinned_exactly():
    assert _pins(ROOT / "requirements.txt")["torch"] == "2.14.1"
    assert _pins(ROOT / "requirements.txt")["torchvision"] == "0.29.1"
    assert "torchattacks" in _pins(ROOT / "requirements-dev.txt")


def test_binder_uses_the_same_pins_with_cpu_torch():
    main, binder = _pins(ROOT / "requirements.txt"), _pins(ROOT / "binder/requirements.txt")
    assert set(main) == set(binder)
    for name, version in main.items():
        expected = version + "+cpu" if name in ("torch", "torchvision") else version
        assert binder[name] == expected, name
    assert "dataset-fashion-mnist" in (ROOT / "binder/apt.txt").read_text()
    assert "tlab prepare" in (ROOT / "binder/postBuild").read_text()


def test_the_binder_link_opens_the_student_copy_that_postbuild_writes():
    post_build = (ROOT / "binder/postBuild").read_text()
    (folder,) = re.findall(r"^python -m tlab student (\S+)$", post_build, re.MULTILINE)
    links = re.findall(
        r"mybinder\.org/v2/gh/[^)\s]*urlpath=lab/tree/([^)\s]+)", (ROOT / "README.md").read_text()
    )
    assert links == [f"{folder}/00_start_here.ipynb"]
    assert f"/{folder}/" in (ROOT / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("info", available_notebooks(), ids=lambda i: i.name)
def test_notebooks_are_clean_and_well_formed(info):
    nb = nbformat.read(info.path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip the outputs"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and re.search(r'^PRESET(: str)? = "quick"', params[0].source, re.M)
    intro = nb.cells[0].source
    assert intro.startswith("# ") and "you will learn" in intro.lower()
    assert info.section == "-" or info.section.split(",")[0].split("-")[0] in intro
    assert any(re.search(r"plots\.|plotly|_figure\(", c.source) for c in code)  # it draws
    # it ends with its Summary, followed at most by the run's verdicts in words
    summary = max(i for i, c in enumerate(nb.cells) if "## Summary" in c.source)
    assert nb.cells[summary].cell_type == "markdown"
    assert all("verdict_summary(" in c.source for c in nb.cells[summary + 1 :])
    # one start-up call right after the parameters; nothing process-wide set by hand
    assert re.search(r"^(DEV = )?start\(PRESET\b", code[code.index(params[0]) + 1].source, re.M)
    assert not any(
        re.search(r"set_num_threads|setup_plotly\(|pick_device\(", c.source) for c in code
    )
    # JupyterLab writes the kernel's full language_info into a notebook that lacks it, which
    # marks the notebook modified the moment it opens (test_browser checks the page itself)
    assert {"codemirror_mode", "pygments_lexer", "version"} <= set(nb.metadata.language_info)


@pytest.mark.parametrize("info", available_notebooks(), ids=lambda i: i.name)
def test_papermill_understands_every_parameter(info):
    """Sweeps and ``-p NAME=VALUE`` check names and types with papermill's parser: a line it
    cannot parse (e.g. a quote in the comment) would silently hide a parameter."""
    nb = nbformat.read(info.path, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    written = re.findall(r"^([A-Z][A-Z0-9_]*)\s*:", cell.source, re.M)
    assert written, "the parameters cell declares NAME: type = value lines"
    assert list(papermill.inspect_notebook(str(info.path))) == written


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    command = "pip install -r requirements-dev.txt -e . && python -m pytest"
    assert command in readme and command in (ROOT / ".ci/run").read_text()


@pytest.mark.parametrize("info", available_notebooks(), ids=lambda i: i.name)
def test_notebooks_hold_narrative_and_thin_calls(info):
    """Figures, caches and checks live in the package; a notebook's own functions stay short
    (a panel's render call, an exercise)."""
    import ast

    nb = nbformat.read(info.path, as_version=4)
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 10, f"{node.name} is {length} lines: move it into tlab/"
        assert "cached_tensors(" not in cell.source and "cached_result(" not in cell.source
