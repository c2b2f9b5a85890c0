# shellcheck shell=bash
# Helpers shared by deploy/test-compose.sh and chaos/compose.sh (source it; bash only). They
# are safe under `set -euo pipefail`: a node that does not answer reads as "- - -".
# Expects LARK_ROOT (the repository) and LARK_PROJECT (the compose project name) to be set.

now_ms() { date +%s%3N; }

lark_compose() { docker-compose -p "$LARK_PROJECT" -f "$LARK_ROOT/docker-compose.yml" "$@"; }

# Random secrets for a throwaway stack, unless the caller already has some.
lark_secrets() {
    export JWT_SECRET=${JWT_SECRET:-$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | cut -c1-40)}
    export CLUSTER_SECRET=${CLUSTER_SECRET:-$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | cut -c1-40)}
}

# Selects the offline images written by deploy/build-images.sh.
lark_offline_images() {
    set -a
    # shellcheck disable=SC1091
    . "$LARK_ROOT/target/docker/images.env"
    set +a
}

# Node containers of the project that run and are not paused (ids). `docker ps` with compose's
# labels rather than `docker-compose ps`, which takes a second to start.
running_nodes() {
    docker ps -q --no-trunc --filter "label=com.docker.compose.project=$LARK_PROJECT" \
        --filter label=com.docker.compose.service=node --filter status=running
}

# Every node container of the project, stopped or paused ones too.
all_nodes() {
    docker ps -aq --no-trunc --filter "label=com.docker.compose.project=$LARK_PROJECT" \
        --filter label=com.docker.compose.service=node
}

container_name() { docker inspect -f '{{.Name}}' "$1" | sed 's,^/,,'; }

# GET http://127.0.0.1:8000$2 inside container $1 (bash /dev/tcp, bounded); prints the body.
node_get() {
    local auth=""
    [[ -n ${METRICS_TOKEN:-} ]] && auth="Authorization: Bearer $METRICS_TOKEN"
    # shellcheck disable=SC2016 # expanded by the bash inside the container
    timeout 3 docker exec "$1" bash -c '
        exec 3<>/dev/tcp/127.0.0.1/8000 || exit 1
        printf "GET %s HTTP/1.0\r\nHost: localhost\r\n" "$0" >&3
        [[ -n $1 ]] && printf "%s\r\n" "$1" >&3
        printf "\r\n" >&3
        answer=$(timeout 2 cat <&3)
        printf "%s" "${answer#*$'"'"'\r\n\r\n'"'"'}"' "$2" "$auth" 2>/dev/null
}

# "<members> <epoch> <leader or -> <node_id> <is_leader> <sockets>" as container $1 sees it.
membership_of() {
    { node_get "$1" /cluster/status || true; } | python3 -c '
import json, sys
try:
    s = json.load(sys.stdin)
    m = s.get("membership") or {}
    print(len(m.get("members") or []), m.get("epoch", "-"), m.get("leader") or "-", s.get("node_id", "-"),
          str(m.get("is_leader", False)).lower(), s.get("sockets", 0))
except Exception:
    print("- - - - false 0")'
}

# Run inside a node container: polls its own /cluster/status every 50 ms until it sees $1
# members and a leader, then prints the time (unix ms; containers share the host's clock).
# Gives up after $2 ms. Polling inside the container keeps `docker exec`'s own latency out
# of the measured times.
read -r -d '' in_container_wait <<'SCRIPT' || true
want=$1 limit=$2 auth=$3
start=$(date +%s%3N)
while true; do
    body=$(
        exec 3<>/dev/tcp/127.0.0.1/8000 || exit 0
        printf 'GET /cluster/status HTTP/1.0\r\nHost: localhost\r\n' >&3
        [[ -n $auth ]] && printf '%s\r\n' "$auth" >&3
        printf '\r\n' >&3
        timeout 1 cat <&3
    )
    members=$(grep -o '"cluster_addr"' <<<"$body" | wc -l)
    if [[ $members == "$want" ]] && grep -q '"leader":[0-9]' <<<"$body"; then
        date +%s%3N
        exit 0
    fi
    (($(date +%s%3N) - start > limit)) && exit 1
    sleep 0.05
done
SCRIPT

# wait_members N LIMIT_S [SINCE_MS]: waits until every running node sees N members, a leader
# and one epoch; prints the ms from SINCE_MS (default: now) to the moment the last node saw
# it. Fails (and shows the views) after LIMIT_S seconds.
wait_members() {
    local want=$1 limit=${2:-60} since=${3:-$(now_ms)} deadline id epochs last tmp
    local auth=""
    [[ -n ${METRICS_TOKEN:-} ]] && auth="Authorization: Bearer $METRICS_TOKEN"
    deadline=$(($(now_ms) + limit * 1000))
    tmp=$(mktemp -d)
    while (($(now_ms) < deadline)); do
        local ids=() pids=()
        mapfile -t ids < <(running_nodes)
        for id in "${ids[@]}"; do
            docker exec "$id" bash -c "$in_container_wait" wait "$want" $((deadline - $(now_ms))) "$auth" \
                >"$tmp/$id" 2>/dev/null &
            pids+=($!)
        done
        local failed=0
        for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
        if ((failed == 0 && ${#ids[@]} > 0)); then
            epochs=$(for id in "${ids[@]}"; do membership_of "$id"; done | awk '{print $1, $2}' | sort -u)
            if [[ $(wc -l <<<"$epochs") == 1 && $epochs == "$want "* ]]; then
                last=$(cat "$tmp"/* | sort -n | tail -1)
                rm -rf "$tmp"
                echo $((last - since))
                return 0
            fi
        fi
        sleep 0.2
    done
    rm -rf "$tmp"
    echo "membership did not reach $want members within ${limit}s:" >&2
    for id in $(running_nodes); do echo "  $(container_name "$id"): $(membership_of "$id")" >&2; done
    return 1
}

# wait_seen_by CONTAINER N LIMIT_S [SINCE_MS]: waits until that (surviving) node sees N
# members; prints the ms from SINCE_MS (default: now).
wait_seen_by() {
    local id=$1 want=$2 limit=${3:-30} since=${4:-$(now_ms)} at auth=""
    [[ -n ${METRICS_TOKEN:-} ]] && auth="Authorization: Bearer $METRICS_TOKEN"
    if at=$(docker exec "$id" bash -c "$in_container_wait" wait "$want" $((limit * 1000)) "$auth" 2>/dev/null); then
        echo $((at - since))
        return 0
    fi
    echo "$(container_name "$id") did not see $want members within ${limit}s: $(membership_of "$id")" >&2
    return 1
}

# The running node container that leads or, with "follower", the follower holding the most
# client sockets (so that the fault hits clients).
pick_node() {
    local role=$1 id is_leader sockets best="" most=-1
    for id in $(running_nodes); do
        read -r _ _ _ _ is_leader sockets <<<"$(membership_of "$id")"
        if [[ $role == leader && $is_leader == true ]]; then
            echo "$id"
            return 0
        fi
        if [[ $role == follower && $is_leader != true ]] && ((sockets > most)); then
            best=$id most=$sockets
        fi
    done
    [[ -n $best ]] && echo "$best"
}

# The network the project's containers are on.
project_network() { docker inspect -f '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}' "$1" | awk '{print $1}'; }

image_size_mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.1f", $1 / 1e6}'; }
