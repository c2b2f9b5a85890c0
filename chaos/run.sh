#!/usr/bin/env bash
# The chaos scenario, process mode: a local cluster of real node processes, clients on every
# node (`bench chaos`), and while they talk: kill -9 a channel's owner and restart it, freeze
# a node with SIGSTOP, and (as root, with iptables) cut a node off from the others. Then the
# checker compares what was acknowledged with what was stored and what every client saw.
#
#   chaos/run.sh [--nodes 3] [--seconds 40] [--users 12] [--channels 3] [--rate 5]
#                [--kill owner|leader|N] [--build | --no-build] [--keep]
#
# Exit status: 0 all guarantees held and the cluster recovered from every fault; 1 the checker
# found a broken guarantee (or the run could not be set up); 2 the checker passed but a node
# did not come back into the membership in time. See chaos/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

nodes=3 seconds=40 users=12 channels=3 rate=5 build=auto kill_target=owner
while (($#)); do
    case $1 in
        --nodes) nodes=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --users) users=$2; shift 2 ;;
        --channels) channels=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --kill) kill_target=$2; shift 2 ;;
        --build) build=always; shift ;;
        --no-build) build=never; shift ;;
        --keep) export CHAOS_KEEP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 1 ;;
    esac
done
if ! [[ $nodes =~ ^[0-9]+$ ]] || ((nodes < 3 || nodes > 9)); then
    echo "--nodes must be 3..9 (with 2 nodes, killing one loses the raft quorum)" >&2
    exit 1
fi
if ! [[ $kill_target =~ ^(owner|leader|[1-9])$ ]] || { [[ $kill_target =~ ^[0-9]$ ]] && ((kill_target > nodes)); }; then
    echo "--kill must be owner (of channel 0), leader or a node number 1..$nodes" >&2
    exit 1
fi
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 30 || seconds > 600)); then
    echo "--seconds must be 30..600 (the faults take about 30 s)" >&2
    exit 1
fi

# shellcheck source=chaos/cluster.sh
source chaos/cluster.sh
CHAOS_BENCH_BIN=${CHAOS_BENCH_BIN:-$CHAOS_ROOT/target/release/bench}
checker_pid=""
problems=()
figures=()

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $checker_pid ]] && kill -0 "$checker_pid" 2>/dev/null; then
        kill "$checker_pid" 2>/dev/null || true
        wait "$checker_pid" 2>/dev/null || true
    fi
    ((rc == 0)) || CHAOS_FAILED=1
    cluster_cleanup
    exit "$rc"
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT TERM

if [[ $build == always ]] || { [[ $build == auto ]] && [[ ! -x $CHAOS_NODE_BIN || ! -x $CHAOS_BENCH_BIN ]]; }; then
    log "building: cargo build --release -p node -p bench"
    cargo build --release -p node -p bench
fi
for bin in "$CHAOS_NODE_BIN" "$CHAOS_BENCH_BIN"; do
    [[ -x $bin ]] || { echo "error: $bin missing: cargo build --release -p node -p bench" >&2; exit 1; }
done

# action LABEL: logs a fault and records it for the checker (which times each recovery).
action() {
    echo "$(now_ms) $*" >>"$CHAOS_DIR/actions"
    log "ACTION: $*"
}

# urls_of NODE...: the HTTP bases of the given nodes.
urls_of() {
    local i
    for i in "$@"; do node_url "$i"; done
}

# others EXCLUDED: every node number but EXCLUDED.
others() {
    local i
    for ((i = 1; i <= CHAOS_NODES; i++)); do
        if ((i != $1)); then echo "$i"; fi
    done
}

# watch_fault NODE SECONDS OLD_LEADER: polls the other nodes for SECONDS; prints "<removed>
# <elected>": the milliseconds until they all agreed NODE was gone (N-1 members), and until one
# of them saw a leader other than OLD_LEADER ("no" for what did not happen).
watch_fault() {
    local gone=$1 limit=$2 old_leader=$3 start now removed=no elected=no rest urls lines line
    local members epoch leader _ agree first_epoch
    start=$(now_ms)
    mapfile -t rest < <(others "$gone")
    mapfile -t urls < <(urls_of "${rest[@]}")
    while (($(now_ms) - start < limit * 1000)); do
        mapfile -t lines < <(views "${urls[@]}")
        now=$(now_ms)
        agree=1 first_epoch=""
        for line in "${lines[@]}"; do
            read -r members epoch leader _ <<<"$line"
            if [[ $elected == no && $members != down && $leader != none && $leader != "$old_leader" ]]; then
                elected=$((now - start))
            fi
            if [[ $members != $((CHAOS_NODES - 1)) || (-n $first_epoch && $first_epoch != "$epoch") ]]; then agree=0; fi
            first_epoch=$epoch
        done
        if ((agree)) && [[ $removed == no ]]; then removed=$((now - start)); fi
        sleep 0.05
    done
    echo "$removed $elected"
}

# describe_fault WHAT SECONDS REMOVED ELECTED WAS_LEADER AFTER: one line of figures.
describe_fault() {
    local what=$1 seconds=$2 removed=$3 elected=$4 was_leader=$5 after=$6 text
    if [[ $removed == no ]]; then
        text="$what ${seconds} s: not removed from the membership"
    else
        text="$what ${seconds} s: removed by the others after ${removed} ms"
    fi
    if ((was_leader)); then
        if [[ $elected == no ]]; then text+=", no new leader meanwhile"; else text+=", new leader after ${elected} ms"; fi
    fi
    if [[ $back_ms == never ]]; then
        echo "$text; NOT back to $CHAOS_NODES members after $after"
    else
        echo "$text; all $CHAOS_NODES members again ${back_ms} ms after $after"
    fi
}

# leader_note NODE: sets leader_now (the leader's raft id), is_leader (whether NODE leads) and
# note (", the raft leader" or nothing).
leader_note() {
    leader_now=$(cluster_leader)
    is_leader=0 note=""
    if [[ -n $leader_now && $leader_now == "$(node_raft_id "$1")" ]]; then
        is_leader=1 note=", the raft leader"
    fi
}

# wait_back WHAT: waits until all nodes agree on N members (30 s at most, 10 s once something
# already went wrong); sets back_ms (the milliseconds waited, or "never" and a recorded problem).
wait_back() {
    local what=$1 limit=30
    if ((${#problems[@]})); then limit=10; fi
    if back_ms=$(cluster_wait_members "$CHAOS_NODES" "$limit"); then
        log "$what: all $CHAOS_NODES members again after ${back_ms} ms"
    else
        back_ms=never
        problems+=("$what: the cluster did not get back to $CHAOS_NODES members within $limit s")
        log "PROBLEM: $what: not back to $CHAOS_NODES members within $limit s"
    fi
}

cluster_init "$nodes"
cluster_start

log "checker: $CHAOS_BENCH_BIN chaos --urls $(all_urls) --seconds $seconds --users $users --channels $channels --rate $rate"
"$CHAOS_BENCH_BIN" chaos --urls "$(all_urls)" --seconds "$seconds" --users "$users" --channels "$channels" \
    --rate "$rate" --actions "$CHAOS_DIR/actions" >"$CHAOS_DIR/checker.log" 2>&1 &
checker_pid=$!
started=""
for _ in $(seq 1 1800); do
    started=$(grep -m1 '^CHAOS_STARTED' "$CHAOS_DIR/checker.log" 2>/dev/null | awk '{print $2}' || true)
    [[ -z $started ]] || break
    if ! kill -0 "$checker_pid" 2>/dev/null; then
        cat "$CHAOS_DIR/checker.log"
        log "the checker exited before its traffic started"
        exit 1
    fi
    sleep 0.1
done
[[ -n $started ]] || { log "the checker did not start its traffic within 180 s"; exit 1; }
traffic_end=$((started + seconds * 1000))
IFS=, read -r -a channel_ids <<<"$(grep -m1 '^CHAOS_CHANNELS' "$CHAOS_DIR/checker.log" | awk '{print $2}')"
log "traffic started; channels ${channel_ids[*]}"

# --- 1. kill -9 the owner of channel 0 (else node 2), measure shrink and election; restart it
sleep 5
case $kill_target in
    owner) victim=$(node_index_of "$(cluster_owner "channel:${channel_ids[0]}")") why="owner of channel 0" ;;
    leader) victim=$(node_index_of "$(cluster_leader)") why="--kill leader" ;;
    *) victim=$kill_target why="--kill $kill_target" ;;
esac
[[ -n $victim ]] || { victim=2; why="owner/leader unknown"; }
leader_note "$victim"
old_leader=$leader_now was_leader=$is_leader
label="kill -9 n$victim ($why$note)"
mapfile -t survivors < <(others "$victim")
mapfile -t survivor_urls < <(urls_of "${survivors[@]}")
t_kill=$(now_ms)
action "$label"
node_kill "$victim"
shrink_ms="" election_ms="" new_leader=""
while (($(now_ms) - t_kill < 30000)); do
    now=$(now_ms)
    shrunk=1 epoch0=""
    while read -r members epoch leader _; do
        if ((was_leader)) && [[ -z $election_ms && $members != down && $leader != none && $leader != "$old_leader" ]]; then
            election_ms=$((now - t_kill))
            new_leader=$leader
        fi
        if [[ $members != $((nodes - 1)) || (-n $epoch0 && $epoch0 != "$epoch") ]]; then shrunk=0; fi
        epoch0=$epoch
    done < <(views "${survivor_urls[@]}")
    if ((shrunk)) && [[ -z $shrink_ms ]]; then shrink_ms=$((now - t_kill)); fi
    if [[ -n $shrink_ms ]] && { ((!was_leader)) || [[ -n $election_ms ]]; }; then break; fi
    sleep 0.05
done
if [[ -n $shrink_ms ]]; then
    log "membership shrank to $((nodes - 1)) members ${shrink_ms} ms after the kill"
    figures+=("$label: membership shrank to $((nodes - 1)) members after ${shrink_ms} ms")
else
    problems+=("$label: the membership did not shrink within 30 s")
    figures+=("$label: membership did NOT shrink within 30 s")
fi
if ((was_leader)); then
    if [[ -n $election_ms ]]; then
        figures+=("leader election: new leader n$(node_index_of "$new_leader") after ${election_ms} ms")
    else
        problems+=("no new leader within 30 s of killing the leader")
        figures+=("leader election: NO new leader within 30 s")
    fi
else
    figures+=("leader election: not needed (the killed node was not the leader; n$(node_index_of "$old_leader") stayed leader)")
fi
sleep 2
t_restart=$(now_ms)
action "restart n$victim (same DATA_DIR)"
node_start "$victim"
if node_wait_ready "$victim" 30; then
    ready_ms=$(($(now_ms) - t_restart))
    # --- 1b. At once, SIGTERM the node listed before it: its clients fail over to the node that
    # just restarted, while that node may still be rejoining (a stale membership view).
    feeder=$(((victim + nodes - 2) % nodes + 1))
    leader_note "$feeder"
    t_term=$(now_ms)
    action "SIGTERM n$feeder$note (its clients move to n$victim, just restarted)"
    node_stop "$feeder"
    term_ms=$(($(now_ms) - t_term))
    mapfile -t expected < <(others "$feeder")
    if set_ms=$(cluster_wait_set 30 "${expected[@]}"); then
        figures+=("restart n$victim: ready after ${ready_ms} ms; SIGTERM n$feeder$note: exited after ${term_ms} ms, then the others agreed on the members without n$feeder and with n$victim after ${set_ms} ms")
    else
        problems+=("after restarting n$victim and stopping n$feeder, the nodes did not agree on the members within 30 s")
        figures+=("restart n$victim: ready after ${ready_ms} ms; SIGTERM n$feeder: the members did NOT converge within 30 s")
    fi
    sleep 2
    action "restart n$feeder (same DATA_DIR)"
    node_start "$feeder"
    if node_wait_ready "$feeder" 30; then
        wait_back "restart of n$feeder"
        figures+=("restart n$feeder: all $nodes members again after ${back_ms} ms")
    else
        problems+=("n$feeder did not get ready within 30 s of its restart (after a SIGTERM)")
        figures+=("restart n$feeder: NOT ready within 30 s")
    fi
else
    problems+=("n$victim did not get ready within 30 s of its restart (after a kill -9)")
    figures+=("restart n$victim: NOT ready within 30 s")
fi

# --- 2. SIGSTOP a node for 3 s (the owner of channel 1 if it is another node)
sleep 2
paused=$(node_index_of "$(cluster_owner "channel:${channel_ids[1]:-${channel_ids[0]}}")")
if [[ -z $paused || $paused == "$victim" ]]; then paused=$((victim % nodes + 1)); fi
leader_note "$paused"
action "SIGSTOP n$paused for 3 s$note"
node_pause "$paused"
read -r removed elected < <(watch_fault "$paused" 3 "$leader_now")
action "SIGCONT n$paused"
node_resume "$paused"
wait_back "SIGSTOP of n$paused"
figures+=("$(describe_fault "SIGSTOP n$paused$note" 3 "$removed" "$elected" "$is_leader" SIGCONT)")

# --- 3. partition a node from the others for 4 s (root + iptables only)
if ((CHAOS_PARTITION_NODE > 0)); then
    sleep 2
    part=$CHAOS_PARTITION_NODE
    leader_note "$part"
    action "partition n$part$note from the other nodes (cluster ports) for 4 s"
    if partition_node "$part"; then
        read -r removed elected < <(watch_fault "$part" 4 "$leader_now")
        partition_heal
        action "heal the partition of n$part"
        wait_back "partition of n$part"
        figures+=("$(describe_fault "partition n$part$note" 4 "$removed" "$elected" "$is_leader" healing)")
    else
        partition_heal
        problems+=("could not partition n$part (iptables failed)")
    fi
else
    log "partition skipped: it needs root, iptables, setpriv and a 'nobody' user (or CHAOS_PARTITION=0 was set)"
    figures+=("partition: skipped (needs root, iptables, setpriv and a 'nobody' user)")
fi
if (($(now_ms) > traffic_end)); then
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
if [[ -n $result ]]; then
    "$CHAOS_PY" - "$result" "$label" <<'PY'
import json, sys
result, kill_label = json.loads(sys.argv[1]), sys.argv[2]
for r in result.get("recoveries", []):
    if r["label"] != kill_label:
        continue
    if r["disconnected"] == 0:
        print("clients of the killed node: none lost a socket")
    elif r["all_resumed_after_ms"] is not None:
        print(f"time from kill to all {r['disconnected']} affected clients resumed: {r['all_resumed_after_ms']} ms "
              f"(longest single resume {r['max_resume_ms']} ms; longest ack pause {r['longest_ack_pause_ms']} ms)")
    else:
        print(f"clients of the killed node: {r['unresumed']} of {r['disconnected']} NEVER resumed")
print(f"resume time median / max over the run: {result.get('resume_ms_median')} / {result.get('resume_ms_max')} ms, "
      f"{result.get('reconnects')} sockets lost")
PY
fi
echo "CHAOS_RESULT $result"

if ((checker_rc != 0)) || ((${#problems[@]})); then
    echo
    echo "================ problems ================"
    ((checker_rc == 0)) || echo "the checker FAILED (exit $checker_rc): see the verdict above"
    for problem in "${problems[@]}"; do echo "$problem"; done
    for ((i = 1; i <= nodes; i++)); do
        echo "--- n$i: last WARN/ERROR lines of $CHAOS_DIR/n$i.log ---"
        node_log_problems "$i" 8
    done
fi
if ((checker_rc != 0)); then
    exit 1
fi
if ((${#problems[@]})); then
    exit 2
fi
log "chaos run passed"
