#!/usr/bin/env bash
# One chaos scenario, process mode: a fresh local cluster of real node processes (3 nodes on
# 127.0.0.11-13, a throwaway Postgres and Redis), clients on every node (`bench chaos`), one
# named fault while they talk, a wait until the cluster is whole again, then the checker's
# verdict: what was acknowledged against what was stored and what every client saw.
#
#   chaos/run.sh [--scenario NAME] [--seconds S] [--users 12] [--channels 3] [--rate 5]
#                [--drain-seconds S] [--nodes 3] [--kill owner|leader|N]
#                [--build | --no-build] [--keep]
#
# Scenarios (chaos/README.md has the details): mixed (default: kill -9 + restart, SIGTERM,
# SIGSTOP, partition in one run; --nodes and --kill apply to it only), restart-fast,
# double-kill, sigstop-owner, partition, leader-join, postgres-restart, redis-kill, and
# mutate (the checker's self-test: rows deleted and rewritten in the database mid-run; it
# passes only when the checker fails).
#
# The last two lines are the figures and `CHAOS_SCENARIO <name> {json}`. Exit status: 0 passed;
# 1 the checker found a broken guarantee (or setup failed; for mutate: the checker missed the
# mutation); 2 the checker passed but the cluster did not get whole again in time; 3 skipped
# (the fault is impossible here, e.g. no iptables for a partition).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }

SCENARIOS="mixed restart-fast double-kill sigstop-owner partition leader-join postgres-restart redis-kill mutate"
scenario=mixed node_count=3 seconds="" users=12 channels=3 rate=5 drain=20 build=auto kill_target=owner
while (($#)); do
    case $1 in
        --scenario) scenario=$2; shift 2 ;;
        --nodes) node_count=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --users) users=$2; shift 2 ;;
        --channels) channels=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --drain-seconds) drain=$2; shift 2 ;;
        --kill) kill_target=$2; shift 2 ;;
        --build) build=always; shift ;;
        --no-build) build=never; shift ;;
        --keep) export CHAOS_KEEP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 1 ;;
    esac
done
if [[ " $SCENARIOS " != *" $scenario "* ]]; then
    echo "--scenario must be one of: $SCENARIOS" >&2
    exit 1
fi
# Traffic long enough for the fault, the recovery and a stretch of normal traffic after it.
declare -A MIN_SECONDS=([mixed]=30 [restart-fast]=15 [double-kill]=18 [sigstop-owner]=25 [partition]=15
    [leader-join]=20 [postgres-restart]=15 [redis-kill]=20 [mutate]=10)
declare -A DEFAULT_SECONDS=([mixed]=40 [restart-fast]=20 [double-kill]=22 [sigstop-owner]=35 [partition]=20
    [leader-join]=25 [postgres-restart]=20 [redis-kill]=25 [mutate]=12)
seconds=${seconds:-${DEFAULT_SECONDS[$scenario]}}
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < ${MIN_SECONDS[$scenario]} || seconds > 600)); then
    echo "--seconds must be ${MIN_SECONDS[$scenario]}..600 for $scenario (the fault and the recovery need it)" >&2
    exit 1
fi
if ! [[ $drain =~ ^[0-9]+$ ]] || ((drain < 5 || drain > 120)); then
    echo "--drain-seconds must be 5..120" >&2
    exit 1
fi
if [[ $scenario != mixed ]] && { ((node_count != 3)) || [[ $kill_target != owner ]]; }; then
    echo "--nodes and --kill belong to the mixed scenario (the others use 3 nodes, leader-join a 4th)" >&2
    exit 1
fi
if ! [[ $node_count =~ ^[0-9]+$ ]] || ((node_count < 3 || node_count > 9)); then
    echo "--nodes must be 3..9 (with 2 nodes, killing one loses the raft quorum)" >&2
    exit 1
fi
if ! [[ $kill_target =~ ^(owner|leader|[1-9])$ ]] || { [[ $kill_target =~ ^[0-9]$ ]] && ((kill_target > node_count)); }; then
    echo "--kill must be owner (of channel 0), leader or a node number 1..$node_count" >&2
    exit 1
fi

# shellcheck source=chaos/cluster.sh
source chaos/cluster.sh
# shellcheck source=chaos/faults.sh
source chaos/faults.sh
# shellcheck source=chaos/scenarios.sh
source chaos/scenarios.sh
# shellcheck source=chaos/mixed.sh
source chaos/mixed.sh
CHAOS_BENCH_BIN=${CHAOS_BENCH_BIN:-$CHAOS_ROOT/target/$LARK_PROFILE/bench}
checker_pid=""
problems=()
figures=()
LAST_ACTION_MS=""
REJOIN_MS=""

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $checker_pid ]] && kill -0 "$checker_pid" 2>/dev/null; then
        kill "$checker_pid" 2>/dev/null || true
        wait "$checker_pid" 2>/dev/null || true
    fi
    ((rc == 0 || rc == 3)) || CHAOS_FAILED=1
    cluster_cleanup
    exit "$rc"
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT TERM

if [[ $build == always ]] || { [[ $build == auto ]] && [[ ! -x $CHAOS_NODE_BIN || ! -x $CHAOS_BENCH_BIN ]]; }; then
    log "building: cargo build --profile $LARK_PROFILE -p node -p bench"
    cargo build --profile "$LARK_PROFILE" -p node -p bench
fi
for bin in "$CHAOS_NODE_BIN" "$CHAOS_BENCH_BIN"; do
    [[ -x $bin ]] || { echo "error: $bin missing: cargo build --profile $LARK_PROFILE -p node -p bench" >&2; exit 1; }
done
if why=$(scenario_impossible "$scenario"); then
    log "scenario $scenario SKIPPED: $why"
    scenario_skipped "$scenario" "$why"
    exit 3
fi

# Only the scenarios that cut a node off run the nodes under their own uids (see cluster.sh).
if [[ $scenario != partition && $scenario != mixed ]]; then export CHAOS_PARTITION=0; fi
# leader-join keeps a 4th node for the join; the clients only know the first three.
total_nodes=$node_count started_nodes=$node_count
if [[ $scenario == leader-join ]]; then total_nodes=4; fi
log "scenario $scenario: $started_nodes nodes, $seconds s of traffic ($users users, $channels channels, $rate msg/s each)"
cluster_init "$total_nodes"
cluster_start "$started_nodes"

mapfile -t client_nodes < <(seq 1 "$started_nodes")
checker_urls=$(urls_of "${client_nodes[@]}" | paste -sd, -)
log "checker: $CHAOS_BENCH_BIN chaos --urls $checker_urls --seconds $seconds --users $users --channels $channels --rate $rate --drain-seconds $drain"
"$CHAOS_BENCH_BIN" chaos --urls "$checker_urls" --seconds "$seconds" --users "$users" --channels "$channels" \
    --rate "$rate" --drain-seconds "$drain" --actions "$CHAOS_DIR/actions" >"$CHAOS_DIR/checker.log" 2>&1 &
checker_pid=$!
TRAFFIC_STARTED_MS=""
for _ in $(seq 1 1800); do
    TRAFFIC_STARTED_MS=$(grep -m1 '^CHAOS_STARTED' "$CHAOS_DIR/checker.log" 2>/dev/null | awk '{print $2}' || true)
    [[ -z $TRAFFIC_STARTED_MS ]] || break
    if ! kill -0 "$checker_pid" 2>/dev/null; then
        cat "$CHAOS_DIR/checker.log"
        log "the checker exited before its traffic started"
        exit 1
    fi
    sleep 0.1
done
[[ -n $TRAFFIC_STARTED_MS ]] || { log "the checker did not start its traffic within 180 s"; exit 1; }
TRAFFIC_END_MS=$((TRAFFIC_STARTED_MS + seconds * 1000))
IFS=, read -r -a CHANNEL_IDS <<<"$(grep -m1 '^CHAOS_CHANNELS' "$CHAOS_DIR/checker.log" | awk '{print $2}')"
log "traffic started; channels ${CHANNEL_IDS[*]}"

"scenario_${scenario//-/_}"
if (($(now_ms) > TRAFFIC_END_MS)); then
    log "note: the faults outlasted the traffic (--seconds $seconds); use a longer run to cover them all"
fi

log "faults done; waiting for the checker (traffic ends, then drain and history check)"
checker_rc=0
wait "$checker_pid" || checker_rc=$?
checker_pid=""
echo
echo "================ checker output ================"
grep -v '^CHAOS_RESULT' "$CHAOS_DIR/checker.log" || true
result=$(grep -m1 '^CHAOS_RESULT ' "$CHAOS_DIR/checker.log" | cut -d' ' -f2- || true)

echo
echo "================ cluster figures ================"
for figure in "${figures[@]}"; do echo "$figure"; done
echo "CHAOS_RESULT $result"

if ((checker_rc != 0)) || ((${#problems[@]})); then
    echo
    echo "================ problems ================"
    ((checker_rc == 0)) || echo "the checker FAILED (exit $checker_rc): see the verdict above"
    for problem in "${problems[@]}"; do echo "$problem"; done
    for ((i = 1; i <= total_nodes; i++)); do
        echo "--- n$i: last WARN/ERROR lines of $CHAOS_DIR/n$i.log ---"
        node_log_problems "$i" 8
    done
fi
echo
rc=0
scenario_line "$scenario" "$checker_rc" "$result" "$(printf '%s\n' "${problems[@]}")" || rc=$?
if ((rc == 0)); then log "scenario $scenario passed"; fi
exit "$rc"
