#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, the HTTP integration
# suite on the embedded store and again on DynamoDB (AWS emulator), and the
# scim2-tester conformance run on both. Installs and starts what it needs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_python_tools
ensure_browser
start_moto

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

log "cargo test (unit tests; HTTP suite on the embedded store)"
cargo test --all-targets

log "cargo test (HTTP suite on DynamoDB)"
# costs:: and credentials_aws:: always run on DynamoDB; they ran in the first pass.
SCIM_TEST_STORE=dynamodb cargo test --test api -- --skip costs:: --skip credentials_aws::

log "scim2-tester conformance (embedded store)"
scripts/conformance.sh embedded

log "scim2-tester conformance (DynamoDB)"
scripts/conformance.sh dynamodb

# Deployment: tests/template.rs (template vs code) already ran with
# --all-targets above.
log "template lint (cfn-lint, sam validate --lint)"
scripts/template-lint.sh

log "Lambda end to end (cargo lambda watch, DynamoDB)"
scripts/lambda-e2e.sh

log "Lambda package (cargo lambda build --release --arm64)"
# The one release build of the suite: several minutes on 2 cores.
scripts/lambda-build.sh
