"""The grid of a batch run: parsing the YAML, expanding it into points, checking each point
against the notebook's parameters, and a stable id per point (see :mod:`tlab.runs.sweep`)."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tlab.errors import TlabError
from tlab.runs.catalog import find_notebook
from tlab.runs.execute import check_parameters

GRID_KEYS = ("fixed", "explicit")
#: Column names of the results table; a notebook parameter may not use them.
TABLE_COLUMNS = ("point_id", "status", "metric", "value", "seconds", "error", "notebook")


@dataclass(frozen=True)
class Point:
    """One run of the notebook: its stable id and the parameters papermill injects."""

    id: str
    parameters: dict[str, Any]
    fixed: tuple[str, ...] = ()


def _check_json_able(where: str, value: Any) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TlabError(
            f"{where}: value {value!r} is not a plain number, text, list or "
            f"mapping ({exc}); quote it in the YAML file"
        ) from exc


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise TlabError(f"{where}: {name!r} is not a parameter name (a Python identifier)")
    if name in TABLE_COLUMNS:
        raise TlabError(
            f"{where}: a parameter may not be called {name!r}; the results table "
            f"uses the columns {', '.join(TABLE_COLUMNS)}"
        )
    return name


def load_grid(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The grid from a YAML file (or an already loaded mapping), not yet expanded."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    try:
        grid = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TlabError(
            f"cannot read the grid file {path} ({exc.strerror or exc}); give the "
            "path of a YAML grid, e.g. examples/grids/00_eps_seed.yaml"
        ) from exc
    except yaml.YAMLError as exc:
        detail = str(exc).replace("\n", " ")
        raise TlabError(f"the grid file {path} is not valid YAML: {detail}") from exc
    if grid is None:
        raise TlabError(
            f"the grid {path} is empty; give each parameter to vary a list of values, "
            "e.g. 'EPS: [0.0, 0.03]'"
        )
    if not isinstance(grid, dict):
        raise TlabError(
            f"the grid {path} must be a YAML mapping of parameter -> list of values "
            f"(plus optional fixed: and explicit:), not a {type(grid).__name__}"
        )
    return grid


def expand_grid(grid: Mapping[str, Any]) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The grid's points (cartesian product, then ``explicit``, each with ``fixed``) and the
    names of the fixed parameters. Duplicates are kept here; :func:`plan_points` drops them."""
    fixed = grid.get("fixed") or {}
    explicit = grid.get("explicit") or []
    if not isinstance(fixed, Mapping):
        raise TlabError(
            "grid 'fixed:' must be a mapping of parameter -> value, e.g. 'fixed: {PRESET: smoke}'"
        )
    if not isinstance(explicit, list) or not all(isinstance(p, Mapping) for p in explicit):
        raise TlabError(
            "grid 'explicit:' must be a list of mappings, e.g. 'explicit: [{EPS: 0.1, SEED: 3}]'"
        )
    axes = {k: v for k, v in grid.items() if k not in GRID_KEYS}
    for name, values in axes.items():
        _check_name(name, "grid")
        if not isinstance(values, list):
            raise TlabError(
                f"grid: {name} must be a list of values, e.g. '{name}: [{values!r}]'; "
                "put a single value under 'fixed:'"
            )
        if not values:
            raise TlabError(
                f"grid: {name} has no values, so the grid has no points; "
                "give it at least one value or remove it"
            )
        for value in values:
            _check_json_able(f"grid: {name}", value)
    for name, value in fixed.items():
        _check_name(name, "grid fixed")
        _check_json_able(f"grid fixed: {name}", value)
        if name in axes:
            raise TlabError(f"grid: {name} is both varied and fixed; keep only one of them")
    for number, point in enumerate(explicit, 1):
        for name, value in point.items():
            _check_name(name, f"grid explicit point {number}")
            _check_json_able(f"grid explicit point {number}: {name}", value)
            if name in fixed:
                raise TlabError(
                    f"grid explicit point {number} sets {name}, which is fixed; "
                    f"remove it from the point or from 'fixed:'"
                )
    points = (
        [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
        if axes
        else []
    )
    points += [dict(p) for p in explicit]
    if not points:
        raise TlabError(
            "the grid has no points; give each parameter to vary a list of values "
            "(e.g. 'EPS: [0.0, 0.03]') or list points under 'explicit:'"
        )
    return [{**fixed, **p} for p in points], tuple(fixed)


def _slug_value(value: Any) -> str:
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def point_id(parameters: Mapping[str, Any], fixed: tuple[str, ...] = ()) -> str:
    """``<slug>-<hash>``: readable non-fixed parameters, and a hash of all of them."""
    text = json.dumps(dict(parameters), sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    shown = [
        f"{name}-{_slug_value(parameters[name])}"
        for name in sorted(parameters)
        if name not in fixed
    ]
    slug = re.sub(r"[^A-Za-z0-9._+=-]+", "", "_".join(shown))[:60].strip("_-.") or "point"
    return f"{slug}-{digest}"


def check_points(notebook: Path, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every point checked against the notebook's parameters (:func:`check_parameters`)."""
    return [check_parameters(notebook, point) for point in points]


def resolve_notebook(name: str | Path) -> Path:
    """A notebook path from a catalog number or name ("00", "00_start_here") or a file path."""
    path = Path(name)
    if path.suffix == ".ipynb" and (path.parent != Path(".") or path.exists()):
        if not path.is_file():
            raise TlabError(
                f"no notebook file {path}; give an existing .ipynb path or a "
                "notebook number (python -m tlab notebooks lists them)"
            )
        return path.resolve()
    return find_notebook(str(name)).path


def plan_points(notebook: Path, grid: Mapping[str, Any]) -> list[Point]:
    """The checked, de-duplicated points of ``grid`` for ``notebook``, in grid order."""
    raw, fixed = expand_grid(grid)
    points: dict[str, Point] = {}
    for params in check_points(notebook, raw):
        pid = point_id(params, fixed)
        points.setdefault(pid, Point(pid, params, fixed))
    return list(points.values())
