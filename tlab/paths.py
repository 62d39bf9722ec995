"""Where tlab keeps generated data, downloads and trained models.

By default everything lives in the git-ignored ``data/`` folder of the checkout (or of the
current directory when tlab is installed elsewhere); ``TLAB_DATA`` overrides it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tlab.errors import DataFolderError

_REPO_DATA = Path(__file__).resolve().parent.parent / "data"


def data_root() -> Path:
    """The folder that holds ``embedded/``, ``downloads/`` and ``zoo/``."""
    env = os.environ.get("TLAB_DATA")
    if env:
        return Path(env).expanduser().resolve()
    if _REPO_DATA.parent.joinpath("pyproject.toml").exists():
        return _REPO_DATA
    return Path.cwd() / "data"


def writable_dir(path: Path, *, advice: str = "") -> Path:
    """Create ``path`` if needed and check that files can be written in it.

    Raises :class:`DataFolderError` with ``advice`` (by default: how to use ``TLAB_DATA``)
    when it cannot.
    """
    advice = advice or (
        "make it writable or point TLAB_DATA at a writable folder, e.g. TLAB_DATA=$HOME/tlab-data"
    )
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise DataFolderError(f"cannot write to {path} ({exc.strerror or exc}); {advice}") from exc
    return path


def subdir(name: str) -> Path:
    """``data_root()/name``, created and checked writable."""
    return writable_dir(data_root() / name)
