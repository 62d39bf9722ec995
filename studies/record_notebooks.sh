#!/bin/bash
# Run every notebook at its default parameters with papermill, each recording to OUT/<notebook>/
# (TLAB_RECORD_DIR) on data folder DATA (TLAB_DATA): the before/after check of a refactoring.
# Compare two such runs with studies/compare_records.py BEFORE AFTER DATA_BEFORE DATA_AFTER.
# usage: studies/record_notebooks.sh REPO DATA OUT
repo=$1; data=$2; out=$3
mkdir -p "$out"
cd "$repo"
for nb in notebooks/[0-9]*.ipynb; do
  name=$(basename "$nb" .ipynb); mkdir -p "$out/$name"
  start=$(date +%s)
  TLAB_DATA="$data" TLAB_RECORD_DIR="$out/$name" python -m papermill -k python3 --log-level ERROR "$nb" "$out/$name/out.ipynb" >"$out/$name/log" 2>&1
  echo "$name rc=$? $(( $(date +%s) - start ))s"
done
