#!/usr/bin/env bash
# Cold start, locally: the time from starting the release binary to its
# first answer, on DynamoDB (the AWS emulator on loopback), with the same
# binary and the same init path as the Lambda function (aws-config, the
# DynamoDB client, the router), in `serve` mode. Median of RUNS (7) starts.
#
# One untimed start first creates the table from template.yaml and the
# tenant; each timed start then runs
#   target/release/scim-provisioning serve --port 0 --store dynamodb --table T --demo-tenant coldstart
# (which reads the tenant once: one GetItem) and, as soon as it prints its
# listening line, sends one authenticated GET /scim/v2/coldstart/Users?count=1
# (token check GetItem, counter Query, page Query). Not measured here: what
# Lambda adds (fetching and unpacking the zip, the runtime's own start), and
# the network distance to the real DynamoDB.
#   scripts/coldstart.sh [RUNS]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
RUNS="${1:-7}"

ensure_python_tools
start_moto
log "cargo build --release"
cargo build --release --quiet --bin scim-provisioning
bin="$ROOT/target/release/scim-provisioning"
table="coldstart-$RANDOM$RANDOM"
token="coldstart-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"

"$VENV/bin/python" - "$bin" "$table" "$token" "$RUNS" <<'PY'
import os, re, statistics, subprocess, sys, time, urllib.request

binary, table, token, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
env = dict(os.environ, RUST_LOG="warn")
base = [binary, "serve", "--port", "0", "--bind", "127.0.0.1", "--store", "dynamodb",
        "--table", table, "--demo-tenant", "coldstart"]

def start(extra):
    t0 = time.perf_counter()
    p = subprocess.Popen(base + extra, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env=env, text=True)
    origin = None
    for line in p.stdout:
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            origin = m.group(1)
            break
    if origin is None:
        p.kill()
        sys.exit(f"the server exited without its listening line: {base + extra}")
    t_listen = time.perf_counter()
    req = urllib.request.Request(f"{origin}/scim/v2/coldstart/Users?count=1",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
        status = r.status
    t_answer = time.perf_counter()
    p.terminate()
    p.wait(timeout=10)
    if status != 200 or b"ListResponse" not in body:
        sys.exit(f"unexpected first answer {status}: {body[:200]!r}")
    return (t_listen - t0) * 1000, (t_answer - t0) * 1000

# Untimed: creates the table and the tenant.
start(["--create-table-from", "template.yaml", "--demo-token", token])
listen, answer = [], []
for i in range(runs):
    l, a = start([])
    listen.append(l)
    answer.append(a)
    print(f"run {i + 1}: listening after {l:7.1f} ms, first answer after {a:7.1f} ms")
print()
print("command:  AWS_ENDPOINT_URL=<emulator> " + " ".join(base).replace(binary, "target/release/scim-provisioning"))
print("request:  GET /scim/v2/coldstart/Users?count=1 (Bearer token) as soon as it prints its listening line")
print(f"median of {runs}: start to listening {statistics.median(listen):.1f} ms; "
      f"start to first answer {statistics.median(answer):.1f} ms "
      f"(min {min(answer):.1f}, max {max(answer):.1f})")
PY
