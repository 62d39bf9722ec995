"""Zhang et al. Sec. 6 ablations: variants per preset, the tidy table, gains, figures, claims."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import tiny_data_folder

from tlab.errors import TlabError
from tlab.papers import zhang
from tlab.papers.claims import TOO_FEW
from tlab.papers.zhang import ablations as za
from tlab.papers.zhang import figures as zfig

SOURCE = "syndigits:n_train=400,n_test=100"
GREY = "syndigits:colour=false,n_train=400,n_test=100"
LETTERS = "letters:n_train=400,n_test=52"


def test_standard_plan_sweeps_the_papers_factors_and_reuses_the_default():
    base = za.base_setup("standard")
    p = za.plan(base)
    assert [v.setup.n_b for v in p["n_b"]] == [50, 100, 200, 500]
    assert all(v.setup.seeds == (0, 1, 2, 3, 4) for sweep in p.values() for v in sweep)
    assert [v.setup.n_a for v in p["n_a"]] == [500, 1000, 2000]
    assert [v.setup.source for v in p["source"]][1] == "syndigits:colour=false"
    wrn = p["arch"][1].setup
    assert (wrn.arch, wrn.arch_options, wrn.frozen) == ("wrn", {"depth": 10, "width": 1}, (0, 4))
    assert p["arch"][1].label == "WRN-10-1"
    # the default point of each sweep is the very model notebooks 02-04 train
    default = next(v for v in p["n_b"] if v.setup.n_b == base.n_b).setup
    assert default.spec("FT", 1) == base.spec("FT", 1)
    assert p["source"][0].setup.spec("FT", 0) == base.spec("FT", 0)
    assert p["n_a"][0].setup.spec("Scratch", 0) == base.spec("Scratch", 0)  # Scratch ignores A


def test_paper_plan_is_the_s_to_m_grid():
    p = za.plan(za.base_setup("paper"))
    assert p["n_b"][0].setup.source == "svhn:extra=true" and p["n_b"][0].setup.target == "mnist"
    assert [v.setup.n_a for v in p["source"]] == [5000, 5000]
    assert [v.setup.n_b for v in p["source"]] == [600, 600]
    assert p["arch"][1].setup.max_frozen == 13  # WRN-28-10: stem + 3 x 4 blocks


def test_bad_names_are_refused_with_the_choices():
    with pytest.raises(TlabError, match="n_b"):
        zfig.ablation_figure(_table_stub(), "n_c")
    with pytest.raises(TlabError, match="clean"):
        zfig.ablation_figure(_table_stub(), "n_b", metric="loss")
    with pytest.raises(TlabError, match=r"evaluated: \[2, 16\]"):
        za.gains(_table_stub(), "n_b", eps=8)
    with pytest.raises(TlabError, match="empty at this preset"):
        za.gains(_table_stub(), "arch", eps=2)


def _table_stub():
    import pandas as pd

    rows = []
    for seed in (0, 1):
        for role, depth, acc in (("Scratch", "-", 0.5), ("FT", "0", 0.8)):
            for eps in (2, 16):
                rows.append(
                    dict(
                        ablation="n_b",
                        variant="n_B = 50",
                        position=0,
                        seed=seed,
                        model=role,
                        role=role,
                        frozen=0,
                        depth=depth,
                        eps=eps,
                        clean=acc + 0.01 * seed,
                        wb=acc / 2,
                        bb=0.9,
                        gamma=0.1,
                        source_accuracy=0.9,
                        same_labels=True,
                    )
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Every ablation of a tiny embedded setup, trained once for the module (seconds).

    The models are barely trained (near 10 %), and evaluating one that gets no evaluation image
    right is an error: with 60 images the worst model got 2 right (bfloat16 training) or 5
    (float32), with 120 it gets 7-8: the table stays well clear of 0 whatever the precision."""
    with tiny_data_folder(tmp_path_factory, "ablation-data"):
        s = zhang.setup("smoke")
        base = s.with_(
            source=SOURCE,
            target="syndigits:colour=false,seed=1,n_train=200,n_test=120",
            common="",
            n_a=200,
            n_b=60,
            train_a=replace(s.train_a, epochs=1),
            train_b=replace(s.train_b, epochs=2),
            eval_n=None,
            eps_grid=(2 / 255, 16 / 255),
        )
        p = za.plan(
            base,
            n_b=(30, 60),
            n_a=(100, 200),
            sources=(SOURCE, GREY, LETTERS),
            archs=("dtn", "wrn:depth=10,width=1"),
            n_b_seeds=(0, 1),
        )
        variants = [v for name in za.ABLATIONS for v in p[name]]
        table = za.results(variants, device="cpu")
        yield p, table


def test_results_table_matches_the_cached_evaluations(tiny):
    p, table = tiny
    assert set(table["ablation"]) == set(za.ABLATIONS)
    v = p["n_b"][0]
    row = zhang.Lab(v.setup, device="cpu").evaluate("FT", 1, 0)
    mine = table[(table["variant"] == "n_B = 30") & (table["seed"] == 1) & (table["role"] == "FT")]
    assert mine["wb"].tolist() == row["wb"] and mine["clean"].iloc[0] == row["clean"]
    assert set(table[table["ablation"] == "n_b"]["seed"]) == {0, 1}
    assert set(table[table["ablation"] == "n_a"]["seed"]) == {0}
    # 6 rows per (variant, seed, model) and eps: 2 eps each; letters has no A on B row
    counts = table.groupby(["ablation", "variant", "seed"]).size()
    assert counts[("n_b", "n_B = 30", 0)] == 2 * 2  # Scratch, FT-0
    assert counts[("source", za.source_label(GREY), 0)] == 2 * 3  # + A on B
    assert counts[("source", za.source_label(LETTERS), 0)] == 2 * 2


def test_a_source_with_other_labels_has_no_black_box_numbers(tiny):
    _, table = tiny
    letters = table[table["variant"] == za.source_label(LETTERS)]
    assert not letters["same_labels"].any() and letters["bb"].isna().all()
    grey = table[table["variant"] == za.source_label(GREY)]
    assert grey["same_labels"].all() and grey["bb"].notna().all()
    on_b = grey[grey["role"] == "A on B"]
    assert (on_b["wb"] == on_b["bb"]).all()  # A attacking itself


def test_gains_are_paired_by_seed(tiny):
    _, table = tiny
    g = za.gains(table, "n_b", eps=16)
    part = table[(table["ablation"] == "n_b") & (table["eps"] == 16)]
    for _, row in g.iterrows():
        sel = part[(part["variant"] == row["variant"]) & (part["seed"] == row["seed"])]
        ft = sel[sel["role"] == "FT"]["wb"].item()
        scratch = sel[sel["role"] == "Scratch"]["wb"].item()
        assert row["wb"] == pytest.approx(ft - scratch)
    assert len(g) == 2 * 2  # 2 n_B x 2 seeds


def test_figure_and_summary_read_the_table(tiny):
    _, table = tiny
    fig = zfig.ablation_figure(table, "n_b", metric="wb", eps=16)
    _scratch, ft, bar = fig.data
    means = (
        table[(table["ablation"] == "n_b") & (table["eps"] == 16) & (table["role"] == "FT")]
        .groupby("position")["wb"]
        .mean()
        .to_numpy()
        * 100
    )
    assert np.allclose(ft.y, means) and list(bar.x) == ["n_B = 30", "n_B = 60"]
    s = za.summary_table(table, "source", eps=2)
    assert list(s.index) == [za.source_label(x) for x in (SOURCE, GREY, LETTERS)]
    assert s.loc[za.source_label(LETTERS), "FT-0 BB@2"] == "-"


def test_claims_and_record_follow_the_numbers(tiny):
    _, table = tiny
    claims = zhang.ablation_claims(table, eps=16)
    assert [c.code for c in claims] == ["Fig. 7"] * 3 + ["Fig. 8"] * 3 + ["Fig. 9"] * 3
    g = za.gains(table, "arch", eps=16)
    wrn_clean = g[g["variant"] == "WRN-10-1"]["clean"].item()
    assert f"{100 * wrn_clean:+.3g} points" in claims[6].measured
    assert claims[6].verdict == TOO_FEW  # one seed: no interval
    metrics = za.record_metrics(table, eps=16)
    ft30 = table[(table["variant"] == "n_B = 30") & (table["role"] == "FT") & (table["eps"] == 16)]
    assert metrics["n_b_30_clean_ft0"] == pytest.approx(ft30["clean"].mean())
    assert "source_letters_26_classes_bb16_ft0" not in metrics
    assert any(name.endswith("_bb16_a_on_b") for name in metrics)
