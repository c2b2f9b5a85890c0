#!/bin/bash
# Entry point of the lark node image.
#
# Without CLUSTER_ADDR it just runs the node (single node, SQLite in /data unless DATABASE_URL
# says otherwise). In cluster mode it works out what a scaled compose service cannot write by
# hand for each replica, then execs the node (so the node is PID 1 and gets SIGTERM itself):
#
# - CLUSTER_ADVERTISE / CLIENT_ADVERTISE: this container's hostname (its short id, which the
#   engine's DNS resolves on a user-defined network, also after the container was disconnected
#   and reconnected with a new IP) with the ports of CLUSTER_ADDR and BIND_ADDR.
#   LARK_ADVERTISE=ip advertises the container's IP instead.
# - SEED_NODES, when unset and LARK_DISCOVER_DNS names the service (e.g. `node`): the other
#   containers behind that DNS name. A fresh node waits until one of them is a member of a
#   cluster (its /readyz shows it is a cluster member) and joins through them. If none is, only the
#   container with the lowest IP bootstraps, and only after the set of names has been stable
#   for LARK_BOOTSTRAP_SETTLE_SECS; every other one keeps waiting, so that a stack started
#   with `--scale node=3` forms one cluster, not three. After LARK_DISCOVERY_TIMEOUT_SECS a
#   node that found no member starts anyway with every peer as a seed and keeps trying to join.
#   A node whose DATA_DIR already holds raft state (a restarted container) never bootstraps:
#   it starts at once with whatever peers resolve.
set -euo pipefail

log() { printf 'lark-entrypoint: %s\n' "$*" >&2; }

if [[ $# -eq 0 || $1 == -* ]]; then
    set -- lark-node "$@"
fi
if [[ $1 != lark-node || -z ${CLUSTER_ADDR:-} ]]; then
    exec "$@"
fi

cluster_port=${CLUSTER_ADDR##*:}
bind_addr=${BIND_ADDR:-0.0.0.0:8000}
http_port=${bind_addr##*:}
data_dir=${DATA_DIR:-/data}
self_name=${HOSTNAME:-$(cat /etc/hostname)}
# /etc/hosts maps the container's hostname to its address on each of its networks.
mapfile -t self_ips < <(getent ahostsv4 "$self_name" | awk '{print $1}' | sort -u)
if ((${#self_ips[@]} == 0)); then
    log "cannot find this container's own address (getent ahostsv4 $self_name)"
    exit 1
fi
self_ip=${self_ips[0]}

case ${LARK_ADVERTISE:-hostname} in
    ip) advertise_host=$self_ip ;;
    hostname) advertise_host=$self_name ;;
    *) log "LARK_ADVERTISE must be hostname or ip, not ${LARK_ADVERTISE}"; exit 1 ;;
esac
export CLUSTER_ADVERTISE=${CLUSTER_ADVERTISE:-$advertise_host:$cluster_port}
export CLIENT_ADVERTISE=${CLIENT_ADVERTISE:-$advertise_host:$http_port}
export NODE_ID=${NODE_ID:-$self_name}

# GET http://$1:$2$3 (bash /dev/tcp, bounded by `timeout`): prints the body, succeeds on 200.
read -r -d '' http_get_script <<'SCRIPT' || true
host=$1 port=$2 path=$3 auth=$4
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n' "$path" "$host" >&3
[[ -n $auth ]] && printf '%s\r\n' "$auth" >&3
printf '\r\n' >&3
answer=$(cat <&3)
[[ ${answer%%$'\r'*} == HTTP/1.?" 200"* ]] || exit 1
printf '%s' "${answer#*$'\r\n\r\n'}"
SCRIPT
http_get() {
    local auth=""
    if [[ -n ${METRICS_TOKEN:-} ]]; then auth="Authorization: Bearer ${METRICS_TOKEN}"; fi
    timeout 3 bash -c "$http_get_script" http_get "$1" "$2" "$3" "$auth" 2>/dev/null
}

# The other containers behind the service name, IPv4, sorted numerically.
peers() {
    getent ahostsv4 "$LARK_DISCOVER_DNS" 2>/dev/null | awk '{print $1}' | sort -u | while read -r ip; do
        local mine=0
        for own in "${self_ips[@]}"; do
            if [[ $ip == "$own" ]]; then mine=1; fi
        done
        if ((mine == 0)); then echo "$ip"; fi
    done | sort -t. -k1,1n -k2,2n -k3,3n -k4,4n
}

seeds_of() {
    local out=() ip
    for ip in "$@"; do out+=("$ip:$cluster_port"); done
    (IFS=,; echo "${out[*]}")
}

discover() {
    local settle=${LARK_BOOTSTRAP_SETTLE_SECS:-3}
    local deadline=$((SECONDS + ${LARK_DISCOVERY_TIMEOUT_SECS:-120}))
    local previous="" stable=0 ip
    if [[ -n $(ls -A "$data_dir/raft" 2>/dev/null) ]]; then
        mapfile -t found < <(peers)
        SEED_NODES=$(seeds_of "${found[@]}")
        export SEED_NODES
        log "restarting with existing raft state in $data_dir/raft; peers: ${SEED_NODES:-none}"
        return
    fi
    while true; do
        mapfile -t found < <(peers)
        local members=()
        for ip in "${found[@]}"; do
            # /readyz is public (the operator routes need METRICS_TOKEN off loopback).
            if http_get "$ip" "$http_port" /readyz | grep -Eq '"cluster_member":true'; then
                members+=("$ip")
            fi
        done
        if ((${#members[@]})); then
            # Members first: the node tries its seeds in order.
            local rest=()
            for ip in "${found[@]}"; do
                if [[ " ${members[*]} " != *" $ip "* ]]; then rest+=("$ip"); fi
            done
            SEED_NODES=$(seeds_of "${members[@]}" "${rest[@]}")
            export SEED_NODES
            log "joining through ${SEED_NODES} (members: ${members[*]})"
            return
        fi
        local everyone
        everyone=$(printf '%s\n' "$self_ip" "${found[@]}" | sort -t. -k1,1n -k2,2n -k3,3n -k4,4n | tr '\n' ' ')
        if [[ ${everyone%% *} == "$self_ip" ]]; then
            if [[ $everyone == "$previous" ]]; then stable=$((stable + 1)); else stable=0; fi
            previous=$everyone
            if ((stable >= settle)); then
                export SEED_NODES=""
                log "no cluster found among [${everyone% }] and this container ($self_ip) has the lowest address: bootstrapping"
                return
            fi
        else
            stable=0
            previous=""
        fi
        if ((SECONDS >= deadline)); then
            SEED_NODES=$(seeds_of "${found[@]}")
            export SEED_NODES
            log "no member found in time; starting with seeds ${SEED_NODES:-none} and joining in the background"
            return
        fi
        sleep 1
    done
}

if [[ -z ${SEED_NODES:-} && -n ${LARK_DISCOVER_DNS:-} ]]; then
    discover
fi
log "node $NODE_ID: cluster ${CLUSTER_ADVERTISE}, clients ${CLIENT_ADVERTISE}, seeds ${SEED_NODES:-none}"
exec "$@"
