#!/usr/bin/env bash
# Builds the Lambda deployment package: the release binary for Graviton
# (aarch64, provided.al2023) as target/lambda/scim-provisioning/bootstrap.zip,
# with cargo-lambda (and the Zig linker it cross-links with) from PyPI,
# installed into .venv through tests/requirements.txt. `sam build` runs the
# same cargo-lambda build for the template's BuildMethod rust-cargolambda.
#
# If the arm64 build cannot be done here (no aarch64 Rust target can be
# installed), it says so and builds x86-64 instead: that package only runs
# on a function deployed with Architectures [x86_64].
#   scripts/lambda-build.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_python_tools
# cargo finds the `cargo-lambda` subcommand, and cargo-lambda finds Zig
# (`python3 -m ziglang`), on PATH.
export PATH="$VENV/bin:$PATH"
BIN=scim-provisioning

build() {
  cargo lambda build --release --bin "$BIN" --output-format zip "$@"
}

start=$(date +%s)
arch=arm64
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu &&
  ! rustup target add aarch64-unknown-linux-gnu; then
  arch=""
elif ! build --arm64; then
  arch=""
fi
if [ -z "$arch" ]; then
  echo "lambda-build: the arm64 build FAILED; building x86-64 instead." >&2
  echo "lambda-build: deploy that package only with Architectures: [x86_64] in template.yaml." >&2
  build --x86-64
  arch=x86-64
fi

zip="target/lambda/$BIN/bootstrap.zip"
bytes=$(stat -c %s "$zip")
log "Lambda package"
printf 'architecture: %s\nzip:          %s\nsize:         %s bytes (%s MiB)\nbuild time:   %ss\n' \
  "$arch" "$ROOT/$zip" "$bytes" "$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')" \
  "$(($(date +%s) - start))"
