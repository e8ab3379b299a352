#!/usr/bin/env bash
# Schemathesis over the served OpenAPI document, once per caller: no key, then a key of each
# staff role. Checks: no 5xx, every status and content type documented, every body matching its
# documented schema. Runs `lethe` as a user would (db upgrade, policies load, keys create,
# serve) on a throw-away SQLite data directory and a free port. Exit non-zero on any failure.
#
# Bounded so CI stays within minutes: ST_MAX_EXAMPLES (default 15) cases per operation and
# phase, a fixed ST_SEED (default 1) so a failure reproduces. POST /v1/imports (NDJSON, a
# streaming body schemathesis has no serializer for) is left out here; tests/integration
# covers it.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${BIN:-.venv/bin}"
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-15}"
SEED="${ST_SEED:-1}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/lethe-schemathesis.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

export LETHE_DATA_DIR="$WORK/data"
# ST_DATABASE_URL: an empty scratch database to run against instead of the embedded SQLite file
# (.ci/run passes a PostgreSQL one, so both backends are fuzzed).
if [ -n "${ST_DATABASE_URL:-}" ]; then
  export LETHE_DATABASE_URL="$ST_DATABASE_URL"
else
  unset LETHE_DATABASE_URL
fi
echo "schemathesis backend: ${LETHE_DATABASE_URL:-sqlite (embedded)}"
export LETHE_SCHEDULER=off
export LETHE_LOG_LEVEL=WARNING
# The public intake allows 10 requests an hour per address; the fuzzer is one address.
export LETHE_INTAKE_RATE_PER_HOUR=1000000
LETHE_PORT="$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export LETHE_PORT LETHE_HOST=127.0.0.1
BASE="http://127.0.0.1:${LETHE_PORT}"

"$BIN/lethe" db upgrade >/dev/null
"$BIN/lethe" policies load >/dev/null
declare -A KEYS
for role in controller dpo ingest auditor; do
  KEYS[$role]="$("$BIN/lethe" keys create --role "$role" --name "schemathesis-$role" | tail -n 1)"
done

"$BIN/lethe" serve >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  if "$BIN/python" -c "import urllib.request as u; u.urlopen('$BASE/healthz', timeout=1)" 2>/dev/null; then
    break
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
  sleep 0.2
done

status=0
for role in none controller dpo ingest auditor; do
  echo "== schemathesis as ${role} =="
  auth=()
  if [ "$role" != none ]; then
    auth=(-H "Authorization: Bearer ${KEYS[$role]}")
  fi
  "$BIN/st" run "$BASE/openapi.json" \
    "${auth[@]}" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --exclude-path /v1/imports \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --generation-database none \
    --workers 1 \
    --request-timeout 30 \
    --no-color \
    --report junit --report-dir "$WORK/report-${role}" \
    || status=1
done

if [ "$status" -ne 0 ]; then
  echo "schemathesis found failures; server log tail:" >&2
  grep -i '"level": "error"' "$WORK/serve.log" | tail -n 20 >&2 || true
fi
exit "$status"
