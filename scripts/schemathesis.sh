#!/usr/bin/env bash
# Property-based API testing with Schemathesis against the server's own /openapi.json.
#
# The server describes itself (docs/api.md section 8), so Schemathesis can generate requests
# for every operation and check two things on each response: no 5xx (`not_a_server_error`)
# and a body that matches the documented schema (`response_schema_conformance`). That
# catches crashes on odd input and drift between the handlers and their OpenAPI
# description, which the hand-written black-box tests cannot enumerate.
#
# Usage:
#   scripts/schemathesis.sh [URL]   test a server that is already running
#                                   (default http://127.0.0.1:8000); starts nothing
#   scripts/schemathesis.sh --ci    build the server, start it on a free port with a fresh
#                                   database, run a short pass, stop it, drop the database
#
# Environment (all optional):
#   SCHEMATHESIS_MAX_EXAMPLES   test cases per operation and phase (default 10; --ci 5)
#   SCHEMATHESIS_TIME_LIMIT     hard limit in seconds for the Schemathesis run (default 600;
#                               --ci 300); hitting it counts as a failure
#   SCHEMATHESIS_PHASES         default examples,coverage,fuzzing,stateful
#   SCHEMATHESIS_SEED           random seed, to replay a run
#   SCHEMATHESIS_WORKERS        concurrent workers (default 2)
#   SCHEMATHESIS_EXTRA_ARGS     more `st run` arguments, word-split
#   PG_URL                      --ci only: server to create the throwaway database on
#                               (default postgres://postgres@127.0.0.1:5432)
#   CHAT_SERVER_PROFILE         --ci only: `debug` (default, shares CI's test build) or
#                               `release`
#
# Exit status: 0 when every check passed, non-zero on any failure, on a server that never
# became ready, or when the time limit cut the run short.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv-schemathesis"
# Pinned so a new Schemathesis release cannot change what CI reports overnight.
SCHEMATHESIS_VERSION="4.32.5"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
REPORT_DIR="$TARGET_DIR/schemathesis"

log() { printf 'schemathesis.sh: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

ci=false
url="http://127.0.0.1:8000"
for arg in "$@"; do
    case "$arg" in
    --ci) ci=true ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    -*) die "unknown option $arg (try --help)" ;;
    *) url="${arg%/}" ;;
    esac
done

if $ci; then
    max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-5}"
    time_limit="${SCHEMATHESIS_TIME_LIMIT:-300}"
else
    max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-10}"
    time_limit="${SCHEMATHESIS_TIME_LIMIT:-600}"
fi
phases="${SCHEMATHESIS_PHASES:-examples,coverage,fuzzing,stateful}"
workers="${SCHEMATHESIS_WORKERS:-2}"

# CPython 3.11.7 (the machine's default python3) trips an interpreter bug inside
# Hypothesis ("SystemError: AST constructor recursion depth mismatch") that Schemathesis
# reports as a run error, so the newest Python 3.12+ available wins; SCHEMATHESIS_PYTHON
# overrides the choice.
pick_python() {
    local candidates=()
    if [[ -n "${SCHEMATHESIS_PYTHON:-}" ]]; then
        candidates+=("$SCHEMATHESIS_PYTHON")
    fi
    candidates+=(python3.14 python3.13 python3.12)
    if command -v pyenv >/dev/null 2>&1; then
        local version
        while read -r version; do
            candidates+=("$version/bin/python3")
        done < <(printf '%s\n' "$(pyenv root)"/versions/3.1[2-9]* | sort -rV)
    fi
    candidates+=(python3)
    local candidate
    for candidate in "${candidates[@]}"; do
        if "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
            "$candidate" -c 'import sys; print(sys.executable)'
            return
        fi
    done
    die "no Python 3.10 or newer found (set SCHEMATHESIS_PYTHON)"
}

install_schemathesis() {
    local python stamp
    python="$(pick_python)"
    stamp="schemathesis==$SCHEMATHESIS_VERSION $python"
    if [[ -x "$VENV/bin/st" && "$(cat "$VENV/.stamp" 2>/dev/null)" == "$stamp" ]]; then
        return
    fi
    log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV (with $python)"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION"
    printf '%s\n' "$stamp" >"$VENV/.stamp"
}

# Everything --ci starts is recorded here and undone on any exit, so a failed or
# interrupted run leaves no server and no database behind.
server_pid=""
database=""
workdir=""
# shellcheck disable=SC2317  # reached through the EXIT trap
cleanup() {
    local status=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        log "stopping the server (pid $server_pid)"
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ -n "$database" ]]; then
        log "dropping database $database"
        psql "$PG_URL/postgres" -qX -v ON_ERROR_STOP=1 \
            -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null ||
            log "could not drop database $database"
    fi
    if [[ -n "$workdir" ]]; then
        rm -rf "$workdir"
    fi
    exit "$status"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_server() {
    PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
    local profile="${CHAT_SERVER_PROFILE:-debug}"
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    log "building chat-server ($profile)"
    if [[ "$profile" == release ]]; then
        (cd "$ROOT" && cargo build --release -p chat-server)
    else
        (cd "$ROOT" && cargo build -p chat-server)
    fi
    local binary="$TARGET_DIR/$profile/chat-server"

    workdir="$(mktemp -d "${TMPDIR:-/tmp}/chat-schemathesis.XXXXXX")"
    database="chat_schemathesis_$$_$RANDOM"
    psql "$PG_URL/postgres" -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$database\"" >/dev/null ||
        die "cannot create a database on $PG_URL (set PG_URL)"

    local port
    port="$(free_port)"
    url="http://127.0.0.1:$port"
    log "starting the server on $url with database $database (log: $workdir/server.log)"
    env DATABASE_URL="$PG_URL/$database" \
        HOST=127.0.0.1 PORT="$port" \
        BCRYPT_COST=4 \
        RATE_LIMIT_WRITES_PER_SECOND=0 RATE_LIMIT_AUTH_PER_MINUTE=0 \
        SECRET_KEY="schemathesis-only-key-$(python3 -c 'import secrets; print(secrets.token_hex(24))')" \
        FILE_STORAGE_DIR="$workdir/files" DATA_DIR="$workdir/data" \
        LOG_FORMAT=pretty RUST_LOG="${RUST_LOG:-warn}" \
        "$binary" >"$workdir/server.log" 2>&1 &
    server_pid=$!

    for _ in $(seq 1 120); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            tail -n 50 "$workdir/server.log" >&2
            die "the server exited before it was ready"
        fi
        if curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; then
            return
        fi
        sleep 0.5
    done
    tail -n 50 "$workdir/server.log" >&2
    die "the server was not ready after 60 s"
}

register() {
    # A fresh account per run so reruns never collide on a taken name.
    local name body
    name="st_$(date +%s)_$RANDOM"
    body="$(printf '{"username":"%s","email":"%s@example.com","password":"schemathesis-pass","display_name":"Schemathesis"}' "$name" "$name")"
    local response
    response="$(curl -fsS -X POST "$url/api/auth/register" \
        -H 'Content-Type: application/json' -d "$body")" ||
        die "could not register a user at $url/api/auth/register"
    "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])' \
        <<<"$response" || die "no access_token in the register response: $response"
}

install_schemathesis
if $ci; then
    start_server
else
    curl -fsS -o /dev/null "$url/readyz" ||
        die "no ready server at $url (start one, or use --ci to have this script start it)"
fi
token="$(register)"

mkdir -p "$REPORT_DIR"
extra=()
if [[ -n "${SCHEMATHESIS_SEED:-}" ]]; then
    extra+=(--seed "$SCHEMATHESIS_SEED")
fi
if [[ -n "${SCHEMATHESIS_EXTRA_ARGS:-}" ]]; then
    read -r -a more <<<"$SCHEMATHESIS_EXTRA_ARGS"
    extra+=("${more[@]}")
fi

log "testing $url/openapi.json: $max_examples examples per operation, phases $phases, limit ${time_limit}s"
# Logout would revoke the run's own token and turn every later request into a 401, so it is
# left out; the WebSocket handshake is a GET that only makes sense with an upgrade.
# Schemathesis keeps its replay cache (.schemathesis/) and Hypothesis its example database
# (.hypothesis/) in the working directory, so the run happens inside the ignored report
# directory; `st replay <id>` works from there.
set +e
cd "$REPORT_DIR"
timeout --signal=INT --kill-after=30 "$time_limit" \
    "$VENV/bin/st" run "$url/openapi.json" \
    --url "$url" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,response_schema_conformance \
    --phases "$phases" \
    --max-examples "$max_examples" \
    --workers "$workers" \
    --request-timeout 30 \
    --exclude-path /api/auth/logout \
    --exclude-path-regex '^/api/ws' \
    --suppress-health-check all \
    --report junit --report-dir "$REPORT_DIR" \
    --output-sanitize true \
    "${extra[@]}"
status=$?
set -e

if [[ $status -eq 124 || $status -eq 137 ]]; then
    log "the run hit the ${time_limit}s limit (raise SCHEMATHESIS_TIME_LIMIT or lower SCHEMATHESIS_MAX_EXAMPLES)"
    exit 1
fi
if [[ $status -ne 0 ]]; then
    log "failures found (exit $status); JUnit report in $REPORT_DIR, replay from there with $VENV/bin/st replay <id>"
    if $ci && [[ -n "$workdir" ]]; then
        log "server log tail:"
        tail -n 40 "$workdir/server.log" >&2
    fi
fi
exit "$status"
