# Everyday commands; `just` lists them. Each recipe is the plain command it wraps, so
# nothing here is needed to work on the project.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Run the server with optimisations (configuration: API.md section 9).
run *ARGS:
    cargo run --release -p chat-server -- {{ ARGS }}

# Run every test in the workspace, as CI does.
test *ARGS:
    cargo test --workspace {{ ARGS }}

# Run exactly what CI runs: formatting, clippy, tests.
ci:
    bash .ci/run

# Placeholder until the benchmark work lands: this only prints chat-bench's options. The
# benchmark engineer replaces the recipe body with the real load run and its parameters.

# Benchmark (placeholder: prints chat-bench's options).
bench:
    cargo run --release -p chat-bench -- --help

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
