"""Command line: ``python -m tlab run | notebooks | domains | presets | prepare | zoo | sweep |
report | student``.

Errors the user can fix (a TlabError) print as one line prefixed ``tlab: error:`` and exit 2;
failures inside notebooks are listed in the run's index and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from tlab.checks import check_choice
from tlab.errors import TlabError
from tlab.presets import PRESETS


def _parse_assignment(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise TlabError(f"parameter {text!r} must look like NAME=VALUE, e.g. -p EPOCHS=3")
    name, value = text.split("=", 1)
    return name.strip(), yaml.safe_load(value)


def _cmd_run(args: argparse.Namespace) -> int:
    from tlab.runs.runner import run_notebooks

    params = dict(_parse_assignment(p) for p in args.param)
    out = args.out or f"runs/{args.preset}"
    runs = run_notebooks(args.notebooks, preset=args.preset, out_dir=out, parameters=params)
    return _failures(runs)


def _failures(runs: Sequence[Any]) -> int:
    """Exit code of a batch of notebook runs: 1, after naming the failed ones, or 0."""
    failed = [r.name for r in runs if r.status != "ok"]
    if failed:
        print(f"tlab: {len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _cmd_notebooks(_: argparse.Namespace) -> int:
    from tlab.runs.catalog import CATALOG

    for info in CATALOG:
        state = "" if info.available else "  (not written yet)"
        print(f"{info.name:36s} {info.paper:20s} {info.section:24s}{state}\n    {info.teaches}")
    return 0


def _cmd_domains(_: argparse.Namespace) -> int:
    from tlab.core.data import list_domains

    for info in list_domains():
        print(f"{info.name:14s} {info.kind:9s} {info.num_classes:4d} classes  {info.description}")
    return 0


#: Where each preset table lives: ``python -m tlab presets NAME`` prints one of them.
PRESET_TABLES = {
    "00-01": "tlab.papers.start_here",
    "zhang": "tlab.papers.zhang",
    "zhang-ablations": "tlab.papers.zhang.ablations",
    "davchev": "tlab.papers.davchev",
    "wang": "tlab.papers.wang",
    "batch-runs": "tlab.runs.sweep",
}


def _cmd_presets(args: argparse.Namespace) -> int:
    import importlib

    from tlab.presets import PRESETS as NAMES

    for name in args.tables or PRESET_TABLES:
        check_choice("preset table", name, PRESET_TABLES)
        table = importlib.import_module(PRESET_TABLES[name]).PRESETS
        rows = [["knob", *NAMES, "means"]] + [
            [r["knob"], *(show_value(r[p]) for p in NAMES), r["means"]] for r in table.rows()
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(NAMES) + 1)]
        print(f"{table.title}  [{name}]")
        for row in rows:
            cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
            print("  " + "  ".join([*cells, row[-1]]))
        print()
    return 0


def show_value(value: Any) -> str:
    """A preset value as a person reads it: budgets as k/255, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float) and 0 < value < 1 and abs(value * 255 - round(value * 255)) < 1e-9:
        return f"{round(value * 255)}/255"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    return str(value)


def _cmd_prepare(args: argparse.Namespace) -> int:
    """Domains and notebook 00's model; then, unless ``--domains-only``, one headless run of the
    notebooks (as ``tlab run``: executed notebooks and HTML pages in ``--out``), so that their
    models and cached results are on disk and each notebook opens warm."""
    from tlab.core.data import load_domain
    from tlab.core.zoo import get_or_train
    from tlab.papers.start_here import EMBEDDED_DOMAINS, start_here_spec
    from tlab.runs.runner import run_notebooks

    for name, params in EMBEDDED_DOMAINS.items():
        domain = load_domain(name, **params)
        print(f"{name}: {len(domain.train)} train / {len(domain.test)} test images ready")
    entry = get_or_train(start_here_spec(args.preset))
    print(f"notebook 00 model ready: {entry.key} ({'cached' if entry.from_cache else 'trained'})")
    if args.domains_only:
        return 0
    out = args.out or f"runs/{args.preset}"
    runs = run_notebooks(args.notebooks, preset=args.preset, out_dir=out)
    if _failures(runs):
        return 1
    print(f"{len(runs)} notebook(s) prepared at preset {args.preset!r}: they now open warm")
    return 0


def _cmd_zoo(args: argparse.Namespace) -> int:
    from tlab.core import zoo

    if args.action == "list":
        rows = zoo.list_entries()
        print(f"{len(rows)} model(s) in {zoo.zoo_dir()}")
        for r in rows:
            acc = "   ?  " if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:5.1f}%"
            print(
                f"{r['key']}  {acc}  {r['arch']:10s} {r['strategy']:10s} frozen={r['frozen']} "
                f"n={r['n']} adv={r['adversarial']} on {r['domain']}"
            )
        return 0
    if not args.keys and not args.all:
        raise TlabError("say which entries to clear: `zoo clear KEY ...` or `zoo clear --all`")
    print(f"removed {zoo.clear(None if args.all else args.keys)} zoo entr(y/ies)")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from tlab.runs.sweep import run_sweep

    report = run_sweep(
        args.notebook, args.grid, out_dir=args.out, workers=args.workers, scheduler=args.scheduler
    )
    print(
        f"{len(report.ran)} ran, {len(report.skipped)} already complete, {len(report.failed)} "
        f"failed in {report.seconds:.1f} s; summary: {report.files['html']}"
    )
    if report.failed:
        print(
            f"tlab: {len(report.failed)} point(s) failed (see their result.json); run the same "
            f"command again to retry them: {', '.join(report.failed)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from tlab.runs.report import write_report

    written = write_report(args.runs, args.out, readme=args.readme)
    print(f"report: {written['html']}\nclaims table: {written['markdown']}")
    if args.readme:
        state = "updated" if "readme" in written else "already up to date"
        print(f"{args.readme}: claims block {state}")
    return 0


def _cmd_student(args: argparse.Namespace) -> int:
    from tlab.runs.student import write_student_notebooks

    written = write_student_notebooks(args.out, force=args.force)
    print(
        f"{len(written)} student notebook(s) in {args.out}: solutions replaced by stubs, "
        "hidden checks removed, outputs cleared"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks headless with papermill")
    run.add_argument("notebooks", nargs="*", help="numbers or names (default: all)")
    run.add_argument("--preset", default="quick", choices=PRESETS)
    run.add_argument("--out", help="output folder (default: runs/PRESET)")
    run.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a notebook parameter (YAML value), repeatable",
    )
    run.set_defaults(func=_cmd_run)
    sub.add_parser("notebooks", help="the lab's map").set_defaults(func=_cmd_notebooks)
    sub.add_parser("domains", help="list the domains").set_defaults(func=_cmd_domains)
    presets = sub.add_parser("presets", help="what each preset means, paper by paper")
    presets.add_argument(
        "tables",
        nargs="*",
        metavar="TABLE",
        help=f"one or more of {', '.join(PRESET_TABLES)} (default: all)",
    )
    presets.set_defaults(func=_cmd_presets)
    prepare = sub.add_parser(
        "prepare",
        help="make notebooks open warm: generate the embedded domains, train notebook 00's "
        "model, then run the notebooks once (their models and cached results stay on disk)",
    )
    prepare.add_argument("--preset", default="quick", choices=PRESETS)
    prepare.add_argument(
        "notebooks", nargs="*", help="numbers or names of the notebooks to run (default: all)"
    )
    prepare.add_argument(
        "--out", help="where the runs' notebooks and HTML pages go (default: runs/PRESET)"
    )
    prepare.add_argument(
        "--domains-only",
        action="store_true",
        help="stop after the domains and notebook 00's model (under a minute)",
    )
    prepare.set_defaults(func=_cmd_prepare)
    zoo = sub.add_parser("zoo", help="list or clear trained models")
    zoo.add_argument("action", choices=("list", "clear"))
    zoo.add_argument("keys", nargs="*")
    zoo.add_argument("--all", action="store_true", help="with clear: remove every entry")
    zoo.set_defaults(func=_cmd_zoo)
    sweep = sub.add_parser("sweep", help="run a notebook over a parameter grid (papermill + Dask)")
    sweep.add_argument("notebook", help="number or name of a lab notebook, or a path to a .ipynb")
    sweep.add_argument("--grid", required=True, help="YAML grid file (format: tlab/runs/sweep.py)")
    sweep.add_argument("--out", help="output folder (default: runs/sweep-NOTEBOOK)")
    sweep.add_argument("--workers", type=int, help="local worker processes (default: CPUs)")
    sweep.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="use a running Dask cluster, e.g. tcp://127.0.0.1:8786",
    )
    sweep.set_defaults(func=_cmd_sweep)
    report = sub.add_parser(
        "report",
        help="one offline page: every paper's claims, its numbers and the lab's, per preset",
    )
    report.add_argument(
        "--runs", default="runs", help="folder searched for record.json files (default: runs)"
    )
    report.add_argument("--out", default="runs/report", help="output folder (default: runs/report)")
    report.add_argument(
        "--readme",
        metavar="FILE",
        help="also write the claims table into FILE, between <!-- report:claims:start --> and "
        "<!-- report:claims:end -->",
    )
    report.set_defaults(func=_cmd_report)
    student = sub.add_parser(
        "student", help="write the student copies of the notebooks (exercises unsolved)"
    )
    student.add_argument("out", help="folder for the student notebooks")
    student.add_argument(
        "--force", action="store_true", help="write into a non-empty folder (deletes nothing)"
    )
    student.set_defaults(func=_cmd_student)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TlabError as exc:
        print(f"tlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tlab: interrupted", file=sys.stderr)
        return 130
