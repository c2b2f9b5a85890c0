#!/bin/bash
# A small stand-in for the official redis image's entry point (see redis.Dockerfile).
set -euo pipefail
if [[ $# -eq 0 || $1 == -* || $1 == *.conf ]]; then
    set -- redis-server "$@"
fi
if [[ $1 != redis-server ]]; then
    exec "$@"
fi
shift
config=()
if [[ $# -gt 0 && $1 != -* ]]; then
    config=("$1")
    shift
fi
if [[ $(id -u) == 0 ]]; then
    chown redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups \
        redis-server "${config[@]}" --bind '* -::*' --protected-mode no --dir /data --daemonize no "$@"
fi
exec redis-server "${config[@]}" --bind '* -::*' --protected-mode no --dir /data --daemonize no "$@"
