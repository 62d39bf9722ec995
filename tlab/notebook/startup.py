"""The one start-up call every notebook makes, after its parameters cell."""

from __future__ import annotations

import pandas as pd
import torch

from tlab import record as run_record
from tlab.core.device import pick_device, set_cpu_threads
from tlab.notebook.plots import setup_plotly
from tlab.presets import check_preset


def start(preset: str, *, threads: int = 0, device: str = "") -> torch.device:
    """Check the ``PRESET`` parameter, give torch ``threads`` CPU threads (0: one per CPU the
    process may use), set up plotly's renderer (JupyterLab, nbviewer and the offline HTML export
    all draw it) and pandas (claims tables show their sentences in full); return the device to
    compute on (``device`` as in :func:`tlab.core.device.pick_device`, "" for the best available).

    In a recorded run (``TLAB_RECORD_DIR`` set, :mod:`tlab.record`) it also starts the
    run's record with the preset, so that ``python -m tlab report`` knows which preset made the
    notebook's claims even when nothing injected ``PRESET``.
    """
    check_preset(preset)
    if run_record.record_dir() is not None:
        run_record.begin(preset)
    set_cpu_threads(threads)
    setup_plotly()
    pd.set_option("display.max_colwidth", None)
    return pick_device(device or None)
