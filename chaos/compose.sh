#!/usr/bin/env bash
# Chaos against the compose deployment: the same checks as the process mode, but on
# containers behind the HAProxy entry point, with the faults an operator meets.
#
#   chaos/compose.sh [--seconds 100] [--users 12] [--channels 3] [--rate 5] [--port 18080]
#                    [--project lark-chaos] [--keep] [--no-build]
#
# 1. builds the images offline (deploy/build-images.sh, cached) and the checker
#    (cargo build --release -p node -p bench) unless --no-build;
# 2. `docker-compose -p lark-chaos up -d --scale node=3`, with the entry point on
#    127.0.0.1:<port>, and waits for one 3-member cluster;
# 3. runs the checking client (`bench chaos`) through the entry point, and meanwhile:
#      docker kill the leader            -> time until the survivors' membership shrinks,
#      docker start it again             -> time until 3 members agree again,
#      docker pause a follower (6 s)     -> shrink time; docker unpause -> rejoin time,
#      docker network disconnect one (6 s) -> shrink time; connect again -> rejoin time,
#      scale up to 4 nodes               -> time until 4 members agree,
#      scale down to 3 (SIGTERM: leaves) -> time until 3 members agree;
#    each fault goes to the checker's --actions file, so it reports per fault how many
#    clients lost their socket and how long until all had resumed;
# 4. prints the checker's figures (acknowledged lost, order violations, duplicates, resume
#    times; its CHAOS_RESULT line) and the membership timings (a COMPOSE_CHAOS_RESULT line).
#    The stack is removed at the end (`down -v`) unless --keep.
#
# Exit status, as chaos/run.sh: 0 every guarantee held and the membership recovered from every
# fault; 1 the checker found a broken guarantee (or the run could not be set up); 2 the checker
# passed but the membership did not converge in time after a fault.
set -euo pipefail
cd "$(dirname "$0")/.."
export LARK_ROOT=$PWD
# shellcheck source=deploy/compose-lib.sh
. deploy/compose-lib.sh

seconds=100 users=12 channels=3 rate=5 port=18080 keep=0 build=1
export LARK_PROJECT=lark-chaos
while (($#)); do
    case $1 in
        --seconds) seconds=$2; shift ;;
        --users) users=$2; shift ;;
        --channels) channels=$2; shift ;;
        --rate) rate=$2; shift ;;
        --port) port=$2; shift ;;
        --project) LARK_PROJECT=$2; shift ;;
        --keep) keep=1 ;;
        --no-build) build=0 ;;
        -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 1 ;;
    esac
    shift
done
((seconds >= 90)) || { echo "--seconds must be at least 90: the fault script needs that long" >&2; exit 1; }

docker info >/dev/null 2>&1 || { echo "chaos/compose.sh: no Docker engine answers (docker info)" >&2; exit 1; }
out=$LARK_ROOT/target/docker/chaos-compose
rm -rf "$out"
mkdir -p "$out"

if ((build)); then
    cargo build --release -p node -p bench
    deploy/build-images.sh --no-cargo
fi
lark_offline_images
lark_secrets
# The operator routes (/cluster/status, /metrics) need a token off loopback.
export METRICS_TOKEN=${METRICS_TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export LARK_PUBLISH=127.0.0.1:$port NODE_RESTART=no

checker=""
teardown() {
    local status=$?
    [[ -n $checker ]] && kill "$checker" 2>/dev/null
    lark_compose logs --no-color >"$out/compose.log" 2>&1 || true
    if ((keep)); then
        echo "stack kept: docker-compose -p $LARK_PROJECT ... (entry point 127.0.0.1:$port); logs in $out"
    else
        lark_compose down -v --remove-orphans >/dev/null 2>&1 || true
    fi
    exit "$status"
}
trap teardown EXIT
lark_compose down -v --remove-orphans >/dev/null 2>&1 || true

declare -A figure
up_started=$(now_ms)
lark_compose up -d --scale node=3 2>&1 | grep -v -e '^Creating' -e '^Starting' || true
figure[stack_start_ms]=$(wait_members 3 120 "$up_started")
echo "stack up: 3 nodes in one cluster ${figure[stack_start_ms]} ms after docker-compose up"
until curl -fsS -m 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.5; done

actions=$out/actions.txt
: >"$actions"
action() {
    acted_at=$(now_ms)
    echo "$acted_at $*" >>"$actions"
    printf '[chaos %6.1f s] %s\n' "$(awk -v ms=$(($(now_ms) - traffic_started)) 'BEGIN { print ms / 1000 }')" "$*"
}
note() { printf '[chaos %6.1f s]   %s\n' "$(awk -v ms=$(($(now_ms) - traffic_started)) 'BEGIN { print ms / 1000 }')" "$*"; }

traffic_started=$(now_ms)
target/release/bench chaos --urls "http://127.0.0.1:$port" --seconds "$seconds" --users "$users" \
    --channels "$channels" --rate "$rate" --actions "$actions" >"$out/checker.log" 2>&1 &
checker=$!
converged=1
others() { running_nodes | grep -v "^$1\$" | head -1; }

sleep 10
# 1. kill -9 of the leader, then the same container back (a crashed node restarted).
victim=$(pick_node leader)
name=$(container_name "$victim")
survivor=$(others "$victim")
action "docker kill $name (leader)"
docker kill "$victim" >/dev/null
figure[kill_to_shrink_ms]=$(wait_seen_by "$survivor" 2 30 "$acted_at") || converged=0
note "membership of 2 after ${figure[kill_to_shrink_ms]:-?} ms"
sleep 4
action "docker start $name"
docker start "$victim" >/dev/null
figure[restart_to_rejoin_ms]=$(wait_members 3 60 "$acted_at") || converged=0
note "3 members again after ${figure[restart_to_rejoin_ms]:-?} ms"

sleep 6
# 2. pause a follower longer than DEAD_AFTER_MS (its sockets go silent, it is removed).
victim=$(pick_node follower)
name=$(container_name "$victim")
survivor=$(others "$victim")
action "docker pause $name"
docker pause "$victim" >/dev/null
figure[pause_to_shrink_ms]=$(wait_seen_by "$survivor" 2 30 "$acted_at") || converged=0
note "membership of 2 after ${figure[pause_to_shrink_ms]:-?} ms"
sleep 4
action "docker unpause $name"
docker unpause "$victim" >/dev/null
figure[unpause_to_rejoin_ms]=$(wait_members 3 60 "$acted_at") || converged=0
note "3 members again after ${figure[unpause_to_rejoin_ms]:-?} ms"

sleep 6
# 3. cut a follower off the network, then plug it back (keeping its service alias).
victim=$(pick_node follower)
name=$(container_name "$victim")
survivor=$(others "$victim")
network=$(project_network "$victim")
action "docker network disconnect $name"
docker network disconnect "$network" "$victim"
figure[disconnect_to_shrink_ms]=$(wait_seen_by "$survivor" 2 30 "$acted_at") || converged=0
note "membership of 2 after ${figure[disconnect_to_shrink_ms]:-?} ms"
sleep 4
action "docker network connect $name"
docker network connect --alias node "$network" "$victim"
figure[reconnect_to_rejoin_ms]=$(wait_members 3 60 "$acted_at") || converged=0
note "3 members again after ${figure[reconnect_to_rejoin_ms]:-?} ms"

sleep 6
# 4. scale out and back in.
action "scale up to 4"
lark_compose up -d --no-deps --no-recreate --scale node=4 node >/dev/null 2>&1
figure[scale_up_to_4_ms]=$(wait_members 4 90 "$acted_at") || converged=0
note "4 members after ${figure[scale_up_to_4_ms]:-?} ms"
sleep 6
action "scale down to 3"
lark_compose up -d --no-deps --no-recreate --scale node=3 node >/dev/null 2>&1
figure[scale_down_to_3_ms]=$(wait_members 3 60 "$acted_at") || converged=0
note "3 members after ${figure[scale_down_to_3_ms]:-?} ms (compose waited for the graceful stop)"

left=$((traffic_started + seconds * 1000 - $(now_ms)))
((left > 0)) && note "faults done; traffic goes on for $((left / 1000)) s more, then the checker drains and checks"
checker_status=0
wait "$checker" || checker_status=$?
checker=""
cat "$out/checker.log"

restarts=""
for id in $(all_nodes); do
    restarts+="$(container_name "$id")=$(docker inspect -f '{{.RestartCount}}' "$id") "
done
json="{"
for key in "${!figure[@]}"; do json+="\"$key\":${figure[$key]:-null},"; done
json+="\"membership_converged\":$([[ $converged == 1 ]] && echo true || echo false)}"

echo
echo "== compose chaos: membership =="
printf '%-34s %s\n' "stack start (up -> 3 members)" "${figure[stack_start_ms]} ms"
for key in kill_to_shrink restart_to_rejoin pause_to_shrink unpause_to_rejoin disconnect_to_shrink \
    reconnect_to_rejoin scale_up_to_4 scale_down_to_3; do
    printf '%-34s %s\n' "${key//_/ }" "${figure[${key}_ms]:-did not converge} ms"
done
printf '%-34s %s\n' "container restarts" "$restarts"
echo "COMPOSE_CHAOS_RESULT $json"

if ((checker_status != 0)); then
    echo "chaos/compose.sh: FAILED: the checker found a broken guarantee (exit $checker_status); logs in $out"
    exit 1
fi
if ((!converged)); then
    echo "chaos/compose.sh: FAILED: the membership did not converge after a fault; logs in $out"
    exit 2
fi
echo "chaos/compose.sh: PASS"
