#!/usr/bin/env bash
# End to end through the Lambda runtime: `cargo lambda watch` (cargo-lambda's
# local Lambda runtime and function URL emulator) runs the binary as a
# Lambda function (AWS_LAMBDA_RUNTIME_API set, so main() takes the Lambda
# entry) with STORE=dynamodb against the AWS emulator, and HTTP requests sent
# to its function URL endpoint create a user (POST) and read it back (GET),
# then page with a signed cursor. As on AWS, the cursor key is a Secrets
# Manager secret (created in the emulator) named by CURSOR_KEY_SECRET_ARN.
#
# The Lambda entry creates no tenant, so the table and the tenant are made
# first through the admin API (admin CLI, "Create New Credentials", the
# emailed link), on the same table and Secrets Manager prefix.
#   scripts/lambda-e2e.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_python_tools
start_moto
export PATH="$VENV/bin:$PATH"

BIN=scim-provisioning
cargo build --quiet --bin "$BIN"
bin="$ROOT/target/debug/$BIN"
work="$(mktemp -d)"
table="lambda-e2e-$RANDOM$RANDOM"
tenant="e2e"
token="e2e-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
cursor_key="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  [ -n "${MOTO_PID:-}" ] && kill "$MOTO_PID" 2>/dev/null
  rm -rf "$work"
  true
}
trap cleanup EXIT
fail() {
  echo "lambda-e2e: FAILED: $*" >&2
  for f in "$work"/*.log; do [ -s "$f" ] && { echo "--- $f" >&2; tail -40 "$f" >&2; }; done
  exit 1
}

# ---- the table and the tenant, through the admin API
log "table $table and tenant $tenant on DynamoDB ($AWS_ENDPOINT_URL)"
# Tenants' credentials live in Secrets Manager, as on AWS.
secret_prefix="scim-e2e-$RANDOM$RANDOM/tenants/"
# A local server on the same table and secrets (the emulator has no IAM
# in front of the function URL, so the admin API is driven locally): it
# creates the table, then the admin CLI creates the tenant and credentials
# and the emailed link (outbox) reveals the token.
sport="$(free_port)"
RUST_LOG=warn "$bin" serve --port "$sport" --data-dir "$work/data" --store dynamodb --table "$table" \
  --tenant-secret-prefix "$secret_prefix" --create-table-from template.yaml \
  >"$work/serve.log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")
wait_for_http "http://127.0.0.1:$sport/scim/v2/demo/ServiceProviderConfig" 60 || fail "local server did not start"
admin() { "$bin" admin --endpoint "http://127.0.0.1:$sport" --data-dir "$work/data" "$@"; }
admin tenants create "$tenant" --name "Lambda e2e" --admin-email it@e2e.example >/dev/null \
  || fail "admin tenants create"
admin credentials create "$tenant" >/dev/null || fail "admin credentials create"
link="$(grep -ho "http://127.0.0.1:$sport/credentials/$tenant\.[A-Za-z0-9]*" "$work"/data/outbox/*.eml | head -1)"
[ -n "$link" ] || fail "no Get Secret Token link in the outbox"
token="$(curl -s -X POST "$link" | sed -n 's/.*<code id="token">\([^<]*\)<.*/\1/p' | head -1)"
[ -n "$token" ] || fail "the link revealed no token"
kill "$serve_pid"
echo "tenant $tenant created and its token revealed through the admin API"

# ---- the cursor key, as on AWS: a Secrets Manager secret (in the emulator)
secret_arn="$("$VENV/bin/python" - "$table" "$cursor_key" <<'PY'
import sys, boto3
sm = boto3.client("secretsmanager")
print(sm.create_secret(Name=f"{sys.argv[1]}-cursor-key", SecretString=sys.argv[2])["ARN"])
PY
)" || fail "creating the cursor key secret"

# ---- the function under cargo lambda watch
lport="$(free_port)"
log "cargo lambda watch on 127.0.0.1:$lport"
setsid cargo lambda watch --quiet --ignore-changes --invoke-address 127.0.0.1 --invoke-port "$lport" \
  --bin "$BIN" \
  --env-var STORE=dynamodb --env-var "TABLE_NAME=$table" --env-var "CURSOR_KEY_SECRET_ARN=$secret_arn" \
  --env-var "TENANT_SECRET_PREFIX=$secret_prefix" \
  --env-var "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL" --env-var AWS_REGION=us-east-1 \
  --env-var AWS_ACCESS_KEY_ID=test --env-var AWS_SECRET_ACCESS_KEY=test \
  --env-var AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true --env-var RUST_LOG=info \
  >"$work/watch.log" 2>&1 &
pids+=($!)
base="http://127.0.0.1:$lport/lambda-url/$BIN/scim/v2/$tenant"

"$VENV/bin/python" - "$base" "$token" <<'PY' || fail "HTTP checks"
import json, sys, time, urllib.error, urllib.parse, urllib.request

base, token = sys.argv[1], sys.argv[2]

def call(method, path, body=None, auth=True, timeout=120):
    headers = {"Content-Type": "application/scim+json"}
    if auth:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()

def check(cond, what, status, raw):
    if not cond:
        sys.exit(f"{what}: got {status} {raw[:500]!r}")
    print(f"ok: {what}")

# The first invocation starts the function (and may wait for its build).
deadline = time.time() + 120
while True:
    try:
        status, headers, raw = call("GET", "/ServiceProviderConfig", auth=False, timeout=30)
        if status == 200:
            break
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass
    if time.time() > deadline:
        sys.exit("cargo lambda watch never answered 200 on /ServiceProviderConfig")
    time.sleep(1)
print("ok: GET /ServiceProviderConfig through cargo lambda watch")

status, headers, raw = call("GET", "/Users", auth=False)
check(status == 401, "GET /Users without a token is 401", status, raw)

user = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "lambda.e2e@example.com",
    "externalId": "lambda-e2e-1",
    "name": {"givenName": "Lambda", "familyName": "Endtoend"},
    "emails": [{"value": "lambda.e2e@example.com", "type": "work", "primary": True}],
    "active": True,
}
status, headers, raw = call("POST", "/Users", user)
check(status == 201, "POST /Users is 201", status, raw)
created = json.loads(raw)
ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
check(ctype.startswith("application/scim+json"), "answer is application/scim+json", status, raw)
check(created.get("userName") == user["userName"] and created.get("id"), "POST answer has id and userName", status, raw)
uid = created["id"]

status, headers, raw = call("GET", f"/Users/{uid}")
check(status == 200, f"GET /Users/{uid} is 200", status, raw)
got = json.loads(raw)
check(got.get("id") == uid and got.get("userName") == user["userName"]
      and got.get("externalId") == user["externalId"]
      and got.get("emails", [{}])[0].get("value") == user["emails"][0]["value"]
      and got.get("meta", {}).get("resourceType") == "User"
      and got.get("meta", {}).get("version") == created.get("meta", {}).get("version"),
      "GET returns the user as created", status, raw)

status, headers, raw = call("POST", "/Users", dict(user, userName="lambda.e2e.2@example.com", externalId="lambda-e2e-2"))
check(status == 201, "POST a second user is 201", status, raw)
uid2 = json.loads(raw)["id"]

# Cursor paging (RFC 9865): cursors are signed with the cursor key.
status, headers, raw = call("GET", "/Users?count=1&cursor")
page = json.loads(raw) if status == 200 else {}
check(status == 200 and len(page.get("Resources", [])) == 1 and page.get("nextCursor"),
      "GET /Users?count=1&cursor gives a page and a nextCursor", status, raw)
status, headers, raw = call("GET", f"/Users?count=1&cursor={urllib.parse.quote(page['nextCursor'])}")
page2 = json.loads(raw) if status == 200 else {}
check(status == 200 and {page["Resources"][0]["id"], page2.get("Resources", [{}])[0].get("id")} == {uid, uid2},
      "following nextCursor gives the other user", status, raw)

status, headers, raw = call("GET", '/Users?filter=userName%20eq%20%22LAMBDA.E2E@example.com%22')
lst = json.loads(raw) if status == 200 else {}
check(status == 200 and lst.get("totalResults") == 1 and lst["Resources"][0]["id"] == uid,
      "filter userName eq finds it", status, raw)
PY
log "lambda-e2e: passed (POST and GET through cargo lambda watch on DynamoDB)"
