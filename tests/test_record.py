"""tlab.record: what a notebook records under a sweep; a record is never half-written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tlab import record as rec
from tlab.errors import TlabError


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A point folder as the sweep prepares it: point.json written, TLAB_RECORD_DIR set."""
    folder = tmp_path / "EPS-0.1-abcdef12"
    folder.mkdir()
    rec.write_json_atomic(
        folder / rec.POINT_FILE,
        {
            "point_id": folder.name,
            "parameters": {"EPS": 0.1, "SEED": 3},
            "started_at": "2026-01-01T00:00:00+0000",
            "complete": True,
        },
    )
    monkeypatch.setenv(rec.RECORD_DIR_ENV, str(folder))
    return folder


def test_outside_a_sweep_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(rec.RECORD_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    data = rec.record({"accuracy": 0.75}, parameters={"EPS": 0.2})
    assert data["metrics"] == {"accuracy": 0.75} and data["parameters"] == {"EPS": 0.2}
    assert data["complete"] is True and rec.record_dir() is None
    assert list(tmp_path.iterdir()) == []


def test_under_a_sweep_the_record_holds_parameters_metrics_times_and_versions(run_dir):
    rec.record({"accuracy": np.float32(0.5), "n": np.int64(3), "cached": True}, zoo_key="k1")
    text = (run_dir / rec.RECORD_FILE).read_text()
    data = json.loads(text)
    assert data["parameters"] == {"EPS": 0.1, "SEED": 3}
    assert data["metrics"] == {"accuracy": 0.5, "n": 3, "cached": True}
    assert type(data["metrics"]["n"]) is int and type(data["metrics"]["cached"]) is bool
    assert data["extra"] == {"zoo_key": "k1"} and data["point_id"] == run_dir.name
    assert data["started_at"] == "2026-01-01T00:00:00+0000" and data["recorded_at"][:2] == "20"
    assert {"python", "tlab", "numpy"} <= set(data["versions"])
    assert list(data)[-1] == "complete" and data["complete"] is True
    assert rec.read_complete(run_dir / rec.RECORD_FILE) == data


def test_explicit_parameters_and_a_second_call_merge(run_dir):
    rec.record({"clean": 0.9}, parameters={"SEED": 4, "NOTE": "x"}, stage=1)
    rec.record({"adversarial": 0.2, "clean": 0.8}, stage=2)
    data = rec.read_complete(run_dir / rec.RECORD_FILE)
    assert data["metrics"] == {"clean": 0.8, "adversarial": 0.2}
    assert data["extra"] == {"stage": 2}
    # the second call did not repeat the explicit parameters: the injected ones remain
    assert data["parameters"] == {"EPS": 0.1, "SEED": 3}


@pytest.mark.parametrize(
    "metrics, message",
    [
        ({"accuracy": "high"}, "metric 'accuracy' is 'high'"),
        ({"accuracy": [0.1, 0.2]}, "metrics must be numbers"),
        ({3: 0.5}, "metric names must be non-empty strings"),
        ([("accuracy", 0.5)], "takes a dict of metrics"),
    ],
)
def test_bad_metrics_are_refused(run_dir, metrics, message):
    with pytest.raises(TlabError, match=message.replace("[", r"\[")):
        rec.record(metrics)
    assert not (run_dir / rec.RECORD_FILE).exists()


def test_extra_must_be_json_able(run_dir):
    with pytest.raises(TlabError, match="must be JSON-able"):
        rec.record({"a": 1.0}, model=object())


def test_record_dir_that_is_not_a_folder(tmp_path, monkeypatch):
    target = tmp_path / "plain-file"
    target.write_text("x")
    monkeypatch.setenv(rec.RECORD_DIR_ENV, str(target))
    with pytest.raises(TlabError, match="is not a folder"):
        rec.record({"a": 1.0})


def test_an_interruption_before_the_rename_leaves_no_complete_record(run_dir, monkeypatch):
    def interrupted(src, dst):
        assert Path(src).exists() and '"complete": true' in Path(src).read_text()
        raise KeyboardInterrupt  # Ctrl-C between writing the temporary file and renaming it

    monkeypatch.setattr(rec.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rec.record({"accuracy": 0.5})
    assert sorted(p.name for p in run_dir.iterdir()) == [rec.POINT_FILE]  # temp file removed
    assert rec.read_complete(run_dir / rec.RECORD_FILE) is None


def test_an_interruption_keeps_the_previous_record_intact(run_dir, monkeypatch):
    rec.record({"accuracy": 0.5})
    before = (run_dir / rec.RECORD_FILE).read_bytes()

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(rec.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rec.record({"accuracy": 0.9, "loss": 1.0})
    assert (run_dir / rec.RECORD_FILE).read_bytes() == before
    assert rec.read_complete(run_dir / rec.RECORD_FILE)["metrics"] == {"accuracy": 0.5}


@pytest.mark.parametrize(
    "text",
    [
        '{"metrics": {"a": 1}, "complete": tr',  # cut off mid-write
        '{"metrics": {"a": 1}}',  # no marker
        '{"metrics": {"a": 1}, "complete": false}',  # marked unfinished
        "[1, 2]",  # not a record
    ],
)
def test_only_marked_records_count_as_complete(tmp_path, text):
    path = tmp_path / rec.RECORD_FILE
    path.write_text(text)
    assert rec.read_complete(path) is None
    assert rec.read_complete(tmp_path / "missing.json") is None
