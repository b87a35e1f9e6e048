#!/usr/bin/env bash
# What feed subscribers that stop reading behind a backlog cost the directory:
# starts the release directory on a fresh PostgreSQL database, seeds a tenant
# through the API (its change sets are the backlog: 1,000-id member adds and
# 1,000-user batches), then opens STREAMS feed streams from revision 1 that read
# nothing, and reports the directory's resident memory before and at its peak
# while they are held.
#
#   scripts/stalled-subscribers.sh                      # the directory built here
#   DIRECTORY_BIN=/path/to/cohort-directory scripts/stalled-subscribers.sh
#
# Settings (environment): USERS (20000), GROUP_COUNT (2000), STREAMS (8), HOLD
# (20s), DATABASE_URL (default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-20000}
GROUP_COUNT=${GROUP_COUNT:-2000}
STREAMS=${STREAMS:-8}
HOLD=${HOLD:-20s}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432}

cargo build --release --locked -p cohort-directory -p cohort-bench >&2
DIRECTORY_BIN=${DIRECTORY_BIN:-target/release/cohort-directory}

suffix="$(date +%s)_$$"
db="cohort_stall_$suffix"
psql "$DATABASE_URL/postgres" -qAt -c "CREATE DATABASE $db"
work=$(mktemp -d)
token="stall-$suffix-0123456789abcdef"
export COHORT_BENCH_TOKEN="$token"
COHORT_AUTH_TOKENS="bench:$token" RUST_LOG=warn "$DIRECTORY_BIN" \
    --listen 127.0.0.1:50071 --database-url "$DATABASE_URL/$db" >"$work/directory.log" 2>&1 &
pid=$!
cleanup() {
    kill -TERM "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    psql "$DATABASE_URL/postgres" -qAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
    rm -rf "$work"
}
trap cleanup EXIT
target/release/cohort-bench wait-serving --target http://127.0.0.1:50071 --timeout 60s >/dev/null
target/release/cohort-bench seed --directory http://127.0.0.1:50071 --users "$USERS" \
    --groups "$GROUP_COUNT" --organizations 40 --out "$work/tenant.json" >&2

rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
sleep 2
before=$(rss)
target/release/cohort-bench stall --directory http://127.0.0.1:50071 --manifest "$work/tenant.json" \
    --streams "$STREAMS" --hold "$HOLD" >&2 &
stall=$!
peak=$before
while kill -0 "$stall" 2>/dev/null; do
    now=$(rss)
    [ "$now" -gt "$peak" ] && peak=$now
    sleep 0.5
done
wait "$stall"
backlog=$(psql "$DATABASE_URL/$db" -qAt -c "SELECT count(*), pg_size_pretty(sum(octet_length(changes::text))) FROM change_events")
echo "backlog (change sets, text): $backlog"
echo "directory RSS before: $((before / 1024)) MiB, peak with $STREAMS stalled streams: $((peak / 1024)) MiB"
echo "per stalled stream: $(((peak - before) / STREAMS)) KiB"
