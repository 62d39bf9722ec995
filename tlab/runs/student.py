"""Student copies of the notebooks: ``python -m tlab student OUT/``.

The notebooks in ``notebooks/`` are the *solution* copies: every exercise is solved between
nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers, in a cell whose metadata marks
it as a solution cell, and its check cell (locked, graded) may hold extra checks between
``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``. nbgrader's own preprocessors, used
standalone (no course database), make the student copies:

- ``ClearSolutions`` replaces each solution region with nbgrader's stub
  (``raise NotImplementedError()``), so an unsolved function raises, the check says "not solved
  yet" and the cells below fall back to tlab's implementation (``tlab.notebook.exercises``);
- ``ClearHiddenTests`` removes the hidden checks;
- ``LockCells`` makes the check cells read-only in Jupyter;
- ``ClearOutput`` removes outputs.

Every copy is then searched for the markers and for the text of every solution region: a copy
that still holds one is never written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat

from tlab.errors import TlabError
from tlab.runs.catalog import available_notebooks

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
MARKERS = (BEGIN, END, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def solution_regions(nb: Any) -> list[str]:
    """The text between every pair of solution markers of ``nb`` (stripped lines, joined)."""
    regions = []
    for cell in nb.cells:
        inside: list[str] | None = None
        for line in cell.source.splitlines():
            if BEGIN in line:
                inside = []
            elif END in line and inside is not None:
                regions.append("\n".join(inside))
                inside = None
            elif inside is not None and line.strip():
                inside.append(line.strip())
    return [r for r in regions if r]


def _leaks(student: Any, regions: list[str]) -> list[str]:
    text = "\n".join("\n".join(ln.strip() for ln in c.source.splitlines()) for c in student.cells)
    found = [m for m in MARKERS if m in text]
    return found + [r.splitlines()[0] for r in regions if r in text]


def student_copy(nb: Any) -> Any:
    """The student version of a solution notebook (a new notebook; ``nb`` is not changed)."""
    from nbgrader.preprocessors import (  # type: ignore[import-untyped]  # nbgrader has no types
        ClearHiddenTests,
        ClearOutput,
        ClearSolutions,
        LockCells,
    )

    copy = nbformat.from_dict(nb)
    resources: dict[str, Any] = {}
    for step in (ClearSolutions(), ClearHiddenTests(), LockCells(), ClearOutput()):
        copy, resources = step.preprocess(copy, resources)
    leaks = _leaks(copy, solution_regions(nb))
    if leaks:
        raise TlabError(f"the student copy still holds solution text: {leaks}")
    return copy


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise TlabError(f"{out} is a file: give a folder for the student copies")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise TlabError(
            f"{out} exists and is not empty: pass --force to (over)write the student notebooks "
            "in it (other files are left alone), or choose another folder"
        )


def write_student_notebooks(out: str | Path, *, force: bool = False) -> list[Path]:
    """Write the student copy of every available notebook (00-12) into ``out``; returns the
    paths written. Refuses a non-empty ``out`` unless ``force``; never deletes a file."""
    out = Path(out)
    _check_out(out, force)
    copies = {
        info.path.name: student_copy(nbformat.read(info.path, as_version=4))
        for info in available_notebooks()
    }
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, copy in copies.items():
        nbformat.write(copy, out / name)
        written.append(out / name)
    return written
