#!/usr/bin/env bash
# What a directory write costs, process by process: starts the directory and the
# authorization service (release builds) on fresh PostgreSQL databases, seeds a
# small tenant, drives one write call with the load tool (1 connection x 8
# streams, closed loop) and prints, next to its rate, the CPU time each process
# spent per call: the directory, the authorization service following it,
# PostgreSQL (both databases), and the whole machine.
#
#   scripts/write-cost.sh                          # CreateUser on 1, then 8 tenants
#   CALL=add-members TENANTS=0 SEED_USERS=50000 SEED_GROUPS=1000 scripts/write-cost.sh
#
# Settings (environment): CALL (create-user, add-members), TENANTS (a list: write
# to that many fresh tenants, 0 for the seeded one), DURATION (default 10s),
# SEED_USERS, SEED_GROUPS, AUTHZ (0: no authorization service), DATABASE_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

CALL=${CALL:-create-user}
TENANTS=${TENANTS:-1 8}
DURATION=${DURATION:-10s}
SEED_USERS=${SEED_USERS:-1000}
SEED_GROUPS=${SEED_GROUPS:-100}
AUTHZ=${AUTHZ:-1}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432}

cargo build --release --locked -p cohort-directory -p cohort-authz -p cohort-bench >&2
bin=target/release
suffix="$(date +%s)_$$"
db_directory="cohort_cost_directory_$suffix"
db_authz="cohort_cost_authz_$suffix"
work=$(mktemp -d)
psql_admin() { psql "$DATABASE_URL/postgres" -v ON_ERROR_STOP=1 -qAt -c "$1"; }
for db in "$db_directory" "$db_authz"; do psql_admin "CREATE DATABASE $db"; done
token="cost-$suffix-0123456789abcdef"
export COHORT_BENCH_TOKEN="$token"
directory=http://127.0.0.1:50071

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for db in "$db_directory" "$db_authz"; do psql_admin "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; done
    rm -rf "$work"
}
trap cleanup EXIT

COHORT_AUTH_TOKENS="bench:$token" "$bin/cohort-directory" --listen 127.0.0.1:50071 \
    --database-url "$DATABASE_URL/$db_directory" >"$work/directory.log" 2>&1 &
directory_pid=$!
pids+=("$directory_pid")
"$bin/cohort-bench" wait-serving --target "$directory" >/dev/null
authz_pid=
if [ "$AUTHZ" = 1 ]; then
    COHORT_AUTH_TOKENS="bench:$token" COHORT_AUTHZ_DIRECTORY_TOKEN="$token" "$bin/cohort-authz" \
        --listen 127.0.0.1:50072 --directory "$directory" \
        --database-url "$DATABASE_URL/$db_authz" >"$work/authz.log" 2>&1 &
    authz_pid=$!
    pids+=("$authz_pid")
fi
"$bin/cohort-bench" seed --directory "$directory" --users "$SEED_USERS" --groups "$SEED_GROUPS" \
    --organizations 10 --out "$work/tenant.json" >/dev/null

# CPU time in clock ticks: of one process, of PostgreSQL's, of the machine.
ticks() { [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0; }
# PostgreSQL's processes come and go: each one's ticks, to count only what each
# spent during the run (a backend that ended meanwhile is left out).
declare -A postgres_before
postgres_snapshot() {
    postgres_before=()
    for pid in $(pgrep -u postgres); do
        postgres_before[$pid]=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    done
}
postgres_ticks_since() {
    local total=0 now
    for pid in $(pgrep -u postgres); do
        now=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
        total=$((total + now - ${postgres_before[$pid]:-0}))
    done
    echo "$total"
}
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
per_call() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t * 1000 / hz / n }'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "| call | tenants | calls/s | p50 / p99 (ms) | directory | authorization | PostgreSQL | machine | load avg |"
echo "|---|---|---|---|---|---|---|---|---|"
for tenants in $TENANTS; do
    d0=$(ticks "$directory_pid"); a0=$(ticks "$authz_pid"); postgres_snapshot; m0=$(machine_ticks)
    row=$("$bin/cohort-bench" run --target "$directory" --call "$CALL" --manifest "$work/tenant.json" \
        --tenants "$tenants" --no-baseline --connections 1 --streams 8 --duration "$DURATION" | tail -1)
    d1=$(ticks "$directory_pid"); a1=$(ticks "$authz_pid"); postgres=$(postgres_ticks_since); m1=$(machine_ticks)
    rps=$(echo "$row" | awk -F'|' '{gsub(/ /, "", $4); print $4}')
    latency=$(echo "$row" | awk -F'|' '{print $6}' | awk -F'/' '{printf "%s /%s", $1, $2}' | xargs)
    calls=$(awk -v r="$rps" -v d="${DURATION%s}" 'BEGIN { print r * d }')
    echo "| $CALL | $tenants | $rps | $latency | $(per_call $((d1 - d0)) "$calls") ms | $(per_call $((a1 - a0)) "$calls") ms | $(per_call "$postgres" "$calls") ms | $(per_call $((m1 - m0)) "$calls") ms | $(cut -d' ' -f1 /proc/loadavg) |"
done
