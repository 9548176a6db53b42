#!/usr/bin/env bash
# Lints template.yaml offline: cfn-lint (from .venv) and `sam validate` with
# and without --lint (SAM CLI from .venv/sam, infra/requirements-sam.txt).
# No AWS account is needed; the SAM CLI only wants a region and some
# credentials to exist, so dummy ones are given.
#   scripts/template-lint.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_python_tools
SAM_VENV="$VENV/sam"
req="$ROOT/infra/requirements-sam.txt" stamp="$SAM_VENV/.requirements"
if [ ! -x "$SAM_VENV/bin/sam" ] || ! cmp -s "$req" "$stamp" 2>/dev/null; then
  log "installing the SAM CLI into .venv/sam"
  python3 -m venv "$SAM_VENV"
  "$SAM_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi

log "cfn-lint template.yaml"
"$VENV/bin/cfn-lint" template.yaml

offline=(env -u AWS_ENDPOINT_URL -u AWS_PROFILE
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  AWS_ACCESS_KEY_ID=lint AWS_SECRET_ACCESS_KEY=lint
  SAM_CLI_TELEMETRY=0)
log "sam validate (SAM transform)"
"${offline[@]}" "$SAM_VENV/bin/sam" validate --template template.yaml 2> >(grep -v "Feature Toggle Config" >&2)
log "sam validate --lint"
"${offline[@]}" "$SAM_VENV/bin/sam" validate --lint --template template.yaml 2> >(grep -v "Feature Toggle Config" >&2)
echo "template.yaml: cfn-lint and sam validate passed"
