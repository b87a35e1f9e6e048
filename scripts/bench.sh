#!/usr/bin/env bash
# Reproduces BENCHMARKS.md's scale figures against the release binaries on
# PostgreSQL: starts the directory and the authorization service on fresh
# databases, seeds a tenant through the API (timed: "load through the API"), runs
# the load tool's suite (every call next to its server's health check), then
# measures the authorization service's memory, its restart from the stored
# projection, a resync from an empty projection, and the cost of the default
# call log (the same run with RUST_LOG=warn).
#
#   scripts/bench.sh                                  # 100k users, 10k groups, 300k memberships
#   USERS=1000000 GROUP_COUNT=100000 ORGS=1000 scripts/bench.sh
#   SEED=sql USERS=1000000 GROUP_COUNT=100000 ...     # seeded with SQL (scripts/seed-scale.sql)
#   SKIP_SUITE=1 ...                                  # only load, memory, restart, resync
#
# With SEED=api (the default) the tenant is loaded through the directory's API
# while the authorization service follows; with SEED=sql it is written straight
# into the directory's database and the authorization service starts after, so
# that its first sync (from an empty projection) is timed too.
#
# Settings (environment): USERS, GROUP_COUNT, ORGS, MEMBERSHIPS_PER_USER, DURATION
# (per measured call, default 10s), CONNECTIONS, STREAMS, DATABASE_URL (a
# PostgreSQL server, default postgres://postgres@127.0.0.1:5432), SKIP_SUITE,
# KEEP (keep the databases and the work folder).
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-100000}
GROUP_COUNT=${GROUP_COUNT:-10000}
ORGS=${ORGS:-200}
MEMBERSHIPS_PER_USER=${MEMBERSHIPS_PER_USER:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-2}
STREAMS=${STREAMS:-8}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432}
SEED=${SEED:-api}

log() { printf '\n== %s\n' "$*" >&2; }
psql_admin() { psql "$DATABASE_URL/postgres" -v ON_ERROR_STOP=1 -qAt -c "$1"; }

log "release build"
cargo build --release --locked -p cohort-directory -p cohort-authz -p cohort-bench >&2
bin=target/release

work=$(mktemp -d)
suffix="$(date +%s)_$$"
db_directory="cohort_bench_directory_$suffix"
db_authz="cohort_bench_authz_$suffix"
db_fresh="cohort_bench_authz_fresh_$suffix"
for db in "$db_directory" "$db_authz" "$db_fresh"; do psql_admin "CREATE DATABASE $db"; done
token="bench-$suffix-0123456789abcdef"
export COHORT_BENCH_TOKEN="$token"
directory=http://127.0.0.1:50061
authz=http://127.0.0.1:50062

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -z "${KEEP:-}" ]; then
        for db in "$db_directory" "$db_authz" "$db_fresh"; do psql_admin "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; done
        rm -rf "$work"
    else
        echo "kept $work and databases $db_directory $db_authz $db_fresh" >&2
    fi
}
trap cleanup EXIT

start_directory() {
    COHORT_AUTH_TOKENS="bench:$token" "$bin/cohort-directory" --listen 127.0.0.1:50061 \
        --database-url "$DATABASE_URL/$db_directory" >>"$work/directory.log" 2>&1 &
    directory_pid=$!
    pids+=("$directory_pid")
}

# start_authz DATABASE [extra environment...]
start_authz() {
    local db=$1
    shift
    env COHORT_AUTH_TOKENS="bench:$token" COHORT_AUTHZ_DIRECTORY_TOKEN="$token" "$@" \
        "$bin/cohort-authz" --listen 127.0.0.1:50062 --directory "$directory" \
        --database-url "$DATABASE_URL/$db" >>"$work/authz.log" 2>&1 &
    authz_pid=$!
    pids+=("$authz_pid")
}

stop_authz() {
    kill -TERM "$authz_pid"
    wait "$authz_pid" 2>/dev/null || true
}

rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
hwm_mib() { awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "shape: $USERS users, $GROUP_COUNT groups ($ORGS organizations), $MEMBERSHIPS_PER_USER memberships per user, seeded by $SEED"

start_directory
"$bin/cohort-bench" wait-serving --target "$directory" >/dev/null
memberships=$((USERS * MEMBERSHIPS_PER_USER))

if [ "$SEED" = sql ]; then
    log "seeding with SQL"
    started=$(date +%s.%N)
    psql "$DATABASE_URL/$db_directory" -q -v users="$USERS" -v groups="$GROUP_COUNT" \
        -v manifest="$work/tenant.json" -f scripts/seed-scale.sql >/dev/null
    echo "seeded with SQL in $(since "$started") s"
    memberships=$(psql "$DATABASE_URL/$db_directory" -qAt -c "SELECT count(*) FROM memberships")
    log "first sync of the authorization service (from an empty projection)"
    started=$(date +%s.%N)
    start_authz "$db_authz"
    "$bin/cohort-bench" wait-revision --authz "$authz" --manifest "$work/tenant.json" >/dev/null
    echo "first sync: $(since "$started") s for $USERS users and $memberships memberships (load average $(loadavg))"
else
    start_authz "$db_authz"
    "$bin/cohort-bench" wait-serving --target "$authz" --service cohort.authz.v1.AuthzService >/dev/null
    log "seeding through the API"
    started=$(date +%s.%N)
    "$bin/cohort-bench" seed --directory "$directory" --users "$USERS" --groups "$GROUP_COUNT" \
        --organizations "$ORGS" --memberships-per-user "$MEMBERSHIPS_PER_USER" --out "$work/tenant.json" >/dev/null
    echo "load through the API: $(since "$started") s (load average $(loadavg))"
    caught=$("$bin/cohort-bench" wait-revision --authz "$authz" --manifest "$work/tenant.json")
    echo "authorization service caught up $caught s after the last write"
fi

if [ -z "${SKIP_SUITE:-}" ]; then
    log "suite"
    "$bin/cohort-bench" suite --directory "$directory" --authz "$authz" --manifest "$work/tenant.json" \
        --connections "$CONNECTIONS" --streams "$STREAMS" --duration "$DURATION"
fi

if [ -z "${SKIP_SUITE:-}" ] && command -v h2load >/dev/null; then
    log "h2load cross-check (one repeated request per call)"
    for call in health check effective-roles list-permissions bulk-check lookup-subjects lookup-groups; do
        command=$("$bin/cohort-bench" payload --call "$call" --manifest "$work/tenant.json" \
            --out "$work/$call.bin" --target "$authz")
        command=${command/-D 10/-D ${DURATION%s}}
        command=${command/-c 2 -m 8/-c $CONNECTIONS -m $STREAMS}
        rps=$(eval "$command" | awk '/^finished in/ {print $4}')
        echo "h2load $call: $rps req/s (load average $(loadavg))"
    done
fi

log "memory"
# The suite's own writes add memberships: count what the projection holds now.
memberships=$(psql "$DATABASE_URL/$db_directory" -qAt -c "SELECT count(*) FROM memberships")
rss=$(rss_mib "$authz_pid")
echo "authorization service: $rss MiB resident (peak $(hwm_mib "$authz_pid") MiB), $(awk -v r="$rss" -v m="$memberships" 'BEGIN { printf "%.1f", r * 1048576 / m }') bytes per membership ($memberships memberships)"

log "restart from the stored projection"
stop_authz
started=$(date +%s.%N)
start_authz "$db_authz"
"$bin/cohort-bench" wait-revision --authz "$authz" --manifest "$work/tenant.json" >/dev/null
echo "restart: $(since "$started") s to serve at the tenant's revision (load average $(loadavg))"
echo "after restart: $(rss_mib "$authz_pid") MiB resident (peak $(hwm_mib "$authz_pid") MiB)"

log "resync from an empty projection"
stop_authz
started=$(date +%s.%N)
start_authz "$db_fresh"
"$bin/cohort-bench" wait-revision --authz "$authz" --manifest "$work/tenant.json" >/dev/null
echo "resync: $(since "$started") s for $USERS users and $memberships memberships (load average $(loadavg))"
echo "after resync: $(rss_mib "$authz_pid") MiB resident (peak $(hwm_mib "$authz_pid") MiB)"

if [ -z "${SKIP_SUITE:-}" ]; then
    log "the default call log against RUST_LOG=warn"
    for level in info warn info warn; do
        stop_authz
        start_authz "$db_authz" RUST_LOG="$level"
        "$bin/cohort-bench" wait-revision --authz "$authz" --manifest "$work/tenant.json" >/dev/null
        echo "RUST_LOG=$level:"
        "$bin/cohort-bench" run --target "$authz" --call check --manifest "$work/tenant.json" \
            --connections "$CONNECTIONS" --streams "$STREAMS" --duration "$DURATION" | tail -2
    done
fi
