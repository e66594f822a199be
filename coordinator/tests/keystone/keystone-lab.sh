#!/usr/bin/env bash
# A real OpenStack Keystone (from PyPI) for the coordinator's keystone-auth
# tests: loopback only, SQLite, fernet tokens, everything in one directory.
#
# Usage:
#   keystone-lab.sh venv [VENV_DIR]        make the venv if missing; prints its path
#   keystone-lab.sh start STATE_DIR PORT   configure, bootstrap and start Keystone
#                                          on 127.0.0.1:PORT; prints only its PID
#   keystone-lab.sh seed STATE_DIR PORT [--ironic-url URL]
#                                          projects, users and role assignments;
#                                          prints their ids as JSON
#   keystone-lab.sh stop STATE_DIR         stops it (no error if not running)
#
# The venv is VENV_DIR for `venv`, else $INGOT_KEYSTONE_VENV, else
# <repo>/target/venv-keystone; `start` and `seed` make it when missing.
# The admin's password is $KEYSTONE_ADMIN_PASSWORD (default admin-secret);
# `start` also reads $KEYSTONE_TOKEN_EXPIRATION (seconds, default 3600),
# $KEYSTONE_DEBUG (true: debug logging) and $KEYSTONE_START_TIMEOUT (s, 60).
# See README.md beside this file.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
admin_password=${KEYSTONE_ADMIN_PASSWORD:-admin-secret}

die() {
    echo "keystone-lab: $*" >&2
    exit 1
}

usage() {
    sed -n '5,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# The venv: keystone and waitress (both pure Python wheels or with wheels for
# their C parts: nothing is compiled). Marker bin/waitress-serve: python-venv.sh
# builds the venv aside and moves it in place when complete, so a half-made
# venv is never taken for a complete one.
ensure_venv() {
    local dir=$1
    "$repo/coordinator/tests/python-venv.sh" "$dir" bin/waitress-serve keystone waitress >&2 ||
        die "could not make the venv $dir"
    [ -x "$dir/bin/keystone-manage" ] || die "$dir has no keystone-manage (remove it to remake it)"
}

venv_dir() {
    local dir=${1:-${INGOT_KEYSTONE_VENV:-$repo/target/venv-keystone}}
    mkdir -p "$(dirname "$dir")"
    echo "$(cd "$(dirname "$dir")" && pwd)/$(basename "$dir")"
}

check_port() {
    case $1 in
    '' | *[!0-9]*) die "bad port: $1" ;;
    esac
    if [ "$1" -lt 1 ] || [ "$1" -gt 65535 ]; then
        die "bad port: $1"
    fi
}

# The PID in STATE_DIR/keystone.pid if that process is alive and is our
# server for this STATE_DIR (not another process that got the PID since).
running_pid() {
    local state pid
    state=$(cd "$1" 2>/dev/null && pwd) || return 1
    [ -f "$state/keystone.pid" ] || return 1
    pid=$(cat "$state/keystone.pid")
    case $pid in
    '' | *[!0-9]*) return 1 ;;
    esac
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
        grep -qF "keystone_wsgi.py $state/keystone.conf " || return 1
    echo "$pid"
}

write_conf() {
    local state=$1
    cat >"$state/keystone.conf" <<EOF
# Written by keystone-lab.sh start; rewritten at each start.
[DEFAULT]
log_dir = $state
log_file = keystone.log
use_stderr = false
debug = ${KEYSTONE_DEBUG:-false}

[database]
connection = sqlite:///$state/keystone.db

[token]
provider = fernet
# Seconds a token lives: Keystone's default of an hour, unless
# \$KEYSTONE_TOKEN_EXPIRATION says otherwise (to test expiry).
expiration = ${KEYSTONE_TOKEN_EXPIRATION:-3600}

[fernet_tokens]
key_repository = $state/fernet-keys

[fernet_receipts]
# Receipts (multi-factor auth) are not used; keep them out of /etc all the same.
key_repository = $state/fernet-keys

[credential]
key_repository = $state/credential-keys

[identity]
# bcrypt's minimum cost: each password check takes ~1 ms instead of ~250 ms.
password_hash_rounds = 4

[cache]
# In-process cache: one server process, so nothing can go stale (Keystone
# invalidates it itself on changes). Token validation goes from ~400 ms to a
# few ms.
enabled = true
backend = oslo_cache.dict

[oslo_policy]
# No such file: the policy is Keystone's built-in defaults. Named so that a
# /etc/keystone/policy.yaml on the machine is never read.
policy_file = $state/policy.yaml
EOF
}

manage() {
    local state=$1
    shift
    "$venv/bin/keystone-manage" --config-file "$state/keystone.conf" "$@" \
        >>"$state/keystone-manage.log" 2>&1 ||
        {
            tail -n 30 "$state/keystone-manage.log" >&2
            die "keystone-manage $1 failed (log: $state/keystone-manage.log, $state/keystone.log)"
        }
}

cmd_start() {
    [ $# -eq 2 ] || usage
    local state=$1 port=$2 pid
    check_port "$port"
    mkdir -p "$state"
    state=$(cd "$state" && pwd)
    if pid=$(running_pid "$state"); then
        die "already running in $state (pid $pid)"
    fi
    venv=$(venv_dir)
    ensure_venv "$venv"
    if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
        die "something already answers on 127.0.0.1:$port"
    fi

    write_conf "$state"
    mkdir -p "$state/fernet-keys" "$state/credential-keys"
    chmod 700 "$state/fernet-keys" "$state/credential-keys"
    local user group
    user=$(id -un)
    group=$(id -gn)
    # All of these are idempotent: a second start on the same STATE_DIR keeps
    # the database, the keys and the ids.
    manage "$state" db_sync
    manage "$state" fernet_setup --keystone-user "$user" --keystone-group "$group"
    manage "$state" credential_setup --keystone-user "$user" --keystone-group "$group"
    manage "$state" bootstrap \
        --bootstrap-username admin \
        --bootstrap-password "$admin_password" \
        --bootstrap-project-name admin \
        --bootstrap-role-name admin \
        --bootstrap-service-name keystone \
        --bootstrap-region-id RegionOne \
        --bootstrap-public-url "http://127.0.0.1:$port/v3"

    # The server in a session of its own (setsid: not stopped by a Ctrl-C
    # meant for the caller); $! is the server itself (setsid does not fork
    # when, as here, the caller is no process group leader). No descriptor
    # of ours stays open in it, so a caller reading our stdout to EOF is not
    # held up.
    setsid "$venv/bin/python" "$here/keystone_wsgi.py" "$state/keystone.conf" "$port" \
        </dev/null >>"$state/server.log" 2>&1 &
    pid=$!
    echo "$pid" >"$state/keystone.pid"

    local deadline=$((SECONDS + ${KEYSTONE_START_TIMEOUT:-60}))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$state/server.log" "$state/keystone.log" >&2 || true
            rm -f "$state/keystone.pid"
            die "keystone exited at start (logs in $state)"
        fi
        if curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$port/v3"; then
            echo "$pid"
            return 0
        fi
        sleep 0.1
    done
    tail -n 30 "$state/server.log" "$state/keystone.log" >&2 || true
    kill -TERM "$pid" 2>/dev/null || true
    rm -f "$state/keystone.pid"
    die "keystone did not answer GET /v3 on 127.0.0.1:$port within ${KEYSTONE_START_TIMEOUT:-60} s (logs in $state)"
}

cmd_stop() {
    [ $# -eq 1 ] || usage
    local state=$1 pid _
    if ! pid=$(running_pid "$state"); then
        rm -f "$state/keystone.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$state/keystone.pid"
}

cmd_seed() {
    [ $# -ge 2 ] || usage
    local state=$1 port=$2
    shift 2
    check_port "$port"
    running_pid "$state" >/dev/null || die "not running in $state"
    venv=$(venv_dir)
    ensure_venv "$venv"
    KEYSTONE_ADMIN_PASSWORD=$admin_password \
        "$venv/bin/python" "$here/keystone_seed.py" "http://127.0.0.1:$port/v3" "$@"
}

[ $# -ge 1 ] || usage
command=$1
shift
case $command in
venv)
    [ $# -le 1 ] || usage
    venv=$(venv_dir "${1:-}")
    ensure_venv "$venv"
    echo "$venv"
    ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
seed) cmd_seed "$@" ;;
*) usage ;;
esac
