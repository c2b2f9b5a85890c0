#!/usr/bin/env bash
# Runs target/release/bench with the open-file limit raised as far as the OS allows and, for
# `--backend postgres`, a throwaway Postgres and Redis (the same approach as scripts/test.sh):
#
#   bench/run.sh all                        # SQLite
#   bench/run.sh all --backend postgres     # Postgres + Redis, started here, removed afterwards
#   bench/run.sh all --quick                # under two minutes
#
# DATABASE_URL (postgres://…) and REDIS_URL, when already set, are used instead of starting
# servers. BENCH_BIN picks another bench binary; BENCH_PG_FSYNC=off turns Postgres fsync off
# (it is on by default: acks are durable, and that cost is part of what is measured).
# Needs: postgresql and redis-server installed for the postgres backend (apt-get install -y
# postgresql redis-server); the OS limits for 100k sockets are in bench/README.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH_BIN:-$root/target/release/bench}
[[ -x "$bench" ]] || { echo "error: $bench not found: cargo build --release -p node -p bench" >&2; exit 1; }

# Every socket is a descriptor in the bench and another in the server (which inherits this
# limit). Raising the hard limit needs CAP_SYS_RESOURCE; otherwise the soft one goes up to it.
nr_open=$(cat /proc/sys/fs/nr_open 2>/dev/null || echo 1048576)
ulimit -Hn "$nr_open" 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "run.sh: open-file limit $(ulimit -n) (hard $(ulimit -Hn), fs.nr_open $nr_open)"

postgres=0
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    if [[ "${args[i]}" == "--backend" && "${args[i + 1]:-}" == "postgres" ]]; then
        postgres=1
    fi
done
if ((postgres == 0)) || [[ "${DATABASE_URL:-}" == postgres* && -n "${REDIS_URL:-}" ]]; then
    exec "$bench" "$@"
fi

work=$(mktemp -d /tmp/lark-bench-pg.XXXXXX)
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
trap 'exit 130' INT TERM

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

initdb_bin=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
[[ -n "$initdb_bin" ]] || initdb_bin=$(command -v initdb || true)
[[ -n "$initdb_bin" ]] || { echo "error: Postgres is not installed (apt-get install -y postgresql)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "error: redis-server is not installed" >&2; exit 1; }
pg_bin=$(dirname "$initdb_bin")
pg_port=$(free_port)
mkdir -p "$work/pg"
[[ $(id -u) -eq 0 ]] && chown postgres "$work/pg"
as_pg "$pg_bin/initdb" -D "$work/pg" -U lark -A trust --no-sync >"$work/initdb.log" 2>&1 ||
    { cat "$work/initdb.log" >&2; exit 1; }
pg_ctl_bin="$pg_bin/pg_ctl"
as_pg "$pg_ctl_bin" -D "$work/pg" -l "$work/pg/server.log" -w -t 60 \
    -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c fsync=${BENCH_PG_FSYNC:-on} -c max_connections=300" \
    start >/dev/null || { cat "$work/pg/server.log" >&2; exit 1; }
export DATABASE_URL="postgres://lark@127.0.0.1:$pg_port/postgres"

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    --logfile "$work/redis.log" &
redis_pid=$!
for _ in $(seq 1 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
done
export REDIS_URL="redis://127.0.0.1:$redis_port"
echo "run.sh: throwaway postgres on port $pg_port (fsync ${BENCH_PG_FSYNC:-on}), redis on port $redis_port"

"$bench" "$@"
