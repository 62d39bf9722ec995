"""tlab.runs.sweep: grids, point ids, checks before any run, local and remote Dask runs, resuming,
collection, and several workers sharing one zoo entry.

The runs use tests/fixtures/sweep_probe.ipynb, a notebook that records ``product = X * N``,
``scaled = X * SCALE`` and ``label_length = len(LABEL)``, fails on request and can ask the zoo for
a tiny model.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tlab.core import zoo
from tlab.core.device import available_cpus
from tlab.errors import TlabError
from tlab.record import write_json_atomic
from tlab.runs import cli
from tlab.runs.cluster import local_kernel_env
from tlab.runs.execute import declared_parameters
from tlab.runs.grid import expand_grid, plan_points, point_id
from tlab.runs.sweep import MANIFEST_FILE, run_sweep
from tlab.runs.sweep_results import RESULT_FILE

PROBE = Path(__file__).resolve().parent / "fixtures" / "sweep_probe.ipynb"
SCALE = 0.25  # the probe's default SCALE = 1 / 4
N_DEFAULT = 2  # the probe's default N


def write_grid(folder: Path, grid: dict | str) -> Path:
    path = folder / "grid.yaml"
    path.write_text(grid if isinstance(grid, str) else yaml.safe_dump(grid, sort_keys=False))
    return path


def results(out: Path, point: str) -> dict:
    return json.loads((out / point / RESULT_FILE).read_text())


def check_values(table: pd.DataFrame) -> None:
    """Every recorded metric equals what the probe computes from the point's parameters."""
    default = pd.Series(1.0, index=table.index)
    n = table["N"].astype(float) if "N" in table else N_DEFAULT * default
    length = table["LABEL"].str.len().astype(float) if "LABEL" in table else len("a") * default
    expected = {"product": table["X"] * n, "scaled": table["X"] * SCALE, "label_length": length}
    for metric, values in expected.items():
        rows = table["metric"] == metric
        assert rows.any()
        assert (table.loc[rows, "value"] - values[rows]).abs().max() < 1e-12, metric


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    """A Dask cluster on 127.0.0.1 started by the test (two worker processes), whose workers
    keep their zoo in a folder of their own: (scheduler address, that data folder)."""
    from dask.distributed import LocalCluster

    data = tmp_path_factory.mktemp("cluster-data")
    env = pytest.MonkeyPatch()
    env.setenv("TLAB_DATA", str(data))  # inherited by the worker processes
    try:
        cluster = LocalCluster(
            host="127.0.0.1",
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
    finally:
        env.undo()
    yield cluster.scheduler_address, data
    cluster.close()


# ------------------------------------------------------------------ grids and ids


def test_grid_is_the_product_in_file_order_then_explicit_points_all_with_fixed():
    points, fixed = expand_grid(
        {
            "A": [1, 2],
            "B": ["x", "y"],
            "fixed": {"C": True},
            "explicit": [{"A": 9}, {"B": "z", "D": [1, 2]}],
        }
    )
    assert fixed == ("C",)
    assert points == [
        {"C": True, "A": 1, "B": "x"},
        {"C": True, "A": 1, "B": "y"},
        {"C": True, "A": 2, "B": "x"},
        {"C": True, "A": 2, "B": "y"},
        {"C": True, "A": 9},
        {"C": True, "B": "z", "D": [1, 2]},
    ]


def test_point_ids_are_readable_stable_and_hash_every_parameter():
    pid = point_id({"EPS": 0.031372549, "SEED": 1, "PRESET": "smoke"}, fixed=("PRESET",))
    assert re.fullmatch(r"EPS-0\.03137_SEED-1-[0-9a-f]{8}", pid), pid
    assert point_id({"PRESET": "smoke", "SEED": 1, "EPS": 0.031372549}, ("PRESET",)) == pid
    assert point_id({"EPS": 0.031372549, "SEED": 1, "PRESET": "paper"}, ("PRESET",)) != pid
    assert point_id({"EPS": 0.031372549, "SEED": 2, "PRESET": "smoke"}, ("PRESET",)) != pid
    assert point_id({"EPS": 0.0313725491, "SEED": 1, "PRESET": "smoke"}, ("PRESET",)) != pid
    assert point_id({}, ()).startswith("point-")


def test_declared_types_come_from_annotations_literals_and_arithmetic():
    declared = declared_parameters(PROBE)
    assert list(declared) == ["X", "N", "LABEL", "SCALE", "FAIL", "FAIL_IF_FILE", "ZOO_N"]
    assert {n: p.expected for n, p in declared.items()} == {
        "X": float,
        "N": int,
        "LABEL": str,
        "SCALE": float,
        "FAIL": bool,
        "FAIL_IF_FILE": str,
        "ZOO_N": int,
    }
    assert declared["SCALE"].value == SCALE and declared["N"].value == N_DEFAULT


def test_plan_converts_ints_for_floats_and_drops_duplicate_points():
    points = plan_points(PROBE, {"X": [1, 2.5], "explicit": [{"X": 1.0}, {"N": 4}]})
    assert [p.parameters for p in points] == [{"X": 1.0}, {"X": 2.5}, {"N": 4}]
    assert type(points[0].parameters["X"]) is float
    assert points[0].id == plan_points(PROBE, {"X": [1.0]})[0].id


# ------------------------------------------------------------------ bad input, before any run


def sweep_error(capsys, *args: str) -> str:
    code = cli.main(["sweep", *args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("tlab: error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    "grid, message",
    [
        (
            "NOPE: [1]\nX: [1.0]\n",
            "declares no parameter NOPE; its parameters are: X, N, LABEL, "
            "SCALE, FAIL, FAIL_IF_FILE, ZOO_N",
        ),
        (
            "N: [1, 2.5]\n",
            "N=2.5 is of type float, but the notebook's default N = 2 is of type int",
        ),
        (
            "LABEL: [3]\n",
            'LABEL=3 is of type int, but the notebook\'s default LABEL = "a" is of type str',
        ),
        ("N: [true]\n", "N=True is of type bool"),
        (
            "FAIL: [1]\n",
            "FAIL=1 is of type int, but the notebook's default FAIL = False is of type bool",
        ),
        ("SCALE: [1e-3]\n", "YAML reads 1e-3 as text: write it with a decimal point"),
        ("X: [1.0]\nexplicit:\n  - {X: big}\n", "X='big' is of type str"),
        ("", "is empty"),
        ("# only a comment\n", "is empty"),
        ("X: []\n", "X has no values, so the grid has no points"),
        ("fixed: {X: 1.0}\n", "the grid has no points"),
        ("X: 1.0\n", "X must be a list of values"),
        ("X: [1.0]\nfixed: {X: 2.0}\n", "X is both varied and fixed"),
        (
            "X: [1.0]\nfixed: {N: 3}\nexplicit:\n  - {N: 4}\n",
            "explicit point 1 sets N, which is fixed",
        ),
        ("value: [1.0]\n", "a parameter may not be called 'value'"),
        ("- 1\n- 2\n", "must be a YAML mapping"),
        ("X: [1.0, 2.0\n", "is not valid YAML"),
        ("X: [2020-01-01]\n", "is not a plain number, text, list or mapping"),
    ],
)
def test_bad_grids_are_one_clear_error_before_any_run(grid, message, tmp_path, capsys):
    out = tmp_path / "out"
    line = sweep_error(
        capsys, str(PROBE), "--grid", str(write_grid(tmp_path, grid)), "--out", str(out)
    )
    assert message in line
    assert not out.exists()


def test_bad_command_lines_are_one_clear_error(tmp_path, capsys):
    grid = str(write_grid(tmp_path, {"X": [1.0, 2.0]}))
    assert "unknown notebook '99'" in sweep_error(capsys, "99", "--grid", grid)
    assert "no notebook file" in sweep_error(capsys, str(tmp_path / "nope.ipynb"), "--grid", grid)
    assert "cannot read the grid file" in sweep_error(
        capsys, str(PROBE), "--grid", str(tmp_path / "missing.yaml")
    )
    assert "--workers=0 must be an integer >= 1" in sweep_error(
        capsys, str(PROBE), "--grid", grid, "--workers", "0"
    )
    assert "leave out --workers" in sweep_error(
        capsys, str(PROBE), "--grid", grid, "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = sweep_error(capsys, str(PROBE), "--grid", grid, "--out", str(blocker / "out"))
    assert f"cannot write to {blocker / 'out'}" in line and "--out" in line
    used = tmp_path / "used"
    used.mkdir()
    write_json_atomic(
        used / MANIFEST_FILE, {"notebook": "/elsewhere/other.ipynb", "complete": True}
    )
    line = sweep_error(capsys, str(PROBE), "--grid", grid, "--out", str(used))
    assert "holds a sweep of /elsewhere/other.ipynb" in line
    assert sorted(p.name for p in used.iterdir()) == [MANIFEST_FILE]


def test_an_unreachable_scheduler_fails_within_seconds(tmp_path):
    import socket

    with socket.socket() as sock:  # a loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    out = tmp_path / "out"
    start = time.perf_counter()
    with pytest.raises(TlabError, match=f"cannot reach the Dask scheduler at {address} within 2 s"):
        run_sweep(PROBE, {"X": [1.0]}, out_dir=out, scheduler=address, connect_timeout=2)
    assert time.perf_counter() - start < 10
    assert [p.name for p in out.iterdir() if p.is_dir()] == []


# ------------------------------------------------------------------ runs


def test_local_sweep_on_two_workers_collects_a_tidy_table(tmp_path):
    grid = {"X": [0.5, 2], "N": [1, 3], "explicit": [{"X": 2.0, "N": 3}]}
    out = tmp_path / "out"
    report = run_sweep(PROBE, write_grid(tmp_path, grid), out_dir=out, workers=2, progress=False)
    ids = [p.id for p in report.points]
    assert len(ids) == 4 and sorted(report.ran) == sorted(ids)  # the repeated point runs once
    assert report.failed == [] and report.skipped == []

    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 4 * 3 and set(table["status"]) == {"ok"}
    assert set(table["point_id"]) == set(ids)
    assert table.groupby("point_id")["metric"].apply(sorted).map(tuple).unique().tolist() == [
        ("label_length", "product", "scaled")
    ]
    assert table["X"].dtype == "float64" and set(table["X"]) == {0.5, 2.0}
    check_values(table)
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == len(table) and abs(csv["value"].sum() - table["value"].sum()) < 1e-9

    page = (out / "summary.html").read_text()
    assert page.count('class="plotly-graph-div"') == 3 * 2  # 3 metrics x (X, N)
    assert "product vs X" in page and (out / "plotly.min.js").stat().st_size > 100_000
    pids = set()
    for pid in ids:
        result = results(out, pid)
        assert list(result)[-1] == "complete" and result["complete"] is True
        assert result["status"] == "ok" and (out / pid / "sweep_probe.ipynb").exists()
        pids.add(result["pid"])
    assert len(pids) == 2  # both worker processes ran points
    # kernels talk over Unix sockets of their own: two workers starting kernels at the same
    # moment can no longer be handed the same TCP port (a failure seen in CI)
    assert {results(out, pid)["extra"]["kernel_transport"] for pid in ids} == {"ipc"}
    share = str(max(1, available_cpus() // 2))
    # the 2 workers share the CPUs; dask's MALLOC_TRIM_THRESHOLD_ stays out of the kernels
    assert {json.dumps(results(out, pid)["extra"]["environment"]) for pid in ids} == {
        json.dumps({"OMP_NUM_THREADS": share, "MALLOC_TRIM_THRESHOLD_": None})
    }


def test_local_kernels_share_the_cpus_and_drop_the_malloc_trim_setting(monkeypatch):
    monkeypatch.setattr("joblib.cpu_count", lambda: 8)  # the CPUs available (tlab.core.device)
    assert local_kernel_env(2) == {
        "OMP_NUM_THREADS": "4",
        "MKL_NUM_THREADS": "4",
        "MALLOC_TRIM_THRESHOLD_": None,
    }
    assert local_kernel_env(3)["OMP_NUM_THREADS"] == "2"
    assert local_kernel_env(16)["OMP_NUM_THREADS"] == "1"


def test_cli_sweep_on_an_existing_loopback_cluster(loopback, tmp_path, capsys):
    address, _ = loopback
    out = tmp_path / "out"
    grid = write_grid(
        tmp_path,
        "X: [1.0, 4.0]\nLABEL: [ab]\nfixed:\n  N: 5\n"
        "explicit:\n  - {X: 2.0, LABEL: abcd}\n  - {X: 3.0}\n",
    )
    assert (
        cli.main(
            ["sweep", str(PROBE), "--grid", str(grid), "--out", str(out), "--scheduler", address]
        )
        == 0
    )
    assert "4 ran, 0 already complete, 0 failed" in capsys.readouterr().out
    table = pd.read_parquet(out / "results.parquet")
    assert table["point_id"].nunique() == 4 and len(table) == 12
    assert set(table["N"]) == {5} and set(table["LABEL"]) == {"ab", "abcd", "a"}  # "a": default
    check_values(table)
    assert all(not p.startswith("N-") for p in table["point_id"])  # fixed N is not in the slug


def test_a_failed_point_does_not_stop_the_others_and_is_retried_on_resume(
    loopback, tmp_path, capsys
):
    address, _ = loopback
    broken = tmp_path / "broken"
    broken.write_text("remove me to fix the point")
    grid = write_grid(
        tmp_path, {"X": [1.0, 2.0], "explicit": [{"X": 4.0, "FAIL_IF_FILE": str(broken)}]}
    )
    out = tmp_path / "out"
    args = ["sweep", str(PROBE), "--grid", str(grid), "--out", str(out), "--scheduler", address]
    assert cli.main(args) == 1
    assert "1 point(s) failed" in capsys.readouterr().err
    table = pd.read_parquet(out / "results.parquet")
    failed = table[table["status"] == "failed"]
    assert len(failed) == 1 and failed["metric"].isna().all()
    assert "broken exists: this point fails" in failed["error"].iloc[0]
    bad = failed["point_id"].iloc[0]
    assert results(out, bad)["complete"] is False and results(out, bad)["status"] == "failed"
    good = sorted(set(table["point_id"]) - {bad})
    assert len(good) == 2 and set(table.loc[table["point_id"].isin(good), "status"]) == {"ok"}
    stamps = {p: (out / p / RESULT_FILE).stat().st_mtime_ns for p in good}

    broken.unlink()  # the fix
    report = run_sweep(PROBE, grid, out_dir=out, scheduler=address, progress=False)
    assert sorted(report.skipped) == good and report.ran == [bad] and report.failed == []
    assert {p: (out / p / RESULT_FILE).stat().st_mtime_ns for p in good} == stamps
    table = report.table
    assert set(table["status"]) == {"ok"} and table["point_id"].nunique() == 3
    check_values(table)


def test_workers_racing_for_one_zoo_entry_train_it_once(loopback, tmp_path, monkeypatch):
    address, data = loopback
    monkeypatch.setenv("TLAB_DATA", str(data))
    grid = write_grid(tmp_path, {"X": [1.0, 2.0], "fixed": {"ZOO_N": 100}})
    out = tmp_path / "out"
    report = run_sweep(PROBE, grid, out_dir=out, scheduler=address, progress=False)
    assert report.failed == [] and len(report.ran) == 2
    recorded = [results(out, p.id) for p in report.points]
    assert sorted(r["metrics"]["from_cache"] for r in recorded) == [False, True]
    keys = {r["extra"]["zoo_key"] for r in recorded}
    assert len(keys) == 1 and len({r["pid"] for r in recorded}) == 2
    (key,) = keys
    assert [row["key"] for row in zoo.list_entries()] == [key]
    entry = zoo.load_entry(key, device="cpu")  # intact: the SHA-256 check passes
    accuracy = {r["metrics"]["test_accuracy"] for r in recorded}
    assert accuracy == {entry.meta["metrics"]["test_accuracy"]}
    assert not [p for p in zoo.zoo_dir().iterdir() if p.name.endswith(".tmp")]
