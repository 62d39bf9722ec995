#!/usr/bin/env bash
# A virtual environment with the CPU-only build of torch, the build Binder installs
# (binder/requirements.txt), to measure what the notebooks' kernels cost there: the CUDA build
# that requirements.txt installs maps several hundred MiB more per process.
#
#   bash benchmarks/cpu_torch_venv.sh VENV               # Binder's own pins (needs download.pytorch.org)
#   bash benchmarks/cpu_torch_venv.sh VENV TORCH_WHEEL   # a CPU wheel of torch already on disk
#
# With a wheel, torchvision is PyPI's release for that torch, installed without its
# dependencies: it cannot load its compiled operators beside a CPU torch, so a dataset read
# through torchvision (Fashion-MNIST, in 00, 07 and 08, the first time) fails in this
# environment. Convert it first into the data folder with the full environment (tlab then reads
# its converted copy without torchvision; the copy is named by the source files' sizes and
# modification times, so copy data folders with `cp -a`):
#
#   TLAB_DATA=DATA python -c "from tlab.core.data import load_domain; load_domain('fashion_mnist')"
#
# Then, from the repository's root:
#
#   PYTHONPATH=. VENV/bin/python benchmarks/notebook_costs.py --preset quick --data DATA --out OUT 00 01 ...
set -euo pipefail
venv="${1:?usage: cpu_torch_venv.sh VENV [TORCH_WHEEL]}"
wheel="${2:-}"
root="$(cd "$(dirname "$0")/.." && pwd)"
python3 -m venv "$venv"
if [[ -z "$wheel" ]]; then
    "$venv/bin/pip" install -q -r "$root/binder/requirements.txt"
else
    "$venv/bin/pip" install -q "$wheel"
    # torchvision's minor release follows torch's (2.13 -> 0.28, 2.14 -> 0.29)
    minor="$("$venv/bin/python" -c 'import torch; print(torch.__version__.split(".")[1])')"
    vision="0.$((minor + 15)).0"
    "$venv/bin/pip" install -q --no-deps "torchvision==$vision"
    grep -v -E '^(torch|torchvision)==' "$root/requirements.txt" >"$venv/requirements-no-torch.txt"
    "$venv/bin/pip" install -q -r "$venv/requirements-no-torch.txt"
fi
"$venv/bin/pip" install -q --no-deps -e "$root"
"$venv/bin/python" -c 'import torch; print("torch", torch.__version__, "CUDA" if torch.version.cuda else "CPU build")'
