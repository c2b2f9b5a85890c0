#!/usr/bin/env bash
# Readiness step 5: the working-day simulation on a 3-node process-mode cluster
# (chaos/cluster.sh: throwaway Postgres and Redis) with the fake FCM server, while the node
# owning #general is killed with SIGKILL a third of the way in and restarted 10 s later.
#
#   scripts/readiness/sim_run.sh [OUT_DIR]      (default target/readiness/sim)
#
# Environment: SIM_USERS (50), SIM_SECONDS (90), SIM_KILL (1: the fault; 0: none),
# LARK_PROFILE (release) selects target/<profile>/{node,simulate,mock_firebase}.
# Writes OUT_DIR/sim.log (the simulator's output, ending with `SIM_RESULT {json}`),
# OUT_DIR/actions (the fault log), OUT_DIR/fcm.log, and the nodes' logs under OUT_DIR/nodes/.
# Exit status: the simulator's (0 passed, 1 a check failed, 2 setup failed), or 3 when the
# cluster could not be started.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(realpath -m "${1:-target/readiness/sim}")
users=${SIM_USERS:-50}
seconds=${SIM_SECONDS:-90}
fault=${SIM_KILL:-1}
export LARK_PROFILE=${LARK_PROFILE:-release}
# Nodes run as root here: no partitions are needed, and the fake's account file stays readable.
export CHAOS_PARTITION=0
sim_bin=$PWD/target/$LARK_PROFILE/simulate
fcm_bin=$PWD/target/$LARK_PROFILE/mock_firebase
for bin in "$sim_bin" "$fcm_bin" "$PWD/target/$LARK_PROFILE/node"; do
    [[ -x $bin ]] || { echo "error: $bin missing (cargo build --profile $LARK_PROFILE -p node -p sim -p integration-tests --bin mock_firebase)" >&2; exit 3; }
done
rm -rf "$out"
mkdir -p "$out/nodes"

# shellcheck source=chaos/cluster.sh
source chaos/cluster.sh
# shellcheck source=scripts/readiness/sim_lib.sh
. scripts/readiness/sim_lib.sh
fcm_pid="" sim_pid=""
on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -z $sim_pid ]] || kill "$sim_pid" 2>/dev/null || true
    [[ -z $fcm_pid ]] || kill "$fcm_pid" 2>/dev/null || true
    if [[ -n $CHAOS_DIR && -d $CHAOS_DIR ]]; then
        cp "$CHAOS_DIR"/n*.log "$out/nodes/" 2>/dev/null || true
        cp "$CHAOS_DIR/actions" "$out/actions" 2>/dev/null || true
    fi
    cluster_cleanup >/dev/null 2>&1 || true
    exit "$rc"
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT TERM

cluster_init 3 || exit 3
fcm_port=$(free_port)
account=$CHAOS_DIR/fcm-service-account.json
"$fcm_bin" --port "$fcm_port" --service-account "$account" >"$out/fcm.log" 2>&1 &
fcm_pid=$!
for _ in $(seq 1 100); do [[ -s $account ]] && break; sleep 0.1; done
[[ -s $account ]] || { log "the fake FCM did not start"; cat "$out/fcm.log" >&2; exit 3; }
chmod 644 "$account"
export FCM_SERVICE_ACCOUNT_FILE=$account FCM_BASE_URL=http://127.0.0.1:$fcm_port
log "fake FCM on 127.0.0.1:$fcm_port"
cluster_start || exit 3

log "simulate --urls $(all_urls) --users $users --seconds $seconds"
"$sim_bin" --urls "$(all_urls)" --users "$users" --seconds "$seconds" --actions "$CHAOS_DIR/actions" \
    --fcm "http://127.0.0.1:$fcm_port" >"$out/sim.log" 2>&1 &
sim_pid=$!
sim_wait_started "$out/sim.log" "$sim_pid"
if ((fault)); then
    general=$(grep -m1 '^SIM_CHANNEL general ' "$out/sim.log" | awk '{print $3}')
    victim=$(node_index_of "$(cluster_owner "channel:$general")")
    victim=${victim:-2}
    kill_at=$((started + seconds * 1000 / 3))
    while (($(now_ms) < kill_at)); do sleep 0.1; done
    echo "$(now_ms) kill -9 n$victim" >>"$CHAOS_DIR/actions"
    node_kill "$victim"
    log "killed n$victim (owner of #general)"
    sleep 10
    echo "$(now_ms) restart n$victim" >>"$CHAOS_DIR/actions"
    if node_restart "$victim" 60; then
        echo "$(now_ms) n$victim ready" >>"$CHAOS_DIR/actions"
        log "n$victim restarted and ready"
    else
        log "n$victim did not come back"
    fi
fi
rc=0
wait "$sim_pid" || rc=$?
sim_pid=""
grep -v '^SIM_RESULT ' "$out/sim.log" | tail -n 20
log "simulation exit status $rc"
exit "$rc"
