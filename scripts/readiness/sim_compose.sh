#!/usr/bin/env bash
# Readiness step 6: the working-day simulation on the compose deployment (docker-compose.yml:
# Postgres, Redis, 3 node containers and the HAProxy entry point), while the container of the
# node owning #general is killed with `docker kill` a third of the way in and started again
# (`docker start`) 10 s later. The simulator reaches the cluster through the entry point only.
#
#   scripts/readiness/sim_compose.sh [OUT_DIR]      (default target/readiness/sim-compose)
#
# Environment: SIM_USERS (30), SIM_SECONDS (60), SIM_KILL (1: the fault; 0: none),
# SIM_COMPOSE_PORT (18091: the entry point on 127.0.0.1). Uses target/release/{node,simulate}
# as they are (the images are built with deploy/build-images.sh --no-cargo, cached by content
# hash) and the compose project lark-readiness, removed at the end (`down -v`).
# No fake FCM: the containers cannot reach one on the host, so pushes are not checked here
# (simulate without --fcm counts the expected pushes only; the process-mode step checks them).
# Writes OUT_DIR/sim.log (the simulator's output, ending with `SIM_RESULT {json}`),
# OUT_DIR/actions (the fault log), OUT_DIR/stack (what ran), OUT_DIR/images.log and
# OUT_DIR/compose.log (the containers' logs).
# Exit status: the simulator's (0 passed, 1 a check failed, 2 its setup failed), 3 skipped
# (no Docker engine answers or docker-compose is missing; OUT_DIR/skipped says why), 4 the
# stack could not be built or started.
set -euo pipefail
cd "$(dirname "$0")/../.."
export LARK_ROOT=$PWD
out=$(realpath -m "${1:-target/readiness/sim-compose}")
users=${SIM_USERS:-30}
seconds=${SIM_SECONDS:-60}
fault=${SIM_KILL:-1}
port=${SIM_COMPOSE_PORT:-18091}
export LARK_PROJECT=lark-readiness
export LARK_PROFILE=release
sim_bin=$PWD/target/release/simulate
rm -rf "$out"
mkdir -p "$out"

log() { echo "[sim-compose $(date +%T)] $*"; }
skip() {
    echo "$*" >"$out/skipped"
    echo "compose simulation skipped: $*"
    exit 3
}
timeout 20 docker info >/dev/null 2>&1 || skip "no Docker engine answers (docker info failed)"
command -v docker-compose >/dev/null || skip "docker-compose is not installed"
for bin in "$sim_bin" "$PWD/target/release/node"; do
    [[ -x $bin ]] || { echo "error: $bin missing (cargo build --release -p node -p sim)" >&2; exit 4; }
done

# shellcheck source=deploy/compose-lib.sh
. deploy/compose-lib.sh
# shellcheck source=scripts/readiness/sim_lib.sh
. scripts/readiness/sim_lib.sh

sim_pid="" up=0
on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -z $sim_pid ]] || kill "$sim_pid" 2>/dev/null || true
    if ((up)); then
        lark_compose logs --no-color >"$out/compose.log" 2>&1 || true
        # Bounded: readiness.sh's timeout kills the step 30 s after its TERM.
        lark_compose down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
        log "stack removed"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT TERM

log "images: deploy/build-images.sh --no-cargo (target/release/node)"
images_started=$SECONDS
deploy/build-images.sh --no-cargo >"$out/images.log" 2>&1 ||
    { tail -n 20 "$out/images.log" >&2; log "the images could not be built"; exit 4; }
log "images ready in $((SECONDS - images_started)) s"

lark_offline_images
lark_secrets
# The operator routes (/cluster/status, /cluster/owner) need a token off loopback.
export METRICS_TOKEN=${METRICS_TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export LARK_PUBLISH=127.0.0.1:$port NODE_RESTART=no
# Every simulated user comes through the one entry point (one client address): the same
# rate limits as the process-mode cluster (chaos/cluster.sh), not the per-address defaults.
export WS_RATE_PER_SEC=1000 WS_RATE_BURST=2000 LOGIN_RATE_PER_MIN=1000000 SIGNUP_RATE_PER_HOUR=1000000

up=1
lark_compose down -v --remove-orphans >/dev/null 2>&1 || true
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "127.0.0.1:$port is taken by something else (set SIM_COMPOSE_PORT)"
    exit 4
fi
up_started=$(now_ms)
lark_compose up -d --scale node=3 >"$out/up.log" 2>&1 || { cat "$out/up.log" >&2; log "docker-compose up failed"; exit 4; }
formed_ms=$(wait_members 3 120 "$up_started") || { log "the 3 nodes did not form one cluster"; exit 4; }
log "3 nodes formed one cluster ${formed_ms} ms after docker-compose up was started"
for i in $(seq 1 60); do
    curl -fsS -m 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    if ((i == 60)); then log "the entry point does not answer on 127.0.0.1:$port"; exit 4; fi
    sleep 0.5
done
url=http://127.0.0.1:$port
cat >"$out/stack" <<EOF
mode=compose
project=$LARK_PROJECT
nodes=$(running_nodes | wc -l)
entry=$url
images=$NODE_IMAGE $POSTGRES_IMAGE $REDIS_IMAGE $PROXY_IMAGE
formed_ms=$formed_ms
limits=WS_RATE_PER_SEC=$WS_RATE_PER_SEC WS_RATE_BURST=$WS_RATE_BURST LOGIN_RATE_PER_MIN=$LOGIN_RATE_PER_MIN SIGNUP_RATE_PER_HOUR=$SIGNUP_RATE_PER_HOUR
EOF

actions=$out/actions
: >"$actions"
log "simulate --urls $url --users $users --seconds $seconds (no --fcm: pushes not checked)"
"$sim_bin" --urls "$url" --users "$users" --seconds "$seconds" --actions "$actions" > >(tee "$out/sim.log") 2>&1 &
sim_pid=$!
sim_wait_started "$out/sim.log" "$sim_pid"

# The running node container whose raft id owns channel:$1 (empty when no node answers).
owner_container() {
    local id owner raft
    for id in $(running_nodes); do
        owner=$({ node_get "$id" "/cluster/owner?key=channel:$1" || true; } |
            python3 -c 'import json, sys; print(json.load(sys.stdin).get("owner") or "")' 2>/dev/null || true)
        [[ -n $owner ]] && break
    done
    [[ -n ${owner:-} ]] || return 0
    for id in $(running_nodes); do
        raft=$({ node_get "$id" /cluster/status || true; } |
            python3 -c 'import json, sys; print(json.load(sys.stdin).get("raft_node_id", ""))' 2>/dev/null || true)
        if [[ $raft == "$owner" ]]; then
            echo "$id"
            return 0
        fi
    done
}

if ((fault)); then
    general=$(grep -m1 '^SIM_CHANNEL general ' "$out/sim.log" | awk '{print $3}')
    victim=$(owner_container "$general")
    why="owner of #general"
    [[ -n $victim ]] || { victim=$(pick_node follower || true); why="the follower with the most sockets"; }
    [[ -n $victim ]] || { log "no node container to kill"; exit 4; }
    name=$(container_name "$victim")
    short=${name#"$LARK_PROJECT"[_-]}
    kill_at=$((started + seconds * 1000 / 3))
    while (($(now_ms) < kill_at)); do sleep 0.1; done
    echo "$(now_ms) docker kill $short" >>"$actions"
    killed_at=$(now_ms)
    docker kill "$victim" >/dev/null
    log "docker kill $name ($why)"
    survivor=$(running_nodes | grep -v "^$victim\$" | head -1)
    if shrink_ms=$(wait_seen_by "$survivor" 2 10 "$killed_at"); then
        log "the survivors' membership shrank to 2 after ${shrink_ms} ms"
    fi
    while (($(now_ms) < killed_at + 10000)); do sleep 0.1; done
    echo "$(now_ms) docker start $short" >>"$actions"
    restarted_at=$(now_ms)
    docker start "$victim" >/dev/null
    log "docker start $name"
    if rejoin_ms=$(wait_members 3 60 "$restarted_at"); then
        echo "$(now_ms) $short ready" >>"$actions"
        log "$name back: 3 members again ${rejoin_ms} ms after docker start"
    else
        log "$name did not come back"
    fi
    printf 'victim=%s (%s)\nshrink_ms=%s\nrejoin_ms=%s\n' "$name" "$why" "${shrink_ms:-}" "${rejoin_ms:-}" >>"$out/stack"
fi
rc=0
wait "$sim_pid" || rc=$?
sim_pid=""
# tee may still be writing the last lines.
for _ in $(seq 1 20); do grep -q '^SIM_RESULT ' "$out/sim.log" && break; sleep 0.1; done
log "simulation exit status $rc"
exit "$rc"
