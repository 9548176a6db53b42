# Shared helpers for the scripts; source it, don't run it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

log() { printf '\n== %s\n' "$*" >&2; }

# Python tools in a project-local virtualenv, installed once per requirements change.
ensure_python_tools() {
  local req="$ROOT/tests/requirements.txt" stamp="$VENV/.requirements"
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  if ! cmp -s "$req" "$stamp" 2>/dev/null; then
    log "installing Python test tools"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
  fi
}

# Headless Chromium for the page tests: Debian's chromium package (browser
# downloads don't work here) driven by playwright-core from tests/browser,
# installed once per package-lock.json change. Exports SCIM_TEST_BROWSER=1
# and CHROMIUM for the tests that use tests/browser/*.mjs.
ensure_browser() {
  local dir="$ROOT/tests/browser" stamp="$ROOT/tests/browser/node_modules/.scim-installed-lock"
  local sudo="" apt_log
  if [ ! -x /usr/bin/chromium ]; then
    log "installing Chromium (Debian package)"
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
      sudo="sudo"
    fi
    apt_log="$(mktemp)"
    # A machine whose package lists are missing or stale needs an update first.
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >"$apt_log" 2>&1; then
      if ! { $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; } >"$apt_log" 2>&1; then
        tail -n 30 "$apt_log" >&2
        echo "could not install Debian's chromium package" >&2
        return 1
      fi
    fi
    rm -f "$apt_log"
  fi
  if ! command -v npm >/dev/null 2>&1 \
    || ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null; then
    echo "the page tests need Node.js 20 or later with npm (playwright-core requires it)" >&2
    return 1
  fi
  if [ ! -d "$dir/node_modules/playwright-core" ] || ! cmp -s "$dir/package-lock.json" "$stamp" 2>/dev/null; then
    log "installing the browser test tools (npm ci in tests/browser)"
    (cd "$dir" && npm ci --no-audit --no-fund --silent)
    cp "$dir/package-lock.json" "$stamp"
  fi
  export SCIM_TEST_BROWSER=1 CHROMIUM=/usr/bin/chromium
}

# A free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for_http URL [seconds]
wait_for_http() {
  local url="$1" limit="${2:-30}" i=0
  until curl -s -o /dev/null "$url"; do
    i=$((i + 1))
    if [ "$i" -gt $((limit * 10)) ]; then
      echo "timed out waiting for $url" >&2
      return 1
    fi
    sleep 0.1
  done
}

# Starts the AWS emulator (moto) on a free loopback port unless
# AWS_ENDPOINT_URL already points at one, and exports what the AWS SDK
# needs to talk to it. Stopped when the calling script exits.
start_moto() {
  if [ -n "${AWS_ENDPOINT_URL:-}" ] && curl -s -o /dev/null "$AWS_ENDPOINT_URL/moto-api/"; then
    return 0
  fi
  local port log
  port="$(free_port)"
  log="$(mktemp)"
  "$VENV/bin/python" "$ROOT/scripts/moto_server.py" "$port" >"$log" 2>&1 &
  MOTO_PID=$!
  trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  wait_for_http "$AWS_ENDPOINT_URL/moto-api/" 60 || { cat "$log" >&2; return 1; }
  log "AWS emulator (moto) on $AWS_ENDPOINT_URL"
}
