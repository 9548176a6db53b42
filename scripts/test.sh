#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and HTTP integration tests,
# and the scim2-tester conformance run. Installs what it needs itself.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_python_tools

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

log "cargo test"
cargo test --all-targets

log "scim2-tester conformance (embedded store)"
scripts/conformance.sh
