#!/usr/bin/env bash
# Starts the service on a free loopback port and runs scim2-tester against
# it, then the Bulk check (scripts/check_bulk.py); fails on any check that
# is not a success.
#   scripts/conformance.sh [embedded|dynamodb]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_python_tools
store="${1:-embedded}"
store_args=()
if [ "$store" = dynamodb ]; then
  start_moto
  store_args=(--store dynamodb --table "conformance-$RANDOM$RANDOM" --create-table-from template.yaml)
  export DYNAMODB_RETRY_BUDGET_MS=60000 DYNAMODB_ATTEMPT_TIMEOUT_MS=30000
fi

cargo build --quiet --bin scim-provisioning
port="$(free_port)"
data="$(mktemp -d)"
token="conformance-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$data"; [ -n "${MOTO_PID:-}" ] && kill "$MOTO_PID" 2>/dev/null; true' EXIT
SCIM_DEMO_TOKEN="$token" RUST_LOG=warn target/debug/scim-provisioning serve \
  --port "$port" --data-dir "$data" --demo-tenant conformance "${store_args[@]}" >"$data/server.log" 2>&1 &
pid=$!
base="http://127.0.0.1:$port/scim/v2/conformance"
wait_for_http "$base/ServiceProviderConfig" || { cat "$data/server.log"; exit 1; }

out="$data/scim2-test.txt"
SCIM_CLI_HEADERS="Authorization: Bearer $token" "$VENV/bin/scim2" --url "$base" test >"$out" 2>&1 || true
cat "$out"
python3 scripts/check_conformance.py "$out"

# scim2-tester has no Bulk checks: one Bulk request, its answer validated
# with scim2-models' BulkResponse.
"$VENV/bin/python" scripts/check_bulk.py "$base" "$token"
