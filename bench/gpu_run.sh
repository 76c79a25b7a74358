#!/usr/bin/env bash
# On a GPU machine: the GPU tests (`pytest -m gpu`), then bench/gpu_throughput.py, with their logs and
# the results in one folder. Without a GPU it checks itself: the tests skip and the benchmark runs its
# tiny CPU smoke setup.
# Usage: bench/gpu_run.sh [OUT_DIR] [BUDGET_SECONDS]
#   OUT_DIR         gets gpu_throughput.json, pytest_gpu.log and gpu_throughput.log; default
#                   bench/results on a GPU, a new temporary folder for the smoke run
#   BUDGET_SECONDS  default 400: the benchmark starts no setup likely to end later than this (about
#                   what all its setups should take on an H200); the tests take a minute or two more
# src/ is put on the path, so warmstart need not be installed. With a .gpu/ folder from
# bench/gpu_prepare.sh (for a machine with PyTorch but no network access), its wheels are installed
# into a scratch directory first: nothing is installed into the machine's own environment.
set -uo pipefail
cd "$(dirname "$0")/.."
budget=${2:-400}
export PYTHONUNBUFFERED=1
if [ -d .gpu/wheels ]; then
  site=$(mktemp -d /tmp/warmstart-site.XXXXXX)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .gpu/wheels/*.whl \
    || { echo "gpu_run: the wheels in .gpu/wheels did not install; rerun bench/gpu_prepare.sh for this machine's Python" >&2; exit 1; }
  export PYTHONPATH="$site:$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# Every import the tests and the benchmark need, before any GPU time is spent on them.
python3 - <<'EOF' || exit 1
import sys
try:
    import datasets, pyarrow, pydantic, torch, transformers
    import warmstart.finetune
except ImportError as missing:
    sys.exit(f"gpu_run: {missing}; run bench/gpu_prepare.sh where PyPI is reachable and bring .gpu/ along")
names = ("torch", "transformers", "datasets", "pyarrow", "pydantic")
print("gpu_run:", ", ".join(f"{name} {sys.modules[name].__version__}" for name in names))
EOF
smoke=()
if ! python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_run: no CUDA GPU here; the GPU tests will skip and the benchmark runs its CPU smoke setup"
  smoke=(--smoke)
fi
out=${1:-$([ ${#smoke[@]} = 0 ] && echo bench/results || mktemp -d /tmp/warmstart-gpu-smoke.XXXXXX)}
mkdir -p "$out"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -m pytest -m gpu tests/finetune/test_gpu.py -p no:cacheprovider 2>&1 | tee "$out/pytest_gpu.log"
tests=${PIPESTATUS[0]}
python3 bench/gpu_throughput.py --out "$out" --budget-s "$budget" "${smoke[@]}" 2>&1 | tee "$out/gpu_throughput.log"
bench=${PIPESTATUS[0]}
echo "gpu_run: pytest -m gpu exited $tests, the benchmark $bench; results in $out"
[ "$tests" = 0 ] && [ "$bench" = 0 ]
