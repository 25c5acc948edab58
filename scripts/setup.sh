#!/usr/bin/env bash
# Set up rtclone in ./.venv on a fresh machine (CPU). Usage: bash scripts/setup.sh [--dev]
#   --dev  also installs the test/benchmark extras (pytest, triton for the interpreter tests, onnx ...)
# torch is pinned to 2.13.0: on these machines that is the CPU wheel on disk; a loose pin would
# pull a multi-GB CUDA build. GPU users: install torch 2.13.0+cuXXX first, then `pip install -e .[gpu]`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! command -v flite >/dev/null || ! command -v espeak-ng >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get -o DPkg::Lock::Timeout=900 update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends flite espeak-ng sox libsndfile1 ffmpeg >/dev/null
  else
    echo "note: install flite, espeak-ng, sox, libsndfile1 (Debian packages) for the built-in voices and tests" >&2
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
