#!/usr/bin/env bash
# The device check, for a machine with NVIDIA GPUs (not for CI): starts a local cluster the
# documented way (`cloudai up --no-shell`: TLS and tokens, on a throw-away CLOUDAI_HOME), runs
# two 1-GPU tasks at the same time, and prints what each saw (NVIDIA_VISIBLE_DEVICES and
# `nvidia-smi -L`).
#
#   scripts/gpu_check.sh [docker|process]     # default docker
#
# docker needs the NVIDIA Container Toolkit; process runs the tasks as local processes (no
# toolkit needed). GPU_CHECK_IMAGE is the image (default ubuntu:24.04: the toolkit mounts
# nvidia-smi into it).
# Exit codes: 0 each task saw its own device; 1 they saw the same one, or a task failed;
# 77 this machine cannot run the check (one line says why: no driver, fewer than 2 GPUs, no
# Docker or no toolkit).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RUNTIME="${1:-docker}"
IMAGE="${GPU_CHECK_IMAGE:-ubuntu:24.04}"
SKIPPED=77

skip() { echo "gpu_check: skipped: $*"; exit "$SKIPPED"; }

case "$RUNTIME" in docker | process) ;; *) die "usage: $0 [docker|process]" ;; esac
command -v nvidia-smi >/dev/null 2>&1 || skip "no NVIDIA driver on this machine (no nvidia-smi)"
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
[ "$gpus" -ge 2 ] || skip "needs 2 NVIDIA GPUs, nvidia-smi lists ${gpus:-0}"
if [ "$RUNTIME" = docker ]; then
    docker info >/dev/null 2>&1 || skip "no Docker engine answers (try: $0 process)"
    command -v nvidia-container-runtime-hook >/dev/null 2>&1 \
        || command -v nvidia-ctk >/dev/null 2>&1 \
        || skip "no NVIDIA Container Toolkit for Docker (try: $0 process)"
fi

ensure_venv
PY="$VENV/bin/python"
CLOUDAI="$VENV/bin/cloudai"
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

export CLOUDAI_HOME
CLOUDAI_HOME="$(mktemp -d -t cloudai-gpu-check.XXXXXX)"
MASTER_PORT=$(free_port)
WORKER_PORT=$(free_port)
export CLOUDAI_MASTER="127.0.0.1:$MASTER_PORT"
unset CLOUDAI_TOKEN CLOUDAI_CA

say "cloudai up (runtime $RUNTIME) in $CLOUDAI_HOME"
"$CLOUDAI" up --no-shell --runtime "$RUNTIME" --listen "$CLOUDAI_MASTER" \
    --worker-listen "127.0.0.1:$WORKER_PORT" --metrics-listen off --worker-metrics-listen off \
    >"$CLOUDAI_HOME/up.log" 2>&1 &
UP_PID=$!
cleanup() {
    kill "$UP_PID" 2>/dev/null || true
    wait "$UP_PID" 2>/dev/null || true
    rm -rf "$CLOUDAI_HOME"
}
trap cleanup EXIT

# The local worker, healthy, with the GPUs NVML found.
found=0
for _ in $(seq 1 120); do
    found=$("$CLOUDAI" workers -o json 2>/dev/null | "$PY" -c '
import json, sys
ws = [w for w in json.load(sys.stdin) if w["state"] == "healthy"]
print(ws[0]["capacity"]["gpu"] if ws else 0)' 2>/dev/null || echo 0)
    [ "$found" -gt 0 ] && break
    kill -0 "$UP_PID" 2>/dev/null || { cat "$CLOUDAI_HOME/up.log" >&2; die "cloudai up exited"; }
    sleep 0.5
done
[ "$found" -ge 2 ] || { cat "$CLOUDAI_HOME/up.log" >&2; die "the worker found $found GPU(s), not 2"; }
say "the worker has $found GPUs"

# Each task holds its device for a few seconds, so the two run at the same time.
# In a container only its device is visible (nvidia-smi -L lists it); a process is told its
# device in CUDA_VISIBLE_DEVICES (an NVML index, as nvidia-smi -i takes it).
SCRIPT='echo "NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-}"; nvidia-smi -L ${CUDA_VISIBLE_DEVICES:+-i $CUDA_VISIBLE_DEVICES}; sleep 5'
ids=()
for _ in 1 2; do
    ids+=("$("$CLOUDAI" task run "$IMAGE" --gpu 1 --cpu 0.5 --mem 0.5 --name gpu-check -o json \
        -- sh -c "$SCRIPT" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["task_id"])')")
done

"$PY" - "$CLOUDAI" "${ids[@]}" <<'EOF'
import json, re, subprocess, sys, time

cloudai, ids = sys.argv[1], sys.argv[2:]

def show(task_id):
    out = subprocess.run([cloudai, "task", "show", task_id, "-o", "json"], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)

deadline = time.monotonic() + 600  # an image pull may take a while
tasks = {}
while time.monotonic() < deadline:
    tasks = {t: show(t) for t in ids}
    if all(t["result"] is not None for t in tasks.values()):
        break
    time.sleep(1)
seen = {}
ok = True
for task_id, t in tasks.items():
    logs = (t["result"] or {}).get("logs", "")
    uuids = sorted(set(re.findall(r"\(UUID: ([^)]+)\)", logs)))
    seen[task_id] = uuids
    print(f"--- {task_id}: {t['status']}, assigned GPU {','.join(t['gpus']) or '-'}")
    print("    " + (logs.strip().replace("\n", "\n    ") or "(no output)"))
    if t["status"] != "completed" or len(uuids) != 1:
        print(f"    ✗ expected completed with one device, got {t['status']} with {uuids or 'none'}"
              + (f": {t['reason']}" if t["reason"] else ""))
        ok = False
a, b = (seen[t] for t in ids)
if a and a == b:
    print(f"✗ both tasks saw {a[0]}: one device was given to two tasks")
    ok = False
if [tasks[t]["gpus"] for t in ids][0] == [tasks[t]["gpus"] for t in ids][1]:
    print("✗ both tasks were assigned the same device")
    ok = False
print("✓ each task saw its own device" if ok else "✗ device check failed")
sys.exit(0 if ok else 1)
EOF
