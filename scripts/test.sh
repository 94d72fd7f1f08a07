#!/usr/bin/env bash
# Install what the suite needs (Python deps, Docker, PostgreSQL, the test image) and run it.
# Extra arguments go to pytest. Under CI=true a missing Docker engine or PostgreSQL is fatal.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
CI="${CI:-}"
strict() { [ "$CI" = true ] || [ "$CI" = 1 ]; }

ensure_venv
if ensure_docker; then
    build_test_image
elif strict; then
    die "no Docker engine (CI=true needs one): see /tmp/cloudai-dockerd.log"
else
    warn "no Docker engine: Docker tests will be skipped"
fi
if ! command -v promtool >/dev/null && ! ensure_apt --no-recommends prometheus; then
    strict && die "could not install promtool (Debian's prometheus package; CI=true needs it)"
    warn "no promtool: the /metrics format test will be skipped"
fi
if ! ensure_chromium; then
    strict && die "could not install Chromium (Debian's chromium package; CI=true needs it)"
    warn "no Chromium: the web console's browser tests will be skipped"
fi
if ! start_postgres; then
    strict && die "could not start PostgreSQL (CI=true needs it)"
    warn "no PostgreSQL: PostgreSQL tests will be skipped"
fi
trap stop_postgres EXIT

say "ruff"
"$VENV/bin/ruff" check src tests scripts bench
say "mypy"
"$VENV/bin/mypy" src
say "pytest"
"$VENV/bin/python" -m pytest -q -rs "$@"
