#!/usr/bin/env bash
# Installs the gateway into .venv and runs it in the foreground (Ctrl-C stops it).
# Usage: scripts/run.sh [CONFIG]   (default config/gateway.yaml: the embedded echo agent)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
exec .venv/bin/python -m gateway run --config "${1:-config/gateway.yaml}"
