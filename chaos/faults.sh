# shellcheck shell=bash
# Helpers shared by the chaos scenarios (sourced by run.sh after cluster.sh): recording
# actions, watching the membership during a fault, waiting until the cluster is whole again,
# and the scenario's closing lines (figures and `CHAOS_SCENARIO <name> {json}`).
#
# Globals they use or set: CHAOS_* from cluster.sh, TRAFFIC_STARTED_MS, problems[], figures[],
# LAST_ACTION_MS (the latest action) and REJOIN_MS (from the latest action until the nodes
# agreed on every member again, as wait_back last measured it).

# Globals are shared with run.sh and the other sourced files (leader_now, note, back_ms, ...).
# shellcheck disable=SC2034,SC2154

# action LABEL: logs a fault and records it for the checker (which times each recovery).
action() {
    LAST_ACTION_MS=$(now_ms)
    echo "$LAST_ACTION_MS $*" >>"$CHAOS_DIR/actions"
    log "ACTION: $*"
}

# recovery_step LABEL: like action, for a step that ends the current fault (a restart,
# SIGCONT, heal): the checker times the recovery from the fault, through its steps.
recovery_step() {
    LAST_ACTION_MS=$(now_ms)
    echo "$LAST_ACTION_MS + $*" >>"$CHAOS_DIR/actions"
    log "ACTION: $*"
}

# urls_of NODE...: the HTTP bases of the given nodes, one a line.
urls_of() {
    local i
    for i in "$@"; do node_url "$i"; done
}

# others EXCLUDED...: every started node but the excluded ones.
others() {
    local i
    for ((i = 1; i <= CHAOS_NODES; i++)); do
        if [[ " $* " != *" $i "* ]] && [[ -n ${NODE_RAFT_ID[i]} ]]; then echo "$i"; fi
    done
}

# sleep_until_traffic SECONDS: sleeps until SECONDS after the traffic started (at once if later).
sleep_until_traffic() {
    local wait_ms=$((TRAFFIC_STARTED_MS + $1 * 1000 - $(now_ms)))
    if ((wait_ms > 0)); then sleep "$((wait_ms / 1000)).$(printf '%03d' $((wait_ms % 1000)))"; fi
}

# owner_node CHANNEL_INDEX FALLBACK: the node number owning that channel (FALLBACK if unknown).
owner_node() {
    local owner
    owner=$(node_index_of "$(cluster_owner "channel:${CHANNEL_IDS[$1]:-${CHANNEL_IDS[0]}}")")
    echo "${owner:-$2}"
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

# watch_fault NODE SECONDS OLD_LEADER: polls the other nodes for SECONDS; prints "<removed>
# <elected>": the milliseconds until they all agreed NODE was gone (one member fewer), and until
# one of them saw a leader other than OLD_LEADER ("no" for what did not happen).
watch_fault() {
    local gone=$1 limit=$2 old_leader=$3 start now removed=no elected=no rest urls lines line
    local members epoch leader _ agree first_epoch count
    start=$(now_ms)
    mapfile -t rest < <(others "$gone")
    mapfile -t urls < <(urls_of "${rest[@]}")
    count=${#rest[@]}
    while (($(now_ms) - start < limit * 1000)); do
        mapfile -t lines < <(views "${urls[@]}")
        now=$(now_ms)
        agree=1 first_epoch=""
        for line in "${lines[@]}"; do
            read -r members epoch leader _ <<<"$line"
            if [[ $elected == no && $members != down && $leader != none && $leader != "$old_leader" ]]; then
                elected=$((now - start))
            fi
            if [[ $members != "$count" || (-n $first_epoch && $first_epoch != "$epoch") ]]; then agree=0; fi
            first_epoch=$epoch
        done
        if ((agree)) && [[ $removed == no ]]; then removed=$((now - start)); fi
        sleep 0.05
    done
    echo "$removed $elected"
}

# describe_fault WHAT SECONDS REMOVED ELECTED WAS_LEADER AFTER: one line of figures (uses back_ms).
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
        echo "$text; NOT whole again after $after"
    else
        echo "$text; all members again ${back_ms} ms after $after"
    fi
}

# wait_back WHAT [MEMBERS]: waits until the live nodes agree on MEMBERS (default: every node)
# members (30 s at most, 10 s once something already went wrong); sets back_ms (the
# milliseconds waited, or "never" and a recorded problem) and REJOIN_MS.
wait_back() {
    local what=$1 want=${2:-$CHAOS_NODES} limit=30
    if ((${#problems[@]})); then limit=10; fi
    if back_ms=$(cluster_wait_members "$want" "$limit"); then
        REJOIN_MS=$(($(now_ms) - LAST_ACTION_MS))
        log "$what: all $want members again after ${back_ms} ms"
    else
        back_ms=never REJOIN_MS=""
        problems+=("$what: the cluster did not get back to $want members within $limit s")
        log "PROBLEM: $what: not back to $want members within $limit s"
    fi
}

# restart_ready NODE WHAT: starts NODE again with its DATA_DIR; records a problem if it is not
# ready within 30 s. Prints nothing; sets ready_ms.
restart_ready() {
    local i=$1 t0
    t0=$(now_ms)
    node_start "$i"
    if node_wait_ready "$i" 30; then
        ready_ms=$(($(now_ms) - t0))
    else
        ready_ms=never
        problems+=("n$i did not get ready within 30 s of its restart ($2)")
    fi
}

# scenario_impossible NAME: prints why NAME cannot run here and succeeds; fails if it can run.
scenario_impossible() {
    case $1 in
        partition)
            partition_supported && return 1
            echo "a partition needs root, iptables and setpriv (and CHAOS_PARTITION != 0)" ;;
        postgres-restart | mutate)
            [[ -n ${CHAOS_DATABASE_URL:-} ]] || return 1
            echo "CHAOS_DATABASE_URL points at a database this script does not own" ;;
        redis-kill)
            [[ -z ${CHAOS_REDIS_URL:-} ]] && command -v redis-server >/dev/null && return 1
            echo "needs the throwaway redis-server (installed, CHAOS_REDIS_URL unset)" ;;
        *) return 1 ;;
    esac
}

# scenario_skipped NAME WHY: the closing lines of a scenario that could not run.
scenario_skipped() {
    local json
    json=$("$CHAOS_PY" -c 'import json, sys; print(json.dumps({"scenario": sys.argv[1], "verdict": "SKIPPED", "reason": sys.argv[2]}))' "$1" "$2")
    echo "scenario $1: SKIPPED ($2)"
    echo "CHAOS_SCENARIO $1 $json"
}

# scenario_line NAME CHECKER_RC RESULT_JSON PROBLEMS: prints the scenario's figures line and
# `CHAOS_SCENARIO <name> {json}`; returns run.sh's exit status (see its header).
scenario_line() {
    "$CHAOS_PY" - "$1" "$2" "$3" "$4" "${REJOIN_MS:-}" <<'PY'
import json, sys
name, checker_rc, raw, problems, rejoin = sys.argv[1:6]
problems = [p for p in problems.splitlines() if p.strip()]
r = json.loads(raw) if raw.strip() else {}
num = lambda key: r.get(key) or 0
figures = {
    "lost": num("acknowledged_but_lost") + num("ack_seq_mismatches"),
    "duplicates": num("history_duplicates") + num("receiver_duplicates"),
    "order": num("order_violations") + num("sender_order_breaks") + num("history_disorder"),
    "content_mismatches": num("content_mismatches"),
    "behind": num("receivers_behind"),
    "never_resumed": num("unresumed"),
    "resume_p50_ms": r.get("resume_ms_median"),
    "resume_max_ms": r.get("resume_ms_max"),
}
# Recovery as clients see it (the checker: from the first fault until every client resumed,
# every channel acked again and no receiver was left behind), and the cluster's rejoin (this
# script: from the last action until the nodes agreed on every member again).
recovery = r.get("recovery_ms")
figures["recovery_ms"] = recovery
figures["rejoin_ms"] = int(rejoin) if rejoin else None
checker_failed = checker_rc != "0" or not r
if name == "mutate":
    caught = checker_failed and num("acknowledged_but_lost") > 0 and num("content_mismatches_history") > 0
    verdict, code = ("PASS", 0) if caught else ("FAIL", 1)
    note = "the checker caught the mutation" if caught else "the checker MISSED the mutation (or failed for another reason)"
else:
    verdict, code = ("FAIL", 1) if checker_failed else (("FAIL", 2) if problems else ("PASS", 0))
    note = "; ".join(r.get("failures", []) + problems) or ("no checker result" if not r else "all checks held")
line = dict(scenario=name, verdict=verdict, checker="FAIL" if checker_failed else "PASS", **figures,
            sent=r.get("sent"), acknowledged=r.get("acknowledged"), failures=r.get("failures", []), problems=problems)
ms = lambda v: "-" if v is None else f"{v}"
print(f"scenario {name}: {verdict} ({note}): lost {figures['lost']}, dup {figures['duplicates']}, "
      f"order {figures['order']}, mismatch {figures['content_mismatches']}, behind {figures['behind']}, "
      f"never-resumed {figures['never_resumed']}, resume p50/max {ms(figures['resume_p50_ms'])}/"
      f"{ms(figures['resume_max_ms'])} ms, recovery {'never' if recovery is None and r else ms(recovery) + ' ms'}, "
      f"rejoin {ms(figures['rejoin_ms'])} ms")
print(f"CHAOS_SCENARIO {name} {json.dumps(line)}")
sys.exit(code)
PY
}
