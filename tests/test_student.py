"""``python -m tlab student OUT/``: the student copies hold no solution, and run end to end with
every exercise reported as "not solved yet" (the solution copies are the notebooks themselves,
run by tests/test_notebooks.py, where every check passes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tlab.runs import cli
from tlab.runs.catalog import available_notebooks
from tlab.runs.execute import execute
from tlab.runs.student import solution_regions, student_copy

ROOT = Path(__file__).resolve().parent.parent


def _is_check(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and (meta.get("grade") or "reveal(" in cell.source)


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    assert cli.main(["student", str(out)]) == 0
    return out


def test_every_notebook_gets_a_student_copy_without_solutions(student_dir):
    exercises = 0
    for info in available_notebooks():
        solved = nbformat.read(info.path, as_version=4)
        copy = nbformat.read(student_dir / info.path.name, as_version=4)
        text = "\n".join("\n".join(ln.strip() for ln in c.source.splitlines()) for c in copy.cells)
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, info.name
        for region in solution_regions(solved):
            assert region not in text, (info.name, region)
        assert all(not c.get("outputs") for c in copy.cells if c.cell_type == "code")
        stubs = [c for c in copy.cells if c.metadata.get("nbgrader", {}).get("solution")]
        assert all("raise NotImplementedError()" in c.source for c in stubs), info.name
        exercises += len(stubs)
        if info.name[:2] in {f"{n:02d}" for n in range(1, 13)}:
            assert stubs, f"{info.name} has no exercise"
            checks = [c for c in copy.cells if _is_check(c)]
            assert checks and all(c.metadata.get("editable") is False for c in checks)
    assert exercises >= 14


def test_solution_notebooks_mark_every_exercise_for_nbgrader():
    for info in available_notebooks():
        nb = nbformat.read(info.path, as_version=4)
        for cell in nb.cells:
            if "### BEGIN SOLUTION" in cell.source:
                meta = cell.metadata.get("nbgrader", {})
                assert meta.get("solution") and meta.get("grade_id"), info.name
                assert meta.get("schema_version") == 3


def test_student_copy_leaves_the_notebook_alone():
    info = available_notebooks()[1]
    nb = nbformat.read(info.path, as_version=4)
    before = nbformat.writes(nb)
    student_copy(nb)
    assert nbformat.writes(nb) == before


def test_a_non_empty_folder_needs_force(tmp_path, capsys):
    keep = tmp_path / "my_notes.txt"
    keep.write_text("mine")
    assert cli.main(["student", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main(["student", str(tmp_path), "--force"]) == 0
    assert keep.read_text() == "mine"
    assert (tmp_path / "01_adversarial_examples.ipynb").exists()
    assert cli.main(["student", str(keep)]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.notebooks
@pytest.mark.parametrize(
    "name", ["01_adversarial_examples", "04_blackbox_from_the_source", "09_mimicry_attack"]
)
def test_student_notebooks_run_end_to_end_unsolved(name, student_dir, tmp_path):
    output = tmp_path / f"{name}.ipynb"
    run = execute(student_dir / f"{name}.ipynb", output, {"PRESET": "smoke"})
    assert run.status == "ok", run.error
    executed = nbformat.read(output, as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    checks = [c for c in executed.cells if _is_check(c)]
    assert checks
    for cell in checks:
        printed = "".join(o.get("text", "") for o in cell.outputs)
        assert "not solved yet" in printed and "Correct" not in printed, cell.source
    uses = [c for c in executed.cells if c.cell_type == "code" and "= use(" in c.source]
    for cell in uses:
        assert "the cells below use tlab's" in "".join(o.get("text", "") for o in cell.outputs)


@pytest.mark.notebooks
def test_nbgrader_autograde_gives_no_point_unsolved_and_every_point_solved(tmp_path):
    """nbgrader's own course workflow on notebook 10 (at the smoke preset): generate the
    assignment from the solution copy, submit the released (unsolved) copy for one student and
    the solution copy for another, autograde with ``TLAB_GRADING=1`` as docs/lecturer.md says."""
    from jupyterlab_driver import at_test_preset
    from nbgrader.api import Gradebook  # type: ignore[import-untyped]

    name = "10_fingerprinting_the_teacher.ipynb"
    course = tmp_path / "course"
    (course / "source" / "ps1").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.course_id = 'tlab'\n"
    )
    source = course / "source" / "ps1" / name
    source.write_bytes((ROOT / "notebooks" / name).read_bytes())
    at_test_preset(source)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # alembic
        "TLAB_GRADING": "1",
    }

    def nbgrader(*args: str) -> None:
        run = subprocess.run(
            [sys.executable, "-m", "nbgrader", *args, "--force"],
            cwd=course,
            env=env,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stdout + run.stderr

    nbgrader("generate_assignment", "ps1")
    for student, copy in (("alice", course / "release" / "ps1" / name), ("bob", source)):
        (course / "submitted" / student / "ps1").mkdir(parents=True)
        shutil.copy(copy, course / "submitted" / student / "ps1" / name)
    nbgrader("autograde", "ps1")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        unsolved = gradebook.find_submission("ps1", "alice")
        solved = gradebook.find_submission("ps1", "bob")
        assert unsolved.max_score >= 1
        assert unsolved.score == 0
        assert solved.score == solved.max_score
