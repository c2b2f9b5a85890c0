#!/usr/bin/env bash
# Builds every image docker-compose.yml needs on a machine with a Docker engine and Debian's
# package mirror but no container registry:
#
#   lark/debian    a bookworm base made with debootstrap (minbase, security updates applied)
#                  and `docker import`
#   lark/postgres  PostgreSQL 15, lark/redis Redis 7, lark/haproxy HAProxy 2.6: Debian packages
#                  on that base, with entry points that honour what the compose file asks of
#                  the official images (deploy/images/)
#   lark/node      deploy/Dockerfile on that base, with target/release/node (debug info stripped)
#
# Each image is tagged with a hash of its inputs (the base's recipe; a Dockerfile and its
# scripts; the node binary) and is not rebuilt while that tag exists, so a second run takes
# seconds. The tags are written to target/docker/images.env, for docker-compose:
#
#   deploy/build-images.sh
#   set -a; . target/docker/images.env; set +a
#   docker-compose -p lark up -d --scale node=3
#
# Options: --no-cargo (use target/release/node as it is; also LARK_SKIP_CARGO=1),
# --force (rebuild everything). Mirrors: DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR.
# Needs root (debootstrap), installs debootstrap with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/docker
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
suite=bookworm
skip_cargo=${LARK_SKIP_CARGO:-0}
force=0
for arg in "$@"; do
    case $arg in
        --no-cargo) skip_cargo=1 ;;
        --force) force=1 ;;
        -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done
# The classic builder takes a local image in FROM without asking any registry.
export DOCKER_BUILDKIT=0

started=$SECONDS
step() { printf '[build-images %4ss] %s\n' "$((SECONDS - started))" "$*" >&2; }
exists() { [[ $force == 0 ]] && docker image inspect "$1" >/dev/null 2>&1; }

docker info >/dev/null 2>&1 || { echo "build-images: no Docker engine answers (docker info)" >&2; exit 1; }
mkdir -p "$out"

# ---- the node binary ---------------------------------------------------------------------
# LARK_PROFILE=debug packs the debug build instead (CI's compose test: it already has one).
profile=${LARK_PROFILE:-release}
if [[ $skip_cargo != 1 ]]; then
    step "cargo build --profile $profile -p node"
    cargo build --profile "$profile" -p node
fi
[[ -x target/$profile/node ]] || { echo "build-images: target/$profile/node missing (cargo build --profile $profile -p node)" >&2; exit 1; }
# A copy with the debug line tables stripped (symbols kept for backtraces): ~15 MB, not ~80.
objcopy --strip-debug "target/$profile/node" "$out/node.tmp"
mv "$out/node.tmp" "$out/node"

# ---- the base ----------------------------------------------------------------------------
build_base() {
    local tag=$1 rootfs=$out/rootfs
    if ! command -v debootstrap >/dev/null; then
        step "installing debootstrap"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    [[ $(id -u) == 0 ]] || { echo "build-images: debootstrap needs root" >&2; exit 1; }
    rm -rf "$rootfs"
    step "debootstrap --variant=minbase $suite ($mirror)"
    debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$out/debootstrap.log" 2>&1 ||
        { tail -20 "$out/debootstrap.log" >&2; exit 1; }
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
    # What the official slim images leave out, and apt's habits inside images.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/lark-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/lark-docker" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
EOF
    step "applying $suite-updates and security updates"
    chroot "$rootfs" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get -y -qq dist-upgrade >/dev/null
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log \
        "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old
    : >"$rootfs/etc/resolv.conf"
    step "docker import $tag"
    tar --numeric-owner -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$tag" >/dev/null
    rm -rf "$rootfs"
}

base_hash=$( (declare -f build_base; echo "$suite") | sha256sum | cut -c1-12)
base=lark/debian:$suite-$base_hash
if exists "$base"; then
    step "$base exists"
else
    build_base "$base"
fi
docker tag "$base" "lark/debian:$suite"

# ---- images on the base ------------------------------------------------------------------
# build REPO HASH CONTEXT DOCKERFILE [build args...]
build() {
    local repo=$1 hash=$2 context=$3 dockerfile=$4
    shift 4
    local tag=$repo:$hash
    if exists "$tag"; then
        step "$tag exists"
    else
        step "docker build $tag"
        docker build -q --build-arg "BASE_IMAGE=$base" "$@" --label "org.lark.inputs=$hash" \
            -f "$dockerfile" -t "$tag" "$context" >/dev/null
    fi
    docker tag "$tag" "$repo:offline"
    # Older builds of the same repository go, unless a container still uses them.
    docker image ls "$repo" --format '{{.Repository}}:{{.Tag}}' | grep -v -e ":$hash\$" -e ':offline$' -e ':latest$' |
        xargs -r docker image rm >/dev/null 2>&1 || true
    printf '%s' "$tag"
}

declare -A images
for service in postgres redis haproxy; do
    inputs=("deploy/images/$service.Dockerfile")
    [[ -f deploy/images/$service-entrypoint.sh ]] && inputs+=("deploy/images/$service-entrypoint.sh")
    hash=$( (echo "$base"; cat "${inputs[@]}") | sha256sum | cut -c1-12)
    images[$service]=$(build "lark/$service" "$hash" deploy "deploy/images/$service.Dockerfile")
done

node_hash=$( (echo "$base"; cat deploy/Dockerfile deploy/node-entrypoint.sh deploy/node-healthcheck.sh "$out/node") |
    sha256sum | cut -c1-12)
images[node]=$(build lark/node "$node_hash" . deploy/Dockerfile --build-arg NODE_BINARY=target/docker/node)
docker tag "${images[node]}" lark/node:latest

# Builds replaced above that no tag points at any more.
docker image prune -f --filter label=org.lark.inputs >/dev/null 2>&1 || true

cat >"$out/images.env" <<EOF
# Written by deploy/build-images.sh: the offline images for docker-compose.yml.
POSTGRES_IMAGE=${images[postgres]}
REDIS_IMAGE=${images[redis]}
PROXY_IMAGE=${images[haproxy]}
NODE_IMAGE=${images[node]}
EOF
step "done; images in $out/images.env:"
for image in "$base" "${images[postgres]}" "${images[redis]}" "${images[haproxy]}" "${images[node]}"; do
    size=$(docker image inspect -f '{{.Size}}' "$image")
    awk -v image="$image" -v size="$size" 'BEGIN { printf "  %-34s %6.1f MB\n", image, size / 1e6 }'
done
