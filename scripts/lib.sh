# Shared set-up for scripts/up.sh and scripts/test.sh: each step checks first and installs or
# starts only what is missing, so running them again on a ready machine is quick.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
TEST_IMAGE="cloudai-test/busybox:latest"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf '\033[33m!!  %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31mxx  %s\033[0m\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        return 1
    fi
}

# ensure_apt [--no-recommends] PKG... — install Debian packages that are not installed yet.
ensure_apt() {
    local missing=() opts=(-y -q)
    if [ "${1:-}" = --no-recommends ]; then opts+=(--no-install-recommends); shift; fi
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || { warn "no apt-get: cannot install ${missing[*]}"; return 1; }
    say "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "${missing[@]}" >/tmp/cloudai-apt.log 2>&1 \
        || { as_root apt-get update -q >>/tmp/cloudai-apt.log 2>&1 \
             && as_root env DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "${missing[@]}" \
                >>/tmp/cloudai-apt.log 2>&1; } \
        || { warn "apt-get install ${missing[*]} failed (see /tmp/cloudai-apt.log)"; return 1; }
}

# ensure_venv — .venv with the locked dependencies and cloudai installed (editable).
ensure_venv() {
    local stamp="$VENV/.cloudai-lock-hash" want
    want="$(cat "$ROOT/requirements.lock" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
    say "installing Python dependencies into .venv"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" || die "cannot create $VENV with $PYTHON"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements.lock" 2>/dev/null \
        || "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements.lock" \
        || die "pip install -r requirements.lock failed"
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$ROOT" 2>/dev/null \
        || die "pip install -e . failed"
    echo "$want" >"$stamp"
}

# ensure_chromium — Debian's chromium for the console's browser tests (Playwright drives it
# through executable_path: its own browser download needs a network). Playwright itself is in
# requirements.lock.
ensure_chromium() {
    [ -x "${CLOUDAI_TEST_CHROMIUM:-/usr/bin/chromium}" ] && return 0
    ensure_apt --no-recommends chromium
}

docker_up() { docker info >/dev/null 2>&1; }

# ensure_docker — a Docker engine that answers; installs docker.io and starts dockerd by hand
# (no systemd here) when needed. Returns non-zero when no engine could be had.
ensure_docker() {
    docker_up && return 0
    command -v dockerd >/dev/null || ensure_apt docker.io iptables || return 1
    command -v iptables >/dev/null || ensure_apt iptables || return 1
    [ "$(id -u)" = 0 ] || { warn "dockerd must be started as root"; return 1; }
    local log=/tmp/cloudai-dockerd.log try
    for try in default legacy vfs; do
        case $try in
            legacy) command -v update-alternatives >/dev/null && [ -x /usr/sbin/iptables-legacy ] \
                        && update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null 2>&1 \
                        && update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >/dev/null 2>&1 ;;
        esac
        local args=()
        [ "$try" = vfs ] && args+=(--storage-driver=vfs)
        say "starting dockerd ($try; log: $log)"
        pkill -x dockerd 2>/dev/null && sleep 1
        rm -f /var/run/docker.pid
        nohup setsid dockerd "${args[@]}" >>"$log" 2>&1 </dev/null &
        local i
        for i in $(seq 1 60); do
            docker_up && return 0
            kill -0 $! 2>/dev/null || break
            sleep 0.5
        done
        warn "dockerd ($try) did not answer; last lines of $log:"
        tail -n 5 "$log" >&2
    done
    return 1
}

# build_test_image — the tests' image: FROM scratch with a static busybox; no registry needed.
build_test_image() {
    docker image inspect "$TEST_IMAGE" >/dev/null 2>&1 && return 0
    ensure_apt busybox-static || die "busybox-static is needed for the test image"
    local ctx
    ctx="$(mktemp -d)"
    cp "$ROOT/tests/images/busybox/Dockerfile" "$ctx/"
    cp /bin/busybox "$ctx/busybox"
    say "building $TEST_IMAGE"
    docker build -q -t "$TEST_IMAGE" "$ctx" >/dev/null || die "docker build of $TEST_IMAGE failed"
    rm -rf "$ctx"
}

# start_postgres — a throwaway PostgreSQL server (run as the postgres user, as initdb demands)
# in a temporary directory on a free loopback port; exports CLOUDAI_TEST_PG_URL.
PG_DIR=""
PG_BIN=""
start_postgres() {
    PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
    [ -n "$PG_BIN" ] || { ensure_apt postgresql || return 1; \
        PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"; }
    local user=postgres run=()
    if [ "$(id -u)" = 0 ]; then
        id "$user" >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql "$user"
        run=(runuser -u "$user" --)
    else
        user="$(id -un)"
    fi
    PG_DIR="$(mktemp -d /tmp/cloudai-pg.XXXXXX)"
    chown "$user" "$PG_DIR" 2>/dev/null || true
    local port
    port="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    "${run[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; return 1; }
    "${run[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $PG_DIR -c max_connections=200 -c fsync=off" start >/dev/null \
        || { cat "$PG_DIR/server.log" >&2; return 1; }
    "${run[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres cloudai_test || return 1
    export CLOUDAI_TEST_PG_URL="postgresql://postgres@127.0.0.1:$port/cloudai_test"
    say "PostgreSQL at $CLOUDAI_TEST_PG_URL"
}

stop_postgres() {
    [ -n "$PG_DIR" ] || return 0
    local run=()
    [ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
    "${run[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
}
