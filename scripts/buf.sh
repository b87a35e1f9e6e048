#!/usr/bin/env bash
# Lints the contracts in proto/ with buf (STANDARD + COMMENTS) and checks them
# for breaking changes (FILE rules) against the commit named in
# .ci/proto-baseline: the API as last released. Moving the baseline is a
# deliberate API change, made in a commit of its own that says why.
#
# buf comes from npm (@bufbuild/buf, pinned; its binary ships in a platform
# package, so nothing is downloaded from elsewhere) into target/tools/buf.
set -euo pipefail
cd "$(dirname "$0")/.."

BUF_VERSION=1.75.0
tools=target/tools/buf
buf="$tools/node_modules/.bin/buf"
if ! [ -x "$buf" ] || [ "$("$buf" --version)" != "$BUF_VERSION" ]; then
    if ! command -v npm >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq npm >/dev/null
    fi
    mkdir -p "$tools"
    npm install --silent --no-audit --no-fund --prefix "$tools" "@bufbuild/buf@$BUF_VERSION" >/dev/null
fi
echo "buf $("$buf" --version)"

"$buf" lint proto
echo "buf lint: clean"

baseline=$(tr -d '[:space:]' < .ci/proto-baseline)
if git cat-file -e "$baseline^{commit}" 2>/dev/null; then
    "$buf" breaking proto --against ".git#ref=$baseline,subdir=proto"
    echo "buf breaking: nothing breaks against $baseline"
else
    echo "WARNING: the baseline $baseline is not in this clone (a shallow clone?): buf breaking skipped" >&2
fi
