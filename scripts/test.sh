#!/usr/bin/env bash
# The whole test suite: unit, actor and integration tests against SQLite, a real Postgres
# and a real Redis.
#
# Uses TEST_POSTGRES_URL / TEST_REDIS_URL when given; otherwise starts a throwaway
# Postgres (initdb into a temp dir) and Redis from the installed binaries, and removes
# them afterwards. Install them with: apt-get install -y postgresql redis-server
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/throwaway.sh
. scripts/lib/throwaway.sh
throwaway_begin /tmp/lark-test
if [[ -z "${TEST_POSTGRES_URL:-}" ]]; then
    throwaway_postgres off
    export TEST_POSTGRES_URL=$THROWAWAY_POSTGRES_URL
fi
if [[ -z "${TEST_REDIS_URL:-}" ]]; then
    throwaway_redis
    export TEST_REDIS_URL=$THROWAWAY_REDIS_URL
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
