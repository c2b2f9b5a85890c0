#!/usr/bin/env bash
# The readiness report, measured: runs the product end to end on this machine and writes
# docs/READINESS.md (with PNG plots in docs/readiness/) from what the steps printed.
#
#   scripts/readiness.sh [--no-build] [--skip STEP]... [--budget SECONDS]
#
# Steps (each with a timeout, output kept in target/readiness/<step>.log):
#   1 tests    scripts/test.sh (the whole suite; the nextest summary line)
#   2 chaos    LARK_PROFILE=release chaos/matrix.sh --short (CHAOS_SCENARIO figures)
#   3 bench    bench/run.sh all --quick (the BENCH_RESULT line: ratios to a bare baseline)
#   4 browser  tests/browser/run.sh (pytest's result, target/browser-artifacts/figures.json)
#   5 sim      scripts/readiness/sim_run.sh: `simulate --users 50` for 90 s on a 3-node
#              cluster with the fake FCM, one node kill -9'd at ~1/3 and restarted 10 s later
#   6 sim-compose  scripts/readiness/sim_compose.sh: `simulate --users 30` for 60 s on the
#              compose stack (3 node containers behind HAProxy; pushes not checked), one
#              container `docker kill`ed at ~1/3 and started 10 s later; skipped (exit 3)
#              when no Docker engine answers or docker-compose is missing
#   7 report   scripts/readiness/report.py writes docs/READINESS.md and the plots
# Before them it installs what is missing (apt: postgresql redis-server python3-matplotlib)
# and builds the release binaries (skip with --no-build). --skip takes a step's name or
# number (repeatable; the report step always runs; skipped steps show as not run). The whole
# run is bounded by --budget (1800 s): a step gets what is left after the minimum the later
# steps need, and one that runs out of time is reported FAILED (timed out).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }

STEPS=(tests chaos bench browser sim sim-compose report)
declare -A CAP=([build]=900 [tests]=720 [chaos]=480 [bench]=420 [browser]=360 [sim]=300 [sim-compose]=420 [report]=120)
# The least a later step needs: reserved when an earlier step's timeout is computed.
declare -A FLOOR=([tests]=120 [chaos]=150 [bench]=90 [browser]=90 [sim]=200 [sim-compose]=150 [report]=30)
# Exit statuses that mean "skipped", not "failed", with what the progress line says.
declare -A SKIPPED_RC=([sim-compose]=3)
declare -A SKIPPED_WHY=([sim-compose]="no Docker engine")
build=1 budget=1800
declare -A SKIP=()
while (($#)); do
    case $1 in
        --no-build) build=0; shift ;;
        --skip)
            step=$2
            [[ $step =~ ^[1-6]$ ]] && step=${STEPS[$((step - 1))]}
            [[ " ${STEPS[*]} " == *" $step "* && $step != report ]] ||
                { echo "--skip takes one of: tests chaos bench browser sim sim-compose (or 1-6)" >&2; exit 1; }
            SKIP[$step]=1
            shift 2
            ;;
        --budget) budget=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 1 ;;
    esac
done

out=$root/target/readiness
mkdir -p "$out"
status=$out/status
: >"$status"
started=$(date +%s)
PY=/usr/bin/python3
total=${#STEPS[@]}
# Without a Docker engine the compose simulation skips itself in a second: reserve nothing for it.
if ! timeout 20 docker info >/dev/null 2>&1 || ! command -v docker-compose >/dev/null; then FLOOR[sim-compose]=0; fi

elapsed() { local s=$(($(date +%s) - started)); printf '%02d:%02d' $((s / 60)) $((s % 60)); }
progress() { echo "[readiness +$(elapsed)] $*"; }

# left_after NAME: the names of the steps after NAME that will run.
left_after() {
    local seen=0 step names=()
    for step in "${STEPS[@]}"; do
        if ((seen)) && [[ -z ${SKIP[$step]:-} ]]; then names+=("$step"); fi
        [[ $step == "$1" ]] && seen=1
    done
    echo "${names[*]:-nothing}"
}

# timeout_for NAME: min(cap, budget left - floors of the later steps).
timeout_for() {
    local name=$1 reserve=0 step later
    later=$(left_after "$name")
    # The build comes before every step.
    [[ $name == build ]] && later=$(for step in "${STEPS[@]}"; do [[ -n ${SKIP[$step]:-} ]] || echo "$step"; done)
    for step in $later; do [[ $step == nothing ]] || reserve=$((reserve + FLOOR[$step])); done
    local left=$((budget - ($(date +%s) - started) - reserve))
    ((left < CAP[$name])) && echo "$left" || echo "${CAP[$name]}"
}

# run_step K NAME COMMAND...: runs it with its timeout, a heartbeat every minute, and records
# "NAME RC SECONDS" in the status file (RC 124: timed out).
run_step() {
    local k=$1 name=$2
    shift 2
    if [[ -n ${SKIP[$name]:-} ]]; then
        progress "step $k/$total: $name SKIPPED (--skip)"
        echo "$name skipped 0" >>"$status"
        return 0
    fi
    local limit
    limit=$(timeout_for "$name")
    progress "step $k/$total: $name (timeout ${limit}s; left: $(left_after "$name"))"
    if ((limit < 30)); then
        echo "no time left in the ${budget}s budget" >"$out/$name.log"
        echo "$name 124 0" >>"$status"
        progress "step $k/$total: $name FAILED: no time left"
        return 0
    fi
    local t0 rc=0 pid
    t0=$(date +%s)
    timeout --signal=TERM --kill-after=30 "$limit" "$@" >"$out/$name.log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        kill -0 "$pid" 2>/dev/null && progress "step $k/$total: $name running ($(($(date +%s) - t0))s; $(tail -n 1 "$out/$name.log" | cut -c1-100))"
    done
    wait "$pid" || rc=$?
    echo "$name $rc $(($(date +%s) - t0))" >>"$status"
    if [[ -n ${SKIPPED_RC[$name]:-} && $rc == "${SKIPPED_RC[$name]}" ]]; then
        progress "step $k/$total: $name skipped (${SKIPPED_WHY[$name]}): $(tail -n 1 "$out/$name.log" | cut -c1-100)"
        return 0
    fi
    progress "step $k/$total: $name finished with exit status $rc in $(($(date +%s) - t0))s"
}

install_missing() {
    local missing=()
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
    command -v redis-server >/dev/null || missing+=(redis-server)
    "$PY" -c 'import matplotlib' 2>/dev/null || missing+=(python3-matplotlib)
    if ((${#missing[@]})); then
        progress "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

progress "readiness run on $(nproc) cores, budget ${budget}s; logs in $out"
install_missing
if ((build)); then
    progress "build: cargo build --release (node, bench, simulate, mock_firebase)"
    t0=$(date +%s)
    rc=0
    timeout "$(timeout_for build)" cargo build --release -p node -p bench -p sim -p integration-tests \
        --bin node --bin bench --bin simulate --bin mock_firebase >"$out/build.log" 2>&1 || rc=$?
    echo "build $rc $(($(date +%s) - t0))" >>"$status"
    progress "build finished with exit status $rc in $(($(date +%s) - t0))s"
    ((rc == 0)) || tail -n 20 "$out/build.log"
fi

run_step 1 tests scripts/test.sh
run_step 2 chaos env LARK_PROFILE=release chaos/matrix.sh --short --no-build --keep
bench_cmd() {
    if [[ ! -f bench/run.sh ]]; then
        echo "bench/run.sh is missing: no BENCH_RESULT"
        return 127
    fi
    bash bench/run.sh all --quick
}
export -f bench_cmd
run_step 3 bench bash -c bench_cmd
browser_cmd() {
    rc=0
    tests/browser/run.sh || rc=$?
    cp target/browser-artifacts/figures.json target/readiness/browser-figures.json 2>/dev/null || true
    return "$rc"
}
export -f browser_cmd
rm -f "$out/browser-figures.json"
run_step 4 browser bash -c browser_cmd
run_step 5 sim scripts/readiness/sim_run.sh "$out/sim"
run_step 6 sim-compose scripts/readiness/sim_compose.sh "$out/sim-compose"
run_step 7 report "$PY" scripts/readiness/report.py --dir "$out" --doc docs/READINESS.md --plots docs/readiness

progress "done: docs/READINESS.md"
grep -A40 '^## Summary' docs/READINESS.md | sed -n '1,30p' || true
