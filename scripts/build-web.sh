#!/usr/bin/env bash
# Builds the web client (web/src: TypeScript + React) into web/dist with Debian's esbuild and
# React (no npm registry needed); the node embeds web/dist, so a fresh clone serves the client
# without any JavaScript toolchain.
#
#   scripts/build-web.sh           type-check (tsc), unit-test (node --test), build into web/dist
#   scripts/build-web.sh --check   build into a temp dir and fail if web/dist differs (stale bundle)
#
# The output is deterministic: fixed file names, content hashes (not times) in index.html
# query strings, and gzip -n (no name, no time stamp) for the precompressed copies.
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
[[ ${1:-} == --check ]] && check=1

need=()
command -v esbuild >/dev/null || need+=(esbuild)
[[ -f /usr/share/nodejs/react/index.js ]] || need+=(node-react)
[[ -f /usr/share/nodejs/react-dom/client.js ]] || need+=(node-react-dom)
command -v tsc >/dev/null || need+=(node-typescript)
command -v node >/dev/null || need+=(nodejs)
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    if [[ $(id -u) -ne 0 ]]; then
        echo "error: run as root or: apt-get install -y ${need[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ((check)); then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
else
    out=web/dist
    rm -rf "$out"
fi
mkdir -p "$out/assets"

# Type errors fail the build (esbuild only strips types).
tsc -p web/tsconfig.json

export NODE_PATH=/usr/share/nodejs
# Unit tests of the pure modules (channel cache, roster rules) with node's test runner.
tests=$(mktemp -d)
esbuild web/test/*.test.ts --bundle --platform=node --format=esm --outdir="$tests" \
    --out-extension:.js=.mjs --log-level=warning
node --test "$tests"/*.mjs >"$tests/report.txt" 2>&1 || { cat "$tests/report.txt" >&2; rm -rf "$tests"; exit 1; }
echo "web-unit: $(awk '/^# pass/ {p=$3} /^# fail/ {f=$3} END {print p " passed, " f " failed"}' "$tests/report.txt")"
rm -rf "$tests"
esbuild web/src/main.tsx --bundle --minify --format=iife --target=es2020 --jsx=automatic \
    --define:process.env.NODE_ENV='"production"' --legal-comments=none --charset=utf8 \
    --log-level=warning --outfile="$out/assets/app.js"
esbuild web/src/styles.css --bundle --minify --log-level=warning --outfile="$out/assets/app.css"
cp web/favicon.svg "$out/assets/favicon.svg"

js_hash=$(sha256sum "$out/assets/app.js" | cut -c1-12)
css_hash=$(sha256sum "$out/assets/app.css" | cut -c1-12)
sed -e "s/__JS_HASH__/$js_hash/" -e "s/__CSS_HASH__/$css_hash/" web/index.html >"$out/index.html"
for file in "$out/assets/app.js" "$out/assets/app.css"; do
    gzip -9 -n -c "$file" >"$file.gz"
done

if ((check)); then
    if ! diff -r "$out" web/dist >/dev/null; then
        echo "error: web/dist is stale: run scripts/build-web.sh and commit web/dist" >&2
        diff -rq "$out" web/dist >&2 || true
        exit 1
    fi
    echo "web/dist is up to date"
fi
for file in app.js app.css; do
    printf '%-8s %7d bytes, %6d gzip\n' "$file" "$(stat -c %s "$out/assets/$file")" "$(stat -c %s "$out/assets/$file.gz")"
done
