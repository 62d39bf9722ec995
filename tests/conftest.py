"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def tlab_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data folder for this test (TLAB_DATA points at it)."""
    root = tmp_path / "tlab-data"
    monkeypatch.setenv("TLAB_DATA", str(root))
    return root
