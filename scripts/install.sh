#!/usr/bin/env bash
# Install cloudai into .venv (from the lock file) and make sure a Docker engine answers, without
# starting anything else: for a machine that will run `cloudai worker` or `cloudai master`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
ensure_docker || warn "no Docker engine: only the process runtime (--runtime process) will work"
say "installed: $VENV/bin/cloudai"
