#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 (trust authentication,
# user postgres), as the test suite expects: starts the machine's cluster if it is
# down, installs PostgreSQL from Debian's packages if it is missing, and fails
# loudly if none of that works.
set -euo pipefail

HOST=127.0.0.1
PORT=5432

ready() { pg_isready -h "$HOST" -p "$PORT" -U postgres -q 2>/dev/null; }

wait_ready() {
    for _ in $(seq 1 60); do
        ready && return 0
        sleep 0.5
    done
    return 1
}

if command -v pg_isready >/dev/null && ready; then
    echo "PostgreSQL is running on $HOST:$PORT"
    exit 0
fi

if ! command -v pg_ctlcluster >/dev/null; then
    echo "PostgreSQL is not installed; installing it from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
echo "starting PostgreSQL $version (cluster main)"
if ! pg_lsclusters | grep -q "^$version *main"; then
    pg_createcluster "$version" main
fi
# Trust authentication on the loopback address, as the tests connect without a password.
hba="/etc/postgresql/$version/main/pg_hba.conf"
if ! grep -qE '^host +all +all +127\.0\.0\.1/32 +trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
fi
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true

if wait_ready; then
    echo "PostgreSQL is running on $HOST:$PORT"
else
    echo "ERROR: PostgreSQL did not come up on $HOST:$PORT" >&2
    pg_lsclusters >&2 || true
    tail -n 50 "/var/log/postgresql/postgresql-$version-main.log" >&2 || true
    exit 1
fi
