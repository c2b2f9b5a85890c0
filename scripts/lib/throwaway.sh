# shellcheck shell=bash
# A throwaway Postgres and Redis from the installed Debian packages, in a temp directory,
# removed again on exit. Sourced by scripts/test.sh and bench/run.sh:
#
#   . scripts/lib/throwaway.sh
#   throwaway_begin /tmp/lark-test      # the directory prefix; installs the EXIT cleanup
#   throwaway_postgres [fsync on|off]   # sets THROWAWAY_POSTGRES_URL (superuser `lark`)
#   throwaway_redis                     # sets THROWAWAY_REDIS_URL
#
# Postgres refuses to run as root, so its tools run as the `postgres` user when we are root.

throwaway_work=""
throwaway_pg_ctl=""
throwaway_redis_pid=""

throwaway_cleanup() {
    if [[ -n "$throwaway_pg_ctl" ]]; then
        throwaway_as_pg "$throwaway_pg_ctl" -D "$throwaway_work/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [[ -n "$throwaway_redis_pid" ]]; then
        kill "$throwaway_redis_pid" 2>/dev/null || true
    fi
    [[ -z "$throwaway_work" ]] || rm -rf "$throwaway_work"
}

throwaway_begin() {
    throwaway_work=$(mktemp -d "$1.XXXXXX")
    chmod 755 "$throwaway_work"
    trap throwaway_cleanup EXIT
}

throwaway_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

throwaway_as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# throwaway_postgres [FSYNC]: fsync off unless told (tests); the bench measures with it on.
throwaway_postgres() {
    local fsync=${1:-off} initdb_bin pg_bin port work=$throwaway_work
    initdb_bin=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n "$initdb_bin" ]] || initdb_bin=$(command -v initdb || true)
    if [[ -z "$initdb_bin" ]]; then
        echo "error: Postgres is not installed (apt-get install -y postgresql)" >&2
        exit 1
    fi
    pg_bin=$(dirname "$initdb_bin")
    port=$(throwaway_free_port)
    mkdir -p "$work/pg"
    [[ $(id -u) -ne 0 ]] || chown postgres "$work/pg"
    throwaway_as_pg "$pg_bin/initdb" -D "$work/pg" -U lark -A trust --no-sync >"$work/initdb.log" 2>&1 ||
        { cat "$work/initdb.log" >&2; exit 1; }
    throwaway_pg_ctl="$pg_bin/pg_ctl"
    throwaway_as_pg "$throwaway_pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w -t 60 \
        -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1 -c fsync=$fsync -c max_connections=300" start >/dev/null ||
        { cat "$work/pg/server.log" >&2; exit 1; }
    THROWAWAY_POSTGRES_URL="postgres://lark@127.0.0.1:$port/postgres"
    echo "started throwaway postgres on port $port (fsync $fsync)"
}

throwaway_redis() {
    local port
    if ! command -v redis-server >/dev/null; then
        echo "error: Redis is not installed (apt-get install -y redis-server)" >&2
        exit 1
    fi
    port=$(throwaway_free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$throwaway_work" \
        --logfile "$throwaway_work/redis.log" &
    throwaway_redis_pid=$!
    for _ in $(seq 1 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    THROWAWAY_REDIS_URL="redis://127.0.0.1:$port"
    echo "started throwaway redis on port $port"
}
