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
