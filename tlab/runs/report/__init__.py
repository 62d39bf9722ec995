"""One reproduction report: every claim of the three papers, the paper's own number next to the
lab's measurement per preset, read from the runs' records (``python -m tlab report``).

Input: every complete ``record.json`` under the runs folder (:mod:`tlab.record`): a notebook
writes one when ``TLAB_RECORD_DIR`` names a folder (``python -m tlab sweep`` sets it per point;
set it yourself around ``python -m tlab run NN``). Each record holds the run's preset (recorded by
:func:`tlab.notebook.startup.start`), its metrics, and its claims as the notebook's claims tables
computed them (:func:`tlab.papers.claims.claims_table`). Records are never recomputed here: the
report shows the verdicts the runs reached.

The papers' numbers come from ``tlab/papers/paper_numbers.yaml``, one entry per claim code (Zhang
et al. Z1-Z6 and the ablations' Fig. 7-9, Davchev et al. D1-D3, Wang et al. W1-W6) with the
section, figure or table they are read from; a claim the paper states without a number reads
"qualitative".

Output, in the output folder:

- ``report.html``: one offline page (plotly.js inlined once, as in
  :mod:`tlab.runs.html_export`), per paper a figure that draws the paper's numbers on the lab's
  axes (Zhang et al.: white- and black-box accuracy vs eps, Secs. 5.1-5.2 and 6.1; Davchev et
  al.: the Table 1 cells its claims compare; Wang et al.: targeted success by student kind, Sec.
  4.2, and the fingerprint Gini, Sec. 5.1), then its claims table;
- ``claims.md``: the claims table in Markdown, which ``--readme FILE`` also writes into FILE
  between :data:`README_START` and :data:`README_END`.

Every claim of every preset present in the runs gets a row: the lab's statement, the effect with
its 95 % interval and the number of seeds, the verdict (holds / contradicted / inconclusive /
"inconclusive (n too small)"), and the run folder it came from; a preset that did not measure a
claim says "not run". The figures draw, for each preset, the first run (by folder) that measured
the quantity; the tables list every run.
"""

from tlab.papers.reference import effect_text
from tlab.runs.report.figures import (
    davchev_figure,
    davchev_paper_cell,
    wang_figure,
    wang_lab_values,
    zhang_figure,
)
from tlab.runs.report.inputs import build_report, load_paper_numbers
from tlab.runs.report.page import HTML_FILE, MARKDOWN_FILE, html_page, write_report
from tlab.runs.report.tables import (
    README_END,
    README_START,
    claim_rows,
    markdown_table,
    readme_block,
    seed_count,
    update_readme,
)

__all__ = [
    "HTML_FILE",
    "MARKDOWN_FILE",
    "README_END",
    "README_START",
    "build_report",
    "claim_rows",
    "davchev_figure",
    "davchev_paper_cell",
    "effect_text",
    "html_page",
    "load_paper_numbers",
    "markdown_table",
    "readme_block",
    "seed_count",
    "update_readme",
    "wang_figure",
    "wang_lab_values",
    "write_report",
    "zhang_figure",
]
