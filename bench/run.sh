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

# shellcheck source=scripts/lib/throwaway.sh
. "$root/scripts/lib/throwaway.sh"
throwaway_begin /tmp/lark-bench-pg
trap 'exit 130' INT TERM
throwaway_postgres "${BENCH_PG_FSYNC:-on}"
throwaway_redis
export DATABASE_URL=$THROWAWAY_POSTGRES_URL REDIS_URL=$THROWAWAY_REDIS_URL

"$bench" "$@"
