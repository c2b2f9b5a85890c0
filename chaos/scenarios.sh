# shellcheck shell=bash
# The named chaos scenarios of run.sh, one function each (scenario_<name>, dashes as
# underscores). Each runs while the checker's traffic flows: it injects its fault a few
# seconds in, records every step with `action`, and waits (bounded) until the cluster is whole
# again. The checker's verdict comes after. The mixed scenario lives in mixed.sh.

# Globals are shared with run.sh and the other sourced files (leader_now, note, back_ms, ...).
# shellcheck disable=SC2034,SC2154

# Seconds into the traffic at which the fault starts: the clients are all subscribed and
# every channel has a history by then.
FAULT_AT=4

# restart-fast: kill -9 the owner of channel 0 and restart it with the same DATA_DIR at once,
# before the others notice it was gone (DEAD_AFTER_MS is 1.5 s).
scenario_restart_fast() {
    sleep_until_traffic "$FAULT_AT"
    local victim
    victim=$(owner_node 0 2)
    leader_note "$victim"
    action "kill -9 n$victim (owner of channel 0$note)"
    node_kill "$victim"
    sleep 0.5
    recovery_step "restart n$victim (same DATA_DIR, 0.5 s after the kill)"
    restart_ready "$victim" "after a kill -9"
    wait_back "restart of n$victim"
    figures+=("kill -9 n$victim (owner of channel 0$note), restarted after 0.5 s: ready after ${ready_ms} ms; all members again after ${back_ms} ms")
}

# double-kill: kill -9 the owner of channel 0 and one more node (the leader if that is another
# one): the survivor is alone without a quorum. Restart both after 4 s.
scenario_double_kill() {
    sleep_until_traffic "$FAULT_AT"
    local first second leader
    first=$(owner_node 0 2)
    leader=$(node_index_of "$(cluster_leader)")
    if [[ -n $leader && $leader != "$first" ]]; then second=$leader; else second=$((first % CHAOS_NODES + 1)); fi
    action "kill -9 n$first (owner of channel 0) and n$second$([[ $second == "$leader" ]] && echo ' (the raft leader)')"
    node_kill "$first"
    node_kill "$second"
    sleep 4
    recovery_step "restart n$first and n$second (same DATA_DIR, 4 s after the kill)"
    node_start "$first"
    node_start "$second"
    local i ready=()
    for i in "$first" "$second"; do
        if node_wait_ready "$i" 30; then ready+=("n$i"); else problems+=("n$i did not get ready within 30 s of its restart"); fi
    done
    wait_back "restart of n$first and n$second"
    figures+=("kill -9 n$first and n$second, restarted after 4 s: ready ${ready[*]:-none}; all members again after ${back_ms} ms")
}

# sigstop-owner: freeze a channel's owner for 4 s (longer than DEAD_AFTER_MS): the others
# remove it and move its channels while it still believes it owns them, and after SIGCONT it
# acts on that belief until it learns the new membership. Twice: first the raft leader if it
# owns a channel (its rejoin takes longest), else the owner of channel 1; then the owner of
# another channel (or another node).
scenario_sigstop_owner() {
    sleep_until_traffic "$FAULT_AT"
    local first second leader c
    leader=$(node_index_of "$(cluster_leader)")
    first=$(owner_node 1 2)
    for c in "${!CHANNEL_IDS[@]}"; do
        if [[ -n $leader && $(owner_node "$c" "") == "$leader" ]]; then first=$leader; fi
    done
    sigstop_one "$first"
    sleep 1
    # The second freeze needs traffic during it and a few seconds after it.
    if (($(now_ms) + 10000 > TRAFFIC_END_MS)); then
        log "second SIGSTOP skipped: less than 10 s of traffic left (a slow machine or a slow rejoin)"
        return
    fi
    second=""
    for c in "${!CHANNEL_IDS[@]}"; do
        local owner
        owner=$(owner_node "$c" "")
        if [[ -n $owner && $owner != "$first" ]]; then second=$owner; fi
    done
    sigstop_one "${second:-$((first % CHAOS_NODES + 1))}"
}

# sigstop_one NODE: SIGSTOP for 4 s, SIGCONT, wait until the members agree again.
sigstop_one() {
    local victim=$1 owned=() c removed elected
    for c in "${!CHANNEL_IDS[@]}"; do
        if [[ $(owner_node "$c" "") == "$victim" ]]; then owned+=("$c"); fi
    done
    leader_note "$victim"
    action "SIGSTOP n$victim (owner of channels: ${owned[*]:-none}$note) for 4 s"
    node_pause "$victim"
    read -r removed elected < <(watch_fault "$victim" 4 "$leader_now")
    recovery_step "SIGCONT n$victim"
    node_resume "$victim"
    wait_back "SIGSTOP of n$victim"
    figures+=("$(describe_fault "SIGSTOP n$victim (owner of channels: ${owned[*]:-none}$note)" 4 "$removed" "$elected" "$is_leader" SIGCONT)")
}

# partition: cut the owner of channel 0 off the others' cluster ports for 5 s (clients,
# Postgres and Redis still reach it), then heal.
scenario_partition() {
    sleep_until_traffic "$FAULT_AT"
    local part owned=() c removed elected
    part=$(owner_node 0 "$CHAOS_PARTITION_NODE")
    for c in "${!CHANNEL_IDS[@]}"; do
        if [[ $(owner_node "$c" "") == "$part" ]]; then owned+=("$c"); fi
    done
    leader_note "$part"
    action "partition n$part$note (owner of channels: ${owned[*]:-none}) from the other nodes for 5 s"
    if ! partition_node "$part"; then
        partition_heal
        problems+=("could not partition n$part (iptables failed)")
        return
    fi
    read -r removed elected < <(watch_fault "$part" 5 "$leader_now")
    partition_heal
    recovery_step "heal the partition of n$part"
    wait_back "partition of n$part"
    figures+=("$(describe_fault "partition n$part$note (owner of channels: ${owned[*]:-none})" 5 "$removed" "$elected" "$is_leader" healing)")
    if [[ $removed == no ]]; then
        problems+=("the partitioned n$part was never removed by the others: did the partition take effect?")
    fi
}

# leader-join: a 4th node starts joining; as soon as the leader has added it as a learner (or
# after 5 s), kill -9 the leader. Wait for the join to finish and for the three others to
# agree on three members (the dead leader removed), then restart the old leader. (Restarting
# it before its removal is what restart-fast tests.)
scenario_leader_join() {
    sleep_until_traffic "$FAULT_AT"
    local leader before seen=no deadline
    leader=$(node_index_of "$(cluster_leader)")
    [[ -n $leader ]] || leader=1
    before=$(grep -c 'learner added' "$CHAOS_DIR/n$leader.log" || true)
    log "starting n4 (joins through n1..n3); the raft leader is n$leader"
    node_start 4
    deadline=$(($(now_ms) + 5000))
    while (($(now_ms) < deadline)); do
        if (($(grep -c 'learner added' "$CHAOS_DIR/n$leader.log" || true) > before)); then seen=yes; break; fi
        sleep 0.02
    done
    action "kill -9 n$leader (the raft leader) while n4 joins (learner added: $seen)"
    node_kill "$leader"
    local t0 joined_ms=never
    t0=$(now_ms)
    if node_wait_ready 4 30; then joined_ms=$(($(now_ms) - t0)); else problems+=("n4 did not finish joining within 30 s of the leader's death"); fi
    node_raft_id 4 >/dev/null || true
    local settled_ms=never
    if cluster_wait_members 3 30 >/dev/null; then
        settled_ms=$(($(now_ms) - t0))
    else
        problems+=("after the leader's death the other three did not agree on 3 members within 30 s")
    fi
    recovery_step "restart n$leader (same DATA_DIR)"
    restart_ready "$leader" "the killed leader"
    wait_back "restart of n$leader" 4
    figures+=("kill -9 leader n$leader while n4 joined (learner added: $seen): n4 ready ${joined_ms} ms and the others agreed on 3 members ${settled_ms} ms after the kill; n$leader restarted, ready after ${ready_ms} ms; all 4 members again after ${back_ms} ms")
}

# postgres-restart: stop the shared Postgres (fast: connections cut) for 3 s, then start it.
scenario_postgres_restart() {
    sleep_until_traffic "$FAULT_AT"
    action "postgres stop -m fast (3 s down)"
    local t0 down_ms
    t0=$(now_ms)
    postgres_stop || problems+=("postgres did not stop")
    sleep 3
    recovery_step "postgres start"
    postgres_start || problems+=("postgres did not start again")
    down_ms=$(($(now_ms) - t0))
    wait_back "postgres restart"
    figures+=("postgres down for ${down_ms} ms; all members after ${back_ms} ms")
}

# redis-kill: kill -9 Redis, start an empty one on the same port 8 s later. Chat must keep
# working (presence and push may degrade).
scenario_redis_kill() {
    sleep_until_traffic "$FAULT_AT"
    action "kill -9 redis (8 s down)"
    redis_kill
    sleep 8
    recovery_step "redis start (same port, empty)"
    redis_restart || problems+=("redis did not start again")
    wait_back "redis kill"
    figures+=("redis killed for 8 s; all members after ${back_ms} ms")
}

# mutate: the checker's self-test. Twice during the traffic, rewrite the database behind the
# server's back: delete acknowledged messages, rewrite bodies, swap a sender. The checker must
# fail (lost, content mismatches); run.sh turns that into this scenario's pass.
scenario_mutate() {
    local round
    for round in 1 2; do
        sleep_until_traffic $((3 * round + 2))
        mutate_database "$round"
    done
}

# mutate_database ROUND: in messages older than 3 s (acknowledged long ago: no fault is
# running) of the run's channels, deletes 2, appends to the body of 2 and gives 1 another
# sender (the channel's creator, who never sends). Prints what it did.
mutate_database() {
    local cutoff ids done_text
    cutoff=$(($(now_ms) - 3000))
    ids=$(printf "'%s'," "${CHANNEL_IDS[@]}")
    ids=${ids%,}
    done_text=$(chaos_psql <<SQL
BEGIN;
DELETE FROM messages WHERE id IN (
    SELECT id FROM messages WHERE channel_id IN ($ids) AND created_at < $cutoff ORDER BY random() LIMIT 2)
    RETURNING 'deleted seq ' || seq;
UPDATE messages SET body = body || ' (rewritten)' WHERE id IN (
    SELECT id FROM messages WHERE channel_id IN ($ids) AND created_at < $cutoff ORDER BY random() LIMIT 2)
    RETURNING 'rewrote the body at seq ' || seq;
UPDATE messages m SET sender_id = c.created_by FROM channels c
    WHERE m.id = (SELECT id FROM messages WHERE channel_id IN ($ids) AND created_at < $cutoff
                  AND body NOT LIKE '% (rewritten)' ORDER BY random() LIMIT 1)
    AND c.id = m.channel_id
    RETURNING 'swapped the sender at seq ' || m.seq;
COMMIT;
SQL
    ) || { problems+=("mutation round $1: psql failed"); return; }
    action "mutate the database (round $1): $(echo "$done_text" | paste -sd';' - | sed 's/;/; /g')"
    figures+=("mutation round $1: $(echo "$done_text" | paste -sd';' -)")
}
