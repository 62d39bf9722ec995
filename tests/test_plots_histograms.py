"""Plot helpers for distributions and multi-panel figures (tlab.notebook.plots; 04, 06)."""

from __future__ import annotations

import numpy as np
import pytest

from tlab.notebook import plots


def test_histograms_share_edges_and_normalise_each_group_to_its_own_size():
    rng = np.random.default_rng(0)
    small, large = rng.normal(0, 1, 50), rng.normal(2, 1, 500)
    fig = plots.histograms({"small": small, "large": large}, x_title="value", bins=12)
    a, b = fig.data
    assert list(a.x) == list(b.x) and len(a.x) == 13
    for trace in (a, b):
        assert sum(trace.y[:-1]) == pytest.approx(1.0)  # the last step only closes the outline
    assert a.x[0] == pytest.approx(min(small.min(), large.min()))
    assert a.x[-1] == pytest.approx(max(small.max(), large.max()))
    medians = sorted(shape.x0 for shape in fig.layout.shapes)
    assert medians == pytest.approx(sorted([np.median(small), np.median(large)]))


def test_log_histograms_use_geometric_bins_and_count_what_they_cannot_show():
    values = [0.0, -1.0, 0.01, 0.1, 1.0, 100.0, float("nan")]
    fig = plots.histograms({"norms": values}, x_title="norm", bins=4, log_x=True, medians=False)
    (trace,) = fig.data
    assert fig.layout.xaxis.type == "log" and not fig.layout.shapes
    ratios = np.asarray(trace.x[1:]) / np.asarray(trace.x[:-1])
    assert ratios == pytest.approx(np.full(4, 10.0))
    assert "n=4" in trace.name and "2 values <= 0 not shown" in trace.name
    assert sum(trace.y[:-1]) == pytest.approx(1.0)


def test_mean_curves_draw_the_mean_and_one_standard_deviation_over_rows():
    rows = [[0.9, 0.5], [0.7, 0.3], [0.8, 0.1]]
    fig = plots.mean_curves(
        [2, 4], {"FT": rows, "one seed": [[0.5, 0.25]]}, x_title="eps", y_title="accuracy"
    )
    ft, single = fig.data
    assert list(ft.y) == pytest.approx([80.0, 30.0])
    assert list(ft.error_y.array) == pytest.approx(list(100 * np.std(rows, axis=0, ddof=1)))
    assert ft.error_y.visible and not single.error_y.visible
    assert list(single.y) == pytest.approx([50.0, 25.0])


def test_side_by_side_keeps_one_colour_and_one_legend_entry_per_name():
    left = plots.curves([1, 2], {"Scratch": [0.1, 0.2], "FT": [0.3, 0.4]}, x_title="x", y_title="y")
    right = plots.curves(
        [1, 2],
        {"FT": [0.5, 0.6], "A on B": [0.7, 0.8]},
        x_title="x",
        y_title="gamma",
        percent=False,
    )
    fig = plots.side_by_side([left, right], titles=["black-box", "gamma"])
    assert [t.name for t in fig.data] == ["Scratch", "FT", "FT", "A on B"]
    assert [t.showlegend for t in fig.data] == [True, True, False, True]
    ft_left, ft_right = fig.data[1], fig.data[2]
    assert ft_left.line.color == ft_right.line.color
    assert len({t.line.color for t in fig.data}) == 3
    assert (ft_left.xaxis, ft_right.xaxis) == ("x", "x2")
    assert fig.layout.yaxis2.title.text == "gamma"
    assert left.data[1].line.color is None and not left.data[1].legendgroup  # source untouched


def test_side_by_side_merges_histogram_groups_whose_names_carry_counts():
    left = plots.histograms({"fooled": [1.0, 2.0], "resisted": [0.5]}, x_title="norm")
    right = plots.histograms({"fooled": [3.0], "resisted": [0.1, 0.2, 0.0]}, x_title="norm")
    fig = plots.side_by_side([left, right])
    assert [t.name for t in fig.data] == ["fooled", "resisted", "fooled", "resisted"]
    assert [t.showlegend for t in fig.data] == [True, True, False, False]
    assert fig.data[0].line.color == fig.data[2].line.color != fig.data[1].line.color
    assert fig.data[3].text == "resisted (n=3)"  # the panel's own label stays in the hover
    mixed = plots.side_by_side(
        [plots.histograms({"Scratch": [1.0], "FT": [2.0]}, x_title="n"), left]
    )
    assert len({t.line.color for t in mixed.data}) == 4  # four groups, four colours


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        ([1, 2, 3, 4], {"tick0": 0, "dtick": 1}),  # epochs: no 1.5-epoch ticks
        ([0, 2, 4, 8, 16, 32], {"tick0": 0, "dtick": 4}),  # eps x 255: about ten ticks
        ([0.5, 1.0], {}),
        (["clean", "FGSM"], {}),
    ],
)
def test_whole_number_axes_get_whole_number_ticks_and_others_keep_plotlys(x, expected):
    assert plots.whole_number_ticks(x) == expected and plots.whole_number_ticks([]) == {}
    figure = plots.curves(x, {"a": [0.5] * len(x)}, x_title="x", y_title="y")
    assert figure.layout.xaxis.dtick == expected.get("dtick")


def test_an_image_grid_is_one_mosaic_with_every_image_in_its_cell_and_its_title_above():
    import base64
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 32, 32), dtype=np.uint8)
    fig = plots.image_grid(images, [f"image {i}" for i in range(5)], columns=3)
    (trace,) = fig.data
    mosaic = np.asarray(Image.open(io.BytesIO(base64.b64decode(trace.source.split(",", 1)[1]))))
    titles = {a.text: (a.x, a.y) for a in fig.layout.annotations}
    assert list(titles) == [f"image {i}" for i in range(5)]
    gap, pad = 32 // 3, 2  # a title row above each image row; 2 px between images
    assert mosaic.shape == (2 * (32 + gap), 3 * (32 + pad) - pad, 3)
    for i, image in enumerate(images):
        top, left = (i // 3) * (32 + gap) + gap, (i % 3) * (32 + pad)
        assert np.array_equal(mosaic[top : top + 32, left : left + 32], image.transpose(1, 2, 0)), i
        x, y = titles[f"image {i}"]
        assert left < x < left + 32 and top - gap < y < top  # centred above its image
