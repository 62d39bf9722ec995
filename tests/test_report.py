"""tlab.runs.report: claims reach the run's record, and one page (plus the README's table) shows
every paper claim with the paper's number and the lab's per preset (issue 15, section 5)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from tlab import record as rec
from tlab.errors import TlabError
from tlab.notebook.startup import start
from tlab.papers import wang
from tlab.papers.claims import TOO_FEW, Claim, all_of, claims_table, paired_claim
from tlab.runs import cli
from tlab.runs import report as rp
from tlab.runs.catalog import find_notebook
from tlab.runs.execute import execute

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_RUNS = ROOT / "tlab" / "papers" / "reference_runs"
#: A <script> or <link> that would fetch something: the page must have none.
NETWORK_TAG = re.compile(r"<(script|link)[^>]+(src|href)=[\"']?(https?:)?//", re.IGNORECASE)


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A recorded run's folder: TLAB_RECORD_DIR points at it."""
    folder = tmp_path / "run"
    folder.mkdir()
    monkeypatch.setenv(rec.RECORD_DIR_ENV, str(folder))
    return folder


def z1(better: list[float], worse: list[float], statement: str = "FT clean > Scratch") -> Claim:
    return paired_claim(
        "Z1", statement, better, worse, what="clean accuracy", seeds=range(len(better))
    )


def write_record(
    root: Path,
    folder: str,
    *,
    claims: Sequence[Claim] = (),
    metrics: dict[str, float] | None = None,
    preset: str | None = "smoke",
    date: str = "2026-01-02",
) -> Path:
    """A complete record as a notebook leaves it, written without running one."""
    path = root / folder / rec.RECORD_FILE
    path.parent.mkdir(parents=True)
    rec.write_json_atomic(
        path,
        {
            "parameters": {},
            "metrics": metrics or {},
            "extra": {} if preset is None else {"preset": preset},
            "claims": [c.as_record() for c in claims],
            "recorded_at": f"{date}T10:00:00+0000",
            "complete": True,
        },
    )
    return path


# ------------------------------------------------------------------ claims reach the record


def test_start_records_the_preset_and_claims_table_the_claims(run_dir):
    (run_dir / rec.RECORD_FILE).write_text('{"metrics": {"stale": 1}, "complete": true}')
    start("standard")
    assert rec.read_complete(run_dir / rec.RECORD_FILE)["metrics"] == {}  # a new run's record
    rec.record({"clean": 0.8})
    w1 = all_of("W1", "deep > mid > full", [z1([0.9, 0.8, 0.85], [0.5, 0.6, 0.4], "deep > mid")])
    claims_table([z1([0.9, 0.8, 0.7], [0.6, 0.5, 0.55]), w1])
    rec.record({"adversarial": 0.3})  # a later record() keeps the claims and the preset
    data = rec.read_complete(run_dir / rec.RECORD_FILE)
    assert data["extra"]["preset"] == "standard"
    assert data["metrics"] == {"clean": 0.8, "adversarial": 0.3}
    first, second = data["claims"]
    assert (first["code"], first["verdict"]) == ("Z1", "holds")
    evidence = first["evidence"]
    assert evidence["seeds"] == [0, 1, 2] and evidence["n"] == 3 and evidence["percent"] is True
    assert evidence["per_seed"] == pytest.approx([0.3, 0.3, 0.15])
    assert evidence["better"] == pytest.approx([0.9, 0.8, 0.7])
    effect = evidence["effect"]
    assert effect["mean"] == pytest.approx(0.25) and effect["low"] < 0.25 < effect["high"]
    assert second["code"] == "W1" and second["evidence"] is None
    assert second["parts"][0]["statement"] == "deep > mid"


def test_a_table_shown_again_replaces_its_claims_instead_of_repeating_them(run_dir):
    claims_table([z1([0.9], [0.5]), z1([0.7], [0.6], "another")])
    claims_table([z1([0.1], [0.5])])
    claims = rec.read_complete(run_dir / rec.RECORD_FILE)["claims"]
    assert [(c["statement"], c["evidence"]["per_seed"]) for c in claims] == [
        ("FT clean > Scratch", [pytest.approx(-0.4)]),
        ("another", [pytest.approx(0.1)]),
    ]
    assert claims[0]["verdict"] == TOO_FEW and claims[0]["evidence"]["effect"]["low"] is None


def test_outside_a_recorded_run_claims_table_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(rec.RECORD_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    start("smoke")
    assert list(claims_table([z1([0.9], [0.5])])["verdict"]) == [TOO_FEW]
    assert list(tmp_path.iterdir()) == []


def test_an_undefined_effect_is_recorded_as_null_not_nan(run_dir):
    nan = float("nan")
    claims_table([z1([nan, nan], [0.1, 0.2])])
    text = (run_dir / rec.RECORD_FILE).read_text()
    assert "NaN" not in text
    (claim,) = json.loads(text)["claims"]
    assert claim["evidence"]["effect"] is None and claim["evidence"]["per_seed"] == [None, None]
    assert claim["verdict"] == "inconclusive"


@pytest.mark.parametrize(
    "claim, message",
    [
        ({"code": "Z1", "verdict": "holds"}, "takes claims as Claim.as_record"),
        (
            {"code": "Z1", "statement": "s", "verdict": "holds", "mean": float("nan")},
            "claim 'Z1' cannot be written as JSON",
        ),
    ],
)
def test_record_claims_refuses_what_the_report_could_not_read(run_dir, claim, message):
    with pytest.raises(TlabError, match=message):
        rec.record_claims([claim])
    assert not (run_dir / rec.RECORD_FILE).exists()


# ------------------------------------------------------------------ the report from records


def test_every_claim_is_a_row_per_preset_and_a_missing_one_says_not_run(tmp_path):
    write_record(tmp_path, "smoke/03", claims=[z1([0.9], [0.5])])
    write_record(
        tmp_path, "standard/03", claims=[z1([0.9, 0.8, 0.7], [0.6, 0.5, 0.55])], preset="standard"
    )
    report = rp.build_report(tmp_path)
    assert report.presets == ("smoke", "standard")
    rows = rp.claim_rows(report)
    codes = [c.code for c in report.numbers.claims]
    assert [r.code for r in rows][::2] == codes  # every paper claim, each for both presets
    z1_quick, z1_standard = rows[0], rows[1]
    assert z1_quick.claim["verdict"] == TOO_FEW and z1_quick.source == "smoke/03"
    assert rp.effect_text(z1_quick.claim) == "+40 points, no interval (n=1)"
    assert z1_standard.claim["verdict"] == "holds"
    assert re.fullmatch(
        r"\+25 points, 95% CI \[\+\d.*, \+\d.*\] \(n=3\)", rp.effect_text(z1_standard.claim)
    )
    d3 = [r for r in rows if r.code == "D3"]
    assert [(r.preset, r.claim) for r in d3] == [("smoke", None), ("standard", None)]
    table = rp.markdown_table(report)
    assert "Preset **smoke**: 1 recorded run(s) of 2026-01-02; seeds per claim: 1." in table
    assert "Preset **standard**: 1 recorded run(s) of 2026-01-02; seeds per claim: 3." in table
    assert "| **D3** a robust (PGD) start" in table and "41.3 % vs R_pgd 36.1 %" in table
    assert "qualitative (Sec. 7, Fig. 10)" in table  # Z6: no number in the paper
    assert table.count("| not run |") == 2 * (len(codes) - 1)  # every code but Z1, twice


def test_a_claim_with_fewer_than_three_seeds_shows_its_interval_and_n_too_small(tmp_path):
    write_record(tmp_path, "run", claims=[z1([0.9, 0.8], [0.6, 0.55])], preset="paper")
    (row, *_) = rp.claim_rows(rp.build_report(tmp_path))
    assert row.preset == "paper" and row.claim["verdict"] == TOO_FEW
    assert "95% CI [" in rp.effect_text(row.claim) and rp.seed_count(row.claim) == "2"
    assert f"**{TOO_FEW}**" in rp.markdown_table(rp.build_report(tmp_path))


def test_a_code_the_papers_file_lacks_is_still_reported(tmp_path):
    write_record(tmp_path, "run", claims=[paired_claim("X9", "new", [1], [0], what="x", seeds=[0])])
    report = rp.build_report(tmp_path)
    assert [r.code for r in rp.claim_rows(report)][-1] == "X9"
    assert "| **X9** | not in paper_numbers.yaml |" in rp.markdown_table(report)
    assert "Claims not in tlab/papers/paper_numbers.yaml" in rp.html_page(report)


def incomplete(root: Path) -> None:
    (root / "a").mkdir(parents=True)
    (root / "a" / rec.RECORD_FILE).write_text('{"complete": false}')


def made_up_verdict(root: Path) -> None:
    path = write_record(root, "a", claims=[Claim("Z1", "s", "m", "holds")])
    path.write_text(path.read_text().replace('"holds"', '"probably"'))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: None, "does not exist"),
        (Path.mkdir, "no complete record.json under"),
        (incomplete, r"\(1 incomplete\)"),
        (lambda root: write_record(root, "a", preset=None), "does not say which preset"),
        (made_up_verdict, "verdict 'probably'"),
    ],
    ids=["missing", "empty", "incomplete", "no-preset", "bad-verdict"],
)
def test_runs_the_report_cannot_use_are_a_clear_error(tmp_path, make, message):
    root = tmp_path / "runs"
    make(root)
    with pytest.raises(TlabError, match=message):
        rp.build_report(root)


def test_an_incomplete_record_beside_complete_ones_is_left_out_and_named(tmp_path):
    write_record(tmp_path, "ok", claims=[z1([0.9], [0.5])])
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / rec.RECORD_FILE).write_text('{"claims": [')
    report = rp.build_report(tmp_path)
    assert [r.source for r in report.runs] == ["ok"] and report.skipped == ("killed",)
    assert "Left out, incomplete (interrupted runs): killed" in rp.html_page(report)


def test_the_page_is_offline_with_one_figure_per_paper(tmp_path):
    metrics = {"wb8_scratch": 0.4, "wb16_scratch": 0.2, "wb8_ft0": 0.7, "bb8_ft0": 0.3}
    write_record(tmp_path, "03", claims=[z1([0.9], [0.5])], metrics=metrics)
    page = rp.html_page(rp.build_report(tmp_path))
    assert not NETWORK_TAG.search(page)
    assert page.count("Plotly.newPlot") == 3  # Zhang, Davchev, Wang
    assert page.count("<script>/**\n* plotly.js v") == 1  # the library inlined, once
    assert "<span class='inconclusive'>inconclusive (n too small)</span>" in page


def test_zhangs_figure_draws_the_paper_on_the_labs_eps_axis(tmp_path):
    metrics = {"wb8_scratch": 0.4, "wb0p5_scratch": 0.9, "bb8_ft4": 0.3, "wb8_ft4": 0.6}
    write_record(tmp_path, "03", metrics=metrics, preset="standard")
    traces = rp.zhang_figure(rp.build_report(tmp_path)).data
    lab = {(t.name, t.xaxis): (list(t.x), list(t.y)) for t in traces if t.name.startswith("lab")}
    assert lab[("lab standard: Scratch", "x")] == ([0.5, 8.0], [90.0, 40.0])
    assert lab[("lab standard: FT-4", "x2")] == ([8.0], [30.0])
    paper = {t.name: (t.x[0], t.y[0]) for t in traces if t.name.startswith("paper")}
    # Zhang's eps 0.125 for pixels in [-1, 1] is 0.0625 = 15.9/255 in [0, 1] pixels (Sec. 4.1)
    assert paper["paper: FT, S→M"] == (pytest.approx(15.9375), pytest.approx(84.96))
    assert paper["paper: FT, (M, U, S)"] == (pytest.approx(15.9375), pytest.approx(17.53))


def test_wangs_figure_reads_success_from_w1_and_the_gini_from_w3(tmp_path):
    frozen = {"deep": 3, "mid": 2, "full": 0}

    def grid(success: dict[str, float]) -> list[dict]:
        return [
            {"student": kind, "layer": layer, "budget": 0.01, "success": success[kind] / layer}
            for kind in frozen
            for layer in (1, 2, 3)
        ]

    grids = {
        0: grid({"deep": 0.9, "mid": 0.6, "full": 0.3}),
        1: grid({"deep": 0.6, "mid": 0.3, "full": 0.0}),
    }
    claims = wang.verdicts.attack_claims(grids, frozen, [1, 2, 3], 0.01)
    write_record(tmp_path, "09", claims=claims)
    values = rp.wang_lab_values(rp.build_report(tmp_path).runs[0].claims)
    # success at each kind's K (full: the last layer, 3), per seed
    assert values["deep"] == pytest.approx([0.3, 0.2])
    assert values["mid"] == pytest.approx([0.3, 0.15])
    assert values["full"] == pytest.approx([0.1, 0.0])
    ginis = {0: [[0.05, 0.6], [0.7, 0.04]], 1: [[0.09, 0.5], [0.8, 0.02]]}  # notebook 10's
    write_record(tmp_path, "10", claims=wang.verdicts.fingerprint_claims(ginis))
    success, gini = (t for t in rp.wang_figure(rp.build_report(tmp_path)).data if t.type == "bar")
    assert list(success.x) == ["deep", "mid", "full"]
    assert list(success.y) == pytest.approx([25.0, 22.5, 5.0])
    # per seed, the largest Gini on the diagonal and the smallest off it, averaged
    assert list(gini.x) == ["true teacher", "other candidates"]
    assert list(gini.y) == pytest.approx([0.07, 0.55])


def test_davchevs_figure_compares_table_1_cells_from_both_notebooks(tmp_path):
    d1 = {"d1_pgd_source_bb": 0.6, "d2_clean": 0.8, "d1_ratio_pgd_block": 0.9}
    write_record(tmp_path, "07", metrics=d1)
    write_record(tmp_path, "08", metrics={"d3_pgd_pgd_all_wb_pgd": 0.5, "d3_pgd_wb_pgd": 0.3})
    cell = rp.davchev_paper_cell("R_pgd->nat 18", ("BB-FGSM", "BB-PGD"))
    assert cell == pytest.approx(81.0)  # (80.4 + 81.6) / 2, Table 1
    traces = rp.davchev_figure(rp.build_report(tmp_path)).data

    def panel(axis: str, kind: str) -> dict:
        (trace,) = [t for t in traces if t.xaxis == axis and t.type == kind]
        return dict(zip(trace.x, trace.y, strict=True))

    lab, table1 = panel("x", "bar"), panel("x", "scatter")
    assert lab["D1: R_pgd->nat block, BB"] == pytest.approx(60.0)  # from 07
    assert lab["D3: R_pgd->pgd all, WB-PGD"] == pytest.approx(50.0)  # from 08
    assert lab["D1: R_fgsm->nat block, BB"] is None  # recorded by neither
    assert table1["D3: R_pgd->pgd all, WB-PGD"] == pytest.approx(41.3)
    assert table1["D2: FGSM-trained, FGSM true labels"] == pytest.approx(88.5)
    ratios, paper_ratios = panel("x2", "bar"), panel("x2", "scatter")
    assert ratios["PGD source, block"] == pytest.approx(0.9)
    # R_pgd->nat 18 over R_pgd, each the mean of BB-FGSM and BB-PGD: 81.0 / 81.6
    assert paper_ratios["PGD source, block"] == pytest.approx(81.0 / 81.6)


def test_the_readme_block_is_replaced_and_nothing_else(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\nbefore\n{rp.README_START}\nold\n{rp.README_END}\nafter\n")
    assert rp.update_readme(readme, "| new |\n") is True
    assert (
        readme.read_text() == f"# x\nbefore\n{rp.README_START}\n| new |\n{rp.README_END}\nafter\n"
    )
    assert rp.update_readme(readme, "| new |\n") is False
    assert rp.readme_block(readme.read_text()) == "| new |\n"
    readme.write_text("no markers\n")
    with pytest.raises(TlabError, match="needs exactly one line <!-- report:claims:start -->"):
        rp.update_readme(readme, "| new |\n")


def test_the_command_writes_the_page_the_table_and_the_readme(tmp_path, capsys):
    write_record(tmp_path / "runs", "07", claims=[z1([0.9], [0.5])])
    readme = tmp_path / "README.md"
    readme.write_text(f"{rp.README_START}\n{rp.README_END}\n")
    args = ["report", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    assert cli.main([*args, "--readme", str(readme)]) == 0
    assert "claims block updated" in capsys.readouterr().out
    table = (tmp_path / "out" / rp.MARKDOWN_FILE).read_text()
    assert rp.readme_block(readme.read_text()) == table and "| `07` |" in table
    assert (tmp_path / "out" / rp.HTML_FILE).exists()
    assert cli.main(["report", "--runs", str(tmp_path / "nothing")]) == 2
    assert "tlab: error: runs folder" in capsys.readouterr().err


# ------------------------------------------------------------------ the committed reference runs


def test_the_readme_claims_table_is_the_one_generated_from_the_reference_records():
    expected = rp.markdown_table(rp.build_report(REFERENCE_RUNS))
    written = rp.readme_block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert written == expected, (
        "README's claims table is stale: run `python -m tlab report --runs "
        "tlab/papers/reference_runs --readme README.md`"
    )


def test_the_papers_file_covers_every_claim_and_the_reference_runs_every_claims_notebook():
    numbers = rp.load_paper_numbers()
    expected = [f"Z{i}" for i in range(1, 7)] + ["Fig. 7", "Fig. 8", "Fig. 9"]
    expected += [f"D{i}" for i in range(1, 4)] + [f"W{i}" for i in range(1, 7)]
    assert [c.code for c in numbers.claims] == expected
    report = rp.build_report(REFERENCE_RUNS)
    smoke = {c["code"] for run in report.runs if run.preset == "smoke" for c in run.claims}
    # the smoke preset runs no architecture ablation (notebook 05's ARCHS), hence no Fig. 9
    assert smoke == set(expected) - {"Fig. 9"}
    assert report.presets == ("smoke", "quick", "standard") and not report.skipped


# ------------------------------------------------------------------ a real notebook, recorded


@pytest.mark.notebooks
def test_a_notebook_run_recorded_gives_the_report_its_claims(tmp_path):
    """Notebook 06 (claim Z6, the cheapest claims after notebook 03's models) at the quick
    preset with two seeds, so that every claim has an interval; then the report from it."""
    info = find_notebook("06")
    folder = tmp_path / "runs" / "smoke" / info.name
    folder.mkdir(parents=True)
    run = execute(
        info.path,
        tmp_path / f"{info.name}.ipynb",
        {"PRESET": "smoke", "SEEDS": [0, 1]},
        kernel_env={rec.RECORD_DIR_ENV: str(folder)},
    )
    assert run.status == "ok", run.error
    recorded = rec.read_complete(folder / rec.RECORD_FILE)
    assert recorded["extra"]["preset"] == "smoke"
    claims = recorded["claims"]
    assert claims and {c["code"] for c in claims} == {"Z6"}
    written = rp.write_report(tmp_path / "runs", tmp_path / "report")
    page = written["html"].read_text(encoding="utf-8")
    table = written["markdown"].read_text(encoding="utf-8").splitlines()
    assert not NETWORK_TAG.search(page) and page.count("Plotly.newPlot") == 3
    rows = []
    for claim in claims:
        (row,) = [line for line in table if f"| {claim['statement']} |" in line]
        assert f"| `smoke/{info.name}` |" in row  # the run it came from
        assert f"| {rp.effect_text(claim)} | 2 | **{claim['verdict']}** |" in row  # 2 seeds
        assert claim["verdict"] in ("inconclusive", TOO_FEW)  # fewer than 3 seeds
        assert html.escape(rp.effect_text(claim)) in page
        rows.append(row)
    interval = re.compile(r"95% CI \[[-+][\d.e+-]+, [-+][\d.e+-]+\] \(n=2\)")
    assert any(interval.search(row) for row in rows)  # a seed may leave a median undefined
