#!/usr/bin/env bash
# Smoke test of the arm64 Lambda zips from `make build-lambda`, on this x86-64 machine:
# each bootstrap runs under qemu-aarch64-static (Debian's qemu-user-static, with the
# arm64 glibc that gcc-aarch64-linux-gnu brings) behind cargo-lambda's Lambda emulator,
# and must give the same answer to events/raw-search.json as the native release binary:
# the coordinator searching by itself, then the coordinator invoking a worker (both arm64)
# through the emulator with the real aws-sdk-lambda invoker.
# Skipped, with a note, when qemu-aarch64-static is not installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
qemu=$(command -v qemu-aarch64-static || true)
if [ -z "$qemu" ]; then
    echo "lambda-smoke: skipped (no qemu-aarch64-static; apt-get install qemu-user-static)"
    exit 0
fi
lambda="$root/target/venv/bin/cargo-lambda"
sysroot=/usr/aarch64-linux-gnu
port=${SMOKE_PORT:-9400}
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

for f in coordinator worker; do
    mkdir -p "$dir/$f"
    unzip -q -o "target/lambda/squash-$f/bootstrap.zip" -d "$dir/$f"
    file "$dir/$f/bootstrap" | grep -q "ARM aarch64" || { echo "lambda-smoke: squash-$f is not an arm64 binary" >&2; exit 1; }
done
mkdir -p "$dir/indexes"
cp -r tests/fixtures/golden-v3/index "$dir/indexes/golden"

# Emulators: the coordinator's on $port, worker 0's on $port+1.
for p in "$port" $((port + 1)); do
    "$lambda" lambda watch --only-lambda-apis -A 127.0.0.1 -P "$p" >>"$dir/emulator.log" 2>&1 &
    pids+=($!)
done
for p in "$port" $((port + 1)); do
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.2; done
done

common=(
    SQUASH_INDEX_ROOT="$dir/indexes" SQUASH_WORKER_FUNCTION=squash-worker
    SQUASH_LAMBDA_ENDPOINT="http://127.0.0.1:$((port + 1))" SQUASH_BRANCHING=1 SQUASH_DEPTH=1
    AWS_ACCESS_KEY_ID=smoke AWS_SECRET_ACCESS_KEY=smoke AWS_REGION=us-east-1
    AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024
)
# function PORT NAME WORKERS BINARY...: start one function process behind an emulator.
function_up() {
    local p=$1 name=$2 workers=$3
    shift 3
    env "${common[@]}" SQUASH_WORKERS="$workers" AWS_LAMBDA_FUNCTION_NAME="$name" \
        AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$p/.rt/$name" "$@" >>"$dir/functions.log" 2>&1 &
    pids+=($!)
    fpids+=($!)
}
functions_down() {
    for p in "${fpids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    fpids=()
}
search() { # [EVENT]: events/raw-search.json unless given
    "$lambda" lambda invoke squash-coordinator --invoke-address 127.0.0.1 --invoke-port "$port" \
        --data-file "${1:-events/raw-search.json}" --output-format json
}
# The same search forced to fan out (the coordinator searches a small index by itself).
python3 -c 'import json, sys; e = json.load(open(sys.argv[1])); e["search"].setdefault("params", {})["plan"] = "fanout"; json.dump(e, open(sys.argv[2], "w"))' \
    events/raw-search.json "$dir/fanout-search.json"
arm64() { echo "$qemu" -L "$sysroot" "$dir/$1/bootstrap"; }

fpids=()
function_up "$port" squash-coordinator 0 target/release/squash-coordinator
native=$(search)
functions_down

status=0
check() { # what, answer
    if python3 scripts/same-answer.py "$native" "$2"; then
        echo "lambda-smoke: $1: same answer as the native binary"
    else
        echo "lambda-smoke: $1: DIFFERENT answer" >&2
        echo "  native: ${native:0:400}" >&2
        echo "  arm64:  ${2:0:400}" >&2
        tail -20 "$dir/functions.log" >&2
        status=1
    fi
}
# shellcheck disable=SC2046 # arm64 prints a command line on purpose
function_up "$port" squash-coordinator 0 $(arm64 coordinator)
check "arm64 coordinator searching by itself, events/raw-search.json" "$(search)"
functions_down
# shellcheck disable=SC2046
function_up "$port" squash-coordinator 1 $(arm64 coordinator)
# shellcheck disable=SC2046
function_up $((port + 1)) squash-worker 1 $(arm64 worker)
answer=$(search "$dir/fanout-search.json")
check "arm64 coordinator invoking an arm64 worker, events/raw-search.json with plan fanout" "$answer"
invocations=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["stats"]["invocations"])' "$answer")
[ "$invocations" = 1 ] || { echo "lambda-smoke: expected 1 worker invocation, the stats say $invocations" >&2; status=1; }
functions_down
exit $status
