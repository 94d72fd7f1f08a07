#!/usr/bin/env bash
# Install cloudai and start a local cluster: a master on SQLite, one worker, and the master> shell.
# On Docker when an engine answers (starting one if it can), else on the process runtime.
# Extra arguments go to `cloudai up`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
if ensure_docker; then
    build_test_image || true
else
    warn "no Docker engine: the worker will use the process runtime"
fi
exec "$VENV/bin/cloudai" up "$@"
