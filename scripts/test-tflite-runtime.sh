#!/usr/bin/env bash
# The runtime on the fallback interpreter of boards with numpy 1.x: tflite-runtime 2.14.0 (its last release, which
# fails under numpy 2) with numpy<2, without the LiteRT extra. Usage: scripts/test-tflite-runtime.sh [PYTEST_ARGS...]
#
# Makes (once; reused while runtime/pyproject.toml and the pins below are unchanged) a venv outside the repository,
# installs ./runtime from this working tree on each run, checks that the runtime picks tflite_runtime, and runs
# the runtime tests that use a TFLite interpreter (marker `tflite`, with the committed bundle's accuracy on
# committed digits, per artifact). Needs Python 3.9-3.11 (tflite-runtime 2.14 has no wheels for later ones).
# Environment: PYTHON (default python3), EDGEKD_TFLITE_RUNTIME_VENV (default ~/.cache/edgekd/tflite-runtime-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${EDGEKD_TFLITE_RUNTIME_VENV:-$HOME/.cache/edgekd/tflite-runtime-venv}
DEPS=("tflite-runtime==2.14.0" "numpy<2" "pytest>=8" "pytest-timeout>=2.3" "onnx" "setuptools>=64" "wheel")
START=$(date +%s)
say() { echo "[test-tflite-runtime $(( $(date +%s) - START ))s] $*"; }

if ! "$PY" -c 'import sys; sys.exit(0 if (3, 9) <= sys.version_info[:2] <= (3, 11) else 1)'; then
  echo "error: tflite-runtime 2.14 needs Python 3.9-3.11; found $("$PY" --version). Set PYTHON=/path/to/python3.11." >&2
  exit 2
fi
stamp=$(cat runtime/pyproject.toml <(printf '%s\n' "${DEPS[@]}") | sha256sum | cut -c1-16)
if [[ ! -f "$VENV/.edgekd-deps-$stamp" ]]; then
  say "making $VENV: ./runtime (no LiteRT extra), ${DEPS[*]}"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  # numpy<2 in the same call, so that the runtime's own numpy>=1.21 resolves to a 1.x that tflite-runtime loads
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check ./runtime "${DEPS[@]}"
  touch "$VENV/.edgekd-deps-$stamp"
fi
say "installing ./runtime from this working tree"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation --force-reinstall \
  ./runtime
# The venv's own runtime must be what the tests import (not this tree's sources through PYTHONPATH).
export PYTHONPATH="" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
"$VENV/bin/python" - <<'EOF'
import cv2, numpy, edgekd_runtime as rt
rec = rt.load("tests/fixtures/digits_bundle", backend="tflite")
print(f"interpreter: {rec.backend_name} {rec.backend_version}, numpy {numpy.__version__}, opencv {cv2.__version__}")
assert rec.backend_name == "tflite_runtime", f"expected the runtime to use tflite_runtime, got {rec.backend_name}"
assert numpy.__version__.startswith("1."), f"expected numpy 1.x, got {numpy.__version__}"
EOF
LOG=$(mktemp "${TMPDIR:-/tmp}/test-tflite-runtime.XXXXXX.log")
set +e
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -m tflite tests/runtime "$@" 2>&1 | tee "$LOG"
STATUS=${PIPESTATUS[0]}
set -e
echo
echo "=== test-tflite-runtime summary ==="
grep -E '^committed bundle:' "$LOG" || echo "committed bundle: no accuracy lines (did the test run?)"
tail -n 1 "$LOG"
RESULT=PASSED; [[ $STATUS == 0 ]] || RESULT="FAILED (pytest exit $STATUS)"
echo "time: $(( $(date +%s) - START )) s; result: $RESULT"
exit "$STATUS"
