#!/usr/bin/env bash
# The CPU time one gRPC call costs the server and the client (h2load), next to
# the same server's health check: for comparing two builds or settings of a
# running authorization service (or directory) call by call.
#
#   scripts/call-cost.sh PID TARGET CALL...     # CALL: health check effective-roles bulk-check ...
#   scripts/call-cost.sh "$(pgrep -n cohort-authz)" http://127.0.0.1:50062 health check effective-roles
#
# It writes each call's request with `cohort-bench payload` (from the manifest
# MANIFEST, default tenant.json, as `cohort-bench seed` wrote it) and drives it
# with h2load (Debian's nghttp2-client) on CONNECTIONS × STREAMS (2 × 8) for
# DURATION seconds (8). COHORT_BENCH_TOKEN is the credential presented.
# Prints requests per second, and the server's and h2load's CPU microseconds per
# call (user + system, from /proc and time(1)).
set -euo pipefail
cd "$(dirname "$0")/.."
pid=$1 target=$2
shift 2
MANIFEST=${MANIFEST:-tenant.json}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-2}
STREAMS=${STREAMS:-8}
bench=target/release/cohort-bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
for call in "$@"; do
    command=$("$bench" payload --call "$call" --manifest "$MANIFEST" --out "$work/$call.bin" --target "$target")
    path=$(echo "$command" | grep -o 'http://[^ ]*' | sed 's|http://[^/]*||')
    before=$(ticks)
    out=$( { /usr/bin/time -f "client-cpu %U %S" h2load -c "$CONNECTIONS" -m "$STREAMS" -D "$DURATION" \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        -H "authorization: Bearer $COHORT_BENCH_TOKEN" -d "$work/$call.bin" "$target$path"; } 2>&1)
    after=$(ticks)
    awk -v call="$call" -v b="$before" -v a="$after" -v hz="$hz" -v loadavg="$(cut -d' ' -f1 /proc/loadavg)" '
        /^finished in/ { rps = $4 }
        /^requests:/ { n = $4 }
        /^client-cpu/ { client = $2 + $3 }
        END { printf "%-16s %8.0f req/s  server %5.1f us/call  h2load %5.1f us/call  (load average %s)\n",
              call, rps, (a - b) * 1e6 / hz / n, client * 1e6 / n, loadavg }' <<<"$out"
done
