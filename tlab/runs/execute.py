"""The one way tlab runs a notebook headless: papermill, with the parameters checked first.

``python -m tlab run`` (:mod:`tlab.runs.runner`) and every point of a sweep
(:mod:`tlab.runs.sweep`) go through :func:`execute`: kernel ``python3``, working folder = the
notebook's own, an error inside the notebook returned as a failed :class:`Execution` (never
raised). :func:`check_parameters` reads the notebook's cell tagged ``parameters`` with
papermill and refuses an undeclared name or a value whose type differs from the default's.
"""

from __future__ import annotations

import ast
import operator
import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import papermill
from jupyter_client import AsyncKernelManager
from traitlets import Dict
from traitlets.config import Config

from tlab.errors import TlabError


@dataclass(frozen=True)
class Execution:
    """How one headless run of a notebook ended."""

    status: str  # "ok" or "failed"
    error: str  # "ExceptionName: message" of the failing cell, "" when ok
    seconds: float


def execute(
    notebook: Path,
    output: Path,
    parameters: Mapping[str, Any],
    *,
    kernel_env: Mapping[str, str | None] | None = None,
) -> Execution:
    """Run ``notebook`` with ``parameters`` into ``output`` (checked first, see
    :func:`check_parameters`). ``kernel_env``: variables set in (None: removed from) the
    kernel's environment, e.g. a sweep point's ``TLAB_RECORD_DIR`` and thread share."""
    values = check_parameters(notebook, parameters)
    start, error = time.perf_counter(), ""
    with tempfile.TemporaryDirectory(prefix="tlab-kernel-") as sockets:
        config = Config(
            {
                "RecordingKernelManager": {
                    "extra_env": dict(kernel_env or {}),
                    # Unix sockets in a folder of this run's own, not TCP ports: jupyter_client
                    # picks a "free" TCP port by binding and releasing it, so two processes
                    # starting kernels at the same moment (a local sweep's Dask workers) could
                    # both be handed the same port ("Address already in use").
                    "transport": "ipc",
                    "ip": str(Path(sockets) / "kernel"),
                }
            }
        )
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=values,
                cwd=str(notebook.parent),
                kernel_name="python3",
                progress_bar=False,
                kernel_manager_class=RecordingKernelManager,
                config=config,
            )
        except papermill.PapermillExecutionError as exc:
            error = f"{exc.ename}: {exc.evalue}"
    return Execution("failed" if error else "ok", error, time.perf_counter() - start)


class RecordingKernelManager(AsyncKernelManager):
    """A kernel manager that adds ``extra_env`` to the kernel's environment.

    Used to hand each notebook its ``TLAB_RECORD_DIR`` (and a local sweep's thread share)
    without touching the worker's own environment (safe when a worker runs several points in
    threads). A variable mapped to None is removed from the kernel's environment.
    """

    extra_env = Dict(
        config=True, help="variables added to (None: removed from) the kernel's environment"
    )

    # AsyncKernelManager.start_kernel is a coroutine function, but jupyter_client types it
    # with the synchronous KernelManager's signature
    async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
        env = {**(kw.get("env") or os.environ), **self.extra_env}
        kw["env"] = {name: value for name, value in env.items() if value is not None}
        # the kernel's start-up warnings would garble the progress bar
        kw["extra_arguments"] = [*kw.get("extra_arguments", []), "--IPKernelApp.log_level=ERROR"]
        await super().start_kernel(**kw)


# ------------------------------------------------------------------ the notebook's parameters


_TYPES = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "list": list,
    "tuple": list,
    "dict": dict,
}
_ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


@dataclass(frozen=True)
class DeclaredParameter:
    """A parameter of a notebook: its default (source text) and the type a value must have
    (``None``: any type is accepted, e.g. for a ``None`` default)."""

    name: str
    default: str
    expected: type | None
    none_ok: bool
    value: Any = None  # the default's value when it is a plain value or arithmetic, else None


def _arithmetic(node: ast.AST) -> float | int:
    """Evaluate a default like ``16 / 255``: numbers and + - * / // % only, nothing else."""
    # isinstance() for the type checker; type() leaves out bool
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and type(node.value) in (int, float)
    ):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _arithmetic(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](_arithmetic(node.left), _arithmetic(node.right))
    raise ValueError("not plain arithmetic")


def _default_value(source: str) -> Any:
    """The value of a default written as a literal or plain arithmetic; None otherwise."""
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            return _arithmetic(ast.parse(source, mode="eval").body)
        except (ValueError, SyntaxError, ZeroDivisionError):
            return None  # an expression we do not evaluate: any value is accepted


def _default_type(value: Any) -> tuple[type | None, bool]:
    if value is None:
        return None, True
    kind = list if isinstance(value, tuple) else type(value)
    return (kind, False) if kind in (int, float, str, bool, list, dict) else (None, True)


def _annotation_type(annotation: str) -> tuple[type | None, bool]:
    none_ok = "Optional" in annotation or re.search(r"\bNone\b", annotation) is not None
    inner = re.sub(r"^(typing\.)?Optional\[(.*)\]$", r"\2", annotation.strip())
    parts = [p.strip() for p in inner.split("|") if p.strip() != "None"]
    if len(parts) != 1:
        return None, True
    return _TYPES.get(parts[0].split("[")[0].removeprefix("typing.").lower()), none_ok


def declared_parameters(notebook: Path) -> dict[str, DeclaredParameter]:
    """The notebook's parameters (from its cell tagged ``parameters``) with expected types."""
    out = {}
    for name, spec in papermill.inspect_notebook(str(notebook)).items():
        annotation = spec.get("inferred_type_name") or "None"
        value = _default_value(spec["default"])
        expected, none_ok = (
            _annotation_type(annotation) if annotation != "None" else _default_type(value)
        )
        if expected is None:
            none_ok = True
        value = list(value) if isinstance(value, tuple) else value
        out[name] = DeclaredParameter(name, spec["default"], expected, none_ok, value)
    return out


def _conform(param: DeclaredParameter, value: Any) -> Any:
    """``value`` if its type fits ``param`` (an int becomes a float for a float), else an error."""
    expected = param.expected
    if expected is None or (value is None and param.none_ok):
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool):
        return value
    hint = ""
    if isinstance(value, str) and re.fullmatch(r"[-+]?[0-9.]+[eE][-+]?[0-9]+", value):
        hint = f" (YAML reads {value} as text: write it with a decimal point, e.g. 1.0e-3)"
    raise TlabError(
        f"{param.name}={value!r} is of type {type(value).__name__}, but the "
        f"notebook's default {param.name} = {param.default} is of type "
        f"{expected.__name__}; give {expected.__name__} values{hint}"
    )


def check_parameters(notebook: Path, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """``parameters`` with values conformed to the notebook's declared parameters, or an error
    naming the undeclared parameter or the ill-typed value (papermill itself would only warn)."""
    declared = declared_parameters(notebook)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        names = ", ".join(declared) if declared else "none (no cell is tagged 'parameters')"
        raise TlabError(
            f"notebook {notebook.name} declares no parameter "
            f"{', '.join(unknown)}; its parameters are: {names}"
        )
    return {name: _conform(declared[name], value) for name, value in parameters.items()}
