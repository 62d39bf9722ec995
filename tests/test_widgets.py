"""Panels in the kernel, and the offline HTML export of their outputs.

What the page shows is tested in ``test_browser.py``; these tests pin the kernel side: a control
change replaces the figure in the panel's Output region, controls that do not apply are disabled,
a failing redraw shows its error where the figure stood, and the export keeps the figure under a
note with no widget and no network.
"""

from __future__ import annotations

import ipywidgets as ipw
import nbformat
import plotly.graph_objects as go
import pytest

from tlab.notebook import widgets
from tlab.runs.html_export import PLOTLY_MIME, WIDGET_MIME, offline_notebook


def _title(panel: widgets.Panel) -> str:
    (output,) = panel.output.outputs
    return output["data"][PLOTLY_MIME]["layout"]["title"]["text"]


def render(eps: float, strategy: str, frozen: int) -> go.Figure:
    if frozen == 3:
        raise ValueError("no model with 3 frozen stages")
    return go.Figure(
        go.Scatter(x=[0, 1], y=[eps, frozen]),
        layout={"title": f"{strategy} at {eps * 255:.0f}/255, k={frozen}"},
    )


@pytest.fixture
def panel() -> widgets.Panel:
    return widgets.Panel(
        render,
        {
            "eps": widgets.eps_slider(8 / 255),
            "strategy": ipw.ToggleButtons(options=["FT", "Scratch"], value="FT"),
            "frozen": ipw.IntSlider(value=2, min=0, max=4, description="FT frozen k"),
        },
        applies={"frozen": lambda v: v["strategy"] == "FT"},
    )


def test_a_control_change_replaces_the_figure_in_the_output_region(panel):
    assert _title(panel) == "FT at 8/255, k=2"
    panel.controls["eps"].value = 16 / 255
    assert _title(panel) == "FT at 16/255, k=2" and len(panel.output.outputs) == 1
    assert panel.figure.layout.title.text == "FT at 16/255, k=2"


def test_a_control_that_does_not_apply_is_disabled_until_it_does(panel):
    assert not panel.controls["frozen"].disabled
    panel.controls["strategy"].value = "Scratch"
    assert panel.controls["frozen"].disabled and _title(panel).startswith("Scratch")
    panel.controls["strategy"].value = "FT"
    assert not panel.controls["frozen"].disabled


def test_a_failing_redraw_shows_its_error_where_the_figure_stood(panel):
    panel.controls["frozen"].value = 3
    (output,) = panel.output.outputs
    assert output["output_type"] == "error" and output["ename"] == "ValueError"
    assert "3 frozen stages" in output["evalue"]
    panel.controls["frozen"].value = 4
    assert _title(panel) == "FT at 8/255, k=4"


def test_applies_must_name_a_control():
    with pytest.raises(ValueError, match="names no control"):
        widgets.Panel(render, {"eps": widgets.eps_slider()}, applies={"k": lambda v: True})


def test_the_displayed_panel_carries_its_figure_and_a_note_for_pages_without_widgets(panel):
    data, metadata = panel._repr_mimebundle_()
    assert (
        WIDGET_MIME in data and data[PLOTLY_MIME]["layout"]["title"]["text"] == "FT at 8/255, k=2"
    )
    note = metadata[widgets.PANEL_NOTE_KEY]
    assert "eps = 8/255" in note and "FT frozen k = 2" in note and "JupyterLab" in note


def test_the_export_keeps_the_figure_under_the_note_and_drops_widgets(panel):
    data, metadata = panel._repr_mimebundle_()
    progress_bar = {WIDGET_MIME: {"model_id": "x"}, "text/plain": "HBox(...)"}
    cell = nbformat.v4.new_code_cell(
        "panel",
        outputs=[
            nbformat.v4.new_output("display_data", data=data, metadata=metadata),
            nbformat.v4.new_output("display_data", data=progress_bar),
            nbformat.v4.new_output("display_data", data=widgets.figure_bundle(panel.figure)),
        ],
    )
    nb = nbformat.v4.new_notebook(cells=[cell], metadata={"widgets": {"state": {}}})
    out = offline_notebook(nb)
    assert "widgets" not in out.metadata and "widgets" in nb.metadata  # the input is untouched
    first, second = out.cells[0].outputs
    assert list(first.data) == ["text/html"] and list(second.data) == ["text/html"]
    assert first.data["text/html"].startswith('<p class="tlab-panel-note">Interactive panel')
    assert "Plotly.newPlot" in first.data["text/html"]
    # plotly.js is inlined once per page, with the first figure
    assert first.data["text/html"].count("plotly.js v") >= 1
    assert "plotly.js v" not in second.data["text/html"]
    assert "cdn" not in second.data["text/html"].lower()


def test_a_control_with_a_single_option_is_shown_disabled():
    panel = widgets.Panel(
        render,
        {
            "eps": ipw.SelectionSlider(options=[("8/255", 8 / 255)], value=8 / 255),
            "strategy": ipw.Dropdown(options=["FT"], value="FT"),
            "frozen": ipw.IntSlider(value=2, min=0, max=4),
        },
    )
    assert panel.controls["eps"].disabled and panel.controls["strategy"].disabled
    assert not panel.controls["frozen"].disabled


def test_the_status_says_updating_while_a_redraw_runs_and_is_cleared_after_it():
    seen = []

    def slow(k: int) -> go.Figure:
        seen.append(panel.status.value)  # what the page shows while the figure is computed
        if k == 3:
            raise ValueError("no model with 3 frozen stages")
        return go.Figure(layout={"title": f"k={k}"})

    panel = widgets.Panel.__new__(widgets.Panel)  # the first draw reads panel.status
    panel.__init__(slow, {"k": ipw.IntSlider(value=0, min=0, max=4)})
    assert seen == [""] and panel.status.value == ""  # the first figure: no control moved yet
    panel.controls["k"].value = 1
    assert seen[-1] == widgets.UPDATING and panel.status.value == ""
    panel.controls["k"].value = 3  # an error: shown where the figure stood, status cleared
    assert seen[-1] == widgets.UPDATING and panel.status.value == ""
    assert panel.output.outputs[0]["output_type"] == "error"
