"""The lab's map: every notebook, the paper section it teaches, and whether it exists yet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from tlab.errors import UnknownNameError

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"


@dataclass(frozen=True)
class NotebookInfo:
    """One numbered notebook of the lab."""

    name: str
    paper: str
    section: str
    teaches: str

    @property
    def path(self) -> Path:
        return NOTEBOOK_DIR / f"{self.name}.ipynb"

    @property
    def available(self) -> bool:
        return self.path.exists()


#: Every notebook of the lab, in order (the data lives in ``catalog.yaml`` beside this module).
CATALOG: tuple[NotebookInfo, ...] = tuple(
    NotebookInfo(**entry)
    for entry in yaml.safe_load((Path(__file__).with_name("catalog.yaml")).read_text("utf-8"))
)


def available_notebooks() -> list[NotebookInfo]:
    """The notebooks present in this checkout, in order."""
    return [info for info in CATALOG if info.available]


def find_notebook(name: str) -> NotebookInfo:
    """Look a notebook up by number ("03"), stem or file name."""
    wanted = Path(name).name.removesuffix(".ipynb")
    for info in available_notebooks():
        if wanted in (info.name, info.name.split("_", 1)[0]):
            return info
    raise UnknownNameError("notebook", name, [info.name for info in available_notebooks()])
