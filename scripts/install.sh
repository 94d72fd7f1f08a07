#!/usr/bin/env bash
# Install cloudai into .venv (from the lock file) and make sure a Docker engine answers: for a
# machine that will run `cloudai worker` or `cloudai master`.
#
# To join a cluster as a worker in the same step (the way kubeadm joins a node):
#   scripts/install.sh --join TOKEN --id WORKER_ID --master MASTER_HOST:50051 [worker options]
# gets the token from `cloudai join-token` on the master's machine, then runs
#   cloudai worker --id WORKER_ID --master MASTER_HOST:50051 --join TOKEN [worker options]
# which checks the master against the CA the token pins, gets this worker's certificate into
# $CLOUDAI_HOME/pki/ and serves (later starts need no --join).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
ensure_docker || warn "no Docker engine: only the process runtime (--runtime process) will work"
say "installed: $VENV/bin/cloudai"
if [ "$#" -gt 0 ]; then
    case " $* " in
        *" --join "*) ;;
        *) die "usage: $0 [--join TOKEN --id WORKER_ID --master HOST:PORT [worker options]]" ;;
    esac
    say "joining the cluster: cloudai worker $(printf '%s ' "$@" | sed -E 's/(--join )[^ ]+/\1<token>/')"
    exec "$VENV/bin/cloudai" worker "$@"
fi
