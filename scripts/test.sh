#!/usr/bin/env bash
# The whole test suite: unit, actor and integration tests against SQLite, a real Postgres
# and a real Redis.
#
# Uses TEST_POSTGRES_URL / TEST_REDIS_URL when given; otherwise starts a throwaway
# Postgres (initdb into a temp dir) and Redis from the installed binaries, and removes
# them afterwards. Install them with: apt-get install -y postgresql redis-server
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/lark-test.XXXXXX)
chmod 755 "$work"
pg_ctl_bin=""
redis_pid=""

cleanup() {
    if [[ -n "$pg_ctl_bin" ]]; then
        as_pg "$pg_ctl_bin" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [[ -n "$redis_pid" ]]; then
        kill "$redis_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Postgres refuses to run as root: run its tools as the `postgres` user when we are root.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [[ -z "${TEST_POSTGRES_URL:-}" ]]; then
    initdb_bin=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n "$initdb_bin" ]] || initdb_bin=$(command -v initdb || true)
    if [[ -z "$initdb_bin" ]]; then
        echo "error: Postgres is not installed (apt-get install -y postgresql) and TEST_POSTGRES_URL is not set" >&2
        exit 1
    fi
    pg_bin=$(dirname "$initdb_bin")
    pg_port=$(free_port)
    mkdir -p "$work/pg"
    [[ $(id -u) -eq 0 ]] && chown postgres "$work/pg"
    as_pg "$pg_bin/initdb" -D "$work/pg" -U lark -A trust --no-sync >"$work/initdb.log" 2>&1 ||
        { cat "$work/initdb.log" >&2; exit 1; }
    pg_ctl_bin="$pg_bin/pg_ctl"
    as_pg "$pg_ctl_bin" -D "$work/pg" -l "$work/pg/server.log" -w -t 60 \
        -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null ||
        { cat "$work/pg/server.log" >&2; exit 1; }
    export TEST_POSTGRES_URL="postgres://lark@127.0.0.1:$pg_port/postgres"
    echo "started throwaway postgres on port $pg_port"
fi

if [[ -z "${TEST_REDIS_URL:-}" ]]; then
    if ! command -v redis-server >/dev/null; then
        echo "error: Redis is not installed (apt-get install -y redis-server) and TEST_REDIS_URL is not set" >&2
        exit 1
    fi
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
        --logfile "$work/redis.log" &
    redis_pid=$!
    for _ in $(seq 1 100); do
        redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    export TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
    echo "started throwaway redis on port $redis_port"
fi

# The multi-node tests start real node processes from target/debug/node.
cargo build -p node
# Arguments select what to run (e.g. `-p integration-tests`); none runs the whole workspace.
(($#)) || set -- --workspace
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast "$@"
else
    cargo test --no-fail-fast "$@"
fi
