#!/usr/bin/env bash
# The GPU check (issue 29): the CUDA tests and benchmarks/device.py on a lent GPU machine, as one script, in a few
# minutes (each step has its own time limit; all of them together stay under 8 minutes).
#
# 1. Here, once, on the machine with the kit's .venv:
#        benchmarks/gpu_check.sh prepare
#    zips the pure-Python packages that the GPU machine's image lacks (quantus, captum, cachetools: it has torch, timm,
#    numpy, scipy, scikit-image, scikit-learn, opencv, pandas, matplotlib, pytest) from .venv into .device/site.zip
#    (under 1 MB; .device/ is git-ignored), and prints what will travel: every tracked file does, and the limit is
#    64 MiB. Nothing heavy is installed there, and the .venv (CPU torch, gigabytes) stays here.
# 2. There, with the device tool: run, carry [".device"], timeout_s 540:
#        bash benchmarks/gpu_check.sh
#    a. nvidia-smi and torch's view of the GPU;
#    b. pytest -q -m cuda tests/test_cuda.py (that file alone: the other test modules import packages the image lacks);
#    c. python benchmarks/device.py --device cuda --out $OUT: one ResNet18 class graph, one training epoch, the fig. 8
#       methods Saliency and Causal. data/ and models/ do not travel (the tree is near the limit), so unless they are
#       there it runs on synthetic CIFAR-10 look-alikes with a randomly initialised ResNet18, and device.json says so;
#       SMOKE=1 adds the smoke profile end to end (it needs papermill and Jupyter, which the image lacks: carry them).
#    Logs and device.json land in $OUT (./gpu-check-out where $OUT is unset). device.json holds the CPU entry it found
#    in reports/benchmarks/device.json beside the CUDA one. Arguments after the script name go to device.py.
# 3. Here: copy the returned device.json over reports/benchmarks/device.json and commit it with the logs' verdict.
set -u -o pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = prepare ]; then
  PY=${PYTHON:-.venv/bin/python}
  mkdir -p .device
  "$PY" - <<'EOF' || exit 1
import importlib, os, zipfile
from pathlib import Path

packages = ["quantus", "captum", "cachetools"]   # pure Python; their other needs are in the GPU image
with zipfile.ZipFile(".device/site.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for name in packages:
        folder = Path(importlib.import_module(name).__file__).parent
        for f in sorted(folder.rglob("*")):
            rel = f.relative_to(folder.parent)
            if f.is_file() and "__pycache__" not in rel.parts and rel.parts[:2] != ("captum", "testing"):
                z.write(f, rel.as_posix())
print(f".device/site.zip: {', '.join(packages)}, {os.path.getsize('.device/site.zip') / 2**20:.2f} MiB")
EOF
  tracked=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
  carried=$(du -sb .device | cut -f1)
  awk -v t="$tracked" -v c="$carried" 'BEGIN {printf "travels: working tree %.1f MiB + .device %.1f MiB = %.1f MiB of 64\n", t/2^20, c/2^20, (t+c)/2^20; exit (t+c > 64*2^20)}' \
    || { echo "over the 64 MiB limit: the GPU check cannot be sent as it is"; exit 1; }
  exit 0
fi

OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/.device/site.zip:$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}   # deterministic cuBLAS (models.deterministic)
[ -f .device/site.zip ] || echo "warning: .device/site.zip missing (benchmarks/gpu_check.sh prepare, then carry .device)"
status=0

echo "== GPU"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
} 2>&1 | tee "$OUT/gpu.txt" || status=1
"$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null \
  || { echo "== gpu_check: FAILED, torch sees no CUDA GPU here"; exit 1; }

echo "== pytest -m cuda"
timeout 150 "$PY" -m pytest -q -m cuda -p no:cacheprovider -rs tests/test_cuda.py 2>&1 | tee "$OUT/pytest_cuda.log" || status=1
tail -n 1 "$OUT/pytest_cuda.log" | grep " passed" | grep -qv "failed\|error\|skipped" \
  || { echo "the CUDA tests did not all pass (see pytest_cuda.log)"; status=1; }

echo "== benchmarks/device.py --device cuda"
args=(--device cuda --out "$OUT")
[ -f data/cifar10/cifar10.npz ] || args+=(--synthetic-data)
[ "${SMOKE:-0}" = 1 ] && args+=(--smoke)
timeout "${DEVICE_TIMEOUT:-300}" "$PY" benchmarks/device.py "${args[@]}" "$@" 2>&1 | tee "$OUT/device.log" || status=1
[ -f "$OUT/device.json" ] || { echo "no device.json written"; status=1; }

echo "== gpu_check: $([ $status = 0 ] && echo OK || echo FAILED); files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $status
