# shellcheck shell=bash
# Shared by sim_run.sh and sim_compose.sh (which define `log`).

# sim_wait_started LOG PID: waits (up to 3 min) for the simulator's `SIM_STARTED <unix_ms>`
# line and sets `started`; exits 2 with the log when the simulator ended or never started.
sim_wait_started() {
    local sim_log=$1 pid=$2
    started=""
    for _ in $(seq 1 1800); do
        started=$(grep -m1 '^SIM_STARTED ' "$sim_log" 2>/dev/null | awk '{print $2}' || true)
        [[ -z $started ]] || break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $started ]]; then
        log "the simulator did not start its day"
        cat "$sim_log" >&2
        exit 2
    fi
    log "day started at $started"
}
