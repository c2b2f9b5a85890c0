#!/usr/bin/env bash
# CI test of the compose deployment: builds the images offline (cached by content hash),
# starts Postgres, Redis, 3 nodes and the HAProxy entry point with docker-compose, runs the
# checking client (bench chaos) through the entry point for ~25 s while the leading node is
# killed with `docker kill`, and fails on any acknowledged message lost, duplicate, gap or
# order violation, or if the membership does not shrink to the 2 survivors. The stack is always
# removed (`down -v`). Without a Docker engine it prints a notice and exits 0.
#
# Environment: LARK_PROFILE (release, or debug: what CI uses, built by scripts/test.sh),
# LARK_SKIP_CARGO=1 (use target/$LARK_PROFILE/{node,bench} as they are),
# LARK_TEST_PORT (loopback port of the entry point, default 18090), LARK_TEST_SECONDS (25).
set -euo pipefail
cd "$(dirname "$0")/.."
export LARK_ROOT=$PWD
export LARK_PROJECT=lark-test
# shellcheck source=deploy/compose-lib.sh
. deploy/compose-lib.sh

if ! docker info >/dev/null 2>&1; then
    echo "compose test skipped: no Docker engine answers (docker info failed)"
    exit 0
fi
if ! command -v docker-compose >/dev/null; then
    echo "compose test skipped: docker-compose is not installed"
    exit 0
fi

started=$SECONDS
port=${LARK_TEST_PORT:-18090}
seconds=${LARK_TEST_SECONDS:-25}
log_dir=$LARK_ROOT/target/docker/test-compose
rm -rf "$log_dir"
mkdir -p "$log_dir"

export LARK_PROFILE=${LARK_PROFILE:-release}
if [[ ${LARK_SKIP_CARGO:-0} != 1 ]]; then
    cargo_started=$SECONDS
    cargo build --profile "$LARK_PROFILE" -p node -p bench
    echo "compose test: cargo build --profile $LARK_PROFILE took $((SECONDS - cargo_started)) s"
fi
images_started=$SECONDS
deploy/build-images.sh --no-cargo
echo "compose test: images ready in $((SECONDS - images_started)) s"

lark_offline_images
lark_secrets
# The operator routes (/cluster/status, /metrics) need a token off loopback.
export METRICS_TOKEN=${METRICS_TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export LARK_PUBLISH=127.0.0.1:$port NODE_RESTART=no

teardown() {
    local status=$?
    lark_compose logs --no-color >"$log_dir/compose.log" 2>&1 || true
    lark_compose down -v --remove-orphans >/dev/null 2>&1 || true
    if ((status != 0)); then
        echo "compose test: FAILED; the stack's logs are in $log_dir/compose.log"
        echo "compose: 0 passed, 1 failed"
    fi
    exit "$status"
}
trap teardown EXIT
lark_compose down -v --remove-orphans >/dev/null 2>&1 || true

up_started=$(now_ms)
lark_compose up -d --scale node=3 2>&1 | grep -v -e '^Creating' -e '^Starting' || true
start_ms=$(wait_members 3 120 "$up_started")
echo "compose test: 3 nodes formed one cluster ${start_ms} ms after docker-compose up was started"

for i in $(seq 1 60); do
    curl -fsS -m 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    if ((i == 60)); then echo "compose test: the entry point does not answer on port $port" >&2; exit 1; fi
    sleep 0.5
done

actions=$log_dir/actions.txt
: >"$actions"
"target/$LARK_PROFILE/bench" chaos --urls "http://127.0.0.1:$port" --seconds "$seconds" --users 9 --channels 3 --rate 4 \
    --actions "$actions" >"$log_dir/checker.log" 2>&1 &
checker=$!

sleep 8
victim=$(pick_node leader) || { echo "compose test: no leader to kill" >&2; exit 1; }
victim_name=$(container_name "$victim")
survivor=$(running_nodes | grep -v "^$victim\$" | head -1)
echo "$(now_ms) docker kill $victim_name (leader)" >>"$actions"
killed_at=$(now_ms)
docker kill "$victim" >/dev/null
shrink_ms=$(wait_seen_by "$survivor" 2 30 "$killed_at") || { kill "$checker" 2>/dev/null; exit 1; }
echo "compose test: killed $victim_name (the leader); the survivors' membership shrank to 2 after ${shrink_ms} ms"
converged_ms=$(wait_members 2 30 "$killed_at") || { kill "$checker" 2>/dev/null; exit 1; }

checker_status=0
wait "$checker" || checker_status=$?
cat "$log_dir/checker.log"

result=$(grep '^CHAOS_RESULT ' "$log_dir/checker.log" | tail -1 | cut -d' ' -f2-)
if [[ -z $result ]]; then
    echo "compose test: the checker printed no CHAOS_RESULT (exit $checker_status)" >&2
    exit 1
fi
figures=$(python3 - "$result" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
bad = {k: r.get(k) for k in ("acknowledged_but_lost", "order_violations", "history_duplicates",
                               "receiver_duplicates", "unfilled_gaps", "unresumed") if r.get(k)}
kill = next((x for x in r.get("recoveries", []) if x["label"].startswith("docker kill")), {})
print(f"acknowledged={r.get('acknowledged')} lost={r.get('acknowledged_but_lost')} "
      f"order_violations={r.get('order_violations')} duplicates={r.get('history_duplicates')}+{r.get('receiver_duplicates')} "
      f"clients_disconnected={kill.get('disconnected')} all_resumed_after_ms={kill.get('all_resumed_after_ms')}")
sys.exit(1 if bad or not r.get("passed") or not r.get("acknowledged") else 0)
EOF
) || { echo "compose test: guarantees broken: $figures" >&2; exit 1; }
if ((checker_status != 0)); then
    echo "compose test: the checker failed (exit $checker_status)" >&2
    exit 1
fi
echo "compose test: $figures; kill -> membership of 2: ${shrink_ms} ms (all survivors agreed after ${converged_ms} ms); stack start ${start_ms} ms; total $((SECONDS - started)) s"
echo "compose: 1 passed, 0 failed"
