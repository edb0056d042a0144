#!/usr/bin/env bash
# A throwaway PostgreSQL for CI: .ci/postgres.sh start DIR | stop DIR
#
#   export ICANS_TEST_PG_URL="$(.ci/postgres.sh start /tmp/icans-pg)"
#   .venv/bin/python -m pytest -q
#   .ci/postgres.sh stop /tmp/icans-pg
#
# start: a cluster in DIR/data, listening only on a Unix socket in DIR (no TCP port), trust
# authentication for local connections; prints the libpq URL to use (and nothing else on
# stdout). Installs nothing unless initdb is missing (then apt-get install -y postgresql, when
# that is possible). As root the server runs as the postgres user (initdb refuses root).
# Starting a DIR whose server runs already just prints its URL. stop: stops it (fast).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac

find_bindir() {
    local p
    p=$(command -v pg_ctl 2>/dev/null || true)
    if [ -n "$p" ] && [ -x "$(dirname "$(readlink -f "$p")")/initdb" ]; then
        dirname "$(readlink -f "$p")"; return 0
    fi
    for p in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) /usr/local/pgsql/bin; do
        if [ -x "$p/initdb" ] && [ -x "$p/pg_ctl" ]; then echo "$p"; return 0; fi
    done
    return 1
}

as_server() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

server_user() {
    if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

url() { echo "postgresql:///postgres?host=${dir}&user=$(server_user)"; }

case "$cmd" in
start)
    if ! bindir=$(find_bindir); then
        echo "postgres.sh: initdb not found; installing postgresql" >&2
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
        if command -v apt-get >/dev/null && { [ -z "$sudo" ] || command -v sudo >/dev/null; }; then
            $sudo apt-get update -qq >&2
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
        else
            echo "postgres.sh: cannot install postgresql here (no root apt-get); install it" >&2
            exit 1
        fi
        bindir=$(find_bindir) || { echo "postgres.sh: initdb still not found" >&2; exit 1; }
    fi
    if [ -f "$dir/data/PG_VERSION" ] \
            && as_server "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        url; exit 0  # running already
    fi
    mkdir -p "$dir"
    chmod 700 "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 \
            || { echo "postgres.sh: no postgres user to run the server as" >&2; exit 1; }
        chown postgres:postgres "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_server "$bindir/initdb" -D "$dir/data" -U "$(server_user)" --auth=trust -E UTF8 \
            --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    as_server "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c fsync=off \
            -c full_page_writes=off -c max_connections=60" \
        start >&2 || { cat "$dir/server.log" >&2; exit 1; }
    url
    ;;
stop)
    bindir=$(find_bindir) || { echo "postgres.sh: pg_ctl not found" >&2; exit 1; }
    if [ -f "$dir/data/PG_VERSION" ]; then
        as_server "$bindir/pg_ctl" -D "$dir/data" -w -m fast stop >&2 || true
    fi
    ;;
*) usage ;;
esac
