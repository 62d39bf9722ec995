"""Widget panels: controls that re-render a figure in place.

The figure is displayed as the cell's normal output (so papermill, nbval and the HTML export see
it) with a display id; when a control changes, that same output is updated. No figure is hidden
inside a widget, so headless runs and live sessions show the same thing.
"""

from __future__ import annotations

from typing import Callable

import ipywidgets as widgets
import plotly.graph_objects as go
from IPython.display import display


def eps_slider(value: float = 8 / 255, *, max_255: int = 32,
               description: str = "eps") -> widgets.SelectionSlider:
    """A slider over eps = k/255 for k = 0..max_255 (values in [0, 1] pixel units)."""
    options = [(f"{k}/255", k / 255) for k in range(max_255 + 1)]
    nearest = min(options, key=lambda o: abs(o[1] - value))[1]
    return widgets.SelectionSlider(options=options, value=nearest, description=description,
                                   continuous_update=False)


def interactive_figure(render: Callable[..., go.Figure], **controls: widgets.ValueWidget) -> None:
    """Show ``render(**values)`` under the controls; re-render in place whenever one changes."""
    display(widgets.HBox(list(controls.values())))

    def current() -> go.Figure:
        return render(**{name: w.value for name, w in controls.items()})

    handle = display(current(), display_id=True)
    for control in controls.values():
        control.observe(lambda _change: handle.update(current()), names="value")
