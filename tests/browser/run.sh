#!/usr/bin/env bash
# The web client's browser tests: Playwright for Python driving Debian's chromium (fake camera
# and microphone, no browser download) against a 3-node cluster on a throwaway Postgres and
# Redis. Installs what is missing (chromium, a venv with playwright and pytest), builds the
# node if needed, then runs everything inside a private network namespace whose only
# interface is loopback, so WebRTC media stays on 127.0.0.1 and nothing leaves the machine.
#
#   tests/browser/run.sh [pytest args]
#   KILL_RUNS=6 tests/browser/run.sh   also kills a room's node 6 more times (room on the raft
#                                      leader, then a follower, alternating) for the figures
#
# Screenshots, figures.json and the nodes' logs go to $ARTIFACTS (target/browser-artifacts).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export ARTIFACTS=${ARTIFACTS:-$root/target/browser-artifacts}
if [[ -z ${NODE_BIN:-} ]]; then
    NODE_BIN=$root/target/release/node
    [[ -x $NODE_BIN || ! -x $root/target/debug/node ]] || NODE_BIN=$root/target/debug/node
fi
# Nodes run in folders of their own: the binary's path must not depend on the cwd.
NODE_BIN=$(realpath -m "$NODE_BIN")
export NODE_BIN
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

apt_install() {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
missing=()
[[ -x $CHROMIUM ]] || missing+=(chromium)
command -v ip >/dev/null || missing+=(iproute2)
command -v redis-server >/dev/null || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
# Emoji in the screenshots (optional: the tests do not depend on it).
[[ -d /usr/share/fonts/truetype/noto ]] || apt_install fonts-noto-color-emoji || true

venv=$root/target/browser-venv
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
fi
"$venv/bin/python" -c 'import playwright, pytest' 2>/dev/null ||
    "$venv/bin/pip" install -q 'playwright==1.65.*' 'pytest==8.*'

[[ -x $NODE_BIN ]] || cargo build --release -p node # the default NODE_BIN

rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
echo "browser test artifacts: $ARTIFACTS"
cmd=("$venv/bin/python" -m pytest -p no:cacheprovider -q -s tests/browser/test_web.py "$@")
if [[ $(id -u) -eq 0 ]] && command -v unshare >/dev/null; then
    # shellcheck disable=SC2016
    # LARK_NETNS tells the test it may firewall media with iptables (this namespace only).
    unshare --net -- env LARK_NETNS=1 bash -c 'ip link set lo up && exec "$@"' _ "${cmd[@]}"
else
    echo "warning: not root: running without a private network namespace" >&2
    "${cmd[@]}"
fi
