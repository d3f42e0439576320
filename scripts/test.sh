#!/usr/bin/env bash
# Installs the real SIP test peers (if missing) and the gateway, then runs the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k echo
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-peers.sh
bash scripts/venv.sh test
exec .venv/bin/python -m pytest "$@"
