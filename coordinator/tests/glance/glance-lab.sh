#!/usr/bin/env bash
# A real OpenStack Glance (from PyPI) for the coordinator's image tests:
# loopback only, SQLite, a file store, no Keystone, everything in one directory.
#
# Usage:
#   glance-lab.sh venv [VENV_DIR]        make the venv if missing; prints its path
#   glance-lab.sh start STATE_DIR PORT   configure Glance, sync its database and
#                                        start it on 127.0.0.1:PORT; prints only its PID
#   glance-lab.sh upload STATE_DIR PORT FILE DISK_FORMAT [NAME]
#                                        create an image (container_format bare),
#                                        upload FILE, wait until active; prints its id
#   glance-lab.sh stop STATE_DIR         stops it (no error if not running)
#
# The venv is VENV_DIR for `venv`, else $INGOT_GLANCE_VENV, else
# <repo>/target/venv-glance; `start` and `upload` make it when missing.
# `start` reads $GLANCE_START_TIMEOUT (s, default 60), $GLANCE_DEBUG (true:
# debug logging), $GLANCE_PROJECT_ID and $GLANCE_USER_ID (the identity every
# request gets); `upload` reads $GLANCE_UPLOAD_TIMEOUT (s, default 120).
# See README.md beside this file.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)

die() {
    echo "glance-lab: $*" >&2
    exit 1
}

usage() {
    sed -n '5,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# The venv: glance and gunicorn, every version pinned by constraints.txt
# (all wheels but simplegeneric, a pure-Python sdist: nothing is compiled).
# Marker bin/gunicorn: python-venv.sh builds the venv aside and moves it in
# place when complete, so a half-made venv is never taken for a complete one.
ensure_venv() {
    local dir=$1
    "$repo/coordinator/tests/python-venv.sh" "$dir" bin/gunicorn \
        -c "$here/constraints.txt" glance gunicorn >&2 ||
        die "could not make the venv $dir"
    [ -x "$dir/bin/glance-manage" ] || die "$dir has no glance-manage (remove it to remake it)"
}

venv_dir() {
    local dir=${1:-${INGOT_GLANCE_VENV:-$repo/target/venv-glance}}
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

# The PID in STATE_DIR/glance.pid if that process is alive and is the
# gunicorn master of this STATE_DIR (not another process that got the PID
# since). gunicorn renames itself "gunicorn: master [glance-lab:STATE_DIR]"
# (setproctitle); before that its command line has "--name glance-lab:STATE_DIR".
running_pid() {
    local state pid cmdline
    state=$(cd "$1" 2>/dev/null && pwd) || return 1
    [ -f "$state/glance.pid" ] || return 1
    pid=$(cat "$state/glance.pid")
    case $pid in
    '' | *[!0-9]*) return 1 ;;
    esac
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    case $cmdline in
    *"glance-lab:$state]"* | *"glance-lab:$state "*) echo "$pid" ;;
    *) return 1 ;;
    esac
}

write_conf() {
    local state=$1 port=$2
    cat >"$state/glance-api.conf" <<EOC
# Written by glance-lab.sh start; rewritten at each start.
[DEFAULT]
log_dir = $state
log_file = glance.log
use_stderr = false
debug = ${GLANCE_DEBUG:-false}
# Multi-store configuration (the single-store [glance_store] stores /
# default_store options are deprecated): one file store, "fs".
enabled_backends = fs:file
# The URL in the versions document (GET /).
public_endpoint = http://127.0.0.1:$port
image_cache_dir = $state/image-cache

[database]
connection = sqlite:///$state/glance.db

[glance_store]
default_backend = fs

[fs]
filesystem_store_datadir = $state/images

# Glance's reserved stores (interoperable import's staging area, tasks):
# otherwise under /var/lib/glance.
[os_glance_staging_store]
filesystem_store_datadir = $state/staging

[os_glance_tasks_store]
filesystem_store_datadir = $state/tasks

[paste_deploy]
config_file = $state/glance-api-paste.ini
# No flavor: glance-api-paste.ini's [pipeline:api] is the only pipeline.
flavor =

[oslo_policy]
# No such file: the policy is Glance's built-in defaults. Named so that a
# /etc/glance/policy.yaml on the machine is never read.
policy_file = $state/policy.yaml

[oslo_concurrency]
lock_path = $state/locks
EOC
    cat >"$state/glance-api-paste.ini" <<EOC
# Written by glance-lab.sh start; rewritten at each start.
# Glance's own paste file with Keystone's auth_token replaced by the
# "identity" filter (glance_identity.py, beside glance-lab.sh): every request
# is project ${GLANCE_PROJECT_ID:-c0ffee00000000000000000000000001} with roles admin, member, reader.
[composite:glance-api]
paste.composite_factory = glance.api:root_app_factory
/: api
/healthcheck: healthcheck

[pipeline:api]
pipeline = versionnegotiation identity context rootapp

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[app:healthcheck]
paste.app_factory = oslo_middleware:Healthcheck.app_factory
backends = disable_by_file
disable_by_file_path = $state/healthcheck_disable

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory

[filter:identity]
paste.filter_factory = glance_identity:filter_factory
project_id = ${GLANCE_PROJECT_ID:-c0ffee00000000000000000000000001}
user_id = ${GLANCE_USER_ID:-c0ffee00000000000000000000000002}
roles = admin,member,reader

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory
EOC
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

    write_conf "$state" "$port"
    mkdir -p "$state/images" "$state/staging" "$state/tasks" "$state/locks"
    # Idempotent: a second start on the same STATE_DIR keeps the database
    # and the images. Its log (else glance.log, from glance-api.conf) and its
    # output both go to glance-manage.log (both append).
    # shellcheck disable=SC2094
    "$venv/bin/glance-manage" --config-file "$state/glance-api.conf" \
        --log-file "$state/glance-manage.log" db_sync \
        >>"$state/glance-manage.log" 2>&1 ||
        {
            tail -n 30 "$state/glance-manage.log" >&2
            die "glance-manage db_sync failed (log: $state/glance-manage.log)"
        }

    # gunicorn runs glance.wsgi.api:application (Glance's init_app(), which
    # reads OS_GLANCE_CONFIG_DIR/glance-api.conf); one worker process (SQLite,
    # and one process keeps the state simple) with 4 threads, so that a long
    # download does not hold up other requests. In a session of its own
    # (setsid: not stopped by a Ctrl-C meant for the caller); $! is gunicorn's
    # master itself (setsid does not fork when, as here, the caller is no
    # process group leader). No descriptor of ours stays open in it, so a
    # caller reading our stdout to EOF is not held up. Its own output
    # (errors and the access log) goes to glance.log beside Glance's.
    local access_format='access: %(h)s "%(r)s" %(s)s %(B)s %(M)sms range="%({range}i)s" x-auth-token="%({x-auth-token}i)s"'
    # PYTHONDONTWRITEBYTECODE: no __pycache__ for glance_identity.py in the
    # source tree.
    OS_GLANCE_CONFIG_DIR=$state PYTHONPATH=$here PYTHONDONTWRITEBYTECODE=1 \
        setsid "$venv/bin/gunicorn" \
        --name "glance-lab:$state" \
        --bind "127.0.0.1:$port" \
        --workers 1 --threads 4 --worker-class gthread \
        --timeout 300 --graceful-timeout 5 \
        --no-control-socket \
        --chdir "$state" \
        --access-logfile - --access-logformat "$access_format" \
        --error-logfile - \
        glance.wsgi.api:application \
        </dev/null >>"$state/glance.log" 2>&1 &
    pid=$!
    echo "$pid" >"$state/glance.pid"

    local timeout=${GLANCE_START_TIMEOUT:-60}
    local deadline=$((SECONDS + timeout))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$state/glance.log" >&2 || true
            rm -f "$state/glance.pid"
            die "glance exited at start (log: $state/glance.log)"
        fi
        if curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$port/v2/images"; then
            echo "$pid"
            return 0
        fi
        sleep 0.2
    done
    tail -n 40 "$state/glance.log" >&2 || true
    cmd_stop "$state"
    die "glance did not answer GET /v2/images on 127.0.0.1:$port within $timeout s (log: $state/glance.log)"
}

cmd_stop() {
    [ $# -eq 1 ] || usage
    local state=$1 pid _
    if ! pid=$(running_pid "$state"); then
        rm -f "$state/glance.pid"
        return 0
    fi
    # SIGTERM: gunicorn stops its worker (graceful, 5 s) and exits.
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        # Its worker too: same process group (setsid made it the leader).
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$state/glance.pid"
}

cmd_upload() {
    if [ $# -lt 4 ] || [ $# -gt 5 ]; then usage; fi
    local state=$1 port=$2 file=$3 disk_format=$4 name=${5:-}
    check_port "$port"
    [ -f "$file" ] || die "no such file: $file"
    running_pid "$state" >/dev/null || die "not running in $state"
    [ -n "$name" ] || name=$(basename "$file")
    venv=$(venv_dir)
    ensure_venv "$venv"
    "$venv/bin/python" "$here/glance_upload.py" "http://127.0.0.1:$port" \
        "$file" "$disk_format" "$name" "${GLANCE_UPLOAD_TIMEOUT:-120}"
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
upload) cmd_upload "$@" ;;
*) usage ;;
esac
