# shellcheck shell=bash
# A local N-node lark cluster for chaos scenarios: throwaway Postgres and Redis, nodes on
# 127.0.0.11, .12, ... and functions to start, stop, kill, pause, resume, restart and
# partition them. Source it from a scenario script (which sets `set -euo pipefail`):
#
#   source chaos/cluster.sh
#   trap cluster_cleanup EXIT
#   cluster_init 3          # temp dir, Postgres, Redis, addresses
#   cluster_start           # node 1 bootstraps, the others join; waits for 3 members
#   node_kill 2; cluster_wait_members 2 20; node_restart 2; cluster_wait_members 3 30
#
# Shared services can fail too: postgres_stop / postgres_start (same port and data),
# redis_kill / redis_restart (same port), and chaos_psql runs SQL on the database.
#
# Nodes are numbered from 1. Every node's output goes to $CHAOS_DIR/n<i>.log (appended on
# restart). Environment:
#   LARK_PROFILE         cargo profile whose binaries to use: release (default) or debug
#   CHAOS_NODE_BIN       node binary [target/$LARK_PROFILE/node]
#   CHAOS_DATABASE_URL   use this Postgres database instead of a throwaway one
#   CHAOS_REDIS_URL      use this Redis instead of a throwaway one
#   CHAOS_PARTITION      auto (default): partitions are possible when root, iptables and
#                        setpriv exist (every node then runs under its own uid, 61000+i);
#                        0 disables them
#   CHAOS_KEEP           1 keeps $CHAOS_DIR (logs, raft state) even when everything passed
# Only 127.0.0.x addresses are used; everything started here is stopped by cluster_cleanup.

CHAOS_ROOT=${CHAOS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
LARK_PROFILE=${LARK_PROFILE:-release}
CHAOS_NODE_BIN=${CHAOS_NODE_BIN:-$CHAOS_ROOT/target/$LARK_PROFILE/node}
CHAOS_DIR=""
CHAOS_NODES=0
CHAOS_T0=$(date +%s%3N)
CHAOS_FAILED=0
CHAOS_PG_CTL=""
CHAOS_PG_PORT=""
CHAOS_REDIS_PID=""
CHAOS_REDIS_PORT=""
CHAOS_PARTITIONED=""
# The node the mixed scenario partitions (0: partitions are impossible here).
CHAOS_PARTITION_NODE=0
# Node i runs as uid CHAOS_UID_BASE+i when partitions are possible: iptables recognises a
# node's outgoing connections by their owner (they all leave from 127.0.0.1).
CHAOS_UID_BASE=61000
CHAOS_CHAIN_OUT="LARKCHAOS_O_$$"
CHAOS_CHAIN_IN="LARKCHAOS_I_$$"
CHAOS_CONNMARK=0x4c4b
declare -a NODE_PID NODE_IP NODE_HTTP_PORT NODE_CLUSTER_PORT NODE_PAUSED NODE_RAFT_ID NODE_UID
DATABASE_URL_CHAOS=""
REDIS_URL_CHAOS=""

now_ms() { date +%s%3N; }

# The system python starts in ~20 ms (a pyenv shim takes ten times that); used to read JSON
# because jq 1.6 rounds the 64-bit raft ids to doubles.
CHAOS_PY=$(if [[ -x /usr/bin/python3 ]]; then echo /usr/bin/python3; else command -v python3; fi)

# views URL...: one line per node, "<members> <epoch> <leader> <raft id> <member ids>" (ids
# sorted, comma-separated), or "down"; the nodes are asked concurrently with a 1 s timeout.
views() {
    "$CHAOS_PY" - "$@" <<'PY'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
def view(url):
    try:
        with urllib.request.urlopen(url + "/cluster/status", timeout=1) as answer:
            status = json.load(answer)
        m = status.get("membership") or {}
        ids = ",".join(sorted(str(member["id"]) for member in m.get("members") or []))
        return f"{len(m.get('members') or [])} {m.get('epoch')} {m.get('leader') or 'none'} {status.get('raft_node_id')} {ids or '-'}"
    except Exception:
        return "down"
with ThreadPoolExecutor(max_workers=max(1, len(sys.argv) - 1)) as pool:
    lines = list(pool.map(view, sys.argv[1:]))
try:
    print("\n".join(lines), flush=True)
except BrokenPipeError:
    pass
PY
}

# json_get EXPR: reads JSON on stdin and prints the Python expression EXPR of it (`d`), exactly.
json_get() {
    "$CHAOS_PY" -c 'import json, sys
try:
    value = eval(sys.argv[1], {}, {"d": json.load(sys.stdin)})
except Exception:
    sys.exit(1)
print("" if value is None else value)' "$1"
}

# log MESSAGE...: timestamped (wall clock and seconds since the script started).
log() {
    local now
    now=$(now_ms)
    printf '[%s +%6.2fs] %s\n' "$(date -u +%H:%M:%S.%3N)" "$((now - CHAOS_T0))e-3" "$*"
}

# Postgres refuses to run as root: its tools run as the `postgres` user when we are root.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# free_port [IP]: a port nothing listens on, below the kernel's ephemeral range (from
# net.ipv4.ip_local_port_range), so that no outgoing connection takes it while a killed node
# waits to be restarted on it (another cluster on the same addresses made that happen).
free_port() {
    "$CHAOS_PY" -c 'import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    port = random.randrange(10000, max(low, 10001))
    s = socket.socket()
    try:
        s.bind((sys.argv[1], port))
    except OSError:
        continue
    print(port)
    sys.exit(0)
s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "${1:-127.0.0.1}"
}

# port_free IP PORT: nothing listens there.
port_free() {
    "$CHAOS_PY" -c 'import socket, sys
s = socket.socket()
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)' "$1" "$2"
}

# partition_supported: root, iptables and setpriv, and a node's uid can run the node binary
# (a checkout under a private home directory cannot).
partition_supported() {
    [[ ${CHAOS_PARTITION:-auto} != 0 ]] && [[ $(id -u) -eq 0 ]] && command -v iptables >/dev/null &&
        command -v setpriv >/dev/null &&
        setpriv --reuid=$((CHAOS_UID_BASE + 1)) --regid=$((CHAOS_UID_BASE + 1)) --clear-groups -- \
            test -x "$CHAOS_NODE_BIN"
}

# cluster_init N: the temp dir, Postgres, Redis and the addresses of N nodes.
cluster_init() {
    CHAOS_NODES=${1:-3}
    CHAOS_DIR=$(mktemp -d /tmp/lark-chaos.XXXXXX)
    chmod 755 "$CHAOS_DIR"
    : >"$CHAOS_DIR/actions"
    if [[ ! -x $CHAOS_NODE_BIN ]]; then
        echo "error: node binary $CHAOS_NODE_BIN missing (cargo build --profile $LARK_PROFILE -p node)" >&2
        return 1
    fi
    start_postgres
    start_redis
    local i ip
    for ((i = 1; i <= CHAOS_NODES; i++)); do
        ip="127.0.0.$((10 + i))"
        NODE_IP[i]=$ip
        NODE_HTTP_PORT[i]=8000
        NODE_CLUSTER_PORT[i]=9000
        port_free "$ip" 8000 || NODE_HTTP_PORT[i]=$(free_port "$ip")
        port_free "$ip" 9000 || NODE_CLUSTER_PORT[i]=$(free_port "$ip")
        NODE_PID[i]=""
        NODE_PAUSED[i]=0
        NODE_RAFT_ID[i]=""
        NODE_UID[i]=""
        mkdir -p "$CHAOS_DIR/n$i"
    done
    if partition_supported; then
        # shellcheck disable=SC2034  # read by mixed.sh
        CHAOS_PARTITION_NODE=$CHAOS_NODES
        for ((i = 1; i <= CHAOS_NODES; i++)); do
            NODE_UID[i]=$((CHAOS_UID_BASE + i))
            chown -R "${NODE_UID[i]}:${NODE_UID[i]}" "$CHAOS_DIR/n$i"
        done
    fi
    log "cluster dir $CHAOS_DIR; nodes: $(for ((i = 1; i <= CHAOS_NODES; i++)); do printf 'n%d=%s ' "$i" "$(node_url "$i")"; done)"
}

start_postgres() {
    if [[ -n ${CHAOS_DATABASE_URL:-} ]]; then
        DATABASE_URL_CHAOS=$CHAOS_DATABASE_URL
        return
    fi
    local initdb_bin pg_bin pg_port
    initdb_bin=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n $initdb_bin ]] || initdb_bin=$(command -v initdb || true)
    if [[ -z $initdb_bin ]]; then
        echo "error: Postgres is not installed (apt-get install -y postgresql) and CHAOS_DATABASE_URL is not set" >&2
        return 1
    fi
    pg_bin=$(dirname "$initdb_bin")
    pg_port=$(free_port)
    CHAOS_PG_PORT=$pg_port
    mkdir -p "$CHAOS_DIR/pg"
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$CHAOS_DIR/pg"; fi
    as_pg "$pg_bin/initdb" -D "$CHAOS_DIR/pg" -U lark -A trust --no-sync >"$CHAOS_DIR/initdb.log" 2>&1 ||
        { cat "$CHAOS_DIR/initdb.log" >&2; return 1; }
    CHAOS_PG_CTL="$pg_bin/pg_ctl"
    postgres_start || return 1
    DATABASE_URL_CHAOS="postgres://lark@127.0.0.1:$pg_port/postgres"
    log "throwaway postgres on 127.0.0.1:$pg_port"
}

# postgres_start: starts the throwaway Postgres (again) on its port; waits until it accepts.
postgres_start() {
    as_pg "$CHAOS_PG_CTL" -D "$CHAOS_DIR/pg" -l "$CHAOS_DIR/pg/server.log" -w -t 60 \
        -o "-p $CHAOS_PG_PORT -k $CHAOS_DIR/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" \
        start >/dev/null || { tail -n 20 "$CHAOS_DIR/pg/server.log" >&2; return 1; }
}

# postgres_stop: a fast shutdown of the throwaway Postgres (open connections are cut).
postgres_stop() { as_pg "$CHAOS_PG_CTL" -D "$CHAOS_DIR/pg" -m fast -w -t 30 stop >/dev/null; }

# chaos_psql: runs the SQL on stdin against the cluster's database; prints the results unaligned.
chaos_psql() {
    local psql_bin
    psql_bin=$(if [[ -n $CHAOS_PG_CTL ]]; then echo "$(dirname "$CHAOS_PG_CTL")/psql"; else command -v psql; fi)
    "$psql_bin" "$DATABASE_URL_CHAOS" -X -q -At -v ON_ERROR_STOP=1 "$@"
}

start_redis() {
    if [[ -n ${CHAOS_REDIS_URL:-} ]]; then
        REDIS_URL_CHAOS=$CHAOS_REDIS_URL
        return
    fi
    if ! command -v redis-server >/dev/null; then
        log "redis-server not installed: nodes run without Redis (in-memory presence)"
        return
    fi
    CHAOS_REDIS_PORT=$(free_port)
    redis_restart || return 1
    REDIS_URL_CHAOS="redis://127.0.0.1:$CHAOS_REDIS_PORT"
    log "throwaway redis on 127.0.0.1:$CHAOS_REDIS_PORT"
}

# redis_restart: starts the throwaway Redis (again) on its port, empty; waits until it answers.
redis_restart() {
    redis-server --port "$CHAOS_REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$CHAOS_DIR" \
        --logfile "$CHAOS_DIR/redis.log" &
    CHAOS_REDIS_PID=$!
    local _
    for _ in $(seq 1 100); do
        if redis-cli -p "$CHAOS_REDIS_PORT" ping >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    log "redis did not answer on port $CHAOS_REDIS_PORT within 10 s"
    return 1
}

# redis_kill: kill -9 of the throwaway Redis (its data is gone: it keeps nothing on disk).
redis_kill() {
    [[ -n $CHAOS_REDIS_PID ]] || return 0
    kill -KILL "$CHAOS_REDIS_PID" 2>/dev/null || true
    wait "$CHAOS_REDIS_PID" 2>/dev/null || true
    CHAOS_REDIS_PID=""
}

node_url() { echo "http://${NODE_IP[$1]}:${NODE_HTTP_PORT[$1]}"; }
node_cluster_addr() { echo "${NODE_IP[$1]}:${NODE_CLUSTER_PORT[$1]}"; }
node_alive() { [[ -n ${NODE_PID[$1]} ]] && kill -0 "${NODE_PID[$1]}" 2>/dev/null; }

# all_urls: the HTTP base of every node, comma-separated.
all_urls() {
    local i urls=()
    for ((i = 1; i <= CHAOS_NODES; i++)); do urls+=("$(node_url "$i")"); done
    local IFS=,
    echo "${urls[*]}"
}

# node_start I: spawns node I, joining through the other running nodes (none: bootstrap).
node_start() {
    local i=$1 j seeds=()
    for ((j = 1; j <= CHAOS_NODES; j++)); do
        if ((j != i)) && node_alive "$j"; then seeds+=("$(node_cluster_addr "$j")"); fi
    done
    local seed_list
    seed_list=$(IFS=,; echo "${seeds[*]}")
    local -a prefix=()
    if [[ -n ${NODE_UID[i]} ]]; then
        prefix=(setpriv "--reuid=${NODE_UID[i]}" "--regid=${NODE_UID[i]}" --clear-groups --)
    fi
    echo "=== $(date -u +%FT%T.%3NZ) starting n$i (seeds: ${seed_list:-none}) ===" >>"$CHAOS_DIR/n$i.log"
    (
        cd "$CHAOS_DIR/n$i" || exit 1
        exec env HOME="$CHAOS_DIR/n$i" BIND_ADDR="${NODE_IP[i]}:${NODE_HTTP_PORT[i]}" NODE_ID="n$i" \
            DATABASE_URL="$DATABASE_URL_CHAOS" REDIS_URL="$REDIS_URL_CHAOS" JWT_SECRET=chaos-jwt-secret \
            CLUSTER_ADDR="$(node_cluster_addr "$i")" CLUSTER_SECRET=chaos-cluster-secret SEED_NODES="$seed_list" \
            DATA_DIR="$CHAOS_DIR/n$i/data" RAFT_HEARTBEAT_MS=100 RAFT_ELECTION_MIN_MS=400 RAFT_ELECTION_MAX_MS=800 \
            DEAD_AFTER_MS=1500 SHUTDOWN_GRACE_MS=1000 ACCESS_TOKEN_TTL_SECS=7200 \
            WS_RATE_PER_SEC=1000 WS_RATE_BURST=2000 LOGIN_RATE_PER_MIN=1000000 SIGNUP_RATE_PER_HOUR=1000000 RUST_LOG="${CHAOS_RUST_LOG:-info,sqlx=warn,tower_http=warn}" \
            "${prefix[@]}" "$CHAOS_NODE_BIN"
    ) >>"$CHAOS_DIR/n$i.log" 2>&1 &
    NODE_PID[i]=$!
    NODE_PAUSED[i]=0
}

# node_wait_ready I [SECONDS]: until GET /readyz answers 200; fails if the node died.
node_wait_ready() {
    local i=$1 limit=${2:-60} deadline
    deadline=$(($(now_ms) + limit * 1000))
    while (($(now_ms) < deadline)); do
        if ! node_alive "$i"; then
            log "n$i exited during startup; last lines of its log:"
            tail -n 20 "$CHAOS_DIR/n$i.log" >&2
            return 1
        fi
        if curl -sf --max-time 1 "$(node_url "$i")/readyz" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    log "n$i not ready after ${limit}s"
    return 1
}

# node_status I: the /cluster/status JSON of node I (fails if it does not answer within 1 s).
node_status() { curl -sf --max-time 1 "$(node_url "$1")/cluster/status"; }

# node_raft_id I: the raft id of node I (cached; the id lives in DATA_DIR and survives restarts).
node_raft_id() {
    local i=$1
    if [[ -z ${NODE_RAFT_ID[i]} ]]; then
        NODE_RAFT_ID[i]=$(node_status "$i" | json_get 'd["raft_node_id"]' || true)
    fi
    echo "${NODE_RAFT_ID[i]}"
}

# node_index_of RAFT_ID: the node number with that raft id (empty if unknown).
node_index_of() {
    local i
    for ((i = 1; i <= CHAOS_NODES; i++)); do
        if [[ ${NODE_RAFT_ID[i]} == "$1" ]]; then
            echo "$i"
            return
        fi
    done
}

# node_stop I: SIGTERM (the node leaves the cluster and closes sockets with 1012), then waits.
node_stop() {
    local i=$1 pid=${NODE_PID[$1]} _
    [[ -n $pid ]] || return 0
    if ((NODE_PAUSED[i])); then kill -CONT "$pid" 2>/dev/null || true; fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    NODE_PID[i]=""
    NODE_PAUSED[i]=0
}

# node_kill I: SIGKILL, no goodbye.
node_kill() {
    local i=$1 pid=${NODE_PID[$1]}
    [[ -n $pid ]] || return 0
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    NODE_PID[i]=""
    NODE_PAUSED[i]=0
}

node_pause() { kill -STOP "${NODE_PID[$1]}" && NODE_PAUSED[$1]=1; }
node_resume() { kill -CONT "${NODE_PID[$1]}" && NODE_PAUSED[$1]=0; }

# node_restart I [SECONDS]: starts node I again with its data dir and waits until ready.
node_restart() {
    node_start "$1"
    node_wait_ready "$1" "${2:-60}"
}

# live_nodes: running, not paused nodes.
live_nodes() {
    local i
    for ((i = 1; i <= CHAOS_NODES; i++)); do
        if node_alive "$i" && ((!NODE_PAUSED[i])); then echo "$i"; fi
    done
}

# membership_line I: "<members> <epoch> <leader> <raft id>" as node I sees it, or "down".
membership_line() { views "$(node_url "$1")"; }

# cluster_members_agree K [NODES...]: every given node (default: all live) sees K members, one
# epoch and a leader.
cluster_members_agree() {
    local want=$1 line members epoch leader _ first_epoch="" urls=() i
    shift
    local nodes=("$@")
    ((${#nodes[@]})) || mapfile -t nodes < <(live_nodes)
    for i in "${nodes[@]}"; do urls+=("$(node_url "$i")"); done
    local lines
    mapfile -t lines < <(views "${urls[@]}")
    for line in "${lines[@]}"; do
        read -r members epoch leader _ <<<"$line"
        [[ $members == "$want" && $leader != none ]] || return 1
        [[ -z $first_epoch || $first_epoch == "$epoch" ]] || return 1
        first_epoch=$epoch
    done
}

# cluster_wait_members K SECONDS [NODES...]: waits until the nodes agree on K members; prints
# the milliseconds waited; fails (printing the last views) after SECONDS.
cluster_wait_members() {
    local want=$1 limit=$2 start deadline i
    shift 2
    start=$(now_ms)
    deadline=$((start + limit * 1000))
    while (($(now_ms) < deadline)); do
        if cluster_members_agree "$want" "$@"; then
            echo $(($(now_ms) - start))
            return 0
        fi
        sleep 0.05
    done
    local nodes=("$@")
    ((${#nodes[@]})) || mapfile -t nodes < <(live_nodes)
    for i in "${nodes[@]}"; do
        log "  n$i sees (members epoch leader self member-ids): $(membership_line "$i")" >&2
    done
    return 1
}

# cluster_wait_set SECONDS NODE...: waits until every live node sees exactly the given nodes as
# members (one epoch, a leader); prints the milliseconds waited; fails after SECONDS.
cluster_wait_set() {
    local limit=$1 start want i ids=() urls=() lines line members epoch leader _ seen ok first
    shift
    for i in "$@"; do ids+=("$(node_raft_id "$i")"); done
    want=$(printf '%s\n' "${ids[@]}" | sort | paste -sd, -)
    for i in $(live_nodes); do urls+=("$(node_url "$i")"); done
    start=$(now_ms)
    while (($(now_ms) - start < limit * 1000)); do
        mapfile -t lines < <(views "${urls[@]}")
        ok=1 first=""
        for line in "${lines[@]}"; do
            read -r members epoch leader _ seen <<<"$line"
            if [[ $seen != "$want" || $leader == none || (-n $first && $first != "$epoch") ]]; then ok=0; fi
            first=$epoch
        done
        if ((ok)); then
            echo $(($(now_ms) - start))
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# cluster_leader: the raft id of the leader as the first live node that knows one sees it.
cluster_leader() {
    local i leader
    for i in $(live_nodes); do
        leader=$(node_status "$i" 2>/dev/null | json_get 'd["membership"]["leader"]' 2>/dev/null || true)
        if [[ -n $leader ]]; then
            echo "$leader"
            return
        fi
    done
}

# cluster_owner KEY: the raft id owning an actor key (e.g. channel:<uuid>), asked of a live node.
cluster_owner() {
    local i owner
    for i in $(live_nodes); do
        owner=$(curl -sf --max-time 1 "$(node_url "$i")/cluster/owner?key=$1" | json_get 'd["owner"]' 2>/dev/null || true)
        if [[ -n $owner ]]; then
            echo "$owner"
            return
        fi
    done
}

# cluster_start [K]: node 1 bootstraps, nodes 2..K (default all) join one by one; waits until
# the K agree on K members.
cluster_start() {
    local i waited count=${1:-$CHAOS_NODES}
    for ((i = 1; i <= count; i++)); do
        node_start "$i"
        node_wait_ready "$i" 60 || return 1
    done
    waited=$(cluster_wait_members "$count" 60) || { log "the cluster did not form"; return 1; }
    for ((i = 1; i <= count; i++)); do node_raft_id "$i" >/dev/null; done
    log "cluster of $count formed (+${waited} ms after the last node was ready): raft ids $(
        for ((i = 1; i <= count; i++)); do printf 'n%d=%s ' "$i" "${NODE_RAFT_ID[i]}"; done
    )leader $(cluster_leader)"
}

# partition_node I: silently drops all cluster traffic between node I and the others (HTTP and
# WebSocket traffic of clients, Postgres and Redis still flow). Needs root, iptables and node I
# running under its own uid (every node does when partitions are possible): its outgoing
# connections leave from 127.0.0.1, so they are recognised by their owner, marked, and dropped
# on arrival.
partition_node() {
    local i=$1 j
    if [[ -z ${NODE_UID[i]} ]]; then
        log "partition of n$i not possible (nodes run under their own uid only with root, iptables and setpriv)"
        return 1
    fi
    CHAOS_PARTITIONED=$i
    iptables -N "$CHAOS_CHAIN_OUT" && iptables -N "$CHAOS_CHAIN_IN" || return 1
    local mark=(-j CONNMARK --set-mark "$CHAOS_CONNMARK")
    for ((j = 1; j <= CHAOS_NODES; j++)); do
        ((j != i)) || continue
        # node I dials node J
        iptables -A "$CHAOS_CHAIN_OUT" -p tcp -m owner --uid-owner "${NODE_UID[i]}" \
            -d "${NODE_IP[j]}" --dport "${NODE_CLUSTER_PORT[j]}" "${mark[@]}" || return 1
    done
    # anyone dials node I, and node I answers on its listener
    iptables -A "$CHAOS_CHAIN_OUT" -p tcp -d "${NODE_IP[i]}" --dport "${NODE_CLUSTER_PORT[i]}" "${mark[@]}" &&
        iptables -A "$CHAOS_CHAIN_OUT" -p tcp -s "${NODE_IP[i]}" --sport "${NODE_CLUSTER_PORT[i]}" "${mark[@]}" &&
        iptables -A "$CHAOS_CHAIN_IN" -m connmark --mark "$CHAOS_CONNMARK" -j DROP &&
        iptables -I OUTPUT 1 -j "$CHAOS_CHAIN_OUT" &&
        iptables -I INPUT 1 -j "$CHAOS_CHAIN_IN"
}

# partition_heal: removes the rules (also run by cluster_cleanup).
partition_heal() {
    [[ -n $CHAOS_PARTITIONED ]] || return 0
    iptables -D OUTPUT -j "$CHAOS_CHAIN_OUT" 2>/dev/null || true
    iptables -D INPUT -j "$CHAOS_CHAIN_IN" 2>/dev/null || true
    iptables -F "$CHAOS_CHAIN_OUT" 2>/dev/null || true
    iptables -F "$CHAOS_CHAIN_IN" 2>/dev/null || true
    iptables -X "$CHAOS_CHAIN_OUT" 2>/dev/null || true
    iptables -X "$CHAOS_CHAIN_IN" 2>/dev/null || true
    CHAOS_PARTITIONED=""
}

# node_log_problems I [LINES]: the last LINES WARN/ERROR/panic lines of node I's log outside
# openraft (whose retries and vote changes are counted instead), colours stripped.
node_log_problems() {
    local plain
    plain=$(sed -E 's/\x1b\[[0-9;]*m//g' "$CHAOS_DIR/n$1.log" 2>/dev/null | grep -aE ' (ERROR|WARN) |panicked' || true)
    grep -v 'openraft::' <<<"$plain" | tail -n "${2:-8}" || true
    echo "($(grep -c 'openraft::' <<<"$plain" || true) WARN/ERROR lines from openraft not shown)"
}

# cluster_cleanup: heals partitions, stops every node, Postgres and Redis; removes the temp
# dir unless something failed (CHAOS_FAILED=1) or CHAOS_KEEP=1.
cluster_cleanup() {
    local i
    partition_heal
    for ((i = 1; i <= CHAOS_NODES; i++)); do
        if [[ -n ${NODE_PID[i]:-} ]]; then
            kill -CONT "${NODE_PID[i]}" 2>/dev/null || true
            kill -KILL "${NODE_PID[i]}" 2>/dev/null || true
            wait "${NODE_PID[i]}" 2>/dev/null || true
            NODE_PID[i]=""
        fi
    done
    if [[ -n $CHAOS_PG_CTL && -n $CHAOS_DIR ]]; then
        as_pg "$CHAOS_PG_CTL" -D "$CHAOS_DIR/pg" -m immediate stop >/dev/null 2>&1 || true
        CHAOS_PG_CTL=""
    fi
    if [[ -n $CHAOS_REDIS_PID ]]; then
        kill "$CHAOS_REDIS_PID" 2>/dev/null || true
        wait "$CHAOS_REDIS_PID" 2>/dev/null || true
        CHAOS_REDIS_PID=""
    fi
    if [[ -n $CHAOS_DIR && -d $CHAOS_DIR ]]; then
        if ((CHAOS_FAILED)) || [[ ${CHAOS_KEEP:-0} == 1 ]]; then
            echo "kept $CHAOS_DIR (node logs n<i>.log, checker.log, actions)"
        else
            rm -rf "$CHAOS_DIR"
        fi
    fi
}
