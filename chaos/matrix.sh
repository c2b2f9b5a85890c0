#!/usr/bin/env bash
# The chaos matrix: runs chaos/run.sh scenarios one after the other, each on a fresh cluster,
# and prints one table (scenario x lost/dup/order/mismatch/behind/never-resumed/resume
# p50-max/recovery/rejoin/verdict).
#
#   chaos/matrix.sh [--short | --full | --self-test] [--repeat N] [--build | --no-build] [--keep]
#
#   --short      restart-fast, double-kill and the checker's self-test (mutate): what CI runs,
#                about 2-3 minutes on 2 cores after the build
#   --full       (default) all seven fault scenarios and the self-test
#   --self-test  only the self-test
#   --repeat N   the whole list N times in a row (1..10)
#
# The self-test (mutate) deletes and rewrites rows in the database mid-run: the checker MUST
# fail there, and the matrix counts that row as passed only then. Exit status: 0 every
# scenario passed (SKIPPED ones are listed and do not count as passed or failed); 1 otherwise.
# Logs of every run are in $MATRIX_DIR (kept when something failed, or with --keep).
# LARK_PROFILE=debug runs the binaries of the debug build (what CI does: the guarantees are
# the same; the timing figures are not a release build's).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

SHORT="restart-fast double-kill mutate"
FULL="restart-fast double-kill sigstop-owner partition leader-join postgres-restart redis-kill mutate"
# One scenario never needs longer than this (fault, recovery, drain and cleanup included).
RUN_LIMIT_SECONDS=300
list=$FULL repeat=1 build=auto keep=0
while (($#)); do
    case $1 in
        --short) list=$SHORT; shift ;;
        --full) list=$FULL; shift ;;
        --self-test) list=mutate; shift ;;
        --repeat) repeat=$2; shift 2 ;;
        --build) build=always; shift ;;
        --no-build) build=never; shift ;;
        --keep) keep=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 1 ;;
    esac
done
if ! [[ $repeat =~ ^[0-9]+$ ]] || ((repeat < 1 || repeat > 10)); then
    echo "--repeat must be 1..10" >&2
    exit 1
fi

PY=$(if [[ -x /usr/bin/python3 ]]; then echo /usr/bin/python3; else command -v python3; fi)
MATRIX_DIR=$(mktemp -d /tmp/lark-matrix.XXXXXX)
run_pid=""
failed=0

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $run_pid ]] && kill -0 "$run_pid" 2>/dev/null; then
        # run.sh cleans up its cluster on TERM (its own trap).
        kill -TERM "$run_pid" 2>/dev/null || true
        wait "$run_pid" 2>/dev/null || true
    fi
    if ((rc != 0 || failed || keep)); then
        echo "matrix logs kept in $MATRIX_DIR"
    else
        rm -rf "$MATRIX_DIR"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'echo "interrupted"; exit 130' INT TERM

export LARK_PROFILE=${LARK_PROFILE:-release}
if [[ $build == always ]] || { [[ $build == auto ]] && [[ ! -x target/$LARK_PROFILE/node || ! -x target/$LARK_PROFILE/bench ]]; }; then
    echo "building: cargo build --profile $LARK_PROFILE -p node -p bench"
    cargo build --profile "$LARK_PROFILE" -p node -p bench
fi

started=$(date +%s)
keep_flag=()
((keep)) && keep_flag=(--keep)
for ((round = 1; round <= repeat; round++)); do
    for scenario in $list; do
        log_file="$MATRIX_DIR/round$round-$scenario.log"
        echo "[$(date -u +%H:%M:%S) +$(($(date +%s) - started))s] round $round/$repeat: $scenario (log $log_file)"
        rc=0
        timeout --signal=TERM --kill-after=30 "$RUN_LIMIT_SECONDS" \
            chaos/run.sh --scenario "$scenario" --no-build "${keep_flag[@]}" >"$log_file" 2>&1 &
        run_pid=$!
        wait "$run_pid" || rc=$?
        run_pid=""
        line=$(grep -a '^scenario .*: ' "$log_file" | tail -n 1 || true)
        echo "    ${line:-no result (exit $rc): see $log_file}"
        if ((rc == 124)); then echo "    TIMED OUT after $RUN_LIMIT_SECONDS s"; fi
        if ((rc != 0 && rc != 3)); then
            failed=1
            grep -a '^kept ' "$log_file" | sed 's/^/    /' || true
        fi
        echo "$round $scenario $rc $(grep -a '^CHAOS_SCENARIO ' "$log_file" | tail -n 1 | cut -d' ' -f3- || true)" \
            >>"$MATRIX_DIR/results"
    done
done

echo
"$PY" - "$MATRIX_DIR/results" "$repeat" <<'PY'
import json, sys
rows = []
for line in open(sys.argv[1]):
    round_, name, rc, *rest = line.rstrip("\n").split(" ", 3)
    data = json.loads(rest[0]) if rest and rest[0].strip() else {}
    rows.append((int(round_), name, int(rc), data))
ms = lambda v: "-" if v is None else str(v)
header = ["round", "scenario", "lost", "dup", "order", "mismatch", "behind", "never-res", "resume p50/max ms",
          "recovery ms", "rejoin ms", "verdict"]
table = [header]
for round_, name, rc, d in rows:
    verdict = d.get("verdict") or f"FAIL (exit {rc}, no result)"
    if rc == 124:
        verdict = "FAIL (timed out)"
    if name == "mutate" and d.get("verdict") == "PASS":
        verdict = "PASS (checker failed, as it must)"
    if d.get("verdict") == "SKIPPED":
        table.append([str(round_), name] + ["-"] * 9 + ["SKIPPED: " + d.get("reason", "")])
        continue
    table.append([str(round_), name + (" (self-test)" if name == "mutate" else ""), ms(d.get("lost")),
                  ms(d.get("duplicates")), ms(d.get("order")), ms(d.get("content_mismatches")), ms(d.get("behind")),
                  ms(d.get("never_resumed")), f"{ms(d.get('resume_p50_ms'))}/{ms(d.get('resume_max_ms'))}",
                  "never" if d and d.get("recovery_ms") is None else ms(d.get("recovery_ms")),
                  ms(d.get("rejoin_ms")), verdict])
widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
for index, row in enumerate(table):
    print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    if index == 0:
        print("  ".join("-" * width for width in widths) + "  " + "-" * 7)
failed = [f"{name} (round {r})" for r, name, rc, _ in rows if rc not in (0, 3)]
skipped = sorted({name for _, name, rc, _ in rows if rc == 3})
print()
print(f"matrix: {len(rows) - len(failed) - sum(rc == 3 for _, _, rc, _ in rows)} passed, {len(failed)} failed"
      + (f", skipped: {', '.join(skipped)}" if skipped else "")
      + (f"; FAILED: {', '.join(failed)}" if failed else ""))
PY
echo "matrix took $(($(date +%s) - started)) s"
((failed == 0)) || exit 1
