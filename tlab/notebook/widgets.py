"""Widget panels: controls above a figure that redraws in place.

A panel is one ipywidgets ``VBox``: its controls, then an ``ipywidgets.Output`` region whose
``outputs`` trait holds the current figure. When a control changes, the panel renders again and
replaces that trait; the widget protocol syncs it to the page, so JupyterLab, Jupyter Notebook 7,
VS Code and Voila redraw the figure in place. Nothing is routed by display id or by the parent
of a kernel message, which is what made figures land in JupyterLab's Log Console before.

Displayed, a panel's mime bundle carries the first figure as well (plotly's JSON) and, in the
output's metadata, a one-line note naming the controls' values. A frontend with a widget
manager shows the live panel; a notebook executed headless by papermill keeps the figure for
its parameter values in the cell's output, and the offline HTML export (:mod:`tlab.runs.runner`)
shows that figure under the note instead of the controls.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import display

#: Output metadata key under which a panel leaves its note for the HTML export.
PANEL_NOTE_KEY = "tlab_panel_note"
#: What a panel's status line reads while its figure is being redrawn.
UPDATING = '<span class="tlab-panel-status"><i>updating ...</i></span>'


def eps_slider(
    value: float = 8 / 255, *, max_255: int = 32, description: str = "eps"
) -> widgets.SelectionSlider:
    """A slider over eps = k/255 for k = 0..max_255 (values in [0, 1] pixel units)."""
    options = [(f"{k}/255", k / 255) for k in range(max_255 + 1)]
    nearest = min(options, key=lambda o: abs(o[1] - value))[1]
    return widgets.SelectionSlider(
        options=options, value=nearest, description=description, continuous_update=False
    )


def figure_bundle(figure: go.Figure) -> dict[str, Any]:
    """The mime bundle of a plotly figure: plotly's JSON mimetype and a plain-text fallback."""
    return {
        "application/vnd.plotly.v1+json": json.loads(pio.to_json(figure, validate=False)),
        "text/plain": f"<plotly figure: {figure.layout.title.text or 'untitled'}>",
    }


def _shown(control: widgets.ValueWidget) -> str:
    label = getattr(control, "label", None)
    return str(label if label is not None else control.value)


class Panel(widgets.VBox):
    """Controls over a figure ``render(**values)`` that redraws whenever a control changes.

    ``applies`` maps a control's name to a predicate of all current values; while it is false
    the control is disabled (e.g. "FT frozen k" while Scratch is the chosen strategy). A control
    with a single option (one seed, one eps at a small preset) is disabled too: it shows the
    value without inviting a move that cannot change anything. While a redraw runs, ``status``
    (after the controls) reads "updating ...": a render that computes something the first time
    (notebook 08 attacking a network at budgets no table needed) says so instead of leaving the
    old figure under the new control values without a word.
    """

    def __init__(
        self,
        render: Callable[..., go.Figure],
        controls: Mapping[str, widgets.ValueWidget],
        applies: Mapping[str, Callable[[dict[str, Any]], bool]] | None = None,
    ) -> None:
        self._render = render
        self.controls = dict(controls)
        self._applies = dict(applies or {})
        unknown = set(self._applies) - set(self.controls)
        if unknown:
            raise ValueError(f"'applies' names no control: {sorted(unknown)}")
        for control in self.controls.values():
            control.style.description_width = "initial"
            control.layout.margin = "2px 28px 2px 0"
        self.output = widgets.Output()
        # a line of its own, kept when empty: the figure does not jump when the status shows
        self.status = widgets.HTML("", layout=widgets.Layout(height="1.6em", margin="0"))
        row = widgets.Layout(display="flex", flex_flow="row wrap", align_items="center")
        controls = widgets.Box(list(self.controls.values()), layout=row)
        super().__init__([controls, self.status, self.output])
        self.add_class("tlab-panel")
        self.figure = self._draw()
        for control in self.controls.values():
            control.observe(self._on_change, names="value")

    def values(self) -> dict[str, Any]:
        """The controls' current values, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def _draw(self) -> go.Figure:
        values = self.values()
        for name, control in self.controls.items():
            single = len(getattr(control, "options", ()) or (None, None)) < 2
            applies = self._applies.get(name)
            control.disabled = single or (applies is not None and not applies(values))
        figure = self._render(**values)
        self.output.outputs = (
            {"output_type": "display_data", "data": figure_bundle(figure), "metadata": {}},
        )
        return figure

    def _on_change(self, _change: dict[str, Any]) -> None:
        self.status.value = UPDATING
        try:
            self.figure = self._draw()
        except Exception as exc:  # noqa: BLE001 -- any error is shown where the figure stood
            self.output.outputs = (
                {
                    "output_type": "error",
                    "ename": type(exc).__name__,
                    "evalue": str(exc),
                    "traceback": traceback.format_exception(exc),
                },
            )
        finally:
            self.status.value = ""

    def note(self) -> str:
        """One line for a page without widgets: which values the figure shows."""
        shown = ", ".join(
            f"{c.description or name} = {_shown(c)}" for name, c in self.controls.items()
        )
        return f"Interactive panel ({shown}): open the notebook in JupyterLab to move its controls."

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        data = {**figure_bundle(self.figure), **super()._repr_mimebundle_(**kwargs)}
        return data, {PANEL_NOTE_KEY: self.note()}


def interactive_figure(
    render: Callable[..., go.Figure],
    *,
    applies: Mapping[str, Callable[[dict[str, Any]], bool]] | None = None,
    **controls: widgets.ValueWidget,
) -> None:
    """Show a :class:`Panel` of ``render`` under ``controls`` (every notebook's panels)."""
    display(Panel(render, controls, applies))
