# Everyday commands; `just` lists them. Each recipe is the plain command it wraps, so
# nothing here is needed to work on the project.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Run the server with optimisations (configuration: the README's Configuration table).
run *ARGS:
    cargo run --release -p chat-server -- {{ ARGS }}

# Run every test in the workspace, as CI does.
test *ARGS:
    cargo test --workspace {{ ARGS }}

# Run exactly what CI runs: formatting, clippy, tests.
ci:
    bash .ci/run

# Reproduce BENCHMARKS.md: builds, starts a release server on a fresh `bench` database,
# runs every scenario (appending to BENCHMARKS.md), then stops the server. Every row of
# issue 15's table is here with its ceiling: POST vs a bare INSERT, GET /api/users/me (wrk,
# when installed), fan-out at 110 msg/s and open loop at 200 msg/s vs the bare broadcast,
# idle sockets, and history pages vs a bare SELECT. `server` runs another build of the
# server (an older commit's, for a before/after) with `commit` naming it in the sections.
# The server inherits the environment: `HISTORY_CACHE_BYTES=0 just bench` measures history
# pages without the per-node kept pages.

# Run the benchmark scenarios against a fresh release server.
bench server="" commit="" suffix="":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p chat-server -p chat-bench
    target="${CARGO_TARGET_DIR:-./target}/release"
    server="{{ server }}"
    server="${server:-$target/chat-server}"
    export CHAT_BENCH_COMMIT="{{ commit }}"
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS bench WITH (FORCE)" -c "CREATE DATABASE bench"
    RATE_LIMIT_WRITES_PER_SECOND=0 RATE_LIMIT_AUTH_PER_MINUTE=0 BCRYPT_COST=4 RUST_LOG=warn \
        DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench "$server" & pid=$!
    trap 'kill $pid' EXIT
    until curl -sf http://127.0.0.1:8000/readyz >/dev/null; do sleep 0.2; done
    bench="$target/chat-bench"
    out="--quiet --markdown-out BENCHMARKS.md"
    db="--database-url postgres://postgres@127.0.0.1:5432/bench"
    plot() { echo "--plot docs/$1{{ suffix }}.svg"; }
    $bench rest --write-ratio 1.0 --concurrency 64 --duration 10 --with-baseline $(plot rest-writes) $out
    $bench rest --write-ratio 0 --concurrency 64 --duration 10 $(plot rest-reads) $out
    if command -v wrk >/dev/null; then
        token=$(curl -sf -X POST http://127.0.0.1:8000/api/auth/register -H 'Content-Type: application/json' \
            -d '{"username":"wrk_me","email":"wrk@example.com","password":"password123"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
        { echo; echo "## wrk — $(date -u +%FT%TZ), GET /api/users/me"; echo
          echo "- Command: \`wrk -t1 -c64 -d10s -H \"Authorization: Bearer \$TOKEN\" http://127.0.0.1:8000/api/users/me\`"
          echo "- Commit: ${CHAT_BENCH_COMMIT:-$(git rev-parse --short HEAD)}"; echo; echo '```text'
          wrk -t1 -c64 -d10s -H "Authorization: Bearer $token" http://127.0.0.1:8000/api/users/me
          echo '```'; } >> BENCHMARKS.md
    fi
    $bench fanout --members 1000 --senders 4 --rate 110 --duration 15 --with-baseline $(plot fanout) $out
    $bench fanout --members 1000 --senders 4 --rate 200 --duration 15 --open-loop --with-baseline $(plot fanout-open) $out
    $bench idle --connections 10000 --users 100 --server-pid $pid $out
    $bench reconnect --clients 50 --cycles 1000 $out
    $bench rooms --users 2000 --channels 200 --rate 100 --duration 15 --with-baseline $(plot rooms) $out
    $bench history --readers 64 --messages 1000 --duration 10 --with-baseline $db $(plot history) $out
    $bench history --readers 64 --messages 1000 --rate 2000 --duration 10 $out
    $bench abuse --users 1000 --channels 50 --rate 200 --duration 15 $out

# The rooms load with its WebSockets over three nodes (one database, the local Redis), then
# the same load with every socket on one node, back to back (appending to BENCHMARKS.md).
bench-nodes rate="100" duration="15":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p chat-server -p chat-bench
    target="${CARGO_TARGET_DIR:-target}/release"
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS bench_rooms WITH (FORCE)" -c "CREATE DATABASE bench_rooms"
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
    for port in 8421 8422 8423; do
        RATE_LIMIT_WRITES_PER_SECOND=0 RATE_LIMIT_AUTH_PER_MINUTE=0 BCRYPT_COST=4 RUST_LOG=warn PORT=$port \
            REDIS_URL=redis://127.0.0.1:6379 REDIS_NAMESPACE="bench-nodes-$$" \
            SECRET_KEY=bench-secret-key-that-is-long-enough-0123456789 \
            DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_rooms "$target/chat-server" & pids+=($!)
        until curl -sf http://127.0.0.1:$port/readyz >/dev/null; do sleep 0.2; done
    done
    load="rooms --users 2000 --channels 200 --rate {{ rate }} --duration {{ duration }} --with-baseline"
    out="--quiet --markdown-out BENCHMARKS.md"
    "$target/chat-bench" --url http://127.0.0.1:8421 $load --node-url http://127.0.0.1:8422 --node-url http://127.0.0.1:8423 $out
    "$target/chat-bench" --url http://127.0.0.1:8421 $load $out

# Build the image and start PostgreSQL, Redis and two replicas on ports 8000 and 8001.
docker:
    docker compose -f docker/docker-compose.yml up --build

# Runs on stable Rust without a sanitizer (see fuzz/README.md for why and for ASan).

# Run each fuzz target for `seconds` (default 60).
fuzz seconds="60":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || { echo "install cargo-fuzz first: cargo install cargo-fuzz" >&2; exit 1; }
    cd fuzz
    for target in $(cargo fuzz list); do
        mkdir -p "corpus/$target"
        args=(-max_total_time={{ seconds }})
        if [[ -f "dicts/$target.dict" ]]; then args+=("-dict=dicts/$target.dict"); fi
        echo "== $target for {{ seconds }} s"
        cargo fuzz run --sanitizer none "$target" "corpus/$target" "seeds/$target" -- "${args[@]}"
    done

# `just fuzz-api` tests a running server (default http://127.0.0.1:8000); `just fuzz-api
# --ci` builds and starts one with a throwaway database itself.

# Property-based API tests with Schemathesis (scripts/schemathesis.sh).
fuzz-api *ARGS:
    scripts/schemathesis.sh {{ ARGS }}
