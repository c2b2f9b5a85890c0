# shellcheck shell=bash
# The mixed scenario of run.sh (its default): several faults in one run, one after the other.
#
# 1. kill -9 the owner of channel 0 (or --kill leader|N); measure until the survivors agree on
#    N-1 members and, if it led, until a new leader is seen; restart it 2 s later and, as soon
#    as it is ready, SIGTERM the node listed before it, whose clients then move to the node
#    that just restarted; restart that one 2 s later.
# 2. SIGSTOP the owner of channel 1 (another node if that is the killed one) for 3 s.
# 3. Partition node N from the others' cluster ports for 4 s (root and iptables only).
#
# Uses kill_target from run.sh.

# Globals are shared with run.sh and the other sourced files (leader_now, note, back_ms, ...).
# shellcheck disable=SC2034,SC2154

scenario_mixed() {
    local victim why old_leader was_leader label survivors survivor_urls t_kill shrink_ms election_ms
    local new_leader now shrunk epoch0 members epoch leader _ t_restart ready_ms feeder t_term term_ms
    local expected set_ms paused removed elected part
    sleep_until_traffic 5
    case $kill_target in
        owner) victim=$(node_index_of "$(cluster_owner "channel:${CHANNEL_IDS[0]}")") why="owner of channel 0" ;;
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
            if [[ $members != $((CHAOS_NODES - 1)) || (-n $epoch0 && $epoch0 != "$epoch") ]]; then shrunk=0; fi
            epoch0=$epoch
        done < <(views "${survivor_urls[@]}")
        if ((shrunk)) && [[ -z $shrink_ms ]]; then shrink_ms=$((now - t_kill)); fi
        if [[ -n $shrink_ms ]] && { ((!was_leader)) || [[ -n $election_ms ]]; }; then break; fi
        sleep 0.05
    done
    if [[ -n $shrink_ms ]]; then
        log "membership shrank to $((CHAOS_NODES - 1)) members ${shrink_ms} ms after the kill"
        figures+=("$label: membership shrank to $((CHAOS_NODES - 1)) members after ${shrink_ms} ms")
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
    recovery_step "restart n$victim (same DATA_DIR)"
    node_start "$victim"
    if node_wait_ready "$victim" 30; then
        ready_ms=$(($(now_ms) - t_restart))
        # --- 1b. At once, SIGTERM the node listed before it: its clients fail over to the node that
        # just restarted, while that node may still be rejoining (a stale membership view).
        feeder=$(((victim + CHAOS_NODES - 2) % CHAOS_NODES + 1))
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
        recovery_step "restart n$feeder (same DATA_DIR)"
        node_start "$feeder"
        if node_wait_ready "$feeder" 30; then
            wait_back "restart of n$feeder"
            figures+=("restart n$feeder: all $CHAOS_NODES members again after ${back_ms} ms")
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
    paused=$(node_index_of "$(cluster_owner "channel:${CHANNEL_IDS[1]:-${CHANNEL_IDS[0]}}")")
    if [[ -z $paused || $paused == "$victim" ]]; then paused=$((victim % CHAOS_NODES + 1)); fi
    leader_note "$paused"
    action "SIGSTOP n$paused for 3 s$note"
    node_pause "$paused"
    read -r removed elected < <(watch_fault "$paused" 3 "$leader_now")
    recovery_step "SIGCONT n$paused"
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
            recovery_step "heal the partition of n$part"
            wait_back "partition of n$part"
            figures+=("$(describe_fault "partition n$part$note" 4 "$removed" "$elected" "$is_leader" healing)")
        else
            partition_heal
            problems+=("could not partition n$part (iptables failed)")
        fi
    else
        log "partition skipped: it needs root, iptables and setpriv (or CHAOS_PARTITION=0 was set)"
        figures+=("partition: skipped (needs root, iptables and setpriv)")
    fi
}
