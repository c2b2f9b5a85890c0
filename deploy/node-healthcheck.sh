#!/bin/bash
# Docker HEALTHCHECK of a lark node: GET /readyz on the node's own HTTP port must answer 200.
# Plain bash (/dev/tcp), so that the image needs no curl.
port=${BIND_ADDR:-0.0.0.0:8000}
port=${port##*:}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /readyz HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 2 status <&3 || exit 1
[[ $status == HTTP/1.?" 200"* ]]
