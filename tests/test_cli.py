"""The command line: one-line errors, listings, zoo management, headless runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tlab.core import zoo
from tlab.core.train import TrainConfig
from tlab.runs import cli


def run_cli(*args: str, env_data=None) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    if env_data is not None:
        env["TLAB_DATA"] = str(env_data)
    return subprocess.run(
        [sys.executable, "-m", "tlab", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "99"], "unknown notebook '99'; choose one of: 00_start_here"),
        (["run", "00", "-p", "NO_SUCH=1"], "declares no parameter NO_SUCH"),
        (["run", "00", "-p", "EPS=big"], "EPS='big' is of type str"),
        (["run", "00", "-p", "PRESET"], "must look like NAME=VALUE"),
        (["zoo", "clear"], "zoo clear --all"),
        (["zoo", "clear", "deadbeef"], "no zoo entry 'deadbeef'"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, tlab_data):
    result = run_cli(*args, env_data=tlab_data)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlab: error:") and message in lines[0], lines


def test_unknown_preset_lists_the_presets(tlab_data):
    result = run_cli("run", "00", "--preset", "huge", env_data=tlab_data)
    assert result.returncode == 2 and "quick" in result.stderr and "standard" in result.stderr


def test_unwritable_data_folder_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("zoo", "list", env_data=blocker / "data")
    assert (
        result.returncode == 2 and "TLAB_DATA" in result.stderr and "Traceback" not in result.stderr
    )


def test_domains_and_notebooks_are_listed(tlab_data, capsys):
    assert cli.main(["domains"]) == 0
    out = capsys.readouterr().out
    for name in ("digits", "syndigits", "letters", "mnist", "cifar10_9", "fashion_mnist"):
        assert name in out
    assert cli.main(["notebooks"]) == 0
    out = capsys.readouterr().out
    assert "00_start_here" in out and "Zhang et al. 2020" in out and "Wang et al. 2018" in out


def test_zoo_list_and_clear(tlab_data, capsys):
    spec = zoo.ModelSpec(domain="digits", n=100, train=TrainConfig(epochs=1))
    entry = zoo.get_or_train(spec, progress=False, device="cpu")
    assert cli.main(["zoo", "list"]) == 0
    assert entry.key in capsys.readouterr().out
    assert cli.main(["zoo", "clear", entry.key]) == 0
    assert zoo.list_entries() == []


def test_presets_prints_every_paper_table_from_the_tables_themselves(capsys):
    from tlab.papers import davchev, wang, zhang

    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    for module in (zhang, davchev, wang):
        assert module.PRESETS.title in out
    # rows come from the tables: Zhang's B trains 20 / 60 / 60 / 300 epochs
    row = next(line for line in out.splitlines() if line.split()[:1] == ["epochs_b"])
    assert row.split()[1:5] == [
        str(zhang.PRESETS.knobs["epochs_b"].smoke),
        str(zhang.PRESETS.knobs["epochs_b"].quick),
        str(zhang.PRESETS.knobs["epochs_b"].standard),
        str(zhang.PRESETS.knobs["epochs_b"].paper),
    ]
    assert cli.main(["presets", "wang"]) == 0
    only = capsys.readouterr().out
    assert wang.PRESETS.title in only and zhang.PRESETS.title not in only


def test_presets_refuses_an_unknown_table_and_names_the_known_ones(capsys):
    assert cli.main(["presets", "madry"]) == 2
    err = capsys.readouterr().err
    assert "madry" in err and "zhang" in err and "davchev" in err


def _files(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.notebooks
def test_prepare_runs_the_notebooks_so_that_they_open_warm(tlab_data, tmp_path, capsys):
    assert cli.main(["prepare", "--preset", "smoke", "01", "--out", str(tmp_path / "prep")]) == 0
    assert "1 notebook(s) prepared" in capsys.readouterr().out
    assert (tmp_path / "prep" / "index.html").exists()  # the run is kept, as `tlab run`'s
    prepared = _files(tlab_data)
    assert any(name.startswith("zoo/") for name in prepared)  # notebook 00's model
    assert any(name.startswith("results/") for name in prepared)  # 01's cached evaluations
    # opening the notebook now trains and computes nothing new
    assert cli.main(["run", "01", "--preset", "smoke", "--out", str(tmp_path / "run")]) == 0
    assert _files(tlab_data) == prepared


def test_prepare_domains_only_stops_before_the_notebooks(tlab_data, capsys):
    assert cli.main(["prepare", "--preset", "smoke", "--domains-only"]) == 0
    assert "notebook 00 model ready" in capsys.readouterr().out
    assert not (tlab_data / "results").exists()


def test_the_notebook_runner_starts_without_torch():
    """`python -m tlab run` executes notebooks in kernels; its own process never needs torch,
    whose import costs it over a second per notebook (the kernel imports torch anyway)."""
    code = "import sys, tlab.runs.runner; print(sorted(m for m in sys.modules if m == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
