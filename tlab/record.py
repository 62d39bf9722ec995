"""Record a notebook's results so that a parameter sweep can collect them.

A notebook ends with one call::

    from tlab.record import record
    record({"clean_accuracy": clean, "adversarial_accuracy": adv}, zoo_key=entry.key)

Under ``python -m tlab sweep`` (see :mod:`tlab.runs.sweep`) the kernel that runs the notebook has
the environment variable ``TLAB_RECORD_DIR`` set to the point's own folder, so the notebook needs no
extra parameter. :func:`record` then writes ``record.json`` there, beside the executed notebook,
holding:

- ``parameters``: the values the sweep injected (read from the ``point.json`` the sweep wrote in
  the same folder), updated with any ``parameters=`` passed explicitly;
- ``metrics``: name -> number (the things the sweep tabulates and plots);
- ``extra``: any other JSON-able facts passed as keywords (a zoo key, a note, ...), among them
  ``preset``, written by :func:`begin` when the notebook starts;
- ``claims``: the claims of the notebook's claims tables (:func:`record_claims`, called by
  :func:`tlab.papers.claims.claims_table`), each as :meth:`tlab.papers.claims.Claim.as_record`
  gives it: code, statement, verdict, the per-seed effect with its 95 % interval and the
  number of seeds; ``python -m tlab report`` (:mod:`tlab.runs.report`) reads them;
- ``recorded_at`` and ``started_at`` (ISO times) and ``versions`` of the main libraries;
- ``complete: true``, the last key of the file.

The file is written to a temporary name, flushed to disk and renamed into place, so an
interruption (Ctrl-C, a killed worker) leaves either the previous file or none -- never a
half-written one that looks finished. Readers accept a record only if it parses and ends with
``complete: true`` (:func:`read_complete`). Calling :func:`record` again in the same run merges
the new metrics and extras into the earlier ones; :func:`begin`, which
:func:`tlab.notebook.startup.start` calls first thing in every notebook, starts a new record
(what an earlier run left in the folder belongs to that run).

Outside a sweep (``TLAB_RECORD_DIR`` unset) :func:`record` writes nothing: it checks the metrics
and returns the record it would have written, so a notebook runs the same way interactively.
Set ``TLAB_RECORD_DIR`` yourself to keep the record of a hand-run notebook.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import tlab
from tlab.errors import TlabError
from tlab.safe_files import atomic_write

#: Environment variable naming the folder a notebook records into (set by the sweep).
RECORD_DIR_ENV = "TLAB_RECORD_DIR"
#: What the notebook recorded (written by :func:`record`).
RECORD_FILE = "record.json"
#: The point's parameters, written by the sweep before the notebook starts.
POINT_FILE = "point.json"

_VERSIONED = ("torch", "torchvision", "numpy", "papermill", "dask", "distributed")


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON atomically (:func:`tlab.safe_files.atomic_write`): an interruption
    leaves ``path`` as it was."""
    atomic_write(path, json.dumps(data, indent=2, default=str).encode())


def read_complete(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` if it exists, parses and is marked ``complete: true``.

    A missing, unparseable or unmarked file gives None: the run that should have produced it
    did not finish, and the sweep runs that point again.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):  # absent, or truncated: as if never written
        return None
    if not isinstance(data, dict) or data.get("complete") is not True:
        return None
    return data


def record_dir() -> Path | None:
    """The folder :func:`record` writes to: ``$TLAB_RECORD_DIR``, or None outside a sweep."""
    value = os.environ.get(RECORD_DIR_ENV)
    return Path(value) if value else None


def library_versions() -> dict[str, str]:
    """Versions of Python, tlab and the installed main libraries (absent ones are left out)."""
    versions = {"python": platform.python_version(), "tlab": tlab.__version__}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _number(name: str, value: Any) -> int | float | bool:
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    raise TlabError(
        f"metric {name!r} is {value!r} ({type(value).__name__}); metrics must be "
        f"numbers -- pass other facts as keywords, e.g. record(metrics, {name}=...)"
    )


def check_metrics(metrics: Mapping[str, Any]) -> dict[str, int | float | bool]:
    """``metrics`` as a plain dict of name -> number, or an error naming the bad entry."""
    if not isinstance(metrics, Mapping):
        raise TlabError(
            f"record() takes a dict of metrics, e.g. record({{'accuracy': 0.9}}); "
            f"got {type(metrics).__name__}"
        )
    out = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise TlabError(f"metric names must be non-empty strings; got {name!r}")
        out[name] = _number(name, value)
    return out


def _json_able(name: str, value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise TlabError(
            f"record(..., {name}=...) must be JSON-able (numbers, strings, lists, dicts); {exc}"
        ) from exc
    return value


def record(
    metrics: Mapping[str, Any], *, parameters: Mapping[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """Record ``metrics`` (name -> number) and JSON-able ``extra`` facts for this run.

    Returns the record. Under a sweep it is also written atomically to
    ``$TLAB_RECORD_DIR/record.json`` (merged with an earlier record of the same run); outside a
    sweep nothing is written. ``parameters`` adds to (and overrides) the injected values.
    """
    values = check_metrics(metrics)
    extras = {name: _json_able(name, value) for name, value in extra.items()}
    folder = _checked_record_dir()
    previous = _previous(folder)
    return _write(
        folder,
        parameters=parameters or {},
        metrics={**previous.get("metrics", {}), **values},
        extra={**previous.get("extra", {}), **extras},
        claims=previous.get("claims", []),
    )


def begin(preset: str) -> dict[str, Any]:
    """Start this run's record with its ``preset`` (as ``extra["preset"]``), replacing whatever
    an earlier run left in the folder; outside a recorded run, write nothing.

    :func:`tlab.notebook.startup.start` calls it, so the preset is in the record even when the
    notebook runs with its default ``PRESET`` and nothing injected it.
    """
    return _write(_checked_record_dir(), parameters={}, metrics={}, extra={"preset": preset})


def record_claims(claims: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Add ``claims`` (each as :meth:`tlab.papers.claims.Claim.as_record` gives it) to this run's
    record, and return the record; outside a recorded run, write nothing.

    A claim with the code and statement of one recorded earlier in the run replaces it (a table
    shown twice is recorded once); the others keep their order.
    """
    entries = [_claim_entry(claim) for claim in claims]
    folder = _checked_record_dir()
    previous = _previous(folder)
    merged = {(c["code"], c["statement"]): c for c in previous.get("claims", [])}
    merged |= {(c["code"], c["statement"]): c for c in entries}
    return _write(
        folder,
        parameters={},
        metrics=previous.get("metrics", {}),
        extra=previous.get("extra", {}),
        claims=list(merged.values()),
        keep_parameters=previous.get("parameters"),
    )


def _claim_entry(claim: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(claim, Mapping) or not all(
        isinstance(claim.get(key), str) for key in ("code", "statement", "verdict")
    ):
        raise TlabError(
            "record_claims() takes claims as Claim.as_record() gives them (code, statement, "
            f"verdict, ...); got {claim!r}"
        )
    try:
        json.dumps(claim, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TlabError(
            f"claim {claim['code']!r} cannot be written as JSON ({exc}); record claims as "
            "Claim.as_record() gives them (undefined numbers as None)"
        ) from exc
    return dict(claim)


def _checked_record_dir() -> Path | None:
    folder = record_dir()
    if folder is not None and not folder.is_dir():
        raise TlabError(
            f"{RECORD_DIR_ENV}={folder} is not a folder; create it or unset "
            f"{RECORD_DIR_ENV} to record nothing"
        )
    return folder


def _previous(folder: Path | None) -> dict[str, Any]:
    return (read_complete(folder / RECORD_FILE) if folder else None) or {}


def _write(
    folder: Path | None,
    *,
    parameters: Mapping[str, Any],
    metrics: Mapping[str, Any],
    extra: Mapping[str, Any],
    claims: Sequence[Mapping[str, Any]] = (),
    keep_parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of this run (written to ``folder`` unless it is None): the point's injected
    parameters updated with ``parameters`` (or ``keep_parameters``, those already recorded)."""
    point = (read_complete(folder / POINT_FILE) if folder else None) or {}
    merged_params = (
        dict(keep_parameters)
        if keep_parameters is not None
        else {**point.get("parameters", {}), **dict(parameters)}
    )
    data = {
        "point_id": point.get("point_id"),
        "parameters": merged_params,
        "metrics": dict(metrics),
        "extra": dict(extra),
        "claims": list(claims),
        "started_at": point.get("started_at"),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": library_versions(),
        "complete": True,  # last key: the marker readers check
    }
    if folder is not None:
        write_json_atomic(folder / RECORD_FILE, data)
    return data
