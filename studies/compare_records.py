"""Compare two runs of studies/record_notebooks.sh: every notebook's recorded metrics, and the cache
keys (file names under zoo/, results/, embedded/) each run wrote. Usage:
    python studies/compare_records.py OUT_BEFORE OUT_AFTER DATA_BEFORE DATA_AFTER
"""

import json
import sys
from pathlib import Path

before, after = Path(sys.argv[1]), Path(sys.argv[2])
data_b, data_a = Path(sys.argv[3]), Path(sys.argv[4])
same = diff = 0
for rec in sorted(before.glob("*/record.json")):
    other = after / rec.parent.name / "record.json"
    mb = json.loads(rec.read_text()).get("metrics", {})
    ma = json.loads(other.read_text()).get("metrics", {}) if other.exists() else None
    if ma == mb:
        same += 1
        print(f"{rec.parent.name}: {len(mb)} metrics identical")
    else:
        diff += 1
        keys = sorted(set(mb) | set(ma or {}))
        bad = [k for k in keys if (ma or {}).get(k) != mb.get(k)]
        print(f"{rec.parent.name}: DIFFERENT in {len(bad)} of {len(keys)}: {bad[:5]}")
for sub in ("zoo", "results", "embedded"):
    fb = {p.name for p in (data_b / sub).glob("*") if not p.name.endswith(".lock")}
    fa = {p.name for p in (data_a / sub).glob("*") if not p.name.endswith(".lock")}
    extra = (
        ""
        if fb == fa
        else (f"; only before: {sorted(fb - fa)[:4]}; only after: {sorted(fa - fb)[:4]}")
    )
    print(
        f"{sub}: {len(fb)} files before, {len(fa)} after, {len(fb & fa)} with the same name" + extra
    )
print(f"records: {same} identical, {diff} different")
