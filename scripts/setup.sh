#!/usr/bin/env bash
# Set up rtclone in ./.venv on a fresh machine (CPU). Usage: bash scripts/setup.sh [--dev]
#   --dev  also installs the test/benchmark extras (pytest, triton for the interpreter tests, onnx ...)
# torch is pinned to 2.13.0: on these machines that is the CPU wheel on disk; a loose pin would
# pull a multi-GB CUDA build. GPU users: install torch 2.13.0+cuXXX first, then `pip install -e .[gpu]`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pkgs="flite espeak-ng sox libsndfile1 ffmpeg"
need=0
{ command -v flite && command -v espeak-ng; } >/dev/null || need=1
if [ "${1:-}" = "--dev" ]; then  # what the tests use besides (they skip without): festival voices, a headless browser
  pkgs="$pkgs festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts chromium"
  { command -v festival && command -v chromium; } >/dev/null || need=1
fi
if [ "$need" = 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get -o DPkg::Lock::Timeout=900 update -qq || true
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $pkgs >/dev/null
  else
    echo "note: install these Debian packages for the built-in voices and the tests: $pkgs" >&2
  fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip wheel "setuptools<81"
.venv/bin/python -m pip install -q torch==2.13.0
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
.venv/bin/python -m pip install -q -e ".${extras}"
.venv/bin/python -c "import rtclone.kernels.cpu as k; print('native CPU kernel:', 'available' if k.available() else 'unavailable (%s)' % k.unavailable_reason())" 2>/dev/null || true
.venv/bin/python -c "from rtclone.kernels.cpu import gru; print('GRU training kernel:', gru.kernels() if gru._gru else 'unavailable (nn.GRU is used)')" 2>/dev/null || true
